//! Entity for the `cart_lines` table.

super::table! {
    "cart_lines" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: Uuid,
        pub quantity: i32,
        pub updated_at: DateTimeUtc,
    }
}
