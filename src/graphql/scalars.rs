//! Custom scalars: `Position` (an event's place in the log, as a string of digits) and
//! `Decimal` (money as a string with exactly 2 places). `UUID`, `DateTime` and `JSON` come
//! from async-graphql; [`describe`] gives them descriptions that say, like ours, what each
//! is in JSON, for the frontend developer reading `schema.graphql` and for code
//! generators (`codegen.ts` maps each to a TypeScript type).

use async_graphql::{
    InputValueError, InputValueResult, ObjectType, Scalar, ScalarType, SchemaBuilder,
    SubscriptionType, Value,
};

use crate::domain::values::Money;

/// An event's place in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position(pub i64);

/// The global position of an event in the event log: in JSON a string of decimal digits,
/// e.g. "1042" (a non-negative integer below 2^63: more than a JavaScript number holds
/// exactly). Positions only grow: pass the last one received as `after` to resume.
#[Scalar(name = "Position")]
impl ScalarType for Position {
    fn parse(value: Value) -> InputValueResult<Self> {
        let parsed = match &value {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        parsed
            .and_then(|p| i64::try_from(p).ok())
            .map(Position)
            .ok_or_else(|| InputValueError::custom("a Position is a non-negative integer string"))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// An amount of money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal(pub Money);

/// An exact amount of money: in JSON a string of decimal digits with exactly 2 decimal
/// places, e.g. "19.99" (never a JSON number, which clients read as a binary float). As
/// input, a string such as "19.99" or "20", or a JSON integer.
#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        let raw = match &value {
            Value::String(s) => s.clone(),
            // Integers are exact; floats are not accepted for money.
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => {
                return Err(InputValueError::custom(
                    "a Decimal is a string such as \"19.99\"",
                ));
            }
        };
        Money::parse_str("Decimal", &raw)
            .map(Decimal)
            .map_err(|e| InputValueError::custom(e.message))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// `DateTime`: async-graphql's own description names its Rust type.
const DATE_TIME: &str = "A point in time: in JSON a string in RFC 3339 format, e.g. \"2026-11-26T17:53:26.123456+00:00\" (always in UTC as output; any offset as input).";

/// `UUID`: async-graphql's own description is a page about UUIDs in general.
const UUID: &str = "An identifier: in JSON a string, a UUID in its hyphenated form (RFC 9562), e.g. \"0192f0c6-4b5e-7c3a-9f2d-3c1e8a7b6d5f\".";

/// `JSON`: async-graphql's own description is about serializing Rust values.
const JSON: &str = "Any JSON value, as is (an object, mostly): an event's data or metadata, a view's row. Its shape is the event's or the view's, not the schema's.";

/// `builder` with the descriptions of the scalars that come from async-graphql replaced
/// by ones that say what each is in JSON.
pub fn describe<Q, M, S>(builder: SchemaBuilder<Q, M, S>) -> SchemaBuilder<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    builder
        .override_output_type_description::<chrono::DateTime<chrono::Utc>>(DATE_TIME)
        .override_output_type_description::<uuid::Uuid>(UUID)
        .override_output_type_description::<async_graphql::Json<serde_json::Value>>(JSON)
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_schema;
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

    /// Every custom scalar says what it is in JSON, in words a frontend developer reads:
    /// no Rust type names.
    #[test]
    fn every_scalar_says_what_it_is_in_json() {
        let sdl = crate::graphql::schema_sdl();
        let document = parse_schema(&sdl).expect("the schema's SDL parses");
        let mut scalars = Vec::new();
        for definition in document.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            if !matches!(ty.node.kind, TypeKind::Scalar) {
                continue;
            }
            let name = ty.node.name.node.to_string();
            let description = ty.node.description.map(|d| d.node).unwrap_or_default();
            assert!(description.contains("JSON"), "{name}: {description:?}");
            for rust in ["<", "::", "u64", "i64", "Utc", "serialized", "Rust"] {
                assert!(
                    !description.contains(rust),
                    "{name} says {rust:?}: {description:?}"
                );
            }
            scalars.push(name);
        }
        scalars.sort();
        assert_eq!(
            scalars,
            ["DateTime", "Decimal", "JSON", "Position", "UUID"],
            "a new scalar needs a description here and a mapping in codegen.ts"
        );
    }
}
