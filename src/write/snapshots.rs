//! Snapshots: a stream's folded state every N events, so loading a long stream reads the
//! latest snapshot and the events after it instead of the whole stream. An optimisation
//! only: a snapshot that is missing, of another state format, or unreadable is ignored,
//! and the stream is folded from its first event, with the same result.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::domain::Aggregate;
use crate::entity::snapshots;

/// A usable snapshot: the state at `version`, whose last event is at `position`.
pub struct Snapshot<A> {
    pub state: A,
    pub version: i64,
    pub position: i64,
}

/// The latest usable snapshot of `stream_id` as an `A` (taken at or before `at`, when
/// given); none for a stream of another type.
pub async fn latest<A: Aggregate, C: ConnectionTrait>(
    db: &C,
    stream_id: Uuid,
    at: Option<DateTime<Utc>>,
) -> Result<Option<Snapshot<A>>, DbErr> {
    let mut query = snapshots::Entity::find()
        .filter(snapshots::Column::StreamId.eq(stream_id))
        // Another aggregate's state may well deserialize as this one's: only our own.
        .filter(snapshots::Column::StreamType.eq(A::STREAM_TYPE))
        .filter(snapshots::Column::StateVersion.eq(A::STATE_VERSION));
    if let Some(at) = at {
        query = query.filter(snapshots::Column::RecordedAt.lte(at));
    }
    let Some(row) = query
        .order_by_desc(snapshots::Column::Version)
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    match serde_json::from_value::<A>(row.state) {
        Ok(state) => Ok(Some(Snapshot {
            state,
            version: row.version,
            position: row.position,
        })),
        Err(e) => {
            tracing::warn!(%stream_id, version = row.version, error = %e, "ignoring an unreadable snapshot");
            Ok(None)
        }
    }
}

/// Stores the state of a stream at its current version (in the command's transaction).
pub async fn store<A: Aggregate, C: ConnectionTrait>(
    txn: &C,
    stream_id: Uuid,
    state: &A,
    position: i64,
    recorded_at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let json = serde_json::to_value(state)
        .map_err(|e| DbErr::Custom(format!("aggregate state is not serializable: {e}")))?;
    snapshots::Entity::insert(snapshots::ActiveModel {
        stream_id: Set(stream_id),
        version: Set(state.version()),
        stream_type: Set(A::STREAM_TYPE.to_owned()),
        state_version: Set(A::STATE_VERSION),
        state: Set(json),
        position: Set(position),
        recorded_at: Set(recorded_at),
    })
    .on_conflict_do_nothing_on([snapshots::Column::StreamId, snapshots::Column::Version])
    .exec(txn)
    .await?;
    Ok(())
}

/// Whether appending from `before` to `after` crosses a multiple of `every`.
pub fn due(before: i64, after: i64, every: i64) -> bool {
    every > 0 && before / every != after / every
}
