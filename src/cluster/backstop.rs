//! Keeps a replica's own view of the checkpoints fresh when another replica folds the
//! views: every [`EVERY`] it reads `projection_checkpoints` and advances the local
//! [`Checkpoints`] (read-your-writes waits on them), the local safe horizon (the event
//! feed and rebuilds follow it), the failures of the projectors it does not run, and the
//! recovery of a failed view that a rebuild elsewhere folded past its event.
//!
//! A backstop, kept small so that a faster path can plug in beside it: a doorbell that
//! advances the same `Checkpoints` the moment a projector commits makes this poll a
//! safety net for lost notifications. Any position at or below a stored checkpoint is
//! final (the projector that stored it had read it below its safe horizon, ADR 0001), so
//! raising the local horizon to the highest stored checkpoint never exposes a position
//! that may still change.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::watch;

use super::member::ClusterState;
use crate::read::checkpoints::{self, Checkpoints};
use crate::read::relay::RelayHealth;
use crate::read::status::Statuses;
use crate::supervise::{Failure, TaskHealth};

/// How often the stored checkpoints are read.
pub const EVERY: Duration = Duration::from_millis(500);

pub struct CheckpointBackstop {
    pub db: DatabaseConnection,
    pub checkpoints: Arc<Checkpoints>,
    pub statuses: Arc<Statuses>,
    pub horizon: Arc<watch::Sender<i64>>,
    pub health: Arc<RelayHealth>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Which projectors this replica runs (their statuses are its own).
    pub cluster: Arc<ClusterState>,
}

impl CheckpointBackstop {
    /// Polls until `stop`; an error ends the run (the supervisor restarts it, and
    /// `/readyz` names it meanwhile).
    pub async fn run(
        self: Arc<Self>,
        up: TaskHealth,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), Failure> {
        loop {
            self.poll_once().await.map_err(Failure::restart)?;
            up.ready();
            self.health.fresh();
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    /// One read of the stored checkpoints.
    pub async fn poll_once(&self) -> Result<(), DbErr> {
        let rows = checkpoints::all(&self.db).await?;
        let seen = self.cluster.seen();
        // Whether another replica runs a view's projector: the member has looked, and
        // the unit is neither this replica's nor unheld. Until then (start-up) a stored
        // failure is not copied: the first holder tries the event again, which is how a
        // restart resumes a view whose event was fixed.
        let elsewhere = |name: &str| {
            let unit = format!("projector:{name}");
            seen.at.is_some() && !seen.held.contains_key(&unit) && !seen.unheld.contains(&unit)
        };
        let mut highest = 0;
        for row in rows {
            highest = highest.max(row.position);
            // Stored further than known here: folded elsewhere, its rows may have moved.
            if row.position > self.checkpoints.get(&row.name) {
                self.checkpoints.changed(&row.name, row.position);
            }
            let Some(name) = self.statuses.names().into_iter().find(|n| *n == row.name) else {
                continue;
            };
            // The last position folded into the view, wherever it was folded.
            self.metrics.projection_at(name, row.position);
            let failed_at = self
                .statuses
                .failures()
                .into_iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, at, _)| at);
            match (row.failed_position, row.error, failed_at) {
                // Another replica's projector stopped at an event: this one says so too.
                (Some(at), Some(error), None) if elsewhere(name) => {
                    self.statuses.failed(name, at, error);
                    self.metrics.projection_failed(name, true);
                }
                // A rebuild (on any replica, or the command line) folded past the event
                // the view had stopped at: it runs again, here too.
                (None, _, Some(at)) if row.position >= at => {
                    self.statuses.recovered(name);
                    self.metrics.projection_failed(name, false);
                }
                _ => {}
            }
        }
        self.statuses.set_head(highest);
        self.horizon.send_if_modified(|known| {
            let raised = highest > *known;
            if raised {
                *known = highest;
            }
            raised
        });
        Ok(())
    }
}
