//! Custom scalars: `Position` (a u64 as a decimal string) and `Decimal` (money as a string
//! with exactly 2 places). UUID, DateTime and JSON come from async-graphql.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

use crate::domain::values::Money;

/// Global position of an event in the event log (a u64 serialized as a decimal string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position(pub i64);

/// Global position of an event in the event log (a u64 serialized as a decimal string).
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

/// An exact decimal amount serialized as a string, e.g. "19.99"; money always has 2 decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal(pub Money);

/// An exact decimal amount serialized as a string, e.g. "19.99"; money always has 2 decimal places.
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
