//! SeaORM entities: one module per table created in `migration/`.

pub mod cart_lines;
pub mod cart_view;
pub mod cart_view_items;
pub mod catalog_view;
pub mod events;
pub mod idempotency_keys;
pub mod product_reviews;
pub mod products;
pub mod projection_checkpoints;
