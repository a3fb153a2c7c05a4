//! How an event of the log travels on the broker (ADR 0016), for the publisher, the read
//! replicas and any other consumer (README.md, "The event bus", documents it for them).
//!
//! - **Sequence = position.** The message at stream sequence *n* is the log's position *n*:
//!   an event, or a *gap marker* for a position whose transaction rolled back. So a
//!   consumer's checkpoint is a position, and "resume after *n*" means the same on the
//!   broker, in the `events` subscription and in SQL.
//! - **Subject** `<prefix>.<stream type>.<event type>` (`ordergraph.order.OrderPlaced`), so
//!   a consumer can filter; `<prefix>._gap` for a gap marker.
//! - **Payload**: the event's data, the JSON stored in the log at its `event_version`
//!   (consumers upcast as the service does; nothing is re-encoded on the way).
//! - **Headers**: `Nats-Msg-Id` (the position: the broker drops a retried publish), and the
//!   `Ordergraph-*` headers below: everything else of the log's row, so that a message
//!   decodes back to exactly the row ([`decode`]).

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::entity::events;

/// The log position (= the stream sequence).
pub const POSITION: &str = "Ordergraph-Position";
/// `product`, `cart`, `order`…
pub const STREAM_TYPE: &str = "Ordergraph-Stream-Type";
/// The aggregate's id.
pub const STREAM_ID: &str = "Ordergraph-Stream-Id";
/// The event's version within its stream (1, 2, …).
pub const STREAM_VERSION: &str = "Ordergraph-Stream-Version";
/// `ProductCreated`, `OrderPlaced`…
pub const EVENT_TYPE: &str = "Ordergraph-Event-Type";
/// The version of the event type's payload schema.
pub const EVENT_VERSION: &str = "Ordergraph-Event-Version";
/// When it was recorded (RFC 3339, UTC).
pub const RECORDED_AT: &str = "Ordergraph-Recorded-At";
/// The whole metadata as stored (JSON): who, correlation, causation, idempotency key.
pub const METADATA: &str = "Ordergraph-Metadata";
/// The metadata's correlation id, on its own for filtering and tracing.
pub const CORRELATION_ID: &str = "Ordergraph-Correlation-Id";
/// The metadata's causation (`command:<id>` or `event:<position>`), on its own.
pub const CAUSATION_ID: &str = "Ordergraph-Causation-Id";
/// The metadata's user, on its own (when it is plain printable ASCII).
pub const USER_ID: &str = "Ordergraph-User-Id";
/// Present on a gap marker: `rolled-back`.
pub const GAP: &str = "Ordergraph-Gap";

/// The last subject token of a gap marker.
pub const GAP_TOKEN: &str = "_gap";

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub position: i64,
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// One message read back from the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    Event(events::Model),
    /// A position whose transaction rolled back: no event, ever.
    Gap(i64),
}

impl Published {
    pub fn position(&self) -> i64 {
        match self {
            Published::Event(e) => e.position,
            Published::Gap(position) => *position,
        }
    }
}

/// Why a message is not one of ours.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("the message at sequence {sequence} has no {header} header")]
    Missing { sequence: u64, header: &'static str },
    #[error("the message at sequence {sequence} has a bad {header} header: {reason}")]
    Bad {
        sequence: u64,
        header: &'static str,
        reason: String,
    },
    #[error("the message at sequence {sequence} carries position {position}")]
    NotItsPosition { sequence: u64, position: i64 },
    #[error("the payload at sequence {sequence} is not JSON: {reason}")]
    Payload { sequence: u64, reason: String },
}

/// The subject of an event of `stream_type` and `event_type`.
pub fn subject(prefix: &str, stream_type: &str, event_type: &str) -> String {
    format!("{prefix}.{}.{}", token(stream_type), token(event_type))
}

/// The subject of a gap marker.
pub fn gap_subject(prefix: &str) -> String {
    format!("{prefix}.{GAP_TOKEN}")
}

/// A name as one subject token: characters a subject may not hold in a token (`.`, `*`,
/// `>`, white space) become `_`. The service's own names never have any; the exact name
/// travels in the headers.
fn token(name: &str) -> String {
    let token: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() {
        "_".to_owned()
    } else {
        token
    }
}

/// The message of one event of the log.
pub fn event(prefix: &str, e: &events::Model) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert(POSITION, e.position.to_string());
    headers.insert(STREAM_TYPE, header_text(&e.stream_type));
    headers.insert(STREAM_ID, e.stream_id.to_string());
    headers.insert(STREAM_VERSION, e.version.to_string());
    headers.insert(EVENT_TYPE, header_text(&e.event_type));
    headers.insert(EVENT_VERSION, e.event_version.to_string());
    headers.insert(
        RECORDED_AT,
        e.recorded_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    );
    // serde_json escapes every control character: the JSON is one header line.
    headers.insert(METADATA, e.metadata.to_string());
    let field = |name: &str| e.metadata.get(name).and_then(|v| v.as_str());
    for (header, name) in [
        (CORRELATION_ID, "correlationId"),
        (CAUSATION_ID, "causationId"),
        (USER_ID, "userId"),
    ] {
        if let Some(value) = field(name).filter(|v| is_plain(v)) {
            headers.insert(header, value);
        }
    }
    Outgoing {
        position: e.position,
        subject: subject(prefix, &e.stream_type, &e.event_type),
        headers,
        payload: Bytes::from(e.data.to_string()),
    }
}

/// The gap marker of a rolled-back position.
pub fn gap(prefix: &str, position: i64) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert(POSITION, position.to_string());
    headers.insert(GAP, "rolled-back");
    Outgoing {
        position,
        subject: gap_subject(prefix),
        headers,
        payload: Bytes::new(),
    }
}

/// Printable ASCII: safe as a header value as it is.
fn is_plain(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A name as a header value: as it is when plain, else as a JSON string (never a line
/// break inside a header; a plain name never starts with `"`). The service's names are
/// always plain.
fn header_text(name: &str) -> String {
    if is_plain(name) && !name.starts_with('"') {
        name.to_owned()
    } else {
        serde_json::Value::String(name.to_owned()).to_string()
    }
}

fn parse_text(value: &str) -> String {
    if value.starts_with('"') {
        serde_json::from_str(value).unwrap_or_else(|_| value.to_owned())
    } else {
        value.to_owned()
    }
}

/// Reads back the message at stream sequence `sequence`: the log's row (exactly what was
/// published), or a gap marker. A message that is not one of ours, or whose sequence is
/// not its position, is an error: the stream is not (only) the log.
pub fn decode(
    sequence: u64,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<Published, WireError> {
    let get = |header: &'static str| -> Result<&str, WireError> {
        headers
            .and_then(|h| h.get(header))
            .map(|v| v.as_str())
            .ok_or(WireError::Missing { sequence, header })
    };
    let bad = |header: &'static str, reason: String| WireError::Bad {
        sequence,
        header,
        reason,
    };
    let position: i64 = get(POSITION)?
        .parse()
        .map_err(|e: std::num::ParseIntError| bad(POSITION, e.to_string()))?;
    if u64::try_from(position).ok() != Some(sequence) {
        return Err(WireError::NotItsPosition { sequence, position });
    }
    if headers.and_then(|h| h.get(GAP)).is_some() {
        return Ok(Published::Gap(position));
    }
    let number = |header: &'static str| -> Result<i64, WireError> {
        get(header)?
            .parse()
            .map_err(|e: std::num::ParseIntError| bad(header, e.to_string()))
    };
    let stream_id = Uuid::parse_str(get(STREAM_ID)?).map_err(|e| bad(STREAM_ID, e.to_string()))?;
    let event_version =
        i32::try_from(number(EVENT_VERSION)?).map_err(|e| bad(EVENT_VERSION, e.to_string()))?;
    let recorded_at = DateTime::parse_from_rfc3339(get(RECORDED_AT)?)
        .map_err(|e| bad(RECORDED_AT, e.to_string()))?
        .with_timezone(&Utc);
    let metadata =
        serde_json::from_str(get(METADATA)?).map_err(|e| bad(METADATA, e.to_string()))?;
    let data = serde_json::from_slice(payload).map_err(|e| WireError::Payload {
        sequence,
        reason: e.to_string(),
    })?;
    Ok(Published::Event(events::Model {
        position,
        stream_id,
        stream_type: parse_text(get(STREAM_TYPE)?),
        version: number(STREAM_VERSION)?,
        event_type: parse_text(get(EVENT_TYPE)?),
        event_version,
        data,
        metadata,
        recorded_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(position: i64) -> events::Model {
        events::Model {
            position,
            stream_id: Uuid::parse_str("0194c7f0-5a1b-7c3d-8e9f-0123456789ab").expect("a uuid"),
            stream_type: "order".to_owned(),
            version: 3,
            event_type: "OrderPlaced".to_owned(),
            event_version: 2,
            data: serde_json::json!({ "lines": [{ "sku": "MUG-1", "quantity": 2 }], "total": "19.90" }),
            metadata: serde_json::json!({
                "userId": "alice",
                "correlationId": Uuid::nil(),
                "causationId": "command:1",
            }),
            recorded_at: DateTime::parse_from_rfc3339("2026-11-27T10:11:12.345678Z")
                .expect("a time")
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn an_event_travels_on_its_subject_with_its_row_in_the_headers() {
        let message = event("ordergraph", &row(42));
        assert_eq!(message.subject, "ordergraph.order.OrderPlaced");
        assert_eq!(message.position, 42);
        let header = |name| message.headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(header(POSITION).as_deref(), Some("42"));
        assert_eq!(header(STREAM_VERSION).as_deref(), Some("3"));
        assert_eq!(header(USER_ID).as_deref(), Some("alice"));
        assert_eq!(header(CAUSATION_ID).as_deref(), Some("command:1"));
        assert_eq!(
            header(RECORDED_AT).as_deref(),
            Some("2026-11-27T10:11:12.345678Z")
        );
        assert_eq!(
            decode(42, Some(&message.headers), &message.payload),
            Ok(Published::Event(row(42)))
        );
    }

    #[test]
    fn a_gap_marker_is_a_position_and_nothing_else() {
        let message = gap("shop", 7);
        assert_eq!(message.subject, "shop._gap");
        assert!(message.payload.is_empty());
        assert_eq!(
            decode(7, Some(&message.headers), &message.payload),
            Ok(Published::Gap(7))
        );
    }

    #[test]
    fn a_message_that_is_not_ours_or_not_at_its_position_is_refused() {
        let message = event("ordergraph", &row(42));
        assert_eq!(
            decode(43, Some(&message.headers), &message.payload),
            Err(WireError::NotItsPosition {
                sequence: 43,
                position: 42
            })
        );
        assert!(matches!(
            decode(1, None, b"{}"),
            Err(WireError::Missing {
                header: POSITION,
                ..
            })
        ));
        assert!(matches!(
            decode(42, Some(&message.headers), b"not json"),
            Err(WireError::Payload { .. })
        ));
    }

    #[test]
    fn names_that_cannot_be_subject_tokens_are_replaced_in_the_subject_only() {
        let mut odd = row(5);
        odd.stream_type = "a.b c".to_owned();
        odd.event_type = "Ünïcode>\r\n".to_owned();
        let message = event("p", &odd);
        assert_eq!(message.subject, "p.a_b_c._n_code___");
        assert_eq!(
            decode(5, Some(&message.headers), &message.payload),
            Ok(Published::Event(odd))
        );
    }

    proptest! {
        /// Every row the log can hold comes back exactly as it was published.
        #[test]
        fn every_row_decodes_back_to_itself(
            position in 1i64..i64::MAX,
            version in 1i64..1_000_000,
            event_version in 1i32..100,
            stream_type in "[a-z]{1,12}",
            event_type in "\\PC{1,24}",
            user in proptest::option::of("\\PC{0,40}"),
            text in "\\PC{0,64}",
            amount in any::<i64>(),
            micros in 0i64..4_000_000_000_000_000,
        ) {
            let mut e = row(position);
            e.version = version;
            e.event_version = event_version;
            e.stream_type = stream_type;
            e.event_type = event_type;
            e.data = serde_json::json!({ "text": text, "amount": amount, "nested": [null, true, 1.5] });
            if let Some(user) = user {
                e.metadata["userId"] = serde_json::Value::String(user);
            }
            e.recorded_at = DateTime::from_timestamp_micros(micros).expect("in range");
            let message = event("ordergraph", &e);
            let sequence = u64::try_from(position).expect("positive");
            prop_assert_eq!(decode(sequence, Some(&message.headers), &message.payload), Ok(Published::Event(e)));
        }
    }
}
