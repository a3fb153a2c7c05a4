//! The raw event as clients see it: in the `events` feed (and the audit trail).

use std::sync::Arc;

use async_graphql::{Json, Object};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::scalars::Position;
use crate::entity::events;

/// One event of the log.
pub struct Event(pub(crate) Arc<events::Model>);

#[Object]
impl Event {
    /// Global position in the log.
    async fn position(&self) -> Position {
        Position(self.0.position)
    }
    async fn stream_id(&self) -> Uuid {
        self.0.stream_id
    }
    /// `product`, `cart`, `order` or `payment`.
    async fn stream_type(&self) -> &str {
        &self.0.stream_type
    }
    /// Version of the stream after this event (1 for its first event).
    async fn version(&self) -> i64 {
        self.0.version
    }
    /// The event's persisted type name, e.g. `ProductStockUpdated`.
    #[graphql(name = "type")]
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// Version of the event type's shape this event was written in (`data` is shown as
    /// written; the service reads older versions through its upcasters).
    async fn event_version(&self) -> i32 {
        self.0.event_version
    }
    /// The event's payload as stored.
    async fn data(&self) -> Json<&serde_json::Value> {
        Json(&self.0.data)
    }
    /// Who and what caused it: userId, correlationId, causationId, idempotencyKey.
    async fn metadata(&self) -> Json<&serde_json::Value> {
        Json(&self.0.metadata)
    }
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at
    }
}
