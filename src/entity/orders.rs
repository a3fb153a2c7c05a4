//! Entity for the `orders` table.

super::table! {
    "orders" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: String,
        pub status: String,
        pub total_cents: i64,
        pub shipping_address: String,
        pub version: i64,
        pub updated_at: DateTimeUtc,
    }
}
