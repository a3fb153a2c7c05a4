//! Idempotency keys: a retried command with the same key, caller and input returns the
//! first attempt's outcome and writes nothing; the same key with another input is refused.
//! Records live in the database, so this holds across restarts.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use sha2::{Digest, Sha256};

use super::Outcome;
use super::constraint::{ConstraintExt, Violation};
use crate::domain::values::{IdempotencyKey, UserId};
use crate::entity::idempotency_keys;
use crate::error::{AppError, AppResult};

/// Fingerprint of a command's input: SHA-256 of its canonical JSON (struct field order is
/// fixed by the type, so equal inputs hash equally).
pub fn request_hash<T: serde::Serialize>(input: &T) -> String {
    let bytes = serde_json::to_vec(input).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// The recorded outcome for this key, if it was used before with the same input.
pub async fn replay<C: ConnectionTrait>(
    db: &C,
    caller: &UserId,
    key: &IdempotencyKey,
    operation: &str,
    request_hash: &str,
) -> AppResult<Option<Outcome>> {
    let Some(row) =
        idempotency_keys::Entity::find_by_id((caller.as_str().to_owned(), key.as_str().to_owned()))
            .one(db)
            .await?
    else {
        return Ok(None);
    };
    if row.operation != operation || row.request_hash != request_hash {
        return Err(AppError::IdempotencyKeyReused);
    }
    let outcome = serde_json::from_value(row.response)
        .map_err(|e| anyhow::Error::new(e).context("stored idempotent outcome does not decode"))?;
    Ok(Some(outcome))
}

/// Records the outcome for this key; `false` when a concurrent request recorded it first.
pub async fn record<C: ConnectionTrait>(
    txn: &C,
    caller: &UserId,
    key: &IdempotencyKey,
    operation: &str,
    request_hash: &str,
    outcome: &Outcome,
) -> AppResult<bool> {
    let row = idempotency_keys::ActiveModel {
        caller: Set(caller.as_str().to_owned()),
        key: Set(key.as_str().to_owned()),
        operation: Set(operation.to_owned()),
        request_hash: Set(request_hash.to_owned()),
        response: Set(serde_json::to_value(outcome).map_err(anyhow::Error::new)?),
        created_at: Set(Utc::now()),
    };
    match idempotency_keys::Entity::insert(row).exec(txn).await {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.violation(), Some(Violation::Unique(_))) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
