//! The order saga's dead letters: one row per order the saga could not advance. While the
//! row is RETRYING the saga tries the order again at `next_attempt_at`; once PARKED it
//! waits for an admin's `retryOrder`. Either way the saga goes on with the other orders,
//! and the row survives a restart (ADR 0003).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SagaDeadLetters::Table)
                    // One row per order: an order is either being retried or parked, and
                    // the saga's next attempt takes its whole state, every event included.
                    .col(
                        ColumnDef::new(SagaDeadLetters::OrderId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(SagaDeadLetters::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(SagaDeadLetters::Error).text().not_null())
                    .col(
                        ColumnDef::new(SagaDeadLetters::Attempts)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SagaDeadLetters::FirstFailedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SagaDeadLetters::LastFailedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // Set while RETRYING: when the saga tries the order again.
                    .col(ColumnDef::new(SagaDeadLetters::NextAttemptAt).timestamp_with_time_zone())
                    // The event whose handling failed first: where an admin starts looking.
                    .col(
                        ColumnDef::new(SagaDeadLetters::Position)
                            .big_integer()
                            .not_null(),
                    )
                    // Only the two states the saga knows; anything else is a bug.
                    .check(Check::named(
                        "saga_dead_letters_status",
                        Expr::col(SagaDeadLetters::Status).is_in(["RETRYING", "PARKED"]),
                    ))
                    // A row exists because an attempt failed.
                    .check(Check::named(
                        "saga_dead_letters_attempts_positive",
                        Expr::col(SagaDeadLetters::Attempts).gt(0),
                    ))
                    .to_owned(),
            )
            .await?;
        // The saga asks for the retries that are due, and for the earliest one to come, at
        // every tick. (Parked orders are listed rarely, from a table that stays small.)
        manager
            .create_index(
                Index::create()
                    .name("saga_dead_letters_due_idx")
                    .table(SagaDeadLetters::Table)
                    .col(SagaDeadLetters::Status)
                    .col(SagaDeadLetters::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SagaDeadLetters::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SagaDeadLetters {
    Table,
    OrderId,
    Status,
    Error,
    Attempts,
    FirstFailedAt,
    LastFailedAt,
    NextAttemptAt,
    Position,
}
