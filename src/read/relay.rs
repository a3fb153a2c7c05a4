//! The event relay: tails `events` by position and feeds every projection, advancing each
//! checkpoint in the same transaction as its view, then announces the changes.
//!
//! It never skips an event. On PostgreSQL a transaction can commit a lower position after
//! another committed a higher one; the relay only reads up to a *safe horizon* below which
//! every position is final (ADR 0001, docs/adr/0001-relay-never-skips-a-late-commit.md).
//! On SQLite one writer at a time commits in position order, so the horizon is the maximum.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::watch;

use super::Projection;
use super::bus::ChangeBus;
use super::checkpoints::Hold;
use super::checkpoints::{self, Checkpoints};
use crate::entity::events;
use crate::log::reader::{Span, Wanted};
use crate::supervise::TaskHealth;
use crate::write::{WriteGate, begin_write};
// Where the relay reads up to; the horizon itself lives with the log.
pub use crate::log::horizon::{committed_head, safe_horizon};

/// Events read and folded per projection transaction.
const BATCH: u64 = 512;

/// Liveness of the relay, for `/readyz`.
#[derive(Default)]
pub struct RelayHealth {
    /// Unix millis of the last completed tick.
    last_tick_ms: AtomicI64,
    /// Consecutive failed ticks.
    failures: AtomicI64,
}

impl RelayHealth {
    /// Alive when a tick completed recently and the last ticks did not keep failing.
    pub fn is_healthy(&self, within: Duration) -> bool {
        let last = self.last_tick_ms.load(Ordering::Relaxed);
        let age = chrono::Utc::now().timestamp_millis() - last;
        last > 0 && age <= within.as_millis() as i64 && self.failures.load(Ordering::Relaxed) < 3
    }
}

pub struct Relay {
    pub db: DatabaseConnection,
    pub gate: WriteGate,
    pub projections: Vec<Arc<dyn Projection>>,
    pub checkpoints: Arc<Checkpoints>,
    pub bus: Arc<dyn ChangeBus>,
    pub wakeup: watch::Receiver<u64>,
    pub poll: Duration,
    pub health: Arc<RelayHealth>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The safe horizon, for the raw event feed.
    pub horizon: watch::Sender<i64>,
    /// Each projection's status (running, failed at an event).
    pub statuses: Arc<super::status::Statuses>,
}

impl Relay {
    /// Runs until `shutdown` resolves. Errors are logged and retried with backoff: a
    /// transient database failure must not stop the views for good (readyz reports it).
    /// Each completed tick tells the supervisor the relay is up.
    pub async fn run(self: Arc<Self>, up: TaskHealth, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut wakeup = self.wakeup.clone();
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.tick().await {
                Ok(()) => {
                    up.ready();
                    backoff = Duration::from_millis(50);
                    self.health.failures.store(0, Ordering::Relaxed);
                    self.health
                        .last_tick_ms
                        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                    tokio::select! {
                        _ = &mut shutdown => return,
                        Ok(()) = wakeup.changed() => {}
                        _ = tokio::time::sleep(self.poll) => {}
                    }
                }
                Err(e) => {
                    self.health.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = format!("{e:#}"), "relay tick failed; retrying");
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Brings every projection up to the current safe horizon.
    pub async fn tick(&self) -> Result<(), DbErr> {
        let lowest = self
            .projections
            .iter()
            .map(|p| self.checkpoints.get(p.name()))
            .min()
            .unwrap_or(0);
        let horizon = safe_horizon(&self.db, lowest).await?;
        self.metrics.head_at(horizon);
        self.statuses.set_head(horizon);
        self.horizon.send_if_modified(|known| {
            let raised = horizon > *known;
            if raised {
                *known = horizon;
            }
            raised
        });
        loop {
            // A failed projection stays at its event; the others go on without it.
            let from = self
                .projections
                .iter()
                .filter(|p| !self.statuses.is_failed(p.name()))
                .map(|p| self.checkpoints.get(p.name()))
                .min()
                .unwrap_or(horizon);
            if from >= horizon {
                for p in &self.projections {
                    self.metrics
                        .projection_lag(p.name(), horizon - self.checkpoints.get(p.name()));
                }
                return Ok(());
            }
            let page = Span::new(from, horizon).page(&self.db, BATCH).await?;
            let (batch, upto) = (page.events, page.read_to);
            for projection in &self.projections {
                let checkpoint = self.checkpoints.get(projection.name());
                if checkpoint >= upto || self.statuses.is_failed(projection.name()) {
                    continue;
                }
                let start = batch.partition_point(|e| e.position <= checkpoint);
                let events = &batch[start..];
                if !events.iter().any(|e| Wanted::any(projection.wants(), e)) {
                    // Nothing here changes this view: advance in memory only. The stored
                    // checkpoint catches up with the view's next write; after a restart
                    // the events in between are read again and change nothing.
                    self.checkpoints.advance(projection.name(), upto);
                    self.metrics.projection_at(projection.name(), upto);
                    continue;
                }
                match self.fold(projection.as_ref(), events, upto).await {
                    Ok(()) => {}
                    Err(e) if is_transient(&e) => return Err(e),
                    Err(e) => {
                        tracing::warn!(projection = projection.name(), error = %e, "a projection batch failed; folding its events one by one");
                        self.isolate(projection.as_ref(), events).await?;
                    }
                }
            }
        }
    }

    /// Folds `events` into `projection`'s view and moves its checkpoint to `upto`, in one
    /// transaction; then announces the changes.
    async fn fold(
        &self,
        projection: &dyn Projection,
        events: &[events::Model],
        upto: i64,
    ) -> Result<(), DbErr> {
        let changes = {
            let _gate = self.gate.enter_views().await;
            let txn = begin_write(&self.db).await?;
            // A rebuild may have replaced the view and moved its checkpoint past ours
            // since we read the batch: then those events are in the view already.
            let stored = checkpoints::lock(&txn, projection.name(), Hold::Update).await?;
            if stored > self.checkpoints.get(projection.name()) {
                txn.rollback().await?;
                self.checkpoints.advance(projection.name(), stored);
                self.metrics.projection_at(projection.name(), stored);
                return Ok(());
            }
            let changes = projection.apply(&txn, events).await?;
            checkpoints::store(&txn, projection.name(), upto).await?;
            txn.commit().await?;
            changes
        };
        self.checkpoints.advance(projection.name(), upto);
        self.metrics.projection_at(projection.name(), upto);
        self.metrics
            .events_applied(projection.name(), events.len() as u64);
        self.statuses.advanced(projection.name());
        if !changes.is_empty() {
            self.bus.publish(changes);
        }
        Ok(())
    }

    /// After a failed batch: folds the events one at a time (each with its checkpoint),
    /// so the projection stops exactly at the event it cannot fold, never past it. A
    /// failure is retried once (a deadlock or a serialization failure passes); a second
    /// one marks the projection failed at that event.
    async fn isolate(
        &self,
        projection: &dyn Projection,
        events: &[events::Model],
    ) -> Result<(), DbErr> {
        for event in events {
            let one = std::slice::from_ref(event);
            let first = self.fold(projection, one, event.position).await;
            let outcome = match first {
                Err(e) if !is_transient(&e) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.fold(projection, one, event.position).await
                }
                other => other,
            };
            match outcome {
                Ok(()) => {}
                Err(e) if is_transient(&e) => return Err(e),
                Err(e) => {
                    tracing::error!(
                        projection = projection.name(),
                        position = event.position,
                        event_type = %event.event_type,
                        error = %e,
                        "projection stopped: it cannot fold this event (fix it and restart)"
                    );
                    self.metrics.projection_failed(projection.name(), true);
                    let error = e.to_string();
                    if let Err(e) = checkpoints::store_failure(
                        &self.db,
                        projection.name(),
                        self.checkpoints.get(projection.name()),
                        event.position,
                        &error,
                    )
                    .await
                    {
                        tracing::warn!(error = %e, "could not record the projection's failure");
                    }
                    self.statuses
                        .failed(projection.name(), event.position, error);
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// A failure of the connection rather than of the event: retried with backoff.
fn is_transient(e: &DbErr) -> bool {
    matches!(e, DbErr::Conn(_) | DbErr::ConnectionAcquire(_))
}
