//! A replica's membership in the cluster: its lease connection, its claims, the balance
//! of units among the replicas, and the tasks of the units it holds.
//!
//! One loop per replica, every [`heartbeat_every`] (250 ms, or lease/4): it reads who is
//! alive and who holds what on the lease connection (which is the heartbeat), restarts a
//! held unit whose task ended, releases the units above its fair share, and tries to claim
//! unheld ones up to it. A graceful release (a rebalance, a shutdown) stops the unit's
//! task, unlocks it and NOTIFYs, and every replica polls at once on that notification.
//!
//! The lease connection lost, a heartbeat failed for lease − margin, or the fence broken
//! after a freeze: every unit is stopped and awaited (a task that does not stop within
//! the lease is aborted, which each unit survives as it survives a crash), the connection
//! is dropped (the server frees its locks), and the loop connects and claims again.
//!
//! On SQLite, [`Member::run_local`] runs every unit under the same runner with an unleased
//! fence: one process does everything, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgRow};
use sea_orm::sqlx::{self, Connection as _, Row as _};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::fence::{LeaseClock, fence_after, heartbeat_every};
use super::observe::{self, HOLDERS_SQL, Holding, NODES_SQL, NodeSeen, Snapshot};
use super::{Fence, Kind, NAMESPACE, NodeId, RELEASE_CHANNEL, Roles, Unit, fair_share};
use crate::supervise::{Failure, TaskHealth};

/// One run of a unit: ends when its fence is released, or with the failure that ended it.
pub type UnitRun = BoxFuture<'static, Result<(), Failure>>;

/// Starts a run of a unit under a fence.
pub type Runner = Arc<dyn Fn(Unit, Fence) -> UnitRun + Send + Sync>;

/// Told the units nobody holds, after each look (readiness).
pub type Coverage = Arc<dyn Fn(&[String]) + Send + Sync>;

/// How far this replica serves, as it knows it: `(position, lag)` of `observe::Progress`.
pub type Serving = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<(i64, i64)>> + Send + Sync>;

/// How often a replica reports how far it serves.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// First delay before a unit whose run ended is started again; doubles up to 2 s.
const UNIT_BACKOFF: Duration = Duration::from_millis(50);

/// What this replica knows of the cluster, for `/metrics`, `/readyz` and the `cluster`
/// query.
#[derive(Default)]
pub struct ClusterState {
    inner: Mutex<Seen>,
}

/// The latest view of the cluster from this replica.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The units this replica holds, since when.
    pub held: BTreeMap<String, DateTime<Utc>>,
    /// The units nobody held at the last look.
    pub unheld: Vec<String>,
    /// Time since the last successful heartbeat was sent, at the last look.
    pub lease_age: Option<Duration>,
    /// Whether this replica stopped its units because its lease may be gone.
    pub fenced: bool,
    /// When the last look succeeded.
    pub at: Option<DateTime<Utc>>,
    /// How many other replicas were alive at the last look; `None` when not known (not
    /// looked yet, or the lease is lost).
    pub others_alive: Option<usize>,
}

impl ClusterState {
    pub fn seen(&self) -> Seen {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the last look found no other replica alive: then nobody needs this one's
    /// writer hints (ADR 0013).
    pub fn alone(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .others_alive
            == Some(0)
    }

    fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// A replica's member of the cluster.
pub struct Member {
    pub url: String,
    pub node: NodeId,
    pub roles: Roles,
    pub lease: Duration,
    /// Every unit of the service (those of other roles too: readiness checks them all).
    pub units: Vec<Unit>,
    pub runner: Runner,
    pub state: Arc<ClusterState>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Told whether every unit is held by someone (readiness).
    pub coverage: Coverage,
    /// How far this replica serves, reported in its row every [`REPORT_EVERY`].
    pub serving: Serving,
    /// A lease connection opened at start-up ([`Member::preconnect`]), and when.
    pub preconnected: Mutex<Option<(PgConnection, Instant)>>,
}

/// A unit this replica runs.
struct Held {
    since: DateTime<Utc>,
    fence: Fence,
    task: JoinHandle<Result<(), Failure>>,
    backoff: Duration,
    /// When to start it again after its run ended.
    restart_at: Option<Instant>,
}

/// Why a session on one lease connection ended.
enum End {
    /// Shutdown: units released gracefully.
    Stopped,
    /// A unit asked to stop the service (an injected fault).
    Stop(anyhow::Error),
    /// The lease is gone or may be: reconnect.
    Lost(anyhow::Error),
}

/// Which units to let go and which to try to claim, per kind: at most the fair share
/// of each kind this replica has the role for, none of the others.
pub fn plan(
    roles: Roles,
    units: &[Unit],
    snapshot: &Snapshot,
    held: &BTreeSet<Unit>,
) -> (Vec<Unit>, Vec<Unit>) {
    let (mut release, mut claim) = (Vec::new(), Vec::new());
    for kind in Kind::ALL {
        let of_kind: Vec<&Unit> = units.iter().filter(|u| u.kind() == kind).collect();
        let mine: Vec<&Unit> = held.iter().filter(|u| u.kind() == kind).collect();
        if !roles.claims(kind) {
            release.extend(mine.into_iter().cloned());
            continue;
        }
        // This replica is alive even if its own connection is not in the snapshot yet.
        let share = fair_share(of_kind.len(), snapshot.live(kind).max(1));
        if mine.len() > share {
            release.extend(
                mine.into_iter()
                    .rev()
                    .take(held_excess(share, held, kind))
                    .cloned(),
            );
            continue;
        }
        let room = share - mine.len();
        claim.extend(
            of_kind
                .into_iter()
                .filter(|u| !held.contains(*u) && snapshot.holder(u).is_none())
                .take(room)
                .cloned(),
        );
    }
    (release, claim)
}

fn held_excess(share: usize, held: &BTreeSet<Unit>, kind: Kind) -> usize {
    held.iter()
        .filter(|u| u.kind() == kind)
        .count()
        .saturating_sub(share)
}

impl Member {
    /// Runs the units of a single process (SQLite): every unit, unleased, restarted when
    /// its run ends, until `stop`.
    pub async fn run_local(
        self: Arc<Self>,
        up: TaskHealth,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), Failure> {
        let mut held: BTreeMap<Unit, Held> = BTreeMap::new();
        for unit in &self.units {
            let fence = Fence::unleased();
            held.insert(unit.clone(), self.start(unit, fence));
        }
        self.publish(&held, &[], None, false);
        (self.coverage)(&[]);
        let result = loop {
            up.ready();
            if let Err(e) = self.tend(&mut held) {
                break Err(Failure::Stop(e));
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break Ok(()),
                _ = tokio::time::sleep(heartbeat_every(self.lease)) => {}
            }
        };
        for (_, unit) in std::mem::take(&mut held) {
            self.stop_unit(unit).await;
        }
        result
    }

    /// Runs this replica's membership on PostgreSQL until `stop`: connects its lease,
    /// claims and balances, reconnects after a loss.
    pub async fn run(
        self: Arc<Self>,
        up: TaskHealth,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), Failure> {
        let wake = Arc::new(Notify::new());
        let listener = AbortOnDrop(tokio::spawn(listen(self.url.clone(), wake.clone())));
        let mut backoff = Duration::from_millis(100);
        let ended = loop {
            if *stop.borrow() {
                break Ok(());
            }
            match self.session(&up, &mut stop, &wake).await {
                End::Stopped => break Ok(()),
                End::Stop(e) => break Err(Failure::Stop(e)),
                End::Lost(e) => {
                    tracing::warn!(
                        node = %self.node,
                        error = format!("{e:#}"),
                        "cluster lease lost: every unit stopped; connecting again"
                    );
                    self.publish(&BTreeMap::new(), &[], None, true);
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => break Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        };
        drop(listener);
        ended
    }

    /// Opens the lease connection ahead of [`Member::run`] (at start-up, so that the first
    /// claims do not wait for a connection). Optional: `run` connects when it must.
    pub async fn preconnect(&self) -> anyhow::Result<()> {
        let ready = self.connect().await?;
        *self.preconnected.lock().unwrap_or_else(|e| e.into_inner()) = Some(ready);
        Ok(())
    }

    /// A new lease connection, and when its first round trip was sent.
    async fn connect(&self) -> anyhow::Result<(PgConnection, Instant)> {
        let sent = Instant::now();
        match tokio::time::timeout(fence_after(self.lease), async {
            anyhow::Ok(PgConnection::connect_with(&self.options()?).await?)
        })
        .await
        {
            Ok(Ok(conn)) => {
                tracing::info!(node = %self.node, roles = %self.roles, lease_ms = self.lease.as_millis() as u64, "cluster lease connection open");
                Ok((conn, sent))
            }
            Ok(Err(e)) => Err(e.context("opening the lease connection")),
            Err(_) => Err(anyhow::anyhow!("opening the lease connection timed out")),
        }
    }

    fn options(&self) -> anyhow::Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(&self.url)?
            .application_name(&self.node.application_name())
            .options([
                // The lease: the server ends this session, and frees its locks, once it
                // has been idle (no heartbeat) for this long.
                ("idle_session_timeout", self.lease.as_millis().to_string()),
                // A heartbeat never queues behind a lock for longer than the fence.
                (
                    "statement_timeout",
                    fence_after(self.lease).as_millis().to_string(),
                ),
            ]))
    }

    /// One lease connection, from connect to loss or shutdown.
    async fn session(
        &self,
        up: &TaskHealth,
        stop: &mut watch::Receiver<bool>,
        wake: &Notify,
    ) -> End {
        let limit = fence_after(self.lease);
        let preconnected = self
            .preconnected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let (mut conn, sent) = match preconnected {
            Some(ready) => ready,
            None => match self.connect().await {
                Ok(ready) => ready,
                Err(e) => return End::Lost(e),
            },
        };
        let mut registered = false;
        let mut reported: Option<Instant> = None;
        let clock = Arc::new(LeaseClock::new(self.lease, sent));
        let mut held: BTreeMap<Unit, Held> = BTreeMap::new();
        let end = loop {
            // The look is the heartbeat: it succeeded, so the server saw this session
            // active after `sent`.
            let sent = Instant::now();
            let snapshot = match tokio::time::timeout(limit, look(&mut conn)).await {
                Ok(Ok(snapshot)) => snapshot,
                Ok(Err(e)) => break End::Lost(e),
                Err(_) => break End::Lost(anyhow::anyhow!("the heartbeat timed out")),
            };
            clock.beat(sent);
            if !clock.valid_at(Instant::now()) {
                // Frozen between sending and now (SIGSTOP, a pause): the server may have
                // freed the locks meanwhile.
                break End::Lost(anyhow::anyhow!("this replica was paused past its fence"));
            }
            if let Err(e) = self.tend(&mut held) {
                break End::Stop(e);
            }
            let mine: BTreeSet<Unit> = held.keys().cloned().collect();
            let (release, claim) = plan(self.roles, &self.units, &snapshot, &mine);
            let mut failed = None;
            for unit in release {
                if let Some(h) = held.remove(&unit) {
                    tracing::info!(node = %self.node, unit = unit.name(), "releasing a unit to balance the cluster");
                    self.stop_unit(h).await;
                    if let Err(e) = unlock(&mut conn, &unit).await {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                break End::Lost(e);
            }
            // One round trip tries every lock; each unit won starts at once, and the claims
            // are recorded (for `since`) after.
            match try_lock_all(&mut conn, &claim).await {
                Ok(won) => {
                    for unit in &won {
                        tracing::info!(node = %self.node, unit = unit.name(), "claimed a unit");
                        let fence = Fence::leased(clock.clone());
                        held.insert(unit.clone(), self.start(unit, fence));
                    }
                    if let Err(e) = record_claims(&mut conn, &won, &self.node).await {
                        failed = Some(e);
                    }
                }
                Err(e) => failed = Some(e),
            }
            // The node's roles, once per connection, after its first claims (which must
            // not wait for a commit): until then the others count it for every kind.
            if failed.is_none() && !registered {
                match register(&mut conn, &self.node, self.roles).await {
                    Ok(()) => registered = true,
                    Err(e) => failed = Some(e),
                }
            }
            if failed.is_none()
                && registered
                && reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY)
            {
                // Measured through the pool: never for longer than half a beat, so that a
                // busy pool cannot hold the heartbeat back (the report waits a round).
                let half = heartbeat_every(self.lease) / 2;
                match tokio::time::timeout(half, (self.serving)()).await {
                    Ok(Ok((position, lag))) => {
                        match report(&mut conn, &self.node, position, lag).await {
                            Ok(()) => reported = Some(Instant::now()),
                            Err(e) => failed = Some(e),
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(
                            error = format!("{e:#}"),
                            "could not measure how far this replica serves"
                        );
                    }
                    Err(_) => {}
                }
            }
            if let Some(e) = failed {
                break End::Lost(e);
            }
            let unheld: Vec<String> = snapshot
                .unheld(&self.units)
                .into_iter()
                .filter(|u| !held.contains_key(*u))
                .map(Unit::name)
                .collect();
            (self.coverage)(&unheld);
            self.publish(&held, &unheld, clock.age(Instant::now()), false);
            let others = snapshot
                .nodes
                .iter()
                .filter(|n| n.alive && n.id != self.node.as_str())
                .count();
            self.state.update(|seen| seen.others_alive = Some(others));
            up.ready();
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break End::Stopped,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(heartbeat_every(self.lease)) => {}
            }
        };
        // Every unit stops before anything else: after a loss they must not commit, and on
        // shutdown they finish their step.
        let units: Vec<(Unit, Held)> = std::mem::take(&mut held).into_iter().collect();
        for (_, h) in &units {
            h.fence.release();
        }
        let mut released = Vec::new();
        for (unit, h) in units {
            self.stop_unit(h).await;
            released.push(unit);
        }
        self.publish(&BTreeMap::new(), &[], None, matches!(end, End::Lost(_)));
        match &end {
            End::Stopped | End::Stop(_) => {
                // Let the others take over at once rather than at their next poll.
                for unit in &released {
                    let _ = unlock(&mut conn, unit).await;
                }
                let _ = conn.close().await;
            }
            End::Lost(_) => {
                clock.expire();
                // Dropping the socket ends the session: the server frees what it held.
                drop(conn);
            }
        }
        end
    }

    fn start(&self, unit: &Unit, fence: Fence) -> Held {
        Held {
            since: Utc::now(),
            task: tokio::spawn((self.runner)(unit.clone(), fence.clone())),
            fence,
            backoff: UNIT_BACKOFF,
            restart_at: None,
        }
    }

    /// Restarts the held units whose run ended (after a backoff); an error when one asks
    /// for the whole service to stop.
    fn tend(&self, held: &mut BTreeMap<Unit, Held>) -> anyhow::Result<()> {
        let now = Instant::now();
        for (unit, h) in held.iter_mut() {
            if let Some(at) = h.restart_at {
                if now >= at {
                    h.restart_at = None;
                    h.task = tokio::spawn((self.runner)(unit.clone(), h.fence.clone()));
                }
                continue;
            }
            if !h.task.is_finished() || h.fence.is_released() {
                continue;
            }
            let finished = std::mem::replace(&mut h.task, tokio::spawn(async { Ok(()) }));
            let outcome = futures_util::FutureExt::now_or_never(finished);
            let error = match outcome {
                Some(Ok(Ok(()))) => None,
                Some(Ok(Err(Failure::Stop(e)))) => {
                    return Err(e.context(format!("unit {}", unit.name())));
                }
                Some(Ok(Err(Failure::Restart(e)))) => Some(e),
                Some(Err(e)) => Some(anyhow::anyhow!("it panicked or was cancelled: {e}")),
                None => None,
            };
            match error {
                Some(e) => tracing::error!(
                    unit = unit.name(),
                    error = format!("{e:#}"),
                    "a unit's run failed; starting it again"
                ),
                None => {
                    tracing::debug!(unit = unit.name(), "a unit's run ended; starting it again")
                }
            }
            h.restart_at = Some(now + h.backoff);
            h.backoff = (h.backoff * 2).min(Duration::from_secs(2));
        }
        Ok(())
    }

    /// Tells a unit to stop and waits for it (at most the lease; then it is aborted,
    /// which a unit survives as it survives a crash).
    async fn stop_unit(&self, held: Held) {
        held.fence.release();
        let mut task = held.task;
        if tokio::time::timeout(self.lease, &mut task).await.is_err() {
            tracing::warn!("a unit did not stop in time; aborting it");
            task.abort();
            let _ = task.await;
        }
    }

    fn publish(
        &self,
        held: &BTreeMap<Unit, Held>,
        unheld: &[String],
        lease_age: Option<Duration>,
        fenced: bool,
    ) {
        self.metrics.cluster(
            self.node.as_str(),
            held.len() as i64,
            lease_age.map(|a| a.as_secs_f64()),
            fenced,
        );
        self.state.update(|seen| {
            if fenced {
                seen.others_alive = None;
            }
            seen.held = held.iter().map(|(u, h)| (u.name(), h.since)).collect();
            seen.unheld = unheld.to_vec();
            seen.lease_age = lease_age;
            seen.fenced = fenced;
            seen.at = Some(Utc::now());
        });
    }
}

/// Who is alive and who holds what, read on the lease connection.
async fn look(conn: &mut PgConnection) -> anyhow::Result<Snapshot> {
    let nodes = sqlx::query(NODES_SQL)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row: &PgRow| {
            Ok(NodeSeen {
                id: row.try_get("node_id")?,
                roles: row
                    .try_get::<Option<String>, _>("roles")?
                    .and_then(|r| r.parse().ok()),
                since: row.try_get("since")?,
                alive: row.try_get("alive")?,
                progress: observe::Progress::of(
                    row.try_get("position")?,
                    row.try_get("lag")?,
                    row.try_get("reported_at")?,
                ),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let holders = sqlx::query(HOLDERS_SQL)
        .bind(i64::from(NAMESPACE))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row: &PgRow| {
            let holder: String = row.try_get("holder")?;
            Ok((
                row.try_get::<i64, _>("objid")?,
                Holding {
                    node: observe::node_of(&holder),
                    since: row.try_get("since")?,
                },
            ))
        })
        .collect::<Result<BTreeMap<_, _>, sqlx::Error>>()?;
    Ok(Snapshot { nodes, holders })
}

/// Tries to claim `unit`; records the claim's time when it is ours.
/// Records this node and its roles (which kinds of unit it counts for).
async fn register(conn: &mut PgConnection, node: &NodeId, roles: Roles) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO cluster_nodes (node_id, roles, since) VALUES ($1, $2, now()) \
         ON CONFLICT (node_id) DO UPDATE SET roles = EXCLUDED.roles, since = EXCLUDED.since",
    )
    .bind(node.as_str())
    .bind(roles.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records how far this node serves (its lag, for the `cluster` query and the CLI).
async fn report(
    conn: &mut PgConnection,
    node: &NodeId,
    position: i64,
    lag: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE cluster_nodes SET position = $2, lag = $3, reported_at = now() \
         WHERE node_id = $1",
    )
    .bind(node.as_str())
    .bind(position)
    .bind(lag)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Tries to claim each of `units` in one statement; the units won.
async fn try_lock_all(conn: &mut PgConnection, units: &[Unit]) -> anyhow::Result<Vec<Unit>> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<i32> = units.iter().map(Unit::key).collect();
    let won: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_try_advisory_lock($1, k) FROM unnest($2::int4[]) WITH ORDINALITY AS t(k, n) \
         ORDER BY n",
    )
    .bind(NAMESPACE)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    Ok(units
        .iter()
        .zip(won)
        .filter(|(_, won)| *won)
        .map(|(unit, _)| unit.clone())
        .collect())
}

/// Records since when this node holds `units` (what `pg_locks` cannot say).
async fn record_claims(
    conn: &mut PgConnection,
    units: &[Unit],
    node: &NodeId,
) -> anyhow::Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = units.iter().map(Unit::name).collect();
    let objids: Vec<i64> = units.iter().map(Unit::objid).collect();
    sqlx::query(
        "INSERT INTO cluster_claims (unit, objid, node_id, since) \
         SELECT u, o, $3, now() FROM unnest($1::text[], $2::int8[]) AS t(u, o) \
         ON CONFLICT (unit) DO UPDATE SET objid = EXCLUDED.objid, node_id = EXCLUDED.node_id, \
         since = EXCLUDED.since",
    )
    .bind(&names)
    .bind(&objids)
    .bind(node.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Lets go of `unit` and tells the other replicas, which poll at once.
async fn unlock(conn: &mut PgConnection, unit: &Unit) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(NAMESPACE)
        .bind(unit.key())
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(RELEASE_CHANNEL)
        .bind(unit.name())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Wakes the member whenever another replica releases a unit. A hint only: the poll
/// finds every unheld unit anyway, so a lost notification costs one poll interval.
async fn listen(url: String, wake: Arc<Notify>) {
    loop {
        let Err(e) = listen_once(&url, &wake).await;
        tracing::debug!(error = %e, "the cluster's release listener failed; listening again");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_once(url: &str, wake: &Notify) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(RELEASE_CHANNEL).await?;
    loop {
        listener.recv().await?;
        wake.notify_one();
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Partition;
    use crate::cluster::observe::{Holding, NodeSeen};

    fn units() -> Vec<Unit> {
        Unit::all(&["catalog", "cart", "orders", "dashboard"], 8, false)
    }

    fn nodes(n: usize) -> Vec<NodeSeen> {
        (0..n)
            .map(|i| NodeSeen {
                id: format!("n{i}"),
                roles: Some(Roles::default()),
                since: Utc::now(),
                alive: true,
                progress: None,
            })
            .collect()
    }

    /// What a replica sees when `n` replicas are alive and nobody holds anything.
    fn seen_by(n: usize) -> Snapshot {
        Snapshot {
            nodes: nodes(n),
            ..Snapshot::default()
        }
    }

    fn held_by(snapshot: &mut Snapshot, units: &[Unit], node: &str) {
        for u in units {
            snapshot.holders.insert(
                u.objid(),
                Holding {
                    node: node.to_owned(),
                    since: None,
                },
            );
        }
    }

    #[test]
    fn a_lone_replica_claims_every_unit() {
        let snapshot = seen_by(1);
        let (release, claim) = plan(Roles::default(), &units(), &snapshot, &BTreeSet::new());
        assert!(release.is_empty());
        assert_eq!(claim.len(), 12);
    }

    #[test]
    fn a_replica_above_its_share_releases_the_extras_when_others_appear() {
        let all = units();
        let mut snapshot = seen_by(3);
        held_by(&mut snapshot, &all, "n0");
        let mine: BTreeSet<Unit> = all.iter().cloned().collect();
        let (release, claim) = plan(Roles::default(), &all, &snapshot, &mine);
        // 4 projectors over 3: keep 2; 8 partitions over 3: keep 3.
        assert_eq!(
            release
                .iter()
                .filter(|u| u.kind() == Kind::Projector)
                .count(),
            2
        );
        assert_eq!(release.iter().filter(|u| u.kind() == Kind::Saga).count(), 5);
        assert!(claim.is_empty());
    }

    #[test]
    fn a_newcomer_claims_only_unheld_units_up_to_its_share() {
        let all = units();
        let mut snapshot = seen_by(2);
        // n0 holds half of each kind.
        let n0: Vec<Unit> = vec![
            Unit::Projector("catalog"),
            Unit::Projector("cart"),
            Unit::Saga(Partition { index: 0, count: 8 }),
            Unit::Saga(Partition { index: 1, count: 8 }),
            Unit::Saga(Partition { index: 2, count: 8 }),
            Unit::Saga(Partition { index: 3, count: 8 }),
        ];
        held_by(&mut snapshot, &n0, "n0");
        let (release, claim) = plan(Roles::default(), &all, &snapshot, &BTreeSet::new());
        assert!(release.is_empty());
        assert_eq!(claim.len(), 6);
        assert!(claim.iter().all(|u| !n0.contains(u)));
    }

    #[test]
    fn an_api_only_replica_claims_nothing_and_is_not_counted_for_the_share() {
        let all = units();
        let mut live = nodes(2);
        live[1].roles = Some("api".parse().expect("a role"));
        let snapshot = Snapshot {
            nodes: live,
            ..Snapshot::default()
        };
        let api: Roles = "api".parse().expect("a role");
        let (release, claim) = plan(api, &all, &snapshot, &BTreeSet::new());
        assert!(release.is_empty() && claim.is_empty());
        // The other one, alone with the roles, takes everything.
        let (_, claim) = plan(Roles::default(), &all, &snapshot, &BTreeSet::new());
        assert_eq!(claim.len(), 12);
    }
}
