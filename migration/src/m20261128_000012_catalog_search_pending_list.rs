//! The catalog's trigram indexes (PostgreSQL) keep a short pending list.
//!
//! Every fold of a product changes its row's `position`, which is indexed (the live
//! views read the rows that moved by it), so no update of `catalog_view` is HOT and each
//! one adds the row's trigrams to the three GIN indexes. With `fastupdate` on (the
//! default) those go to each index's pending list, up to `gin_pending_list_limit` (4 MB by
//! default) before they are merged, and every search scans the whole list. Measured on
//! 2 000 products after 2 200 stock changes: a SKU-fragment search took 1.8 ms to execute
//! with the default, 0.3 ms with a 64 kB limit (the smallest), while the 2 200 updates
//! took 0.10 s and 0.11 s; with `fastupdate` off they took 0.53 s. So the lists stay short
//! and are merged often, in small steps, by the fold that fills them. Nothing to do on
//! SQLite: its FTS5 index is only written when a SKU, name or description changes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: [&str; 3] = [
    "catalog_view_sku_trgm_idx",
    "catalog_view_name_trgm_idx",
    "catalog_view_description_trgm_idx",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for index in INDEXES {
            db.execute_unprepared(&format!(
                "ALTER INDEX {index} SET (gin_pending_list_limit = 64)"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for index in INDEXES {
            db.execute_unprepared(&format!("ALTER INDEX {index} RESET (gin_pending_list_limit)"))
                .await?;
        }
        Ok(())
    }
}
