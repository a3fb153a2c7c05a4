//! The raw event feed behind the `events` subscription: every event in position order,
//! with no gap and no duplicate, from any starting point.
//!
//! One tailer per server follows the relay's safe horizon (below which every event is
//! final), reads each new range of the log once (through the process's shared tail of
//! the log, which the relay has usually read already) and broadcasts it. It first raises
//! `published` to the new horizon and only then broadcasts the range, so a subscriber
//! that subscribes to the broadcast and *then* reads `published` either finds an event in
//! the table (at or below what it read) or receives it (above). A subscriber reads its
//! backlog from the table in pages up to `published`, then switches to the broadcast,
//! forwarding only positions above its cursor. One that falls behind the broadcast
//! buffer goes back to the table from its cursor: the feed never drops an event.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures_util::Stream;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{broadcast, watch};

use super::live::Limits;
use crate::entity::events;
use crate::error::{AppError, AppResult};
use crate::log::reader::Span;
use crate::log::shared::SharedLog;
use crate::supervise::TaskHealth;

/// Events read per query, by the tailer and by a subscriber catching up.
pub const PAGE: u64 = 512;

pub struct EventFeed {
    tx: broadcast::Sender<Arc<events::Model>>,
    published: watch::Sender<i64>,
    /// Broadcast up to here: below `published` only while a run of the tailer is failing
    /// to read the log (the next run broadcasts the rest first).
    sent: AtomicI64,
    metrics: Arc<crate::metrics::Metrics>,
    /// While anyone follows the feed, this process's relay wakes for every commit: the
    /// horizon the feed follows must move with any event, not only with those its
    /// views fold.
    wakeup: crate::write::Wakeup,
}

impl EventFeed {
    pub fn new(
        capacity: usize,
        metrics: Arc<crate::metrics::Metrics>,
        wakeup: crate::write::Wakeup,
    ) -> Arc<Self> {
        let (tx, _) = broadcast::channel(capacity);
        Arc::new(Self {
            tx,
            published: watch::Sender::new(0),
            sent: AtomicI64::new(0),
            metrics,
            wakeup,
        })
    }

    /// Follows `horizon` (the relay's) until `shutdown`. A run that cannot read the log
    /// ends with the error (the supervisor starts another); the next run first broadcasts
    /// what was published and not yet broadcast (skipping it would be a gap for every
    /// live subscriber), and only then is up.
    pub async fn run(
        self: Arc<Self>,
        log: Arc<SharedLog>,
        mut horizon: watch::Receiver<i64>,
        up: TaskHealth,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DbErr> {
        tokio::pin!(shutdown);
        let mut cursor = *self.published.borrow();
        self.broadcast(&log, cursor).await?;
        up.ready();
        loop {
            let target = *horizon.borrow_and_update();
            if target > cursor {
                self.published.send_replace(target);
                self.broadcast(&log, target).await?;
                cursor = target;
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                changed = horizon.changed() => if changed.is_err() { return Ok(()) },
            }
        }
    }

    /// Broadcasts what is left up to `to`, a page at a time. Nobody listening: nothing
    /// to broadcast; a subscriber arriving from now on reads `published` ≥ `to`, so the
    /// table serves it up to there.
    async fn broadcast(&self, log: &SharedLog, to: i64) -> Result<(), DbErr> {
        let mut from = self.sent.load(Ordering::Acquire);
        while from < to && self.tx.receiver_count() > 0 {
            let page = log.page(Span::new(from, to), PAGE).await?;
            from = page.read_to;
            for row in page.events {
                let _ = self.tx.send(Arc::new(row));
            }
            self.sent.store(from, Ordering::Release);
        }
        self.sent.fetch_max(to, Ordering::AcqRel);
        Ok(())
    }

    /// The events after `after` whose stream type is in `stream_types` (all when `None`),
    /// then live ones, until `limits` end it.
    pub fn follow(
        self: Arc<Self>,
        db: DatabaseConnection,
        after: i64,
        stream_types: Option<Vec<String>>,
        mut limits: Limits,
    ) -> impl Stream<Item = AppResult<Arc<events::Model>>> + Send {
        async_stream::stream! {
            self.metrics.subscription_opened("events");
            let _open = OpenGuard(self.clone());
            let _interest = self.wakeup.interest(None);
            let wanted = |e: &events::Model| {
                stream_types.as_ref().is_none_or(|t| t.contains(&e.stream_type))
            };
            let types: Option<Vec<&str>> = stream_types
                .as_ref()
                .map(|t| t.iter().map(String::as_str).collect());
            let mut cursor = after;
            loop {
                let mut rx = self.tx.subscribe();
                let upto = *self.published.borrow();
                // Backlog from the table, in pages.
                while cursor < upto {
                    if limits.draining() {
                        yield Err(AppError::ServerDraining { position: cursor });
                        return;
                    }
                    let mut span = Span::new(cursor, upto);
                    if let Some(types) = &types {
                        span = span.of_types(types);
                    }
                    let page = match span.page(&db, PAGE).await {
                        Ok(page) => page,
                        Err(e) => { yield Err(e.into()); return; }
                    };
                    cursor = page.read_to;
                    for row in page.events {
                        yield Ok(Arc::new(row));
                    }
                }
                // Live, until the broadcast leaves this subscriber behind.
                loop {
                    let msg = tokio::select! {
                        biased;
                        error = limits.ended(cursor) => Err(error),
                        msg = rx.recv() => Ok(msg),
                    };
                    match msg {
                        Err(error) => {
                            yield Err(error);
                            return;
                        }
                        Ok(Ok(event)) => {
                            if event.position > cursor {
                                cursor = event.position;
                                if wanted(&event) {
                                    yield Ok(event);
                                }
                            }
                        }
                        Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                            self.metrics.subscriber_lagged("events");
                            break;
                        }
                        Ok(Err(broadcast::error::RecvError::Closed)) => {
                            yield Err(AppError::ServerDraining { position: cursor });
                            return;
                        }
                    }
                }
            }
        }
    }
}

struct OpenGuard(Arc<EventFeed>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.metrics.subscription_closed("events");
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveModelTrait as _, ActiveValue::Set};

    use super::*;
    use crate::supervise::{Failure, Supervisor, Tasks};

    /// A run that dies after raising `published` leaves a range no live subscriber has
    /// received: the next run must broadcast it before it is up, or they would have a gap.
    #[tokio::test]
    async fn a_restarted_feed_first_broadcasts_what_it_published_and_had_not_sent() {
        // Arrange: three events; a run published up to 3 and broadcast up to 1.
        let db = crate::db::in_memory().await;
        for version in 1..=3 {
            events::ActiveModel {
                stream_id: Set(uuid::Uuid::from_u128(7)),
                stream_type: Set("cart".into()),
                version: Set(version),
                event_type: Set("CartCleared".into()),
                event_version: Set(1),
                data: Set(serde_json::json!({ "user_id": "alice" })),
                metadata: Set(serde_json::json!({})),
                recorded_at: Set(chrono::Utc::now()),
                ..Default::default()
            }
            .insert(&db)
            .await
            .expect("an event");
        }
        let feed = EventFeed::new(
            16,
            Arc::new(crate::metrics::Metrics::default()),
            crate::write::Wakeup::default(),
        );
        let mut live = feed.tx.subscribe();
        feed.published.send_replace(3);
        feed.sent.store(1, Ordering::Release);
        let (_relay, horizon) = watch::channel(3);

        // Act: a new run, supervised as in the server.
        let tasks = Arc::new(Tasks::default());
        let (stop, stopping) = watch::channel(false);
        let mut supervisor = Supervisor::new(tasks.clone(), stopping);
        let log = Arc::new(SharedLog::new(db.clone(), Default::default()));
        let tailer = feed.clone();
        supervisor.spawn("event-feed", move |up, stopped| {
            let run = tailer
                .clone()
                .run(log.clone(), horizon.clone(), up, stopped.wait());
            async move { run.await.map_err(Failure::restart) }
        });

        // Assert: the subscriber gets 2 and 3, in order, and nothing twice.
        let mut received = Vec::new();
        for _ in 0..2 {
            let event = tokio::time::timeout(std::time::Duration::from_secs(10), live.recv())
                .await
                .expect("the range is broadcast")
                .expect("an event");
            received.push(event.position);
        }
        assert_eq!(received, [2, 3]);
        assert!(tasks.down().is_empty());
        stop.send_replace(true);
        supervisor.join().await;
        assert_eq!(feed.sent.load(Ordering::Acquire), 3);
    }
}
