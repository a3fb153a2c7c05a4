//! Entity for the `gateway_ledger` table.

super::table! {
    "gateway_ledger" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub idempotency_key: String,
        pub operation: String,
        pub outcome: String,
        pub reference: String,
        pub amount_cents: i64,
        pub attempts: i32,
        pub updated_at: DateTimeUtc,
    }
}
