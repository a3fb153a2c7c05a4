//! SeaORM entities of the tables that are not a read view's own: the event log, the write
//! tables, idempotency records, snapshots, checkpoints, the saga's dead letters and the
//! gateway's ledger. A view's tables are declared in its module (`read::cart::cart_view`),
//! beside the projection that writes them. Every entity is declared with [`table!`].

/// Declares the SeaORM entity of one table in the current module: its `Model` (the table's
/// columns, with their `#[sea_orm(…)]` attributes) and what every entity of this service
/// shares, no relations and no custom behaviour. The columns are written as the fields of
/// `DeriveEntityModel`'s `Model`:
///
/// ```ignore
/// crate::entity::table! {
///     "dashboard_daily" {
///         #[sea_orm(primary_key, auto_increment = false)]
///         pub day: String,
///         pub orders: i64,
///     }
/// }
/// ```
macro_rules! table {
    ($table:tt { $($columns:tt)* }) => {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = $table)]
        pub struct Model {
            $($columns)*
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}
pub(crate) use table;

pub mod cart_lines;
pub mod events;
pub mod gateway_ledger;
pub mod idempotency_keys;
pub mod order_lines;
pub mod orders;
pub mod payments;
pub mod product_reviews;
pub mod products;
pub mod projection_checkpoints;
pub mod saga_dead_letters;
pub mod snapshots;

