//! The event store: append events to a stream under optimistic concurrency, and load a
//! stream back. Both run on whatever connection or transaction they are given, so a
//! command appends its events in the same transaction as its write-table updates.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, Statement,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::constraint::{ConstraintExt, Violation};
use crate::domain::DomainEvent;
use crate::entity::events;

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
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Splits a domain event into its persisted type tag and data.
pub fn encode<E: DomainEvent>(event: &E) -> Result<(String, serde_json::Value), serde_json::Error> {
    let mut value = serde_json::to_value(event)?;
    let data = value
        .get_mut("data")
        .map(serde_json::Value::take)
        .unwrap_or_else(|| serde_json::json!({}));
    Ok((event.event_type().to_owned(), data))
}

/// Rebuilds a domain event from its persisted type tag and data.
pub fn decode<E: DomainEvent>(
    event_type: &str,
    data: &serde_json::Value,
) -> Result<E, serde_json::Error> {
    serde_json::from_value(serde_json::json!({ "type": event_type, "data": data }))
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
/// Must run inside a transaction. On PostgreSQL it first makes sure the transaction has
/// its xid *before* it draws any position: the relay's safe horizon relies on every
/// position being held by a transaction that was visible as in flight (ADR 0001).
pub async fn append<C: ConnectionTrait, E: DomainEvent>(
    txn: &C,
    stream_id: Uuid,
    stream_type: &str,
    expected_version: i64,
    events: &[E],
    metadata: &EventMetadata,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, AppendError> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_current_xact_id()",
        ))
        .await?;
    }
    let metadata = serde_json::to_value(metadata)
        .map_err(|e| DbErr::Custom(format!("metadata is not serializable: {e}")))?;
    let mut positions = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let (event_type, data) =
            encode(event).map_err(|e| DbErr::Custom(format!("event is not serializable: {e}")))?;
        let row = events::ActiveModel {
            stream_id: Set(stream_id),
            stream_type: Set(stream_type.to_owned()),
            version: Set(expected_version + 1 + i as i64),
            event_type: Set(event_type),
            event_version: Set(event.event_version()),
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
        assert_eq!(decode::<ProductEvent>(&t, &data).unwrap(), event);
        let (t, data) = encode(&ProductEvent::Discontinued {}).unwrap();
        assert_eq!(
            decode::<ProductEvent>(&t, &data).unwrap(),
            ProductEvent::Discontinued {}
        );
    }
}
