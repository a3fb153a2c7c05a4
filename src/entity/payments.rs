//! Entity for the `payments` table.

super::table! {
    "payments" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        pub status: String,
        pub amount_cents: i64,
        pub charge_id: Option<String>,
        pub updated_at: DateTimeUtc,
    }
}
