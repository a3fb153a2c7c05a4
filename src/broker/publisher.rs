//! The publisher: one unit of work of the cluster (ADR 0012, ADR 0016). It reads the log
//! in `(last published, safe horizon]` and publishes every position in order — an event,
//! or a gap marker where a transaction rolled back — so that the stream's sequence is the
//! log's position.
//!
//! Each message carries `Nats-Msg-Id: <position>` (a retried publish is acknowledged as a
//! duplicate, never stored twice) and `Nats-Expected-Last-Sequence: <position − 1>`: the
//! broker rejects a publish that does not follow the stream's last message, so a second
//! publisher, or a zombie that woke up after its lease moved on, cannot interleave. Below
//! the horizon every position is final (ADR 0001), so what is published never changes.
//!
//! On start (a takeover, a reconnect, any error) it reads the stream's last sequence and
//! checks that the message there is the log's event at that position (or a gap where the
//! log has none). A mismatch — the stream ahead of the log, another event at a position —
//! means the write database lost commits the broker has, or the stream is not this log's:
//! publishing stops, loudly (the log, `/readyz`, `ordergraph_bus_diverged`), and the check
//! is repeated every half minute, so that an operator's repair (deleting the stream, which
//! the publisher then refills from the log) is taken up by itself.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, publish::PublishAck};
use sea_orm::{DatabaseConnection, EntityTrait};
use tokio::sync::watch;

use super::wire::{self, Published};
use super::{BrokerSettings, connect, ensure_stream};
use crate::cluster::Fence;
use crate::entity::events;
use crate::log::reader::Span;
use crate::log::shared::SharedLog;
use crate::metrics::Metrics;
use crate::supervise::Failure;

/// Positions read from the log and published per round.
const PAGE: i64 = 4096;
/// Publishes in flight before the oldest acknowledgement is awaited (the broker keeps
/// them in order: each expects the one before).
const WINDOW: usize = 256;
/// How often a diverged stream is checked again.
const RECHECK: Duration = Duration::from_secs(30);
/// The longest wait before connecting again after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What this replica knows of the publisher, for `/readyz` and `/metrics`.
#[derive(Default)]
pub struct PublisherStatus {
    /// The last position the broker acknowledged to this replica's publisher (0: none).
    published: AtomicI64,
    /// Why publishing stopped, while it is stopped for a mismatch.
    diverged: std::sync::Mutex<Option<String>>,
}

impl PublisherStatus {
    pub fn published(&self) -> i64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Why publishing has stopped: the stream and the log disagree.
    pub fn diverged(&self) -> Option<String> {
        self.diverged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_diverged(&self, why: Option<String>) {
        *self
            .diverged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = why;
    }
}

/// Why a publishing session ended.
#[derive(Debug)]
enum Stop {
    /// The stream and the log disagree: publish nothing until they agree again.
    Diverged(String),
    /// The broker or the database failed, or another publisher moved the stream on:
    /// connect again and read where the stream stands.
    Transient(anyhow::Error),
}

fn transient(e: impl Into<anyhow::Error>) -> Stop {
    Stop::Transient(e.into())
}

/// Publishes the log of `db` to the broker of `settings`.
pub struct Publisher {
    pub db: DatabaseConnection,
    pub settings: BrokerSettings,
    /// This replica's node id: the broker connection's name.
    pub node: String,
    /// The write database's log: its safe horizon and recent events, shared with the
    /// process's other readers.
    pub log: Arc<SharedLog>,
    /// Rings after a commit here, or a hint of one elsewhere.
    pub wakeup: crate::write::Wakeup,
    /// The longest wait between two looks at the log.
    pub poll: Duration,
    pub status: Arc<PublisherStatus>,
    pub metrics: Arc<Metrics>,
}

impl Publisher {
    /// Publishes until `fence` is released (the unit is lost or given up, or the service
    /// stops). Failures are retried here with a backoff; a mismatch waits for a repair.
    pub async fn run(&self, fence: Fence) -> Result<(), Failure> {
        // The publisher reads every event: any commit wakes it.
        let _interest = self.wakeup.interest(None);
        let mut wakeup = self.wakeup.subscribe();
        let mut backoff = Duration::from_millis(100);
        loop {
            if fence.check().is_err() {
                return Ok(());
            }
            let wait = match self.session(&fence, &mut wakeup).await {
                Ok(()) => return Ok(()),
                Err(Stop::Diverged(why)) => {
                    tracing::error!(
                        stream = %self.settings.stream,
                        why = %why,
                        "the event stream and the log disagree: publishing stopped \
                         (delete the stream to have it refilled from the log)"
                    );
                    self.metrics.bus_diverged(true);
                    self.status.set_diverged(Some(why));
                    RECHECK
                }
                Err(Stop::Transient(e)) => {
                    tracing::warn!(
                        stream = %self.settings.stream,
                        error = format!("{e:#}"),
                        "publishing to the broker failed; trying again"
                    );
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                _ = fence.released() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One connection's worth of publishing: check where the stream stands, then publish
    /// what the log has beyond it, as it comes. `Ok` when the fence is released.
    async fn session(&self, fence: &Fence, wakeup: &mut watch::Receiver<u64>) -> Result<(), Stop> {
        let js = connect(
            &self.settings,
            &format!("ordergraph-publisher/{}", self.node),
        )
        .await
        .map_err(transient)?;
        let mut stream = ensure_stream(&js, &self.settings)
            .await
            .map_err(transient)?;
        let mut last = self.check(&mut stream).await?;
        if self.status.diverged().is_some() {
            tracing::info!(stream = %self.settings.stream, "the event stream and the log agree again: publishing");
        }
        self.status.set_diverged(None);
        self.metrics.bus_diverged(false);
        self.acknowledged(last);
        tracing::info!(stream = %self.settings.stream, from = last, "publishing the log");
        loop {
            if fence.check().is_err() {
                return Ok(());
            }
            let horizon = self.log.horizon(last).await.map_err(transient)?;
            self.metrics.bus_lag(horizon - last);
            if horizon <= last {
                tokio::select! {
                    _ = fence.released() => return Ok(()),
                    Ok(()) = wakeup.changed() => {}
                    _ = tokio::time::sleep(self.poll) => {}
                }
                continue;
            }
            let upto = horizon.min(last.saturating_add(PAGE));
            let page = self
                .log
                .page(Span::new(last, upto), PAGE as u64)
                .await
                .map_err(transient)?;
            last = self
                .publish(&js, last, page.events, page.read_to, fence)
                .await?;
        }
    }

    /// Where the stream stands, checked against the log: its last sequence, when the
    /// message there is the log's at that position.
    async fn check(&self, stream: &mut Stream) -> Result<i64, Stop> {
        let state = stream.info().await.map_err(transient)?.state.clone();
        let last = i64::try_from(state.last_sequence).map_err(|_| {
            Stop::Diverged(format!("sequence {} is no position", state.last_sequence))
        })?;
        if last == 0 {
            return Ok(0);
        }
        // Every published position was final in the log when it was published.
        let horizon = self.log.horizon(0).await.map_err(transient)?;
        if horizon < last {
            return Err(Stop::Diverged(format!(
                "the stream's last sequence is {last} but the log ends at {horizon}: the \
                 write database lost events the broker has (a restored backup, a lost commit), \
                 or the stream is another log's"
            )));
        }
        let message = match stream.get_raw_message(state.last_sequence).await {
            Ok(message) => message,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                // Purged or deleted by an operator: nothing to compare, the sequence stands.
                tracing::warn!(
                    sequence = last,
                    "the stream's last message was deleted: it cannot be checked against the log"
                );
                return Ok(last);
            }
            Err(e) => return Err(transient(e)),
        };
        let published = wire::decode(message.sequence, Some(&message.headers), &message.payload)
            .map_err(|e| {
                Stop::Diverged(format!("the stream's last message is not the log's: {e}"))
            })?;
        let row = events::Entity::find_by_id(last)
            .one(&self.db)
            .await
            .map_err(transient)?;
        match (&published, &row) {
            (Published::Event(p), Some(r))
                if p.stream_id == r.stream_id
                    && p.version == r.version
                    && p.event_type == r.event_type =>
            {
                Ok(last)
            }
            (Published::Gap(_), None) => Ok(last),
            _ => Err(Stop::Diverged(format!(
                "at position {last} the stream has {} and the log has {}",
                describe(Some(&published)),
                describe(row.map(Published::Event).as_ref())
            ))),
        }
    }

    /// Publishes positions `(last, read_to]`: the events of `events` (in position order,
    /// all in that span) and a gap marker at every other position. The last position the
    /// broker acknowledged.
    async fn publish(
        &self,
        js: &jetstream::Context,
        mut last: i64,
        events: Vec<events::Model>,
        read_to: i64,
        fence: &Fence,
    ) -> Result<i64, Stop> {
        let prefix = self.settings.prefix.as_str();
        let mut events = events.into_iter().peekable();
        let mut in_flight: VecDeque<(i64, PublishAckFuture)> = VecDeque::new();
        let mut gaps = 0u64;
        for position in last + 1..=read_to {
            // A replica that lost its unit sends nothing more (what it sent is still
            // ordered by the expected sequence).
            if fence.check().is_err() {
                break;
            }
            let message = match events.next_if(|e| e.position == position) {
                Some(event) => wire::event(prefix, &event),
                None => {
                    gaps += 1;
                    wire::gap(prefix, position)
                }
            };
            let previous = u64::try_from(position - 1).unwrap_or(0);
            let publish = PublishMessage::build()
                .payload(message.payload)
                .headers(message.headers)
                .message_id(position.to_string())
                .expected_last_sequence(previous);
            let ack = js
                .send_publish(message.subject, publish)
                .await
                .map_err(transient)?;
            in_flight.push_back((position, ack));
            if in_flight.len() >= WINDOW
                && let Some((position, ack)) = in_flight.pop_front()
            {
                last = self.settle(position, ack.await)?;
            }
        }
        while let Some((position, ack)) = in_flight.pop_front() {
            last = self.settle(position, ack.await)?;
        }
        self.metrics.bus_gaps(gaps);
        Ok(last)
    }

    /// The broker's answer to the publish of `position`.
    fn settle(
        &self,
        position: i64,
        ack: Result<PublishAck, async_nats::jetstream::context::PublishError>,
    ) -> Result<i64, Stop> {
        match ack {
            Ok(ack) if i64::try_from(ack.sequence) == Ok(position) => {
                self.acknowledged(position);
                Ok(position)
            }
            Ok(ack) => Err(Stop::Diverged(format!(
                "position {position} was stored at sequence {}{}",
                ack.sequence,
                if ack.duplicate {
                    " (as a duplicate of an earlier message with its id)"
                } else {
                    ""
                }
            ))),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(Stop::Transient(anyhow::anyhow!(
                    "the stream moved on before position {position} (another publisher?): \
                     reading where it stands"
                )))
            }
            Err(e) => Err(transient(e)),
        }
    }

    fn acknowledged(&self, position: i64) {
        self.status.published.store(position, Ordering::Relaxed);
        self.metrics.bus_published(position);
    }
}

/// A message or row in a mismatch report.
fn describe(published: Option<&Published>) -> String {
    match published {
        None => "no event".to_owned(),
        Some(Published::Gap(_)) => "a gap marker".to_owned(),
        Some(Published::Event(e)) => format!(
            "{} {} of {} {}",
            e.event_type, e.version, e.stream_type, e.stream_id
        ),
    }
}
