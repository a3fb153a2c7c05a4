//! One process's readers of the log — the projectors, the saga's partitions, the
//! publisher, the event feed — share their reads of it. A commit wakes them all at once,
//! and each would otherwise ask the database the same two things: how far the log is
//! final (the safe horizon: [`SharedHorizon`]) and what the new events are (a page of
//! the span since its checkpoint). [`SharedLog`] answers both once for all of them.
//!
//! **The tail.** The last events read, up to [`TAIL_CAPACITY`], are held in memory with
//! the span `(base, top]` they cover completely. Every span a reader asks for ends at a
//! safe horizon (or below it), so every position in it is final: what the tail holds of
//! it can never change, and a position it does not hold was rolled back for good. A page
//! whose span lies inside the tail is cut from it, filtered as the query would filter
//! it (`Span::takes`); a span that runs past `top` first extends the tail with one read
//! of every event after `top` (one reader reads, the others wait for it and share what it
//! read); a span that starts before `base` (a reader far behind: a restart, a long
//! backlog) is read from the database as before. With four views and eight saga
//! partitions on one replica, a commit costs one page read instead of twelve.

use std::collections::VecDeque;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};

use super::horizon::SharedHorizon;
use super::reader::{Page, Span};
use crate::entity::events;
use crate::metrics::{LogRead, Metrics};

/// At most this many events are held in memory.
pub const TAIL_CAPACITY: usize = 4096;

/// Events read per extension of the tail.
const FILL: u64 = 1024;

/// The log's safe horizon and its recent events, shared by one process's readers.
pub struct SharedLog {
    db: DatabaseConnection,
    horizon: SharedHorizon,
    /// One extension of the tail at a time; readers it would serve wait for it.
    fill: tokio::sync::Mutex<()>,
    held: RwLock<Held>,
    capacity: usize,
    /// Counts the reads that reach the database.
    metrics: std::sync::Arc<Metrics>,
}

/// Every event of the log in positions `(base, top]`, in position order.
#[derive(Default)]
struct Held {
    base: i64,
    top: i64,
    events: VecDeque<events::Model>,
}

impl Held {
    /// The page of `span` (which starts inside `(base, top]` or at `top`) that the held
    /// events cover: up to `limit` of what it takes, read to the last of them on a full
    /// page, or to the end of the page's window (`Span::window_end`, as a read of the
    /// database would) or `top`, whichever comes first.
    fn page(&self, span: &Span<'_>, limit: u64) -> Page {
        let end = span.window_end(limit).min(self.top);
        let first = self.events.partition_point(|e| e.position <= span.after);
        let mut events = Vec::new();
        for event in self.events.range(first..) {
            if event.position > end {
                break;
            }
            if span.takes(event) {
                events.push(event.clone());
                if events.len() as u64 >= limit {
                    let read_to = event.position;
                    return Page { events, read_to };
                }
            }
        }
        Page {
            events,
            read_to: end,
        }
    }

    /// Whether the span starts where the held events can answer it.
    fn starts_inside(&self, span: &Span<'_>) -> bool {
        self.base <= span.after && span.after <= self.top
    }

    /// Appends a page read of `(top, …]`, then lets the oldest events go past `capacity`.
    fn extend(&mut self, page: Page, capacity: usize) {
        self.events.extend(page.events);
        self.top = self.top.max(page.read_to);
        while self.events.len() > capacity {
            if let Some(gone) = self.events.pop_front() {
                self.base = gone.position;
            }
        }
    }

    /// Starts again, empty, at `at` (a reader well past what is held).
    fn restart(&mut self, at: i64) {
        *self = Held {
            base: at,
            top: at,
            events: VecDeque::new(),
        };
    }
}

impl SharedLog {
    pub fn new(db: DatabaseConnection, metrics: std::sync::Arc<Metrics>) -> Self {
        Self::with_capacity(db, metrics, TAIL_CAPACITY)
    }

    fn with_capacity(
        db: DatabaseConnection,
        metrics: std::sync::Arc<Metrics>,
        capacity: usize,
    ) -> Self {
        Self {
            horizon: SharedHorizon::new(db.clone()),
            db,
            fill: tokio::sync::Mutex::new(()),
            held: RwLock::default(),
            capacity,
            metrics,
        }
    }

    /// Answers readers woken by this process's rings with any read that started after
    /// the ring (`SharedHorizon::after_ring`): `rings` is `Wakeup::subscribe`.
    pub fn ringing(mut self, rings: tokio::sync::watch::Receiver<u64>) -> Self {
        self.horizon = self.horizon.ringing(rings);
        self
    }

    /// For a reader woken by ring number `ring`: a safe horizon that covers the commit
    /// it rang for (`SharedHorizon::after_ring`).
    pub async fn horizon_after_ring(&self, known: i64, ring: u64) -> Result<i64, DbErr> {
        let (horizon, read) = self.horizon.after_ring(known, ring).await?;
        if read {
            self.metrics.log_read(LogRead::Horizon);
        }
        Ok(horizon)
    }

    /// The safe horizon as of now (`known`: a horizon already established).
    pub async fn horizon(&self, known: i64) -> Result<i64, DbErr> {
        let (horizon, read) = self.horizon.get(known).await?;
        if read {
            self.metrics.log_read(LogRead::Horizon);
        }
        Ok(horizon)
    }

    /// For a poll: a safe horizon read at most `within` ago by any reader of this
    /// process, or read now when there was none (`SharedHorizon::recent`).
    pub async fn horizon_polled(&self, known: i64, within: Duration) -> Result<i64, DbErr> {
        let (horizon, read) = self.horizon.recent(known, within).await?;
        if read {
            self.metrics.log_read(LogRead::Horizon);
        }
        Ok(horizon)
    }

    /// The first page of `span`, at most `limit` events, as `Span::page` reads it from
    /// the database. The span must end at or below a safe horizon (every reader's span
    /// does: see `log::reader`).
    pub async fn page(&self, span: Span<'_>, limit: u64) -> Result<Page, DbErr> {
        if span.is_empty() {
            return Ok(Page {
                events: Vec::new(),
                read_to: span.after.max(span.upto),
            });
        }
        if let Some(page) = self.cached(&span, limit, false) {
            return Ok(page);
        }
        {
            let _fill = self.fill.lock().await;
            // Another reader may have read it meanwhile.
            if let Some(page) = self.cached(&span, limit, false) {
                return Ok(page);
            }
            let (base, top) = {
                let held = self.read();
                (held.base, held.top)
            };
            if span.after >= base {
                // Past the tail by more than one read: start it again at this reader.
                let from = if span.after - top > FILL as i64 {
                    span.after
                } else {
                    top
                };
                self.metrics.log_read(LogRead::Page);
                let read = Span::new(from, span.upto).page(&self.db, FILL).await?;
                let mut held = self.held.write().unwrap_or_else(PoisonError::into_inner);
                if from > held.top {
                    held.restart(from);
                }
                if held.top == from {
                    held.extend(read, self.capacity);
                }
                drop(held);
                if let Some(page) = self.cached(&span, limit, true) {
                    return Ok(page);
                }
            }
        }
        // Behind what is held (or it moved on meanwhile): from the database.
        self.metrics.log_read(LogRead::Page);
        span.page(&self.db, limit).await
    }

    /// The page from the held events when they can answer it: when they cover the whole
    /// span, or (`partly`) at least its start, after an extension read what there was.
    fn cached(&self, span: &Span<'_>, limit: u64, partly: bool) -> Option<Page> {
        let held = self.read();
        let covered = held.starts_inside(span) && (partly || span.upto <= held.top);
        (covered && span.after < held.top).then(|| held.page(span, limit))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Held> {
        self.held.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use sea_orm::{ActiveValue::Set, EntityTrait};

    use super::*;
    use crate::log::reader::Wanted;

    /// Appends an event of its own stream (so at version 1) and says its position.
    pub(crate) async fn append(
        db: &DatabaseConnection,
        stream_type: &str,
        event_type: &str,
    ) -> i64 {
        let row = events::ActiveModel {
            stream_id: Set(uuid::Uuid::new_v4()),
            stream_type: Set(stream_type.into()),
            version: Set(1),
            event_type: Set(event_type.into()),
            event_version: Set(1),
            data: Set(serde_json::json!({ "n": 1 })),
            metadata: Set(serde_json::json!({})),
            recorded_at: Set(chrono::Utc::now()),
            ..Default::default()
        };
        events::Entity::insert(row)
            .exec(db)
            .await
            .expect("an event is appended")
            .last_insert_id
    }

    const KINDS: [(&str, &str); 3] = [
        ("Product", "ProductStockAdjusted"),
        ("Order", "OrderPlaced"),
        ("Cart", "CartItemAdded"),
    ];

    const WANTED: &[Wanted] = &[
        Wanted::only("Product", &["ProductStockAdjusted"]),
        Wanted::all("Cart"),
    ];

    fn positions(page: &Page) -> Vec<i64> {
        page.events.iter().map(|e| e.position).collect()
    }

    /// Every way of asking — whole log, by stream type, by wanted events, small limits,
    /// spans starting anywhere — gets from the shared log exactly the page the database
    /// gives, with the same `read_to`, while the tail is far smaller than the log.
    #[tokio::test]
    async fn a_shared_page_is_the_page_the_database_reads() {
        let db = crate::db::in_memory().await;
        let log = SharedLog::with_capacity(db.clone(), Default::default(), 16);
        let mut head = 0;
        for round in 0..12_i64 {
            for i in 0..7 {
                let (stream, event) = KINDS[((round + i) % 3) as usize];
                head = append(&db, stream, event).await;
            }
            for after in [0, head - 30, head - 12, head - 7, head - 3, head - 1] {
                let after = after.max(0);
                for limit in [1, 2, 5, 512] {
                    let spans = [
                        Span::new(after, head),
                        Span::new(after, head).of_types(&["Order", "Cart"]),
                        Span::new(after, head).wanted(WANTED),
                        Span::new(after, head - 2),
                    ];
                    for span in spans {
                        let shared = log.page(span, limit).await.expect("a shared page");
                        let direct = span.page(&db, limit).await.expect("a page");
                        assert_eq!(
                            (positions(&shared), shared.read_to),
                            (positions(&direct), direct.read_to),
                            "{span:?}, limit {limit}"
                        );
                    }
                }
            }
        }
        assert!(log.read().events.len() <= 16, "the tail keeps its bound");
    }

    /// Readers at the head are served from memory: after one extension, the tail answers
    /// without the database (here: the rows are gone from it, and the pages still come).
    #[tokio::test]
    async fn readers_at_the_head_share_one_read() {
        let db = crate::db::in_memory().await;
        let log = SharedLog::new(db.clone(), Default::default());
        let mut head = 0;
        for _ in 0..5 {
            head = append(&db, "Product", "ProductStockAdjusted").await;
        }
        let first = log.page(Span::new(0, head), 512).await.expect("a page");
        assert_eq!(first.events.len(), 5);
        events::Entity::delete_many()
            .exec(&db)
            .await
            .expect("the rows are deleted");
        for after in 0..head {
            let page = log
                .page(Span::new(after, head).wanted(WANTED), 512)
                .await
                .expect("a page");
            assert_eq!(page.events.len() as i64, head - after, "after {after}");
            assert_eq!(page.read_to, head);
        }
    }
}
