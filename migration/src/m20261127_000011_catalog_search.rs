//! A real index for the catalog's `search` (ADR 0017): a case-insensitive substring of the
//! name, the SKU or the description, found without reading the whole view.
//!
//! - **PostgreSQL**: trigram GIN indexes (`pg_trgm`, a trusted extension since 13) on the
//!   very expressions the query filters on, `lower(sku)`, `lower(name)` and
//!   `lower(description)`: the planner answers `lower(col) LIKE '%…%'` from them and
//!   rechecks each candidate row itself, so the query and its results are the same as
//!   before, only faster.
//! - **SQLite**: an FTS5 index with the trigram tokenizer over the same three columns,
//!   its content read from `catalog_view` itself (external content, keyed by the view's
//!   rowid), kept up to date by triggers on the view in the same transaction as every
//!   write to it, whoever writes (the relay's fold, a rebuild's swap). The query uses it to
//!   find the candidate rows and keeps its `LIKE` conditions, so what matches is exactly
//!   what matched before.
//!
//! Both are built from the rows already there when the step runs.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX catalog_view_sku_trgm_idx ON catalog_view USING gin (lower(sku) gin_trgm_ops)",
    "CREATE INDEX catalog_view_name_trgm_idx ON catalog_view USING gin (lower(name) gin_trgm_ops)",
    "CREATE INDEX catalog_view_description_trgm_idx ON catalog_view USING gin (lower(description) gin_trgm_ops)",
    // The planner's estimates for the new expressions (statistics are gathered on an
    // expression only once it is indexed).
    "ANALYZE catalog_view",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP INDEX IF EXISTS catalog_view_description_trgm_idx",
    "DROP INDEX IF EXISTS catalog_view_name_trgm_idx",
    "DROP INDEX IF EXISTS catalog_view_sku_trgm_idx",
];

const SQLITE_UP: &[&str] = &[
    "CREATE VIRTUAL TABLE catalog_search USING fts5(\
        sku, name, description, content='catalog_view', tokenize='trigram')",
    // The view's rowid is the index's key; an update that leaves the three columns alone
    // (stock, reviews, status: nearly all of them) does not touch the index.
    "CREATE TRIGGER catalog_search_insert AFTER INSERT ON catalog_view BEGIN \
        INSERT INTO catalog_search (rowid, sku, name, description) \
        VALUES (new.rowid, new.sku, new.name, new.description); \
     END",
    "CREATE TRIGGER catalog_search_delete AFTER DELETE ON catalog_view BEGIN \
        INSERT INTO catalog_search (catalog_search, rowid, sku, name, description) \
        VALUES ('delete', old.rowid, old.sku, old.name, old.description); \
     END",
    "CREATE TRIGGER catalog_search_update AFTER UPDATE OF sku, name, description ON catalog_view BEGIN \
        INSERT INTO catalog_search (catalog_search, rowid, sku, name, description) \
        VALUES ('delete', old.rowid, old.sku, old.name, old.description); \
        INSERT INTO catalog_search (rowid, sku, name, description) \
        VALUES (new.rowid, new.sku, new.name, new.description); \
     END",
    // The rows already in the view.
    "INSERT INTO catalog_search (catalog_search) VALUES ('rebuild')",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS catalog_search_update",
    "DROP TRIGGER IF EXISTS catalog_search_delete",
    "DROP TRIGGER IF EXISTS catalog_search_insert",
    "DROP TABLE IF EXISTS catalog_search",
];

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in statements {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => run(manager, POSTGRES_UP).await,
            DbBackend::Sqlite => run(manager, SQLITE_UP).await,
            other => Err(DbErr::Migration(format!(
                "catalog search: no index for {other:?}"
            ))),
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => run(manager, POSTGRES_DOWN).await,
            DbBackend::Sqlite => run(manager, SQLITE_DOWN).await,
            _ => Ok(()),
        }
    }
}
