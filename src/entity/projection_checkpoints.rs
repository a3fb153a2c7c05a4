//! Entity for the `projection_checkpoints` table.

super::table! {
    "projection_checkpoints" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub position: i64,
        pub updated_at: DateTimeUtc,
        /// The event the projection stopped at, while it cannot fold it.
        pub failed_position: Option<i64>,
        pub error: Option<String>,
    }
}
