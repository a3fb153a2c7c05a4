//! Entity for the `saga_dead_letters` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "saga_dead_letters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: Uuid,
    /// `RETRYING` or `PARKED`.
    pub status: String,
    pub error: String,
    pub attempts: i32,
    pub first_failed_at: DateTimeUtc,
    pub last_failed_at: DateTimeUtc,
    /// When the saga tries again (RETRYING only).
    pub next_attempt_at: Option<DateTimeUtc>,
    /// The event whose handling failed first.
    pub position: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
