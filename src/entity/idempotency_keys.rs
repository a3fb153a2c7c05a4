//! Entity for the `idempotency_keys` table.

super::table! {
    "idempotency_keys" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub caller: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub operation: String,
        pub request_hash: String,
        pub response: Json,
        pub created_at: DateTimeUtc,
    }
}
