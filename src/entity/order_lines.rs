//! Entity for the `order_lines` table.

super::table! {
    "order_lines" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: Uuid,
        pub quantity: i32,
        pub unit_price_cents: i64,
    }
}
