//! The raw event as clients see it: in the `events` feed (and the audit trail), and the
//! `events` subscription.

use std::sync::Arc;

use async_graphql::{Context, Json, Object, Subscription};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use uuid::Uuid;

use super::error::IntoGraphql;
use super::live::{Live, limits};
use super::scalars::Position;
use super::{admin, services};
use crate::entity::events;
use crate::error::AppError;
use crate::log::aggregates::{self, AggregateKind};

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

#[derive(Default)]
pub struct EventsSubscription;

#[Subscription]
impl EventsSubscription {
    /// Admin: the raw event log from just after `after` (from the beginning when null),
    /// then live events, with no gap and no duplicate, in position order — also for a
    /// slow subscriber, who is served from the table until it catches up.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<Position>,
        stream_types: Option<Vec<String>>,
    ) -> async_graphql::Result<Live<Event>> {
        async {
            admin(ctx)?;
            if let Some(unknown) = stream_types
                .iter()
                .flatten()
                .find(|t| AggregateKind::find(t).is_none())
            {
                return Err(AppError::BadUserInput(format!(
                    "streamTypes: unknown stream type {unknown:?} (known: {})",
                    aggregates::stream_types().collect::<Vec<_>>().join(", ")
                )));
            }
            let s = services(ctx)?;
            let stream = s.feed.clone().follow(
                s.db.clone(),
                after.map_or(0, |p| p.0),
                stream_types,
                limits(ctx)?,
            );
            let stream: Live<Event> =
                Box::pin(stream.map(|item| item.map(Event).map_err(AppError::into_graphql)));
            Ok(stream)
        }
        .await
        .gql()
    }
}
