//! PostgreSQL: the catalog's searchable text moves to a table of its own, `catalog_search`,
//! which carries the trigram indexes; `catalog_view` keeps none (ADR 0017, amended).
//!
//! Every fold of a product changes its row's `position`, which is indexed (the live views
//! read the rows that moved by it), so no update of `catalog_view` is HOT: each stock
//! change wrote a new version of the row into every index, the three trigram indexes
//! included (about forty trigrams of a product's name and description), for text that had
//! not changed. Measured on 100 000 products, one-row stock updates from 8 connections:
//! 4 821 a second with the trigram indexes on the view, 10 518 without. The dead entries
//! they leave are also what a search rechecks and what VACUUM must clear from the posting
//! trees, whose cleanup lock stalls every search of a frequent trigram meanwhile (a search
//! load at 900 a second: p99 5.6 ms, and 98 ms while a 0.4 s VACUUM ran).
//!
//! `catalog_search` holds a product's id, SKU, name and description, and changes only when
//! one of those does. Triggers on `catalog_view` keep it, in the same transaction as every
//! write to the view, whoever writes (a fold, a rebuild's swap), as the FTS5 index does on
//! SQLite: rows inserted or deleted are copied or removed per statement (from its
//! transition table: a rebuild's swap replaces every row in two statements), and an update
//! is copied per row only when it changed the text. Nothing to do on SQLite.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "CREATE TABLE catalog_search (\
        id uuid PRIMARY KEY, \
        sku varchar(64) NOT NULL, \
        name varchar(200) NOT NULL, \
        description text NOT NULL)",
    "INSERT INTO catalog_search (id, sku, name, description) \
        SELECT id, sku, name, description FROM catalog_view",
    "CREATE INDEX catalog_search_sku_trgm_idx ON catalog_search \
        USING gin (lower(sku) gin_trgm_ops) WITH (gin_pending_list_limit = 64)",
    "CREATE INDEX catalog_search_name_trgm_idx ON catalog_search \
        USING gin (lower(name) gin_trgm_ops) WITH (gin_pending_list_limit = 64)",
    "CREATE INDEX catalog_search_description_trgm_idx ON catalog_search \
        USING gin (lower(description) gin_trgm_ops) WITH (gin_pending_list_limit = 64)",
    "DROP INDEX IF EXISTS catalog_view_sku_trgm_idx",
    "DROP INDEX IF EXISTS catalog_view_name_trgm_idx",
    "DROP INDEX IF EXISTS catalog_view_description_trgm_idx",
    "CREATE FUNCTION catalog_search_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
         INSERT INTO catalog_search (id, sku, name, description) \
             SELECT id, sku, name, description FROM inserted; \
         RETURN NULL; \
     END $$",
    "CREATE FUNCTION catalog_search_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
         DELETE FROM catalog_search s USING deleted d WHERE s.id = d.id; \
         RETURN NULL; \
     END $$",
    "CREATE FUNCTION catalog_search_updated() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
         UPDATE catalog_search SET sku = NEW.sku, name = NEW.name, \
             description = NEW.description WHERE id = NEW.id; \
         RETURN NULL; \
     END $$",
    "CREATE TRIGGER catalog_search_insert AFTER INSERT ON catalog_view \
        REFERENCING NEW TABLE AS inserted \
        FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_inserted()",
    "CREATE TRIGGER catalog_search_delete AFTER DELETE ON catalog_view \
        REFERENCING OLD TABLE AS deleted \
        FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_deleted()",
    // A product's id never changes; its text rarely does, and only then is the row copied.
    "CREATE TRIGGER catalog_search_update AFTER UPDATE OF sku, name, description \
        ON catalog_view FOR EACH ROW \
        WHEN (OLD.sku IS DISTINCT FROM NEW.sku OR OLD.name IS DISTINCT FROM NEW.name \
              OR OLD.description IS DISTINCT FROM NEW.description) \
        EXECUTE FUNCTION catalog_search_updated()",
    "ANALYZE catalog_search",
];

const DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS catalog_search_update ON catalog_view",
    "DROP TRIGGER IF EXISTS catalog_search_delete ON catalog_view",
    "DROP TRIGGER IF EXISTS catalog_search_insert ON catalog_view",
    "DROP FUNCTION IF EXISTS catalog_search_updated()",
    "DROP FUNCTION IF EXISTS catalog_search_deleted()",
    "DROP FUNCTION IF EXISTS catalog_search_inserted()",
    "CREATE INDEX catalog_view_sku_trgm_idx ON catalog_view \
        USING gin (lower(sku) gin_trgm_ops) WITH (gin_pending_list_limit = 64)",
    "CREATE INDEX catalog_view_name_trgm_idx ON catalog_view \
        USING gin (lower(name) gin_trgm_ops) WITH (gin_pending_list_limit = 64)",
    "CREATE INDEX catalog_view_description_trgm_idx ON catalog_view \
        USING gin (lower(description) gin_trgm_ops) WITH (gin_pending_list_limit = 64)",
    "DROP TABLE IF EXISTS catalog_search",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, DOWN).await
    }
}

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let db = manager.get_connection();
    for statement in statements {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}
