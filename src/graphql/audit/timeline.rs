//! `productTimeline`: a stream's state after each of its last events, the temporal query
//! asked at every moment the stream changed. One replay serves the whole window: from the
//! latest snapshot before it, through its events, keeping the state after each one.
//!
//! A chart of a product's stock and price over time could be drawn from `history` and
//! `productAsOf`, one query per point and the business of folding events left to the
//! client; this answers it in one request, folded by the aggregate itself.

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::super::catalog::ProductStatus;
use super::super::scalars::{Decimal, Position};
use crate::domain::Aggregate;
use crate::domain::product::Product;
use crate::entity::{events, snapshots};
use crate::error::AppResult;
use crate::log::codec::decode_row;

/// A product as it was right after one of its events.
#[derive(SimpleObject)]
pub struct ProductChange {
    /// The stream version after the event (1 for its first).
    pub version: i64,
    /// The event's persisted type name, e.g. `ProductStockReserved`.
    pub event_type: String,
    /// When the event was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The event's position in the log.
    pub position: Position,
    /// Unit price after the event.
    pub price: Decimal,
    /// Units on hand after the event.
    pub stock: i64,
    pub status: ProductStatus,
}

/// The state of stream `stream_id` after each of its last `last` events, oldest first
/// (empty for an unknown stream or one of another type).
async fn after_each<A: Aggregate, C: ConnectionTrait>(
    db: &C,
    stream_id: Uuid,
    last: u64,
) -> AppResult<Vec<(events::Model, A)>> {
    let stream = || {
        events::Entity::find()
            .filter(events::Column::StreamId.eq(stream_id))
            .filter(events::Column::StreamType.eq(A::STREAM_TYPE))
    };
    let Some(newest) = stream()
        .order_by_desc(events::Column::Version)
        .one(db)
        .await?
    else {
        return Ok(vec![]);
    };
    // The window is versions `from..=newest`; the state before it comes from the latest
    // usable snapshot at or below `from - 1` and the events between.
    let from = (newest.version - last as i64 + 1).max(1);
    let snapshot = snapshots::Entity::find()
        .filter(snapshots::Column::StreamId.eq(stream_id))
        .filter(snapshots::Column::StreamType.eq(A::STREAM_TYPE))
        .filter(snapshots::Column::StateVersion.eq(A::STATE_VERSION))
        .filter(snapshots::Column::Version.lt(from))
        .order_by_desc(snapshots::Column::Version)
        .one(db)
        .await?
        // As everywhere, an unreadable snapshot is ignored: the replay starts earlier.
        .and_then(|row| Some((serde_json::from_value::<A>(row.state).ok()?, row.version)));
    let (mut state, folded) = snapshot.unwrap_or_default();
    let rows = stream()
        .filter(events::Column::Version.gt(folded))
        .filter(events::Column::Version.lte(newest.version))
        .order_by_asc(events::Column::Version)
        .limit(None)
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(last as usize);
    for row in rows {
        state = state.apply(&decode_row::<A::Event>(&row)?);
        if row.version >= from {
            out.push((row, state.clone()));
        }
    }
    Ok(out)
}

/// The product after each of its last `last` events, oldest first.
pub(super) async fn product<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    last: u64,
) -> AppResult<Vec<ProductChange>> {
    if last == 0 {
        return Ok(vec![]);
    }
    Ok(after_each::<Product, C>(db, id, last)
        .await?
        .into_iter()
        .map(|(row, p)| ProductChange {
            version: row.version,
            event_type: row.event_type,
            recorded_at: row.recorded_at,
            position: Position(row.position),
            price: Decimal(p.price),
            stock: p.stock,
            status: p.status.into(),
        })
        .collect())
}
