//! Orders: the normalized write tables of the order and payment aggregates, the payment
//! gateway simulator's own ledger, and the read views of the order process (order
//! details, dashboard).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // --- write side -------------------------------------------------------------
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(ColumnDef::new(Orders::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Orders::UserId).string_len(128).not_null())
                    .col(ColumnDef::new(Orders::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Orders::TotalCents).big_integer().not_null())
                    .col(ColumnDef::new(Orders::ShippingAddress).text().not_null())
                    .col(ColumnDef::new(Orders::Version).big_integer().not_null())
                    .col(
                        ColumnDef::new(Orders::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .check(Check::named(
                        "orders_total_non_negative",
                        Expr::col(Orders::TotalCents).gte(0),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderLines::Table)
                    .col(ColumnDef::new(OrderLines::OrderId).uuid().not_null())
                    .col(ColumnDef::new(OrderLines::ProductId).uuid().not_null())
                    .col(ColumnDef::new(OrderLines::Quantity).integer().not_null())
                    .col(
                        ColumnDef::new(OrderLines::UnitPriceCents)
                            .big_integer()
                            .not_null(),
                    )
                    // One line per product in an order (a cart has one line per product).
                    .primary_key(
                        Index::create()
                            .col(OrderLines::OrderId)
                            .col(OrderLines::ProductId),
                    )
                    // Lines belong to an order and name a product that exists.
                    .foreign_key(
                        ForeignKey::create()
                            .name("order_lines_order_fk")
                            .from(OrderLines::Table, OrderLines::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("order_lines_product_fk")
                            .from(OrderLines::Table, OrderLines::ProductId)
                            .to(Products::Table, Products::Id),
                    )
                    .check(Check::named(
                        "order_lines_quantity_positive",
                        Expr::col(OrderLines::Quantity).gt(0),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    // One payment per order.
                    .col(
                        ColumnDef::new(Payments::OrderId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Payments::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Payments::AmountCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Payments::ChargeId).string_len(128))
                    .col(
                        ColumnDef::new(Payments::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // The built-in payment gateway simulator's ledger: what the "provider" has done,
        // keyed by the idempotency key the saga sends, so a retried charge or refund is
        // answered from here and never performed twice (as a real provider does).
        manager
            .create_table(
                Table::create()
                    .table(GatewayLedger::Table)
                    .col(
                        ColumnDef::new(GatewayLedger::IdempotencyKey)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(GatewayLedger::Operation)
                            .string_len(16)
                            .not_null(),
                    )
                    // SUCCEEDED, DECLINED, or PENDING while transient failures are simulated.
                    .col(
                        ColumnDef::new(GatewayLedger::Outcome)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(GatewayLedger::Reference)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(GatewayLedger::AmountCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(GatewayLedger::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(GatewayLedger::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        // --- read side --------------------------------------------------------------
        manager
            .create_table(
                Table::create()
                    .table(OrderView::Table)
                    .col(
                        ColumnDef::new(OrderView::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(OrderView::UserId).string_len(128).not_null())
                    .col(ColumnDef::new(OrderView::Status).string_len(16).not_null())
                    // The lines as placed, denormalized (sku, name, price, quantity).
                    .col(ColumnDef::new(OrderView::Lines).json_binary().not_null())
                    .col(
                        ColumnDef::new(OrderView::TotalCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(OrderView::ShippingAddress).text().not_null())
                    .col(
                        ColumnDef::new(OrderView::Reservation)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(OrderView::Payment).string_len(16).not_null())
                    .col(ColumnDef::new(OrderView::Reason).text())
                    .col(
                        ColumnDef::new(OrderView::PlacedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // Position of OrderPlaced: the newest-first order and the Relay cursor.
                    .col(
                        ColumnDef::new(OrderView::PlacedPosition)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OrderView::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(OrderView::Version).big_integer().not_null())
                    .col(ColumnDef::new(OrderView::Position).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // A customer's orders, newest first.
        manager
            .create_index(
                Index::create()
                    .name("order_view_user_placed_idx")
                    .table(OrderView::Table)
                    .col(OrderView::UserId)
                    .col(OrderView::PlacedPosition)
                    .to_owned(),
            )
            .await?;
        // All orders, newest first (admins), and by status.
        manager
            .create_index(
                Index::create()
                    .name("order_view_placed_idx")
                    .table(OrderView::Table)
                    .col(OrderView::PlacedPosition)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("order_view_status_placed_idx")
                    .table(OrderView::Table)
                    .col(OrderView::Status)
                    .col(OrderView::PlacedPosition)
                    .to_owned(),
            )
            .await?;

        // Dashboard: named counters (orders per status, revenue in cents), maintained
        // incrementally, never by scanning orders.
        manager
            .create_table(
                Table::create()
                    .table(DashboardCounters::Table)
                    .col(
                        ColumnDef::new(DashboardCounters::Name)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DashboardCounters::Value)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Orders placed per UTC day.
        manager
            .create_table(
                Table::create()
                    .table(DashboardDaily::Table)
                    .col(
                        ColumnDef::new(DashboardDaily::Day)
                            .string_len(10)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DashboardDaily::Orders)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // The dashboard projection's own memory of each order's status, so a transition
        // moves one count from the old status to the new one.
        manager
            .create_table(
                Table::create()
                    .table(DashboardOrders::Table)
                    .col(
                        ColumnDef::new(DashboardOrders::OrderId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DashboardOrders::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DashboardOrders::TotalCents)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DashboardOrders::Table.into_iden(),
            DashboardDaily::Table.into_iden(),
            DashboardCounters::Table.into_iden(),
            OrderView::Table.into_iden(),
            GatewayLedger::Table.into_iden(),
            Payments::Table.into_iden(),
            OrderLines::Table.into_iden(),
            Orders::Table.into_iden(),
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
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    UserId,
    Status,
    TotalCents,
    ShippingAddress,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderLines {
    Table,
    OrderId,
    ProductId,
    Quantity,
    UnitPriceCents,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    OrderId,
    Status,
    AmountCents,
    ChargeId,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum GatewayLedger {
    Table,
    IdempotencyKey,
    Operation,
    Outcome,
    Reference,
    AmountCents,
    Attempts,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderView {
    Table,
    Id,
    UserId,
    Status,
    Lines,
    TotalCents,
    ShippingAddress,
    Reservation,
    Payment,
    Reason,
    PlacedAt,
    PlacedPosition,
    UpdatedAt,
    Version,
    Position,
}

#[derive(DeriveIden)]
enum DashboardCounters {
    Table,
    Name,
    Value,
}

#[derive(DeriveIden)]
enum DashboardDaily {
    Table,
    Day,
    Orders,
}

#[derive(DeriveIden)]
enum DashboardOrders {
    Table,
    OrderId,
    Status,
    TotalCents,
}
