//! The read side: denormalized views maintained by the relay from the event log, and one
//! checkpoint per projection, advanced in the same transaction as its view.
//! Every table here can be dropped and rebuilt from `events`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProjectionCheckpoints::Table)
                    .col(
                        ColumnDef::new(ProjectionCheckpoints::Name)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    // Position of the last event this projection folded into its view.
                    .col(
                        ColumnDef::new(ProjectionCheckpoints::Position)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProjectionCheckpoints::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CatalogView::Table)
                    .col(
                        ColumnDef::new(CatalogView::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(CatalogView::Sku).string_len(64).not_null())
                    .col(ColumnDef::new(CatalogView::Name).string_len(200).not_null())
                    .col(ColumnDef::new(CatalogView::Description).text().not_null())
                    .col(
                        ColumnDef::new(CatalogView::PriceCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(CatalogView::Stock).big_integer().not_null())
                    .col(
                        ColumnDef::new(CatalogView::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CatalogView::ReviewCount)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CatalogView::RatingTotal)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CatalogView::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CatalogView::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CatalogView::Position)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Catalog pages are read in SKU order (the Relay cursor is the SKU).
        manager
            .create_index(
                Index::create()
                    .name("catalog_view_sku_idx")
                    .table(CatalogView::Table)
                    .col(CatalogView::Sku)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CartView::Table)
                    .col(
                        ColumnDef::new(CartView::UserId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(CartView::Version).big_integer().not_null())
                    .col(
                        ColumnDef::new(CartView::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(CartView::Position).big_integer().not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CartViewItems::Table)
                    .col(
                        ColumnDef::new(CartViewItems::UserId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(CartViewItems::ProductId).uuid().not_null())
                    .col(ColumnDef::new(CartViewItems::Quantity).integer().not_null())
                    // Lines are listed in the order they were first added.
                    .col(
                        ColumnDef::new(CartViewItems::AddedPosition)
                            .big_integer()
                            .not_null(),
                    )
                    // One row per item a user added to their own cart.
                    .primary_key(
                        Index::create()
                            .col(CartViewItems::UserId)
                            .col(CartViewItems::ProductId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CartViewItems::Table.into_iden(),
            CartView::Table.into_iden(),
            CatalogView::Table.into_iden(),
            ProjectionCheckpoints::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ProjectionCheckpoints {
    Table,
    Name,
    Position,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CatalogView {
    Table,
    Id,
    Sku,
    Name,
    Description,
    PriceCents,
    Stock,
    Status,
    ReviewCount,
    RatingTotal,
    Version,
    UpdatedAt,
    Position,
}

#[derive(DeriveIden)]
enum CartView {
    Table,
    UserId,
    Version,
    UpdatedAt,
    Position,
}

#[derive(DeriveIden)]
enum CartViewItems {
    Table,
    UserId,
    ProductId,
    Quantity,
    AddedPosition,
}
