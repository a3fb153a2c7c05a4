//! Where the projectors read the log from: the database's `events` table (every replica
//! that has the write database) or, on a read replica, the event bus
//! (`crate::broker::source`, ADR 0016). The folding code is the same for both: the relay
//! asks a source how far the log is final and for a page of it.

use std::sync::Arc;

use sea_orm::DbErr;

use super::reader::{Page, Span, Wanted};
use super::shared::SharedLog;

/// A readable copy of the log, in position order.
#[async_trait::async_trait]
pub trait EventSource: Send + Sync {
    /// The position up to which every event is final and can be read from here. `known`
    /// is a horizon already established (a checkpoint): a source may answer it at once
    /// when nothing is beyond it.
    async fn horizon(&self, known: i64) -> Result<i64, DbErr>;

    /// The horizon for a reader woken by ring number `ring` of this process's wake-ups
    /// (`Wakeup::subscribe`): it must cover what was committed before that ring, not
    /// necessarily what was committed before this call. By default, `horizon`.
    async fn horizon_after_ring(&self, known: i64, ring: u64) -> Result<i64, DbErr> {
        let _ = ring;
        self.horizon(known).await
    }

    /// One page of the events in `(after, upto]` (`upto` at most the horizon), of what
    /// `wanted` takes when given, at most `limit` events. `reader` names who reads (a
    /// view's projector): a source may keep a cursor per reader.
    async fn page(
        &self,
        reader: &'static str,
        after: i64,
        upto: i64,
        wanted: Option<&'static [Wanted]>,
        limit: u64,
    ) -> Result<Page, DbErr>;
}

/// The log in a database's `events` table, its horizon and its recent events shared with
/// the process's other readers.
pub struct LogSource {
    pub log: Arc<SharedLog>,
}

#[async_trait::async_trait]
impl EventSource for LogSource {
    async fn horizon(&self, known: i64) -> Result<i64, DbErr> {
        self.log.horizon(known).await
    }

    async fn horizon_after_ring(&self, known: i64, ring: u64) -> Result<i64, DbErr> {
        self.log.horizon_after_ring(known, ring).await
    }

    async fn page(
        &self,
        _reader: &'static str,
        after: i64,
        upto: i64,
        wanted: Option<&'static [Wanted]>,
        limit: u64,
    ) -> Result<Page, DbErr> {
        let mut span = Span::new(after, upto);
        if let Some(wanted) = wanted {
            span = span.wanted(wanted);
        }
        self.log.page(span, limit).await
    }
}
