//! The event codec: a domain event as stored (its persisted type tag, its version and its
//! data) and back, through the upcasters of older versions. Every reader of the log
//! decodes here: command handlers, projections, the saga and the audit trail.

use sea_orm::DbErr;

use crate::domain::DomainEvent;
use crate::entity::events;

/// Splits a domain event into its persisted type tag and data.
pub fn encode<E: DomainEvent>(event: &E) -> Result<(String, serde_json::Value), serde_json::Error> {
    let mut value = serde_json::to_value(event)?;
    let data = value
        .get_mut("data")
        .map(serde_json::Value::take)
        .unwrap_or_else(|| serde_json::json!({}));
    Ok((event.event_type().to_owned(), data))
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Upcast(#[from] super::upcast::UpcastError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Rebuilds a domain event from its persisted type tag, version and data, upcasting an
/// older version to the current one first.
pub fn decode<E: DomainEvent>(
    event_type: &str,
    event_version: i32,
    data: &serde_json::Value,
) -> Result<E, DecodeError> {
    let data = super::upcast::upcast(event_type, event_version, data)?;
    Ok(serde_json::from_value(
        serde_json::json!({ "type": event_type, "data": data }),
    )?)
}

/// Rebuilds a domain event from a row, or says why it cannot (as a database error: the
/// row is what the database holds).
pub fn decode_row<E: DomainEvent>(row: &events::Model) -> Result<E, DbErr> {
    decode(&row.event_type, row.event_version, &row.data).map_err(|e| {
        DbErr::Custom(format!(
            "event {} ({}) at position {} does not decode: {e}",
            row.event_type, row.stream_type, row.position
        ))
    })
}
