//! The registry of aggregates: each one's stream type, event types, stream readers and
//! codec round trip, declared once from its type. Every list the log's readers need (the
//! stream types `events(streamTypes:)` accepts, the event types the golden fixtures must
//! cover, who may read a stream's `history`) is derived from [`AGGREGATES`].

use uuid::Uuid;

use crate::domain::cart::{Cart, cart_stream_id};
use crate::domain::order::Order;
use crate::domain::payment::Payment;
use crate::domain::product::Product;
use crate::domain::values::UserId;
use crate::domain::{Aggregate, DomainEvent};

/// What the rest of the service must know of one aggregate, derived from its type: its
/// stream type, its event types, who besides an admin may read its streams, and how a
/// stored event of it is decoded (for the fixture guard). Registered once, in
/// [`AGGREGATES`].
#[derive(Clone, Copy)]
pub struct AggregateKind {
    pub stream_type: &'static str,
    pub event_types: &'static [&'static str],
    /// Which customer may read a stream of this type in the audit trail.
    pub reader: StreamReader,
    /// Decodes a stored event (type, version, data) and encodes it back: the golden
    /// fixtures' round trip.
    pub round_trip: RoundTrip,
}

/// Decodes a stored event (type, version, data) and encodes it back, or says why not.
pub type RoundTrip =
    fn(&str, i32, &serde_json::Value) -> Result<(String, serde_json::Value), String>;

/// Who besides an admin may read a stream (`history`).
#[derive(Debug, Clone, Copy)]
pub enum StreamReader {
    /// Admins only.
    Admins,
    /// The user whose own stream it is: one stream per user, its id derived from the
    /// user's by this function (a cart: `domain::cart::cart_stream_id`).
    UserStream(fn(&UserId) -> Uuid),
    /// The customer who placed the order (`Caller::may_see_order`).
    OrderOwner,
}

impl AggregateKind {
    pub const fn of<A: Aggregate>(reader: StreamReader) -> Self {
        Self {
            stream_type: A::STREAM_TYPE,
            event_types: <A::Event as DomainEvent>::TYPES,
            reader,
            round_trip: round_trip::<A::Event>,
        }
    }

    /// The aggregate whose streams are of `stream_type`.
    pub fn find(stream_type: &str) -> Option<&'static AggregateKind> {
        AGGREGATES.iter().find(|a| a.stream_type == stream_type)
    }
}

fn round_trip<E: DomainEvent>(
    event_type: &str,
    version: i32,
    data: &serde_json::Value,
) -> Result<(String, serde_json::Value), String> {
    let event: E = super::codec::decode(event_type, version, data).map_err(|e| e.to_string())?;
    super::codec::encode(&event).map_err(|e| e.to_string())
}

/// Every aggregate of the service: a new one is one line here (and its module).
pub const AGGREGATES: &[AggregateKind] = &[
    AggregateKind::of::<Product>(StreamReader::Admins),
    AggregateKind::of::<Cart>(StreamReader::UserStream(cart_stream_id)),
    AggregateKind::of::<Order>(StreamReader::OrderOwner),
    AggregateKind::of::<Payment>(StreamReader::Admins),
];

/// The stream types of every aggregate.
pub fn stream_types() -> impl Iterator<Item = &'static str> {
    AGGREGATES.iter().map(|a| a.stream_type)
}
