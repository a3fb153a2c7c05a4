//! Aggregate snapshots, and the title a review gained in `ProductReviewed` v2.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The folded state of a stream at a version: an optimisation only. Loading takes
        // the latest snapshot and the events after it; deleting every snapshot changes no
        // result. `state_version` is the aggregate's state format: a snapshot of another
        // format is ignored (and replaced by the next one).
        manager
            .create_table(
                Table::create()
                    .table(Snapshots::Table)
                    .col(ColumnDef::new(Snapshots::StreamId).uuid().not_null())
                    .col(ColumnDef::new(Snapshots::Version).big_integer().not_null())
                    .col(
                        ColumnDef::new(Snapshots::StreamType)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Snapshots::StateVersion).integer().not_null())
                    .col(ColumnDef::new(Snapshots::State).json_binary().not_null())
                    // Position and time of the stream's event at `version`: temporal
                    // queries start from the latest snapshot taken before their time.
                    .col(ColumnDef::new(Snapshots::Position).big_integer().not_null())
                    .col(
                        ColumnDef::new(Snapshots::RecordedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(Snapshots::StreamId)
                            .col(Snapshots::Version),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("snapshots_stream_recorded_idx")
                    .table(Snapshots::Table)
                    .col(Snapshots::StreamId)
                    .col(Snapshots::RecordedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ProductReviews::Table)
                    .add_column(
                        ColumnDef::new(ProductReviews::Title)
                            .string_len(120)
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ProductReviews::Table)
                    .drop_column(ProductReviews::Title)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Snapshots::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Snapshots {
    Table,
    StreamId,
    Version,
    StreamType,
    StateVersion,
    State,
    Position,
    RecordedAt,
}

#[derive(DeriveIden)]
enum ProductReviews {
    Table,
    Title,
}
