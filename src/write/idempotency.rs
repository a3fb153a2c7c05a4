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

/// A request's fingerprint written field by field, for a request that is not one value:
/// `{"name":value,…}` in the order given, byte for byte what serde_json writes for a struct
/// with those fields. Until commands were parsed straight from their GraphQL input, each
/// request was fingerprinted as such a struct of its parsed fields; the keys recorded then
/// must still match their retries, and `graphql`'s golden tests hold every operation to it.
pub struct Fingerprint {
    json: Vec<u8>,
    error: Option<serde_json::Error>,
}

impl Default for Fingerprint {
    fn default() -> Self {
        Self {
            json: vec![b'{'],
            error: None,
        }
    }
}

impl Fingerprint {
    /// One field.
    pub fn field(self, name: &str, value: &impl serde::Serialize) -> Self {
        let mut member = match serde_json::to_vec(name) {
            Ok(member) => member,
            Err(e) => return self.failed(e),
        };
        member.push(b':');
        match serde_json::to_writer(&mut member, value) {
            Ok(()) => self.members(&member),
            Err(e) => self.failed(e),
        }
    }

    /// Every field of `value`, in its order: a struct, or a struct variant of an untagged
    /// enum (a command whose fields are the request's).
    pub fn fields(self, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(object) if object.first() == Some(&b'{') && object.last() == Some(&b'}') => {
                self.members(&object[1..object.len() - 1])
            }
            Ok(_) => self.failed(serde::ser::Error::custom(
                "fields of a value that is no object",
            )),
            Err(e) => self.failed(e),
        }
    }

    fn members(mut self, members: &[u8]) -> Self {
        if !members.is_empty() {
            if self.json.len() > 1 {
                self.json.push(b',');
            }
            self.json.extend_from_slice(members);
        }
        self
    }

    fn failed(mut self, error: serde_json::Error) -> Self {
        self.error.get_or_insert(error);
        self
    }

    /// The fingerprint; INTERNAL when a field did not serialize (then no hash could tell
    /// two requests apart).
    pub fn hash(mut self) -> AppResult<String> {
        if let Some(error) = self.error {
            return Err(anyhow::Error::new(error)
                .context("a request's fingerprint")
                .into());
        }
        self.json.push(b'}');
        Ok(hex::encode(Sha256::digest(&self.json)))
    }
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

#[cfg(test)]
mod tests {
    use super::{Fingerprint, request_hash};

    #[derive(serde::Serialize)]
    struct Request {
        id: u32,
        name: &'static str,
        note: Option<&'static str>,
        tags: Vec<&'static str>,
    }

    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Command {
        Rename {
            name: &'static str,
            note: Option<&'static str>,
        },
    }

    #[test]
    fn a_fingerprint_written_field_by_field_is_the_hash_of_the_struct_with_those_fields() {
        let request = Request {
            id: 7,
            name: "a \"quoted\" \u{e9}",
            note: None,
            tags: vec!["x", "y"],
        };
        let by_fields = Fingerprint::default()
            .field("id", &7)
            .fields(&Command::Rename {
                name: request.name,
                note: None,
            })
            .field("tags", &request.tags)
            .hash()
            .unwrap();
        assert_eq!(by_fields, request_hash(&request));
        let reordered = Fingerprint::default()
            .field("name", &request.name)
            .field("id", &7)
            .field("note", &request.note)
            .field("tags", &request.tags)
            .hash()
            .unwrap();
        assert_ne!(reordered, request_hash(&request), "the order is part of it");
    }

    #[test]
    fn fields_of_a_value_that_is_no_object_are_an_internal_error() {
        assert!(Fingerprint::default().fields(&7).hash().is_err());
        assert_eq!(
            Fingerprint::default().fields(&()).hash().ok(),
            None,
            "null is no object"
        );
        assert_eq!(
            Fingerprint::default().hash().unwrap(),
            request_hash(&serde_json::json!({}))
        );
    }
}
