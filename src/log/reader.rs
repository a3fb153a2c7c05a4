//! The one paged reader of the log: the events of a span of positions `(after, upto]` in
//! position order, optionally of some stream types or some event types only ([`Wanted`]),
//! a page at a time; and a stream's events by version, for the audit trail.
//!
//! A span ends at a safe horizon (or below it): every position in it is final, so a page
//! shorter than asked for has read the whole rest of the span, and what is missing below
//! its end was rolled back and can never appear. `Page::read_to` says so once, instead
//! of each reader working it out.

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Select,
};
use uuid::Uuid;

use crate::entity::events;

/// Events a reader wants from the log: those of one stream type, every one of them or
/// only some event types (persisted names). A projection declares what it wants once;
/// the relay, a rebuild and the lag count all filter by that same declaration, so a view
/// that skips an event is never reported behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub stream_type: &'static str,
    /// `None`: every event of the stream type.
    pub event_types: Option<&'static [&'static str]>,
}

impl Wanted {
    /// Every event of `stream_type`.
    pub const fn all(stream_type: &'static str) -> Self {
        Self {
            stream_type,
            event_types: None,
        }
    }

    /// Only these event types of `stream_type`.
    pub const fn only(stream_type: &'static str, event_types: &'static [&'static str]) -> Self {
        Self {
            stream_type,
            event_types: Some(event_types),
        }
    }

    fn matches(&self, event: &events::Model) -> bool {
        Self::takes(
            std::slice::from_ref(self),
            &event.stream_type,
            &event.event_type,
        )
    }

    /// Whether any of `wanted` takes events of `event_type` in streams of `stream_type`.
    pub fn takes(wanted: &[Wanted], stream_type: &str, event_type: &str) -> bool {
        wanted.iter().any(|w| {
            w.stream_type == stream_type
                && w.event_types
                    .is_none_or(|types| types.contains(&event_type))
        })
    }

    /// Whether any of `wanted` takes `event`.
    pub fn any(wanted: &[Wanted], event: &events::Model) -> bool {
        wanted.iter().any(|w| w.matches(event))
    }
}

/// The events in positions `(after, upto]`, of `stream_types` only and of what `wanted`
/// takes only, when given.
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    pub after: i64,
    pub upto: i64,
    pub stream_types: Option<&'a [&'a str]>,
    pub wanted: Option<&'a [Wanted]>,
}

/// A page of `limit` events reads at most `limit × WINDOW` positions of its span
/// ([`Span::page`]). 2: a reader that wants half of the log (the orders view, the saga)
/// fills most pages; one that wants less reads short pages, each as cheap.
pub const WINDOW: i64 = 2;

/// One page of a span.
#[derive(Debug)]
pub struct Page {
    pub events: Vec<events::Model>,
    /// Every position up to here has been read: the last event's on a full page, the end
    /// of the positions the page read (its window, or the span's end) on a short one.
    pub read_to: i64,
}

impl<'a> Span<'a> {
    /// Every event in `(after, upto]`.
    pub fn new(after: i64, upto: i64) -> Self {
        Self {
            after,
            upto,
            stream_types: None,
            wanted: None,
        }
    }

    /// Only the events of these stream types.
    pub fn of_types(mut self, stream_types: &'a [&'a str]) -> Self {
        self.stream_types = Some(stream_types);
        self
    }

    /// Only the events `wanted` takes.
    pub fn wanted(mut self, wanted: &'a [Wanted]) -> Self {
        self.wanted = Some(wanted);
        self
    }

    /// Whether nothing is left to read.
    pub fn is_empty(&self) -> bool {
        self.after >= self.upto
    }

    /// What is left of the span once `page` has been read.
    pub fn rest(self, page: &Page) -> Self {
        Self {
            after: page.read_to,
            ..self
        }
    }

    /// Whether the span's filters take `event` (its position aside): what [`query`]
    /// selects, for a page cut from events held in memory (`log::shared`).
    ///
    /// [`query`]: Self::query
    pub fn takes(&self, event: &events::Model) -> bool {
        self.stream_types
            .is_none_or(|types| types.contains(&event.stream_type.as_str()))
            && self.wanted.is_none_or(|wanted| Wanted::any(wanted, event))
    }

    fn query(&self) -> Select<events::Entity> {
        let query = events::Entity::find()
            .filter(events::Column::Position.gt(self.after))
            .filter(events::Column::Position.lte(self.upto));
        let query = match self.stream_types {
            Some(types) => query.filter(events::Column::StreamType.is_in(types.iter().copied())),
            None => query,
        };
        match self.wanted {
            Some(wanted) => query.filter(wanted.iter().fold(Condition::any(), |any, w| {
                let stream = Condition::all().add(events::Column::StreamType.eq(w.stream_type));
                any.add(match w.event_types {
                    Some(types) => {
                        stream.add(events::Column::EventType.is_in(types.iter().copied()))
                    }
                    None => stream,
                })
            })),
            None => query,
        }
    }

    /// The first `limit` events of the span, read from its first `limit × WINDOW`
    /// positions at most: a page shorter than `limit` has read to the end of that window
    /// (or of the span), which `Page::read_to` says.
    ///
    /// The window bounds each page's work by its size. Unbounded, a filtered page of a
    /// long span (a rebuild, a reader catching up after a restart) was planned on
    /// PostgreSQL as a bitmap scan of every event that passes the filter up to the span's
    /// end, sorted, of which the first `limit` were kept: each page cost the whole rest of
    /// the span, and a 1M-event rebuild read the log quadratically (BENCHMARKS.md,
    /// rebuild, 2026-11-28 06:20).
    pub async fn page<C: ConnectionTrait>(&self, db: &C, limit: u64) -> Result<Page, DbErr> {
        if self.is_empty() {
            return Ok(Page {
                events: Vec::new(),
                read_to: self.after.max(self.upto),
            });
        }
        let end = self.window_end(limit);
        let events = Self { upto: end, ..*self }
            .query()
            .order_by_asc(events::Column::Position)
            .limit(limit)
            .all(db)
            .await?;
        let read_to = match events.last() {
            Some(last) if events.len() as u64 >= limit => last.position,
            _ => end,
        };
        Ok(Page { events, read_to })
    }

    /// Where a page of `limit` events stops reading: `limit × WINDOW` positions into the
    /// span, or its end.
    pub fn window_end(&self, limit: u64) -> i64 {
        let window = i64::try_from(limit)
            .unwrap_or(i64::MAX)
            .saturating_mul(WINDOW);
        self.upto.min(self.after.saturating_add(window))
    }

    /// How many events the span holds.
    pub async fn count<C: ConnectionTrait>(&self, db: &C) -> Result<u64, DbErr> {
        if self.is_empty() {
            return Ok(0);
        }
        self.query().count(db).await
    }

    /// The span's oldest event.
    pub async fn first<C: ConnectionTrait>(&self, db: &C) -> Result<Option<events::Model>, DbErr> {
        if self.is_empty() {
            return Ok(None);
        }
        self.query()
            .order_by_asc(events::Column::Position)
            .one(db)
            .await
    }
}

/// The events of stream `stream_id` after version `after`, at most `first`, and whether
/// more follow (the audit trail's pages).
pub async fn stream_page<C: ConnectionTrait>(
    db: &C,
    stream_id: Uuid,
    after: i64,
    first: u64,
) -> Result<(Vec<events::Model>, bool), DbErr> {
    let rows = events::Entity::find()
        .filter(events::Column::StreamId.eq(stream_id))
        .filter(events::Column::Version.gt(after))
        .order_by_asc(events::Column::Version)
        .limit(first + 1)
        .all(db)
        .await?;
    Ok(crate::read::split_page(rows, first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::shared::tests::append;

    /// A page reads at most `limit × WINDOW` positions: where the events a reader wants
    /// are sparse its pages are short, each saying how far it read, and reading on from
    /// each `read_to` gets every wanted event once, in order, and nothing else.
    #[tokio::test]
    async fn pages_of_sparse_events_read_a_window_at_a_time_and_miss_none() {
        let db = crate::db::in_memory().await;
        let mut orders = Vec::new();
        let mut head = 0;
        for i in 0..200 {
            if i % 17 == 5 {
                head = append(&db, "Order", "OrderPlaced").await;
                orders.push(head);
            } else {
                head = append(&db, "Product", "ProductStockAdjusted").await;
            }
        }
        let wanted = [Wanted::all("Order")];
        for limit in [1, 2, 3, 10, 512] {
            let mut span = Span::new(0, head).wanted(&wanted);
            let (mut seen, mut pages) = (Vec::new(), 0);
            while !span.is_empty() {
                let page = span.page(&db, limit).await.expect("a page");
                assert!(page.read_to > span.after, "limit {limit}: a page moves on");
                assert!(
                    page.read_to <= span.after + limit as i64 * WINDOW,
                    "limit {limit}: a page reads its window at most"
                );
                assert!(page.events.len() as u64 <= limit);
                assert!(page.events.iter().all(|e| e.position <= page.read_to));
                seen.extend(page.events.iter().map(|e| e.position));
                span = span.rest(&page);
                pages += 1;
            }
            assert_eq!(
                seen, orders,
                "limit {limit}: every order event, once, in order"
            );
            assert!(
                pages >= head / (limit as i64 * WINDOW),
                "limit {limit}: {pages} pages read {head} positions"
            );
        }
    }
}
