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

#[cfg(test)]
mod tests {
    use migration::MigratorTrait;

    /// `migration/build.rs` lists the steps: each file of `migration/src` is one, run in
    /// the order of its name (date, then order), so none can be left out or run early.
    #[test]
    fn every_migration_file_is_a_step_in_the_order_of_its_name() {
        let steps: Vec<String> = migration::Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migration/src");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("migration/src is a directory")
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                let step = name.strip_suffix(".rs")?;
                (step != "lib").then(|| step.to_owned())
            })
            .collect();
        files.sort();
        assert_eq!(steps, files);
        assert_eq!(steps[0], "m20261123_000001_event_store");
    }
}
