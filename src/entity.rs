//! SeaORM entities: one module per table created in `migration/`.

pub mod cart_lines;
pub mod cart_view;
pub mod cart_view_items;
pub mod catalog_view;
pub mod dashboard_counters;
pub mod dashboard_daily;
pub mod dashboard_orders;
pub mod events;
pub mod gateway_ledger;
pub mod idempotency_keys;
pub mod order_lines;
pub mod order_view;
pub mod orders;
pub mod payments;
pub mod product_reviews;
pub mod products;
pub mod projection_checkpoints;
pub mod saga_dead_letters;
pub mod snapshots;
