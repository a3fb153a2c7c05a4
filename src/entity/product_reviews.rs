//! Entity for the `product_reviews` table.

super::table! {
    "product_reviews" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub rating: i16,
        pub title: String,
        pub comment: String,
        pub updated_at: DateTimeUtc,
    }
}
