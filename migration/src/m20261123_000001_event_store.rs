//! The event store: the append-only log that is the source of truth, and the idempotency
//! records that make a retried command return its first result.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    // position: the global order of the log, from a sequence (PostgreSQL) or
                    // AUTOINCREMENT (SQLite, which never reuses a committed rowid).
                    .col(
                        ColumnDef::new(Events::Position)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Events::StreamId).uuid().not_null())
                    .col(ColumnDef::new(Events::StreamType).string_len(64).not_null())
                    // version: 1-based number of the event within its stream.
                    .col(ColumnDef::new(Events::Version).big_integer().not_null())
                    .col(ColumnDef::new(Events::EventType).string_len(128).not_null())
                    .col(ColumnDef::new(Events::EventVersion).integer().not_null())
                    .col(ColumnDef::new(Events::Data).json_binary().not_null())
                    .col(ColumnDef::new(Events::Metadata).json_binary().not_null())
                    .col(
                        ColumnDef::new(Events::RecordedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Optimistic concurrency: two writers that loaded the same version of a stream both
        // try to insert version n+1; exactly one wins, the other gets a unique violation.
        // Also serves loading a stream in version order.
        manager
            .create_index(
                Index::create()
                    .name("events_stream_version_key")
                    .table(Events::Table)
                    .col(Events::StreamId)
                    .col(Events::Version)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The raw feed filtered by stream type reads in position order per type.
        manager
            .create_index(
                Index::create()
                    .name("events_stream_type_position_idx")
                    .table(Events::Table)
                    .col(Events::StreamType)
                    .col(Events::Position)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    // Keys are scoped to the caller: two users may pick the same key.
                    .col(
                        ColumnDef::new(IdempotencyKeys::Caller)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::Key)
                            .string_len(128)
                            .not_null(),
                    )
                    // Which operation the key was used for, and a hash of its input: the same
                    // key with another input is refused (IDEMPOTENCY_KEY_REUSED).
                    .col(
                        ColumnDef::new(IdempotencyKeys::Operation)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::RequestHash)
                            .string_len(64)
                            .not_null(),
                    )
                    // The first attempt's outcome, replayed to every retry.
                    .col(
                        ColumnDef::new(IdempotencyKeys::Response)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::Caller)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Events::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Events {
    Table,
    Position,
    StreamId,
    StreamType,
    Version,
    EventType,
    EventVersion,
    Data,
    Metadata,
    RecordedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Caller,
    Key,
    Operation,
    RequestHash,
    Response,
    CreatedAt,
}
