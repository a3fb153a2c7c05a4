//! Entity for the `order_view` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "order_view")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: String,
    pub status: String,
    pub lines: Json,
    pub total_cents: i64,
    pub shipping_address: String,
    pub reservation: String,
    pub payment: String,
    pub reason: Option<String>,
    pub placed_at: DateTimeUtc,
    pub placed_position: i64,
    pub updated_at: DateTimeUtc,
    pub version: i64,
    pub position: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
