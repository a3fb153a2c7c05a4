//! The normalized write tables, updated in the same transaction as the events they follow
//! from. Their constraints are the last line of defence behind the aggregates' rules.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .col(ColumnDef::new(Products::Id).uuid().not_null().primary_key())
                    // A SKU names one product: a second createProduct with it is a CONFLICT.
                    .col(
                        ColumnDef::new(Products::Sku)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Products::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Products::Description).text().not_null())
                    // Money as integer cents: exact on every backend.
                    .col(
                        ColumnDef::new(Products::PriceCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Products::Stock).big_integer().not_null())
                    .col(ColumnDef::new(Products::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Products::Version).big_integer().not_null())
                    .col(
                        ColumnDef::new(Products::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // Stock on hand never goes below zero, whatever a bug upstream decides;
                    // a violation maps to INSUFFICIENT_STOCK.
                    .check(Check::named(
                        "products_stock_non_negative",
                        Expr::col(Products::Stock).gte(0),
                    ))
                    .check(Check::named(
                        "products_price_non_negative",
                        Expr::col(Products::PriceCents).gte(0),
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ProductReviews::Table)
                    .col(ColumnDef::new(ProductReviews::ProductId).uuid().not_null())
                    .col(
                        ColumnDef::new(ProductReviews::UserId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProductReviews::Rating)
                            .small_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ProductReviews::Comment).text().not_null())
                    .col(
                        ColumnDef::new(ProductReviews::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // One review per user and product: a second one replaces the first.
                    .primary_key(
                        Index::create()
                            .col(ProductReviews::ProductId)
                            .col(ProductReviews::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("product_reviews_product_fk")
                            .from(ProductReviews::Table, ProductReviews::ProductId)
                            .to(Products::Table, Products::Id),
                    )
                    .check(Check::named(
                        "product_reviews_rating_range",
                        Expr::col(ProductReviews::Rating).between(1, 5),
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CartLines::Table)
                    .col(ColumnDef::new(CartLines::UserId).string_len(128).not_null())
                    .col(ColumnDef::new(CartLines::ProductId).uuid().not_null())
                    .col(ColumnDef::new(CartLines::Quantity).integer().not_null())
                    .col(
                        ColumnDef::new(CartLines::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // One line per product in a user's cart.
                    .primary_key(
                        Index::create()
                            .col(CartLines::UserId)
                            .col(CartLines::ProductId),
                    )
                    // A line can only name a product that exists.
                    .foreign_key(
                        ForeignKey::create()
                            .name("cart_lines_product_fk")
                            .from(CartLines::Table, CartLines::ProductId)
                            .to(Products::Table, Products::Id),
                    )
                    // Quantities are positive and bounded (Quantity::MAX).
                    .check(Check::named(
                        "cart_lines_quantity_range",
                        Expr::col(CartLines::Quantity).between(1, 99),
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CartLines::Table.into_iden(),
            ProductReviews::Table.into_iden(),
            Products::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Sku,
    Name,
    Description,
    PriceCents,
    Stock,
    Status,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ProductReviews {
    Table,
    ProductId,
    UserId,
    Rating,
    Comment,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CartLines {
    Table,
    UserId,
    ProductId,
    Quantity,
    UpdatedAt,
}
