//! The audit trail: a stream's events as stored, oldest first, in pages.

use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::entity::events;

/// The events of `stream_id` after version `after`, at most `first`, and whether more
/// follow.
pub async fn page(
    db: &DatabaseConnection,
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
    Ok(super::split_page(rows, first))
}
