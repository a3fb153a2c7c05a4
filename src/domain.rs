//! The pure domain: one module per aggregate (product with its inventory, cart, order,
//! payment) with its commands, events,
//! state, `decide` and `apply`, and the validated value types every input is parsed into.
//!
//! Nothing here does IO, reads a clock or draws a random number: whatever a decision needs
//! from the outside (another aggregate's state, an id, the time) is looked up by the command
//! handler first and carried in the command.

/// Declares a status stored by its spelling (`Stored`): each variant written once, beside
/// its persisted spelling, and `ALL` and `as_str` follow from that one list. Snapshots
/// carry it through serde, as they did before the macro (SCREAMING_SNAKE_CASE).
macro_rules! stored {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $what:literal {
            $($(#[$variant_meta:meta])* $variant:ident = $spelling:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $crate::domain::Stored for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$($name::$variant,)+];

            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $spelling,)+
                }
            }
        }
    };
}

/// Declares an event enum (`DomainEvent`): each variant written once, after its
/// persisted type (its serde `type` tag: never rename one), and `TYPES` and `event_type`
/// follow from that one list. Events are stored as `{"type": …, "data": {…}}`.
macro_rules! events {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident {
            $(
                $(#[doc = $variant_doc:literal])*
                #[serde(rename = $type:literal)]
                $variant:ident { $($fields:tt)* },
            )+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum $name {
            $(
                $(#[doc = $variant_doc])*
                #[serde(rename = $type)]
                $variant { $($fields)* },
            )+
        }

        impl $crate::domain::DomainEvent for $name {
            const TYPES: &'static [&'static str] = &[$($type,)+];

            fn event_type(&self) -> &'static str {
                match self {
                    $($name::$variant { .. } => $type,)+
                }
            }
        }
    };
}

pub mod cart;
pub mod order;
pub mod payment;
pub mod product;
pub mod values;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An event-sourced aggregate: state folded from its events, and a pure decision function.
pub trait Aggregate:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Stream type, a persisted identifier: never derive it from a Rust type name.
    const STREAM_TYPE: &'static str;
    /// Format of the serialized state in snapshots: bump it when the state's shape
    /// changes, and older snapshots are ignored (loading folds from the first event).
    const STATE_VERSION: i32 = 1;
    type Command: Send;
    type Event: DomainEvent;
    type Error: std::error::Error + Send + Sync + 'static;
    /// Whether normalized write tables follow this aggregate's streams, updated in the
    /// transaction that appends its events: [`WriteTables`] when they do (the write side
    /// then implements `write::WriteModel` for it, or none of its commands compiles), or
    /// [`EventsOnly`] when its events are its whole write model, and its single-stream
    /// commands need nothing on the write side (`write::Envelope` runs them).
    type Tables;

    /// Folds one event into the state. No business rules: events are facts.
    fn apply(self, event: &Self::Event) -> Self;

    /// Decides which events a command produces, or why it is refused.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Number of events folded so far (the stream version).
    fn version(&self) -> i64;
}

/// [`Aggregate::Tables`]: normalized write tables follow the aggregate's streams (the
/// products table, cart lines, …), for constraints and for the facts other commands decide
/// on.
pub enum WriteTables {}

/// [`Aggregate::Tables`]: the aggregate's events are its whole write model.
pub enum EventsOnly {}

/// An event as persisted: `event_type()` is a stored identifier that must never change
/// once written (rename the Rust variant freely, never the string). Its version and the
/// upcasters from older versions live with the log (`log::upcast`).
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// Every type this event enum is stored as: the one declaration that the event-type
    /// list, the golden-fixture coverage and the `events(streamTypes:)` filter derive
    /// from. A test fails when `event_type()` names a type missing here.
    const TYPES: &'static [&'static str];

    fn event_type(&self) -> &'static str;
}

/// A value stored by its spelling in a table or a view (a status). The spelling is a
/// persisted identifier, like an event type: never change one once written. Reading back a
/// spelling the code does not know is an error, never a default: a view that shows an
/// order as `PENDING` because its status did not parse is wrong and says nothing.
pub trait Stored: Copy + Eq + std::fmt::Debug + Send + Sync + Sized + 'static {
    /// What the values are, for the error: "order status".
    const WHAT: &'static str;
    /// Every value.
    const ALL: &'static [Self];

    /// The stored spelling.
    fn as_str(self) -> &'static str;

    /// The value stored as `s`.
    fn parse_stored(s: &str) -> Result<Self, UnknownStored> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownStored {
                what: Self::WHAT,
                value: s.to_owned(),
            })
    }
}

/// A stored value that no variant spells: the table was written by other code, or by
/// hand. An internal error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} in storage")]
pub struct UnknownStored {
    pub what: &'static str,
    pub value: String,
}

/// Given/when/then harness for aggregate tests (cqrs-es style), with no IO.
#[cfg(test)]
pub(crate) mod testing {
    use super::Aggregate;

    pub struct Given<A: Aggregate>(A);

    pub fn given<A: Aggregate>(events: &[A::Event]) -> Given<A> {
        Given(events.iter().fold(A::default(), |s, e| s.apply(e)))
    }

    impl<A: Aggregate> Given<A> {
        pub fn when(self, command: A::Command) -> Result<Vec<A::Event>, A::Error> {
            self.0.decide(command)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Stored;

    fn round_trips<T: Stored>() {
        for value in T::ALL {
            assert_eq!(T::parse_stored(value.as_str()), Ok(*value));
        }
        let mut spellings: Vec<&str> = T::ALL.iter().map(|v| v.as_str()).collect();
        spellings.sort_unstable();
        spellings.dedup();
        assert_eq!(
            spellings.len(),
            T::ALL.len(),
            "{} spellings are unique",
            T::WHAT
        );
    }

    #[test]
    fn every_stored_value_reads_back_as_itself_and_no_two_share_a_spelling() {
        round_trips::<super::order::OrderStatus>();
        round_trips::<super::order::Reservation>();
        round_trips::<super::payment::PaymentStatus>();
        round_trips::<super::product::ProductStatus>();
        round_trips::<crate::process::dead_letters::Status>();
    }

    #[test]
    fn an_unknown_spelling_is_an_error_naming_it() {
        let error = super::order::OrderStatus::parse_stored("LOST").unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"unknown order status "LOST" in storage"#
        );
    }
}
