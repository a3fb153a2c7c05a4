//! The golden fixtures of the event log, for tests: `tests/fixtures/events/<stream type>.json`
//! holds, for each aggregate, one stream that has every event type it ever stored at every
//! version ever written. Each event also has its position in one shared log, so that the
//! streams together tell one story the views can fold (an order is placed before its
//! stock is reserved). The codec's tests decode each sample (no stored event may become
//! unreadable), and the live views' test folds [`log`] through every view: a new aggregate
//! brings one file, and both tests cover it.

use std::path::PathBuf;

use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::entity::events;

/// One aggregate's fixture file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fixture {
    /// The file's name, `<streamType>.json`.
    #[serde(skip)]
    pub file: String,
    pub stream_type: String,
    /// The id of the sample stream: other fixtures refer to it (an order's product).
    pub stream_id: Uuid,
    pub events: Vec<Sample>,
}

/// One stored event, as it was written: its type, the version of its shape, its data;
/// and its position in the log of all fixtures.
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    pub position: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: i32,
    pub data: Value,
}

/// Every fixture file, by name.
pub fn fixtures() -> Vec<Fixture> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events");
    let mut out: Vec<Fixture> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/events exists")
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let text = std::fs::read_to_string(&path).expect("a readable fixture");
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let fixture: Fixture = serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("{file} is a fixture (streamType, streamId, events): {e}")
            });
            Fixture { file, ..fixture }
        })
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// The fixtures as one event log, in the order of their positions, stored as written
/// (older versions included: readers upcast them).
pub fn log() -> Vec<events::Model> {
    let mut rows: Vec<events::Model> = fixtures()
        .into_iter()
        .flat_map(|fixture| {
            (1..).zip(fixture.events).map(move |(version, sample)| events::Model {
                position: sample.position,
                stream_id: fixture.stream_id,
                stream_type: fixture.stream_type.clone(),
                version,
                event_type: sample.event_type,
                event_version: sample.version,
                data: sample.data,
                metadata: serde_json::json!({ "correlationId": Uuid::nil(), "causationId": "test" }),
                recorded_at: Utc::now(),
            })
        })
        .collect();
    rows.sort_by_key(|row| row.position);
    rows
}

#[test]
fn the_fixtures_are_one_log_each_stream_in_its_own_order() {
    let log = log();
    let positions: Vec<i64> = log.iter().map(|row| row.position).collect();
    let expected: Vec<i64> = (1..=i64::try_from(log.len()).expect("a small log")).collect();
    assert_eq!(positions, expected, "positions 1 to n, each once");
    let mut streams: std::collections::BTreeMap<Uuid, Vec<i64>> = Default::default();
    for row in &log {
        streams.entry(row.stream_id).or_default().push(row.version);
    }
    for (stream, versions) in streams {
        let expected: Vec<i64> = (1..=i64::try_from(versions.len()).expect("short")).collect();
        assert_eq!(
            versions, expected,
            "stream {stream}: its events in file order"
        );
    }
}
