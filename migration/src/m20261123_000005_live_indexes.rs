//! Indexes for live subscriptions: a subscriber that reconnects with `after`, or falls
//! behind, reads the rows of a view whose position is above its cursor.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Products changed after a position (catalog subscribers catching up).
        manager
            .create_index(
                Index::create()
                    .name("catalog_view_position_idx")
                    .table(CatalogView::Table)
                    .col(CatalogView::Position)
                    .to_owned(),
            )
            .await?;
        // Orders changed after a position: all (admins), or one customer's.
        manager
            .create_index(
                Index::create()
                    .name("order_view_position_idx")
                    .table(OrderView::Table)
                    .col(OrderView::Position)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("order_view_user_position_idx")
                    .table(OrderView::Table)
                    .col(OrderView::UserId)
                    .col(OrderView::Position)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("order_view_user_position_idx", OrderView::Table.into_iden()),
            ("order_view_position_idx", OrderView::Table.into_iden()),
            ("catalog_view_position_idx", CatalogView::Table.into_iden()),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum CatalogView {
    Table,
    Position,
}

#[derive(DeriveIden)]
enum OrderView {
    Table,
    UserId,
    Position,
}
