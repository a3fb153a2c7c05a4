//! SeaORM migrations: the event store, the normalized write tables, the read views and
//! their checkpoints. One file per step, named by date and order
//! (`m<yyyymmdd>_<nnnnnn>_<what>.rs`); never edit a step that has shipped, add a new one.
//! `build.rs` lists the steps, in the order of their file names: a new step is its file.

pub use sea_orm_migration::prelude::*;

// The `mod` of each step, and `steps()`: every step in order (`build.rs`).
include!(concat!(env!("OUT_DIR"), "/steps.rs"));

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        steps()
    }
}
