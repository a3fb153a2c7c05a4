//! Entity for the `saga_dead_letters` table.

super::table! {
    "saga_dead_letters" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        /// `RETRYING` or `PARKED`.
        pub status: String,
        pub error: String,
        pub attempts: i32,
        pub first_failed_at: DateTimeUtc,
        pub last_failed_at: DateTimeUtc,
        /// When the saga tries again (RETRYING only).
        pub next_attempt_at: Option<DateTimeUtc>,
        /// The event whose handling failed first.
        pub position: i64,
    }
}
