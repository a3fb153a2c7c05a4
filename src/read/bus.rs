//! The change bus: which keys of which view changed, at which position. Subscriptions
//! listen here (through the live views hub). Behind a small trait, with two
//! implementations:
//!
//! - [`InProcessBus`] (SQLite, one process): the relay publishes each committed batch's
//!   changes straight to the hub.
//! - [`DoorbellBus`] (PostgreSQL, any number of replicas): the relay's fold rings a
//!   doorbell inside its transaction, and on every replica, the folding one included, the
//!   doorbell listener (`read::doorbell`) reads the changed rows of the view once and
//!   delivers them here. One path for every replica: a change reaches each subscriber
//!   once, in the order of the log, whoever folded it (ADR 0013).

use tokio::sync::broadcast;

/// One read-model change: `key` of view `projection` now reflects `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub projection: &'static str,
    pub key: String,
    pub position: i64,
}

pub trait ChangeBus: Send + Sync + 'static {
    fn publish(&self, changes: Vec<Change>);
    /// A receiver of every change published from now on. A receiver that falls more than
    /// the bus's capacity behind gets `RecvError::Lagged` and must re-read state.
    fn subscribe(&self) -> broadcast::Receiver<Change>;
}

/// The single-process bus: a tokio broadcast channel.
pub struct InProcessBus {
    tx: broadcast::Sender<Change>,
}

impl InProcessBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self { tx }
    }
}

impl ChangeBus for InProcessBus {
    fn publish(&self, changes: Vec<Change>) {
        for change in changes {
            // No receiver is not an error: nobody is listening right now.
            let _ = self.tx.send(change);
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }
}

/// The bus of a replica on PostgreSQL: fed by the doorbell listener (`read::doorbell`),
/// which delivers the changes of every fold, this replica's and the others', read from
/// the views in position order.
///
/// What the relay publishes here is not forwarded: its fold already rang the doorbell
/// inside its transaction, and the listener reads those rows like any other replica's.
/// Forwarding them as well would send this replica's subscribers each change twice, and
/// could send a change of this replica's fold before an older one of another replica's
/// that the listener has not read yet (a subscription skips positions at or below its
/// cursor, so that older change would be lost to it).
pub struct DoorbellBus {
    local: InProcessBus,
}

impl DoorbellBus {
    pub fn new(capacity: usize) -> Self {
        Self {
            local: InProcessBus::new(capacity),
        }
    }

    /// The listener's delivery: changes read from a view after a doorbell.
    pub fn deliver(&self, changes: Vec<Change>) {
        self.local.publish(changes);
    }
}

impl ChangeBus for DoorbellBus {
    /// The relay's announcement, already rung as a doorbell: see the type's documentation.
    fn publish(&self, _changes: Vec<Change>) {}

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.local.subscribe()
    }
}
