//! Entity for the `products` table.

super::table! {
    "products" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub sku: String,
        pub name: String,
        pub description: String,
        pub price_cents: i64,
        pub stock: i64,
        pub status: String,
        pub version: i64,
        pub updated_at: DateTimeUtc,
    }
}
