//! The event store: append events to a stream under optimistic concurrency, and load a
//! stream back (folded, from its latest snapshot when asked). Both run on whatever connection or transaction they are given, so a
//! command appends its events in the same transaction as its write-table updates.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::constraint::{ConstraintExt, Violation};
use crate::domain::{Aggregate, DomainEvent};
// The codec lives with the log (`crate::log::codec`); these names stay for callers of the
// event store.
use crate::entity::events;
pub use crate::log::codec::{DecodeError, decode, encode};

/// Who and what caused an event; stored beside it and shown in the audit trail.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub correlation_id: Uuid,
    pub causation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the stream first (UNIQUE(stream_id, version)).
    #[error("stream {stream_id} was changed concurrently")]
    Conflict { stream_id: Uuid },
    /// The id of a new stream is already the id of a stream of another type.
    #[error("{stream_id} is already the id of a {existing}")]
    TypeTaken { stream_id: Uuid, existing: String },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Why a stream could not be folded. A stored event that does not decode is told apart
/// from the database failing: the saga parks the one order it belongs to, a command
/// answers INTERNAL.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(
        "event {event_type} at position {position} of stream {stream_id} does not decode: {reason}"
    )]
    Undecodable {
        stream_id: Uuid,
        event_type: String,
        position: i64,
        reason: String,
    },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// A stream folded up to some point, and the position of the last event folded (0 for
/// a stream without events).
#[derive(Debug, Clone)]
pub struct Folded<A> {
    pub state: A,
    pub position: i64,
}

/// Folds stream `stream_id`: every event, or those recorded at or before `until` (a
/// temporal query). With `use_snapshots` it starts from the latest snapshot (taken before
/// `until`) and folds only the events after it; the result is the same either way.
///
/// Only events (and snapshots) of `A`'s own stream type are read. Every id is a UUID, so
/// nothing stops a client from passing an order id where a product id belongs; a stream of
/// another kind then folds to the default state, "does not exist", and the aggregate's own
/// NOT_FOUND applies. Reading it as `A` instead would fail to decode and answer INTERNAL.
pub async fn fold<A: Aggregate, C: ConnectionTrait>(
    db: &C,
    stream_id: Uuid,
    until: Option<DateTime<Utc>>,
    use_snapshots: bool,
) -> Result<Folded<A>, FoldError> {
    if use_snapshots && until.is_none() {
        let [rows] = latest_rows(db, [(stream_id, A::STREAM_TYPE, A::STATE_VERSION)]).await?;
        return fold_latest(db, stream_id, rows).await;
    }
    fold_from(db, stream_id, until, use_snapshots).await
}

/// Two streams of two kinds folded as [`fold`] does with snapshots, read in one
/// statement: what the order saga loads before each decision (the order and its payment).
pub async fn fold_two<A: Aggregate, B: Aggregate, C: ConnectionTrait>(
    db: &C,
    a: Uuid,
    b: Uuid,
) -> Result<(Folded<A>, Folded<B>), FoldError> {
    let [a_rows, b_rows] = latest_rows(
        db,
        [
            (a, A::STREAM_TYPE, A::STATE_VERSION),
            (b, B::STREAM_TYPE, B::STATE_VERSION),
        ],
    )
    .await?;
    Ok((
        fold_latest(db, a, a_rows).await?,
        fold_latest(db, b, b_rows).await?,
    ))
}

/// [`fold`] with the snapshot and the events read one after the other.
async fn fold_from<A: Aggregate, C: ConnectionTrait>(
    db: &C,
    stream_id: Uuid,
    until: Option<DateTime<Utc>>,
    use_snapshots: bool,
) -> Result<Folded<A>, FoldError> {
    let snapshot = if use_snapshots {
        super::snapshots::latest::<A, _>(db, stream_id, until).await?
    } else {
        None
    };
    let (state, after, position) = match snapshot {
        Some(s) => (s.state, s.version, s.position),
        None => (A::default(), 0, 0),
    };
    let mut query = events::Entity::find()
        .filter(events::Column::StreamId.eq(stream_id))
        .filter(events::Column::StreamType.eq(A::STREAM_TYPE))
        .filter(events::Column::Version.gt(after));
    if let Some(until) = until {
        query = query.filter(events::Column::RecordedAt.lte(until));
    }
    let rows = query.order_by_asc(events::Column::Version).all(db).await?;
    fold_events(
        stream_id,
        Folded { state, position },
        rows.into_iter().map(LatestRow::from),
    )
}

/// Applies event rows (of [`latest_rows`] or of the log) to `folded`, in their order. An
/// event that does not decode as an `A` event is that stream's `FoldError::Undecodable`.
fn fold_events<A: Aggregate>(
    stream_id: Uuid,
    mut folded: Folded<A>,
    rows: impl IntoIterator<Item = LatestRow>,
) -> Result<Folded<A>, FoldError> {
    for row in rows {
        let Some((event_type, event_version)) = &row.event else {
            continue;
        };
        let event: A::Event =
            decode(event_type, *event_version, &row.data).map_err(|e| FoldError::Undecodable {
                stream_id,
                event_type: event_type.clone(),
                position: row.position,
                reason: e.to_string(),
            })?;
        folded.state = folded.state.apply(&event);
        folded.position = row.position;
    }
    Ok(folded)
}

/// One row of [`latest_rows`]: a stream's latest snapshot (`event` is `None`, `data` is
/// the state) or one of the events after it.
struct LatestRow {
    version: i64,
    position: i64,
    /// The event's type and format version; `None` for the snapshot.
    event: Option<(String, i32)>,
    data: serde_json::Value,
}

impl From<events::Model> for LatestRow {
    fn from(row: events::Model) -> Self {
        Self {
            version: row.version,
            position: row.position,
            event: Some((row.event_type, row.event_version)),
            data: row.data,
        }
    }
}

/// The latest snapshot of each of `streams` (`(id, stream type, state version)`) and the
/// events after it, in one statement: what a command's transaction (and the saga) loads
/// before every decision. Read one after the other, the snapshot and the events were two
/// round trips, one of them nearly always finding no snapshot (most streams are shorter
/// than the snapshot interval); PostgreSQL answered the two in one statement in half the
/// time (`pgbench`, BENCHMARKS.md, checkout, 2026-11-29). Each stream's rows are returned
/// snapshot first, then its events in version order.
async fn latest_rows<C: ConnectionTrait, const N: usize>(
    db: &C,
    streams: [(Uuid, &'static str, i32); N],
) -> Result<[Vec<LatestRow>; N], FoldError> {
    let backend = db.get_database_backend();
    let mut ctes = Vec::with_capacity(N);
    let mut parts = Vec::with_capacity(2 * N);
    // The values in the order of their `?`s: each stream's CTE, then the parts.
    let mut cte_values: Vec<sea_orm::Value> = Vec::with_capacity(3 * N);
    let mut part_values: Vec<sea_orm::Value> = Vec::with_capacity(2 * N);
    for (i, (stream_id, stream_type, state_version)) in streams.into_iter().enumerate() {
        ctes.push(format!(
            "\"s{i}\" AS (SELECT \"version\", \"state\", \"position\" FROM \"snapshots\" \
             WHERE \"stream_id\" = ? AND \"stream_type\" = ? AND \"state_version\" = ? \
             ORDER BY \"version\" DESC LIMIT 1)"
        ));
        cte_values.extend([stream_id.into(), stream_type.into(), state_version.into()]);
        parts.push(format!(
            "SELECT {i} AS \"stream\", 0 AS \"part\", \"version\", \"position\", \
             NULL AS \"event_type\", NULL AS \"event_version\", \"state\" AS \"data\" FROM \"s{i}\""
        ));
        // The events in a subquery ordered by version, so that PostgreSQL reads them by
        // the stream's index (stream_id, version) even under a generic plan made while
        // the log was small; ordered by the statement instead, the sort made scanning
        // every event of the stream type look as cheap, and it grew with the log.
        parts.push(format!(
            "SELECT {i}, 1, \"version\", \"position\", \"event_type\", \"event_version\", \"data\" \
             FROM (SELECT \"version\", \"position\", \"event_type\", \"event_version\", \"data\" \
             FROM \"events\" WHERE \"stream_id\" = ? AND \"stream_type\" = ? \
             AND \"version\" > COALESCE((SELECT \"version\" FROM \"s{i}\"), 0) \
             ORDER BY \"version\") AS \"e{i}\""
        ));
        part_values.extend([stream_id.into(), stream_type.into()]);
    }
    cte_values.extend(part_values);
    let sql = crate::db::numbered(
        backend,
        &format!("WITH {} {}", ctes.join(", "), parts.join(" UNION ALL ")),
    );
    let rows = db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            backend, sql, cte_values,
        ))
        .await?;
    let mut out: [Vec<LatestRow>; N] = std::array::from_fn(|_| Vec::new());
    for row in &rows {
        let stream: i32 = row.try_get("", "stream")?;
        let part: i32 = row.try_get("", "part")?;
        let event = if part == 0 {
            None
        } else {
            Some((
                row.try_get::<String>("", "event_type")?,
                row.try_get::<i32>("", "event_version")?,
            ))
        };
        let slot = usize::try_from(stream)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| DbErr::Custom(format!("a stream load returned stream {stream}")))?;
        slot.push(LatestRow {
            version: row.try_get("", "version")?,
            position: row.try_get("", "position")?,
            event,
            data: row.try_get("", "data")?,
        });
    }
    // Each stream's snapshot first, then its events by version (a UNION ALL promises no
    // order of its own).
    for rows in &mut out {
        rows.sort_by_key(|row| (row.event.is_some(), row.version));
    }
    Ok(out)
}

/// Folds one stream's [`latest_rows`]. A snapshot that does not read as an `A` is ignored
/// and the stream folded from its first event instead, with the same result.
async fn fold_latest<A: Aggregate, C: ConnectionTrait>(
    db: &C,
    stream_id: Uuid,
    rows: Vec<LatestRow>,
) -> Result<Folded<A>, FoldError> {
    let mut rows = rows.into_iter().peekable();
    let mut folded = Folded {
        state: A::default(),
        position: 0,
    };
    if let Some(snapshot) = rows.next_if(|row| row.event.is_none()) {
        match serde_json::from_value::<A>(snapshot.data) {
            Ok(state) => {
                folded = Folded {
                    state,
                    position: snapshot.position,
                }
            }
            Err(e) => {
                tracing::warn!(%stream_id, version = snapshot.version, error = %e, "ignoring an unreadable snapshot");
                return fold_from(db, stream_id, None, false).await;
            }
        }
    }
    fold_events(stream_id, folded, rows)
}

/// Loads a stream in version order.
pub async fn load_stream<C: ConnectionTrait>(
    db: &C,
    stream_id: Uuid,
) -> Result<Vec<events::Model>, DbErr> {
    events::Entity::find()
        .filter(events::Column::StreamId.eq(stream_id))
        .order_by_asc(events::Column::Version)
        .all(db)
        .await
}

/// Appends `events` after `expected_version` and returns their positions.
///
/// Must run inside a transaction. On PostgreSQL the relay's safe horizon relies on every
/// position being held by a transaction that was visible as in flight, so the xid must
/// come before the position (ADR 0001): the `events.position` default does that itself
/// (`events_position_after_xid()`, migration `m20261126_000010`), for this path and any
/// other writer, without a round trip of its own.
///
/// A stream has one type for life. `fold` reads a stream of another type as empty, so a
/// command may decide to create a stream whose id another type already holds: starting a
/// stream (`expected_version` 0) first checks for that and refuses with `TypeTaken`.
/// Left to UNIQUE(stream_id, version) it would look like a lost race and be retried in
/// vain. A concurrent creator of another type is caught by that constraint, and by this
/// check on the retry.
pub async fn append<C: ConnectionTrait, E: DomainEvent>(
    txn: &C,
    stream_id: Uuid,
    stream_type: &str,
    expected_version: i64,
    events: &[E],
    metadata: &EventMetadata,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, AppendError> {
    if expected_version == 0
        && let Some(existing) = events::Entity::find()
            .filter(events::Column::StreamId.eq(stream_id))
            .filter(events::Column::StreamType.ne(stream_type))
            .one(txn)
            .await?
    {
        return Err(AppendError::TypeTaken {
            stream_id,
            existing: existing.stream_type,
        });
    }
    let metadata = serde_json::to_value(metadata)
        .map_err(|e| DbErr::Custom(format!("metadata is not serializable: {e}")))?;
    let mut positions = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let (event_type, data) =
            encode(event).map_err(|e| DbErr::Custom(format!("event is not serializable: {e}")))?;
        let version = crate::log::upcast::current_version(&event_type);
        let row = events::ActiveModel {
            stream_id: Set(stream_id),
            stream_type: Set(stream_type.to_owned()),
            version: Set(expected_version + 1 + i as i64),
            event_type: Set(event_type),
            event_version: Set(version),
            data: Set(data),
            metadata: Set(metadata.clone()),
            recorded_at: Set(now),
            ..Default::default()
        };
        match events::Entity::insert(row).exec(txn).await {
            Ok(res) => positions.push(res.last_insert_id),
            Err(e) if matches!(e.violation(), Some(Violation::Unique(_))) => {
                return Err(AppendError::Conflict { stream_id });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::product::ProductEvent;

    #[test]
    fn events_round_trip_through_type_and_data() {
        let event = ProductEvent::StockUpdated {
            delta: -2,
            stock: 3,
            reason: None,
        };
        let (t, data) = encode(&event).unwrap();
        assert_eq!(t, "ProductStockUpdated");
        assert_eq!(data, serde_json::json!({"delta": -2, "stock": 3}));
        assert_eq!(decode::<ProductEvent>(&t, 1, &data).unwrap(), event);
        let (t, data) = encode(&ProductEvent::Discontinued {}).unwrap();
        assert_eq!(
            decode::<ProductEvent>(&t, 1, &data).unwrap(),
            ProductEvent::Discontinued {}
        );
    }
}

/// The golden samples in `tests/fixtures/events/` (`log::golden`): one file per aggregate,
/// with a sample of every event type at every version ever written. Each must still decode
/// (through the upcasters), so no stored event can become unreadable; and every type an
/// aggregate declares (`DomainEvent::TYPES` of each one in `log::aggregates::AGGREGATES`)
/// must have a sample of every version.
#[cfg(test)]
mod fixtures {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::domain::product::ProductEvent;
    use crate::log::aggregates::{AGGREGATES, AggregateKind};
    use crate::log::golden::{Sample, fixtures};
    use crate::log::upcast::current_version;

    /// Decodes a sample as its stream's event enum; returns it re-encoded.
    fn decode_sample(stream_type: &str, sample: &Sample) -> Result<(String, Value), String> {
        let kind = AggregateKind::find(stream_type)
            .ok_or_else(|| format!("unknown stream type {stream_type}"))?;
        if !kind.event_types.contains(&sample.event_type.as_str()) {
            return Err(format!(
                "{stream_type} declares no event type {}",
                sample.event_type
            ));
        }
        (kind.round_trip)(&sample.event_type, sample.version, &sample.data)
    }

    #[test]
    fn every_golden_sample_still_decodes_to_the_current_shape() {
        let fixtures = fixtures();
        assert!(!fixtures.is_empty());
        for fixture in &fixtures {
            assert_eq!(
                fixture.file,
                format!("{}.json", fixture.stream_type),
                "a fixture is named <streamType>.json"
            );
            assert!(!fixture.events.is_empty(), "{} has samples", fixture.file);
            for sample in &fixture.events {
                let name = format!(
                    "{}: {}.v{}",
                    fixture.file, sample.event_type, sample.version
                );
                let (encoded_type, encoded) = decode_sample(&fixture.stream_type, sample)
                    .unwrap_or_else(|e| panic!("{name} no longer decodes: {e}"));
                assert_eq!(encoded_type, sample.event_type);
                // What the domain writes back is the sample brought to the current version.
                let upcast =
                    crate::log::upcast::upcast(&sample.event_type, sample.version, &sample.data)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(encoded, upcast, "{name} round-trips");
            }
        }
    }

    #[test]
    fn every_event_type_has_a_sample_of_every_version() {
        let samples: BTreeSet<(String, String, i32)> = fixtures()
            .into_iter()
            .flat_map(|f| {
                let stream_type = f.stream_type;
                f.events
                    .into_iter()
                    .map(move |s| (stream_type.clone(), s.event_type, s.version))
            })
            .collect();
        for kind in AGGREGATES {
            for event_type in kind.event_types {
                for version in 1..=current_version(event_type) {
                    let sample = (
                        kind.stream_type.to_owned(),
                        (*event_type).to_owned(),
                        version,
                    );
                    assert!(
                        samples.contains(&sample),
                        "missing fixture: {event_type} v{version} in tests/fixtures/events/{}.json",
                        kind.stream_type
                    );
                }
            }
        }
    }

    #[test]
    fn a_review_written_before_titles_reads_with_an_empty_title() {
        let sample = fixtures()
            .into_iter()
            .flat_map(|f| f.events)
            .find(|s| s.event_type == "ProductReviewed" && s.version == 1)
            .expect("the v1 review sample");
        let event: ProductEvent = decode("ProductReviewed", 1, &sample.data).expect("decodes");
        match event {
            ProductEvent::Reviewed { title, .. } => assert_eq!(title.as_str(), ""),
            other => panic!("not a review: {other:?}"),
        }
    }
}
