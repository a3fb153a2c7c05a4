//! Event versioning. Every event type has a version; an event is stored with the version
//! it was written in and never rewritten. When a type's shape changes, its version goes
//! up by one and an upcaster from the previous version joins the chain below: reading an
//! old event runs it through each upcaster from its version to the current one, so the
//! domain only ever sees the current shape. `tests/fixtures/events/` keeps a golden
//! sample of every type at every version ever written, and a test decodes each one.
//!
//! Rules for a new version: never edit or remove an upcaster (stored events depend on
//! it); add the new one at the end; add the fixture of the new version beside the old.

use serde_json::{Map, Value};

/// An event's data: a JSON object of its fields.
pub type Fields = Map<String, Value>;

/// Turns data of `event_type` at version `from` into data at version `from + 1`.
pub struct Upcaster {
    pub event_type: &'static str,
    pub from: i32,
    pub upcast: fn(Fields) -> Result<Fields, String>,
}

/// The chain, oldest first.
pub const UPCASTERS: &[Upcaster] = &[
    // v2: a review has a title; reviews written before titles existed have none.
    Upcaster {
        event_type: "ProductReviewed",
        from: 1,
        upcast: |mut data| {
            data.entry("title")
                .or_insert_with(|| Value::String(String::new()));
            Ok(data)
        },
    },
];

/// The version new events of `event_type` are written in.
pub fn current_version(event_type: &str) -> i32 {
    let mut version = 1;
    while UPCASTERS
        .iter()
        .any(|u| u.event_type == event_type && u.from == version)
    {
        version += 1;
    }
    version
}

#[derive(Debug, thiserror::Error)]
pub enum UpcastError {
    #[error("{event_type} v{version} is newer than this build (v{current}): upgrade the service")]
    FromTheFuture {
        event_type: String,
        version: i32,
        current: i32,
    },
    #[error("{event_type} v{version} has no upcaster to v{}", version + 1)]
    MissingUpcaster { event_type: String, version: i32 },
    #[error("{event_type} v{version} data is not an object")]
    NotAnObject { event_type: String, version: i32 },
    #[error("upcasting {event_type} from v{version}: {reason}")]
    Failed {
        event_type: String,
        version: i32,
        reason: String,
    },
}

/// `data` of `event_type` written at `version`, brought to the current version.
pub fn upcast(event_type: &str, version: i32, data: &Value) -> Result<Value, UpcastError> {
    let current = current_version(event_type);
    if version == current {
        return Ok(data.clone());
    }
    if version > current {
        return Err(UpcastError::FromTheFuture {
            event_type: event_type.to_owned(),
            version,
            current,
        });
    }
    let Value::Object(mut fields) = data.clone() else {
        return Err(UpcastError::NotAnObject {
            event_type: event_type.to_owned(),
            version,
        });
    };
    let mut at = version;
    while at < current {
        let upcaster = UPCASTERS
            .iter()
            .find(|u| u.event_type == event_type && u.from == at)
            .ok_or_else(|| UpcastError::MissingUpcaster {
                event_type: event_type.to_owned(),
                version: at,
            })?;
        fields = (upcaster.upcast)(fields).map_err(|reason| UpcastError::Failed {
            event_type: event_type.to_owned(),
            version: at,
            reason,
        })?;
        at += 1;
    }
    Ok(Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_type_without_upcasters_is_at_version_one() {
        assert_eq!(current_version("ProductCreated"), 1);
        assert_eq!(
            upcast("ProductCreated", 1, &json!({"a": 1})).ok(),
            Some(json!({"a": 1}))
        );
    }

    #[test]
    fn a_review_of_version_one_gains_an_empty_title() {
        assert_eq!(current_version("ProductReviewed"), 2);
        let v1 = json!({ "rating": 4, "comment": "ok" });
        assert_eq!(
            upcast("ProductReviewed", 1, &v1).ok(),
            Some(json!({ "rating": 4, "comment": "ok", "title": "" }))
        );
    }

    #[test]
    fn a_version_from_the_future_is_refused_not_misread() {
        assert!(matches!(
            upcast("ProductReviewed", 3, &json!({})),
            Err(UpcastError::FromTheFuture { .. })
        ));
    }

    #[test]
    fn every_chain_is_contiguous_from_version_one() {
        for u in UPCASTERS {
            assert!(u.from >= 1);
            assert!(
                u.from == 1
                    || UPCASTERS
                        .iter()
                        .any(|p| p.event_type == u.event_type && p.from == u.from - 1),
                "{} v{} has no upcaster before it",
                u.event_type,
                u.from
            );
        }
    }
}
