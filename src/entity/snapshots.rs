//! Entity for the `snapshots` table.

super::table! {
    "snapshots" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub stream_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        pub stream_type: String,
        pub state_version: i32,
        pub state: Json,
        pub position: i64,
        pub recorded_at: DateTimeUtc,
    }
}
