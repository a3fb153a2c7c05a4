//! The change bus: after each committed projection batch the relay publishes which keys of
//! which view changed, at which position. Subscriptions listen here. Behind a small trait
//! so a shared feed (PostgreSQL LISTEN/NOTIFY, NATS) can replace the in-process one when
//! the service scales out.

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
