//! What changes reaching every replica needs of the schema (ADR 0013): the writer rule of
//! ADR 0001 enforced by the `events.position` default on PostgreSQL, a position index on
//! the cart view (each replica reads the rows a doorbell names by position), and the
//! rebuild notices every replica re-sends from.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The function the position default calls: it takes the transaction's xid, *then* draws
/// the position. ADR 0001's proof needs every position held by a transaction whose xid
/// was assigned before the position was drawn; the event store's append path does it by
/// hand, and with this default any writer does, whatever its code (an older build, a
/// manual `INSERT INTO events`). `pg_current_xact_id()` is a no-op when the xid exists.
const POSITION_FUNCTION: &str = "events_position_after_xid";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            // An identity column takes no other default: turn it into a column with its
            // own sequence (what `serial` makes), continuing exactly where the identity
            // was, and default it to the function. The ALTER locks `events` until the
            // migration commits, so no writer draws a position in between.
            let pg = |sql: &str| Statement::from_string(DbBackend::Postgres, sql);
            let sequence: String = db
                .query_one_raw(pg(
                    "SELECT pg_get_serial_sequence('events', 'position') AS seq",
                ))
                .await?
                .map(|row| row.try_get::<String>("", "seq"))
                .transpose()?
                .ok_or_else(|| DbErr::Migration("events.position has no sequence".into()))?;
            let state = db
                .query_one_raw(pg(&format!("SELECT last_value, is_called FROM {sequence}")))
                .await?
                .ok_or_else(|| DbErr::Migration("the position sequence has no state".into()))?;
            let last_value: i64 = state.try_get("", "last_value")?;
            let is_called: bool = state.try_get("", "is_called")?;
            db.execute_unprepared("ALTER TABLE events ALTER COLUMN position DROP IDENTITY")
                .await?;
            // `CACHE 1`, as ADR 0001 requires: no session holds positions ahead.
            db.execute_unprepared(&format!(
                "CREATE SEQUENCE {sequence} AS bigint CACHE 1 OWNED BY events.position"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "SELECT setval('{}', {last_value}, {is_called})",
                sequence.replace('\'', "''")
            ))
            .await?;
            let literal = sequence.replace('\'', "''");
            db.execute_unprepared(&format!(
                "CREATE OR REPLACE FUNCTION {POSITION_FUNCTION}() RETURNS bigint \
                 LANGUAGE plpgsql VOLATILE AS $$ \
                 BEGIN \
                   PERFORM pg_current_xact_id(); \
                   RETURN nextval('{literal}'::regclass); \
                 END $$"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "ALTER TABLE events ALTER COLUMN position SET DEFAULT {POSITION_FUNCTION}()"
            ))
            .await?;
        }
        // A doorbell names a range of positions; every replica reads the carts whose
        // header moved into it (the catalog and order views have their index already).
        manager
            .create_index(
                Index::create()
                    .name("cart_view_position_idx")
                    .table(CartView::Table)
                    .col(CartView::Position)
                    .to_owned(),
            )
            .await?;
        // A rebuild's swap leaves row positions as they were, so no range read tells a
        // replica about it: the swap records which keys it changed here, in its own
        // transaction, and every replica re-sends those keys to its subscribers.
        manager
            .create_table(
                Table::create()
                    .table(RebuildNotices::Table)
                    .col(
                        ColumnDef::new(RebuildNotices::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RebuildNotices::Projection)
                            .string_len(64)
                            .not_null(),
                    )
                    // The change keys of the rows the swap changed, as a JSON array;
                    // NULL when there were too many to name (every key may have changed).
                    .col(ColumnDef::new(RebuildNotices::Keys).json_binary().null())
                    // Notices are pruned after a day: a replica started later has no
                    // subscriber that could still need one.
                    .col(
                        ColumnDef::new(RebuildNotices::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RebuildNotices::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("cart_view_position_idx")
                    .table(CartView::Table)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE events ALTER COLUMN position SET DEFAULT \
                 nextval(pg_get_serial_sequence('events', 'position')::regclass)",
            )
            .await?;
            db.execute_unprepared(&format!("DROP FUNCTION {POSITION_FUNCTION}()"))
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum CartView {
    Table,
    Position,
}

#[derive(DeriveIden)]
enum RebuildNotices {
    Table,
    Id,
    Projection,
    Keys,
    CreatedAt,
}
