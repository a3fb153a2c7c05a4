//! Entity for the `events` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub position: i64,
    pub stream_id: Uuid,
    pub stream_type: String,
    pub version: i64,
    pub event_type: String,
    pub event_version: i32,
    pub data: Json,
    pub metadata: Json,
    pub recorded_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
