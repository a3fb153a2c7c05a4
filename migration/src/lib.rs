//! SeaORM migrations: the event store, the normalized write tables, the read views and
//! their checkpoints. One file per step, named by date and order; never edit a step that
//! has shipped, add a new one.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_event_store;
mod m20261123_000002_write_tables;
mod m20261123_000003_read_views;
mod m20261123_000004_orders;
mod m20261123_000005_live_indexes;
mod m20261123_000006_snapshots_and_review_titles;
mod m20261123_000007_projection_failures;
mod m20261126_000008_saga_dead_letters;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_event_store::Migration),
            Box::new(m20261123_000002_write_tables::Migration),
            Box::new(m20261123_000003_read_views::Migration),
            Box::new(m20261123_000004_orders::Migration),
            Box::new(m20261123_000005_live_indexes::Migration),
            Box::new(m20261123_000006_snapshots_and_review_titles::Migration),
            Box::new(m20261123_000007_projection_failures::Migration),
            Box::new(m20261126_000008_saga_dead_letters::Migration),
        ]
    }
}
