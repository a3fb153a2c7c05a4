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

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use tokio::sync::watch;

use super::Projection;
use super::bus::ChangeBus;
use super::checkpoints::Hold;
use super::checkpoints::{self, Checkpoints};
use crate::entity::events;
use crate::write::{WriteGate, begin_write};

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
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.tick().await {
                Ok(()) => {
                    backoff = Duration::from_millis(50);
                    self.health.failures.store(0, Ordering::Relaxed);
                    self.health
                        .last_tick_ms
                        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                    tokio::select! {
                        _ = &mut shutdown => return,
                        Ok(()) = self.wakeup.changed() => {}
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
            let batch = events::Entity::find()
                .filter(events::Column::Position.gt(from))
                .filter(events::Column::Position.lte(horizon))
                .order_by_asc(events::Column::Position)
                .limit(BATCH)
                .all(&self.db)
                .await?;
            // Everything up to `upto` has been read: the batch's last event, or the whole
            // range when the batch is short (what is missing below the horizon was rolled
            // back and can never appear).
            let upto = if (batch.len() as u64) < BATCH {
                horizon
            } else {
                batch.last().map_or(horizon, |e| e.position)
            };
            for projection in &self.projections {
                let checkpoint = self.checkpoints.get(projection.name());
                if checkpoint >= upto || self.statuses.is_failed(projection.name()) {
                    continue;
                }
                let start = batch.partition_point(|e| e.position <= checkpoint);
                let events = &batch[start..];
                let types = projection.stream_types();
                if !events
                    .iter()
                    .any(|e| types.contains(&e.stream_type.as_str()))
                {
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

/// The highest position below which every event is final: committed (visible) or rolled
/// back (never visible).
///
/// `known` is a horizon already established (the lowest checkpoint): when nothing was
/// appended beyond it, no further work is needed.
pub async fn safe_horizon(db: &DatabaseConnection, known: i64) -> Result<i64, DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres => postgres_horizon(db, known).await,
        _ => committed_head(db).await,
    }
}

/// The highest committed position, without waiting for anyone: on SQLite the safe
/// horizon itself; on PostgreSQL a lower position may still commit below it. For reports
/// from outside the server, which must never wait on another session's transaction.
pub async fn committed_head(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COALESCE(MAX(position), 0) AS head FROM events",
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "head"))
        .transpose()?
        .unwrap_or(0))
}

/// PostgreSQL: (1) read the last position handed out, L; (2) *then* list the xids of
/// the transactions running in this database. Every transaction that holds a position
/// ≤ L took its xid before it drew that position (the writer calls `pg_current_xact_id()`
/// first), so before L was read: if it is still running it is on that list. (3) Wait
/// until none of the listed transactions is running any more. From then on every position
/// ≤ L belongs to a finished transaction, committed (visible) or rolled back (a gap
/// forever). Transactions that start later are not waited for, so a steady stream of
/// writers cannot starve the relay, and transactions of other databases on the same
/// server are never waited for. The wait never gives up on a slow transaction. An idle
/// tick stops after step 1; otherwise it costs two round trips, and one per poll while
/// a listed writer is still in flight. (ADR 0001.)
async fn postgres_horizon(db: &DatabaseConnection, known: i64) -> Result<i64, DbErr> {
    let backend = DbBackend::Postgres;
    let last = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('events', 'position')), 0) AS last",
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "last"))
        .transpose()?
        .unwrap_or(0);
    if last <= known {
        return Ok(known);
    }
    // backend_xid is NULL for a session without a writing transaction.
    let running = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT backend_xid::text AS xid FROM pg_stat_activity \
             WHERE datname = current_database() AND backend_xid IS NOT NULL \
             AND pid <> pg_backend_pid()",
        ))
        .await?
        .into_iter()
        .map(|r| r.try_get::<String>("", "xid"))
        .collect::<Result<Vec<_>, _>>()?;
    if running.is_empty() {
        return Ok(last);
    }
    let still_running = Statement::from_sql_and_values(
        backend,
        "SELECT COUNT(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND backend_xid::text = ANY($1)",
        [sea_orm::Value::from(running)],
    );
    let mut pause = Duration::from_micros(200);
    loop {
        let n = db
            .query_one_raw(still_running.clone())
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if n == 0 {
            return Ok(last);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}
