//! The event relay: tails `events` by position and feeds every projection, advancing each
//! checkpoint in the same transaction as its view, then announces the changes.
//!
//! Each view has its own projector ([`Relay::run_projector`]), a unit of work that one
//! replica of the cluster runs at a time (ADR 0012); it checks its fence before every
//! commit, and the checkpoint row it locks is the data fence behind it ("stored
//! checkpoint ahead of mine → roll back"). A failed view stops at its event while the
//! other views' projectors go on.
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
use super::bus::{Change, ChangeBus};
use super::checkpoints::{self, Checkpoints};
use super::doorbell::Folded;
use crate::cluster::{Fence, Fenced};
use crate::entity::events;
use crate::log::source::EventSource;
use crate::write::{WriteGate, begin_write};
// Where the relay reads up to; the horizon itself lives with the log.
pub use crate::log::horizon::{committed_head, safe_horizon};

/// Events read and folded per projection transaction.
const BATCH: u64 = 512;

/// Liveness of the relay, for `/readyz`.
#[derive(Default)]
pub struct RelayHealth {
    /// Unix millis of the last completed projector tick or checkpoint refresh: the last
    /// time this replica's checkpoints were known to be fresh.
    last_tick_ms: AtomicI64,
    /// Consecutive failed ticks.
    failures: AtomicI64,
    /// The units of work nobody in the cluster holds, at the last look (ADR 0012).
    unheld: std::sync::Mutex<Vec<String>>,
}

impl RelayHealth {
    /// Alive when a tick (or, on a replica that holds no projector, a refresh of the
    /// checkpoints from the table) completed recently, the last ticks did not keep
    /// failing, and someone holds every unit of work.
    pub fn is_healthy(&self, within: Duration) -> bool {
        let last = self.last_tick_ms.load(Ordering::Relaxed);
        let age = chrono::Utc::now().timestamp_millis() - last;
        last > 0
            && age <= within.as_millis() as i64
            && self.failures.load(Ordering::Relaxed) < 3
            && self.unheld().is_empty()
    }

    /// The failed ticks counted so far were of projectors this replica no longer runs:
    /// they say nothing of it any more. Without this, a replica whose projectors kept
    /// failing until it lost their units (a database crash does both) stayed unready for
    /// good, for no tick of its own would ever succeed to reset the count.
    pub fn forget_failures(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// This replica's checkpoints are fresh as of now.
    pub fn fresh(&self) {
        self.last_tick_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// The units nobody holds, as the cluster member last saw them.
    pub fn set_unheld(&self, units: &[String]) {
        *self.unheld.lock().unwrap_or_else(|e| e.into_inner()) = units.to_vec();
    }

    pub fn unheld(&self) -> Vec<String> {
        self.unheld
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Shared by the projectors of every view: one projector per view, each a unit of work
/// run by whichever replica holds it (ADR 0012).
pub struct Relay {
    /// The views' database: each fold's transaction, with its checkpoint.
    pub db: DatabaseConnection,
    /// Where the log is read from: this database's `events`, or the event bus on a read
    /// replica (ADR 0016).
    pub source: Arc<dyn EventSource>,
    pub gate: WriteGate,
    pub projections: Vec<Arc<dyn Projection>>,
    pub checkpoints: Arc<Checkpoints>,
    pub bus: Arc<dyn ChangeBus>,
    /// Rings for the events this process's readers want; each projector registers what
    /// it wants while it runs.
    pub wakeup: crate::write::Wakeup,
    pub poll: Duration,
    pub health: Arc<RelayHealth>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The safe horizon, for the raw event feed and rebuilds (raised by every projector).
    pub horizon: Arc<watch::Sender<i64>>,
    /// Each projection's status (running, failed at an event).
    pub statuses: Arc<super::status::Statuses>,
    /// Where the rows a fold wrote are kept once it commits (`Projection::apply_keeping`):
    /// the catalog's copies of products (ADR 0023).
    pub kept: Option<Arc<super::cache::CatalogCache>>,
    /// The projectors running in this process (`run_projector`), for the fold order.
    pub running: std::sync::Mutex<std::collections::HashSet<&'static str>>,
}

/// Where a projector stopped short of the horizon: at `position`, the checkpoint of the
/// earlier view `view` (see `Relay::bound`).
struct Behind {
    view: &'static str,
    position: i64,
}

/// What the horizon a tick folds up to must cover.
enum Since {
    /// A horizon read already (an earlier view moved): it still holds.
    Known(i64),
    /// Whatever was committed before this ring of the wake-ups.
    Ring(u64),
    /// Whatever was committed before now (a poll, a retry, the first tick).
    Now,
}

/// Takes a projector off the running set when it stops, however it stops.
struct Running<'a>(&'a Relay, &'static str);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = self
            .0
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        running.remove(self.1);
        if running.is_empty() {
            self.0.health.forget_failures();
        }
    }
}

/// The text of the error a fenced fold ends with: transient (never a projection's
/// failure), it stops the projector, whose replica has lost or given up the unit.
const FENCED: &str = "the projector lost its unit of work (fenced)";

fn fenced(why: Fenced) -> DbErr {
    DbErr::Custom(format!("{FENCED}: {why}"))
}

impl Relay {
    /// Runs the projector of the view `name` until its fence is released (the unit is
    /// lost, given up, or the service stops). Errors are logged and retried with backoff:
    /// a transient database failure must not stop the view for good (readyz reports it).
    pub async fn run_projector(self: Arc<Self>, name: &str, fence: Fence) {
        let Some(projection) = self.projections.iter().find(|p| p.name() == name).cloned() else {
            tracing::error!(projection = name, "no such projection: nothing to run");
            return fence.released().await;
        };
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(projection.name());
        let _running = Running(&self, projection.name());
        let _interest = self.wakeup.interest(Some(projection.wants()));
        let mut wakeup = self.wakeup.subscribe();
        let mut backoff = Duration::from_millis(50);
        // Set when an earlier view moved: the horizon last read still holds (it only
        // rises), so the tick folds on at once without asking the database again.
        let mut known: Option<i64> = None;
        // Set when a ring woke it: the ring's number (`SharedHorizon::after_ring`).
        let mut woken: Option<u64> = None;
        loop {
            if fence.check().is_err() {
                return;
            }
            let since = match (known.take(), woken.take()) {
                (Some(horizon), _) => Since::Known(horizon),
                (None, Some(ring)) => Since::Ring(ring),
                (None, None) => Since::Now,
            };
            match self.tick_view(projection.as_ref(), &fence, since).await {
                Ok(behind) => {
                    backoff = Duration::from_millis(50);
                    self.health.failures.store(0, Ordering::Relaxed);
                    self.health.fresh();
                    // Held back by an earlier view: go on as soon as it moves.
                    let mut ahead = behind.and_then(|b| {
                        let rx = self.checkpoints.watch(b.view)?;
                        Some((rx, b.position))
                    });
                    if ahead.as_ref().is_some_and(|(rx, at)| *rx.borrow() > *at) {
                        known = Some(*self.horizon.borrow());
                        continue;
                    }
                    let earlier_moved = async {
                        match ahead.as_mut() {
                            Some((rx, _)) => rx.changed().await.is_ok(),
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = fence.released() => return,
                        Ok(()) = wakeup.changed() => woken = Some(*wakeup.borrow_and_update()),
                        true = earlier_moved => known = Some(*self.horizon.borrow()),
                        _ = tokio::time::sleep(self.poll) => {}
                    }
                }
                Err(_) if fence.check().is_err() => return,
                Err(e) => {
                    self.health.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        projection = name,
                        error = format!("{e:#}"),
                        "projector tick failed; retrying"
                    );
                    tokio::select! {
                        _ = fence.released() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// How far the view `name` may fold now: the horizon, or less where a view before it
    /// in `read::views()` that runs in this process is behind. Views fold in that order,
    /// as one relay loop folded them before there were units: a client that sees an
    /// order rejected also sees the stock its release put back, and the dashboard's
    /// low-stock figures never run ahead of the catalog. A failed view holds none back.
    /// Across replicas each view runs on its own (ADR 0012).
    fn bound(&self, name: &str, horizon: i64) -> (i64, Option<Behind>) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut limit = (horizon, None);
        for p in self.projections.iter().take_while(|p| p.name() != name) {
            let earlier = p.name();
            if running.contains(earlier) && !self.statuses.is_failed(earlier) {
                let position = self.checkpoints.get(earlier);
                if position < limit.0 {
                    limit = (
                        position,
                        Some(Behind {
                            view: earlier,
                            position,
                        }),
                    );
                }
            }
        }
        limit
    }

    /// Brings one view up to the current safe horizon (or to an earlier view it must not
    /// pass: `bound`): reads the events it wants in position order, in pages, and folds
    /// each page with its checkpoint. Says which earlier view held it back, if one did.
    async fn tick_view(
        &self,
        projection: &dyn Projection,
        fence: &Fence,
        since: Since,
    ) -> Result<Option<Behind>, DbErr> {
        let name = projection.name();
        let checkpoint = self.checkpoints.get(name);
        let horizon = match since {
            Since::Known(horizon) => horizon,
            Since::Ring(ring) => self.source.horizon_after_ring(checkpoint, ring).await?,
            Since::Now => self.source.horizon(checkpoint).await?,
        };
        self.metrics.head_at(horizon);
        self.statuses.set_head(horizon);
        self.horizon.send_if_modified(|known| {
            let raised = horizon > *known;
            if raised {
                *known = horizon;
            }
            raised
        });
        let (limit, behind) = self.bound(name, horizon);
        loop {
            fence.check().map_err(fenced)?;
            // A failed projection stays at its event.
            let checkpoint = self.checkpoints.get(name);
            if self.statuses.is_failed(name) || checkpoint >= limit {
                self.metrics
                    .projection_lag(name, horizon - self.checkpoints.get(name));
                return Ok(behind.filter(|_| checkpoint < horizon));
            }
            let page = self
                .source
                .page(name, checkpoint, limit, Some(projection.wants()), BATCH)
                .await?;
            let (events, upto) = (page.events, page.read_to);
            if events.is_empty() {
                // Nothing here changes this view: advance in memory only. The stored
                // checkpoint catches up with the view's next write; after a restart
                // the events in between are read again and change nothing.
                // (`projection_position` stays at the last position folded.)
                self.checkpoints.advance(name, upto);
                continue;
            }
            if let Some(change) = projection.announces().and_then(|a| a.change(name, &events)) {
                self.announce(projection, checkpoint, upto, change, fence)
                    .await?;
                continue;
            }
            match self
                .fold(projection, checkpoint, &events, upto, fence)
                .await
            {
                Ok(_) => {}
                Err(e) if is_transient(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "a projection batch failed; folding its events one by one");
                    self.isolate(projection, checkpoint, &events, fence).await?;
                }
            }
        }
    }

    /// Folds `events` (the batch after `from`) into `projection`'s view and moves its
    /// checkpoint to `upto`, in one transaction that also rings the view's doorbell; then
    /// announces the changes. `false` when the view was past `from` already (nothing
    /// folded).
    async fn fold(
        &self,
        projection: &dyn Projection,
        from: i64,
        events: &[events::Model],
        upto: i64,
        fence: &Fence,
    ) -> Result<bool, DbErr> {
        let (changes, rows) = {
            let _gate = self.gate.enter_folds().await;
            let txn = begin_write(&self.db).await?;
            // A rebuild (or another replica) may have moved the checkpoint past where this
            // batch starts since we read it: then those events are in the view already.
            // Compared with `from`, not with the shared checkpoints, which doorbells move.
            // The checkpoint moves first, holding its row while the view is written.
            if let Some(stored) = checkpoints::claim(&txn, projection.name(), from, upto).await? {
                txn.rollback().await?;
                self.checkpoints.changed(projection.name(), stored);
                self.metrics.projection_at(projection.name(), stored);
                return Ok(false);
            }
            let (changes, rows) = match &self.kept {
                Some(_) => projection.apply_keeping(&txn, events).await?,
                None => (projection.apply(&txn, events).await?, Default::default()),
            };
            // The unit may have been lost while we folded: then another replica may fold
            // the same events, and only one of us may commit.
            if let Err(why) = fence.check() {
                txn.rollback().await?;
                return Err(fenced(why));
            }
            let horizon = *self.horizon.borrow();
            let folded = Folded {
                projection: projection.name(),
                from,
                upto,
                horizon,
                changes: changes.len(),
                keys: Some(&changes),
                rows: &rows.products,
            };
            folded.ring(&txn).await?;
            txn.commit().await?;
            (changes, rows)
        };
        // Only the rows it announced changed: copies of the others stay valid.
        let name = projection.name();
        // The epoch moves first (`Checkpoints::touch`), then the rows as this fold
        // left them are kept in it (a later move that names one drops its copy), then the
        // checkpoint moves: a mutation it wakes reads its payload from memory.
        let epoch = if changes.iter().all(|c| c.projection == name) {
            let keys = changes.iter().map(|c| c.key.as_str());
            self.checkpoints.touch(name, Some(keys))
        } else {
            self.checkpoints.touch(name, None::<std::iter::Empty<&str>>)
        };
        if let Some(kept) = &self.kept
            && !rows.products.is_empty()
        {
            kept.keep_folded(epoch, rows.products);
        }
        self.checkpoints.advance(name, upto);
        self.metrics.projection_at(projection.name(), upto);
        self.metrics
            .events_applied(projection.name(), events.len() as u64);
        self.statuses.advanced(projection.name());
        if !changes.is_empty() {
            self.bus.publish(changes);
        }
        Ok(true)
    }

    /// A page of events that write no row of `projection`'s view and only announce a
    /// change of it (`Projection::announces`): no transaction. The doorbell rings in a
    /// statement of its own (every replica, this one too, re-sends the key), which on
    /// PostgreSQL also stores the checkpoint, so that a replica that missed the doorbell
    /// learns of the change at its next poll. On SQLite the checkpoint advances in memory
    /// only, as for a page of events the view does not want: the stored one catches up
    /// with the view's next write, and after a restart these events are read again and
    /// announce again, which sends a subscriber what it has already.
    async fn announce(
        &self,
        projection: &dyn Projection,
        from: i64,
        upto: i64,
        change: Change,
        fence: &Fence,
    ) -> Result<(), DbErr> {
        let name = projection.name();
        fence.check().map_err(fenced)?;
        let horizon = *self.horizon.borrow();
        let folded = Folded {
            projection: name,
            from,
            upto,
            horizon,
            changes: 1,
            keys: None,
            rows: &[],
        };
        folded.ring_now(&self.db).await?;
        self.checkpoints.advance(name, upto);
        self.metrics.projection_at(name, upto);
        self.statuses.advanced(name);
        self.bus.publish(vec![change]);
        Ok(())
    }

    /// After a failed batch: folds the events one at a time (each with its checkpoint),
    /// so the projection stops exactly at the event it cannot fold, never past it. A
    /// failure is retried once (a deadlock or a serialization failure passes); a second
    /// one marks the projection failed at that event.
    async fn isolate(
        &self,
        projection: &dyn Projection,
        mut from: i64,
        events: &[events::Model],
        fence: &Fence,
    ) -> Result<(), DbErr> {
        for event in events {
            let one = std::slice::from_ref(event);
            let first = self
                .fold(projection, from, one, event.position, fence)
                .await;
            let outcome = match first {
                Err(e) if !is_transient(&e) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.fold(projection, from, one, event.position, fence)
                        .await
                }
                other => other,
            };
            match outcome {
                Ok(true) => from = event.position,
                // Folded elsewhere meanwhile: the next tick starts from there.
                Ok(false) => return Ok(()),
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

/// A failure of the connection rather than of the event, or a lost unit: retried with
/// backoff (or the projector stops), never the projection's failure.
fn is_transient(e: &DbErr) -> bool {
    match e {
        DbErr::Custom(text) => text.starts_with(FENCED),
        e => crate::error::unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_ticks_of_projectors_no_longer_run_leave_the_relay_healthy() {
        let health = RelayHealth::default();
        health.fresh();
        assert!(health.is_healthy(Duration::from_secs(30)));
        for _ in 0..3 {
            health.failures.fetch_add(1, Ordering::Relaxed);
        }
        assert!(
            !health.is_healthy(Duration::from_secs(30)),
            "three failed ticks"
        );
        // The last projector stopped (its unit moved elsewhere); the backstop keeps the
        // checkpoints fresh.
        health.forget_failures();
        health.fresh();
        assert!(health.is_healthy(Duration::from_secs(30)));
    }
}
