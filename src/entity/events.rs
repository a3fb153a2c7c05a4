//! Entity for the `events` table.

super::table! {
    "events" {
        #[sea_orm(primary_key)]
        pub position: i64,
        pub stream_id: Uuid,
        pub stream_type: String,
        pub version: i64,
        pub event_type: String,
        pub event_version: i32,
        pub data: Json,
        pub metadata: Json,
        pub recorded_at: DateTimeUtc,
    }
}
