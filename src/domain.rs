//! The pure domain: one module per aggregate (product with its inventory, cart, order,
//! payment) with its commands, events,
//! state, `decide` and `apply`, and the validated value types every input is parsed into.
//!
//! Nothing here does IO, reads a clock or draws a random number: whatever a decision needs
//! from the outside (another aggregate's state, an id, the time) is looked up by the command
//! handler first and carried in the command.

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

    /// Folds one event into the state. No business rules: events are facts.
    fn apply(self, event: &Self::Event) -> Self;

    /// Decides which events a command produces, or why it is refused.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Number of events folded so far (the stream version).
    fn version(&self) -> i64;
}

/// An event as persisted: `event_type()` is a stored identifier that must never change
/// once written (rename the Rust variant freely, never the string). Its version and the
/// upcasters from older versions live with the event store (`write::upcast`).
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    fn event_type(&self) -> &'static str;
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
