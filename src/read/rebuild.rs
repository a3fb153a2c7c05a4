//! Rebuild and verify: a view replayed from the log into a scratch copy, by the relay's
//! own projection code (`Projection::apply`, never a second implementation), reading the
//! log in large ordered pages.
//!
//! The projection code writes fixed table names, so the scratch copy is a namespace where
//! those names are the scratch tables: on PostgreSQL a schema of its own (`rebuild_…`,
//! tables made `LIKE` the live ones, reached through a connection whose `search_path` is
//! that schema alone); on SQLite a scratch database file holding the live tables' DDL.
//!
//! - **Rebuild** replays the log up to the relay's safe horizon while the live view keeps
//!   serving, then, holding the view's checkpoint row (`checkpoints::lock`), replays the
//!   few events the relay folded meanwhile and replaces the live rows with the scratch rows
//!   in one transaction, with the checkpoint. Readers see the old view until that commit
//!   and the new one after it, never a mix or an empty view.
//! - **Verify** replays up to the live checkpoint, holding it still, and compares the two
//!   copies row by row in the database (a set difference of each row as JSON).
//!
//! A swap records the keys it changed in `rebuild_notices` (PostgreSQL), in its own
//! transaction, so every replica's subscribers hear of it (`read::doorbell`), also when
//! the rebuild ran from the command line.
//!
//! Here: the reports and progress, the `Replayer` that runs both, and the admin's
//! registry of running rebuilds. Its parts: `replay` (the log into the scratch copy),
//! `scratch` (the scratch copy's place on each backend) and `compare` (the live side:
//! the swap and the row-by-row comparison).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
    TransactionTrait,
};

use super::checkpoints::{self, Hold};
use super::{ChangeKey, Projection, ViewTable};
use crate::log::reader::Span;
use crate::write::{WriteGate, begin_write};

mod compare;
mod replay;
mod scratch;

use compare::LiveSide;
use replay::Run;
use scratch::{Place, Scratch};

/// Events read from the log per page, and folded into the scratch copy per transaction.
/// A page's rows are written once per page however many of its events touch them, so a
/// larger page writes less: 20 000 against 5 000 made every view's rebuild 1.2–1.4× faster
/// on both databases, for 80–100 MiB more at its peak (two pages are held: one folding,
/// the next being read; BENCHMARKS.md, rebuild, 2026-11-28 03:31).
pub const PAGE: u64 = 20_000;

/// How far behind the log a replay may still be when it goes on to the swap: the rest is
/// replayed while holding the view's checkpoint row, which holds the relay's fold of that
/// view, so it is kept small.
const SWAP_BEHIND: i64 = 5_000;

/// How many differing rows a verify reports in full.
pub const REPORTED_DIFFERENCES: usize = 10;

/// Up to this many changed keys, a rebuild tells the live subscriptions which rows it
/// changed; beyond it, that the whole view may have.
pub const CHANGED_KEYS_LIMIT: usize = 10_000;

/// The rows a rebuild's swap changed in the live view, by their change keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Keys(Vec<String>),
    /// More than [`CHANGED_KEYS_LIMIT`].
    TooMany,
}

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No rebuild has run since the service started.
    Idle,
    /// Replaying the log into the scratch copy.
    Replaying,
    /// Catching up with the relay and replacing the live view.
    Swapping,
    Done,
    Failed,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// Progress of one rebuild or verify.
#[derive(Debug, Clone)]
pub struct Progress {
    pub name: &'static str,
    pub phase: Phase,
    /// Events replayed so far.
    pub done: u64,
    /// Events to replay (grows when the log grows during the rebuild).
    pub total: u64,
    /// The log position replayed so far.
    pub position: i64,
    pub elapsed: Duration,
    /// Rows of the view after the swap.
    pub rows: u64,
    pub error: Option<String>,
}

impl Progress {
    pub fn idle(name: &'static str) -> Self {
        Self {
            name,
            phase: Phase::Idle,
            done: 0,
            total: 0,
            position: 0,
            elapsed: Duration::ZERO,
            rows: 0,
            error: None,
        }
    }

    /// Events replayed per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }
}

/// One row that differs between the live view and the replay.
#[derive(Debug, Clone, PartialEq)]
pub struct RowDifference {
    pub table: &'static str,
    /// The row's primary key, as JSON.
    pub key: serde_json::Value,
    /// The live row, `None` when the live view lacks it.
    pub live: Option<serde_json::Value>,
    /// The replayed row, `None` when the replay has no such row.
    pub replayed: Option<serde_json::Value>,
}

/// What a verify found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub name: &'static str,
    /// The checkpoint both copies were compared at.
    pub position: i64,
    /// Rows of the replayed view.
    pub rows: u64,
    /// Rows that differ: live rows the replay lacks or has otherwise, plus replayed rows
    /// the live view lacks (a changed row counts once).
    pub differences: u64,
    /// The first differing rows by table and key.
    pub first: Vec<RowDifference>,
    pub elapsed: Duration,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.differences == 0
    }
}

/// What rebuild and verify need of the service: the views' database, its URL (to open
/// the scratch copy beside it), the log to replay and, in the server, the write gate.
#[derive(Clone)]
pub struct Replayer {
    pub db: DatabaseConnection,
    /// Where the log is read from: the same database, or on a read replica the write
    /// database (ADR 0016).
    pub log: DatabaseConnection,
    pub url: String,
    pub gate: Option<WriteGate>,
}

impl Replayer {
    /// The start of a rebuild or a verify: announced, with an empty scratch copy.
    async fn begin(
        &self,
        projection: &dyn Projection,
        report: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Result<(Instant, Progress, Scratch), DbErr> {
        let started = Instant::now();
        let progress = Progress {
            phase: Phase::Replaying,
            ..Progress::idle(projection.name())
        };
        report(&progress);
        let scratch = Scratch::create(&self.db, &self.url, projection).await?;
        Ok((started, progress, scratch))
    }

    /// Rebuilds `projection`'s view from the log and swaps it in. `horizon` says up to
    /// where the log is final (the relay's safe horizon); `report` hears each step.
    /// Returns the last progress (phase `Done`, with the checkpoint the view now has) and
    /// the keys of the rows the swap changed, for the live subscriptions to hear of.
    pub async fn rebuild<H, F>(
        &self,
        projection: &dyn Projection,
        horizon: H,
        report: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Result<(Progress, Changed), DbErr>
    where
        H: Fn() -> F + Send + Sync,
        F: std::future::Future<Output = Result<i64, DbErr>> + Send,
    {
        let (started, mut progress, scratch) = self.begin(projection, report).await?;
        let run = Run::new(&self.log, &scratch, projection, started, report);
        let outcome = async {
            // Replay while the live view serves; the log grows meanwhile, so go again
            // until what is left is small enough to replay while holding the view.
            loop {
                let target = horizon().await?;
                if target <= progress.position && progress.done > 0 {
                    break;
                }
                let behind = target - progress.position;
                run.replay(target, &mut progress).await?;
                if behind <= SWAP_BEHIND {
                    break;
                }
            }
            self.swap(&run, &scratch, &mut progress).await
        }
        .await;
        scratch.discard(&self.db).await;
        Ok(finished(progress, started, report, outcome?))
    }

    /// Rebuilds every one of `projections` from one reading of the log: each page is read
    /// once and folded into every view's scratch copy at once, each view its own events
    /// (the views want most of the same events: in the rebuild bench's shop the orders
    /// view reads 62 % of the log and the dashboard 85 %). Then each view swaps on its own, as
    /// [`rebuild`](Self::rebuild) does. A view whose fold or swap fails is left as it was
    /// and the others go on; one result per projection, in their order.
    pub async fn rebuild_all<H, F>(
        &self,
        projections: &[std::sync::Arc<dyn Projection>],
        horizon: H,
        report: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Vec<Result<(Progress, Changed), DbErr>>
    where
        H: Fn() -> F + Send + Sync,
        F: std::future::Future<Output = Result<i64, DbErr>> + Send,
    {
        let begun = futures_util::future::join_all(
            projections
                .iter()
                .map(|projection| self.begin(projection.as_ref(), report)),
        )
        .await;
        let mut views = Vec::new();
        let mut progress: Vec<Progress> = Vec::new();
        let mut failed: Vec<Option<DbErr>> = Vec::new();
        for (projection, begun) in projections.iter().zip(begun) {
            match begun {
                Ok((started, first, scratch)) => {
                    views.push((projection.as_ref(), started, scratch));
                    progress.push(first);
                    failed.push(None);
                }
                Err(e) => failed.push(Some(e)),
            }
        }
        let runs: Vec<Run<'_>> = views
            .iter()
            .map(|(projection, started, scratch)| {
                Run::new(&self.log, scratch, *projection, *started, report)
            })
            .collect();
        // Replay them all together while the live views serve, as `rebuild` does one.
        let mut outcomes: Vec<Option<Result<(), DbErr>>> = runs.iter().map(|_| None).collect();
        let mut at = 0;
        loop {
            let target = match horizon().await {
                Ok(target) => target,
                Err(e) => {
                    for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
                        *outcome = Some(Err(DbErr::Custom(format!("the safe horizon: {e}"))));
                    }
                    break;
                }
            };
            if target <= at && at > 0 {
                break;
            }
            let behind = target - at;
            replay::together(&runs, target, &mut progress, &mut outcomes).await;
            at = target;
            if behind <= SWAP_BEHIND || outcomes.iter().all(Option::is_some) {
                break;
            }
        }
        // Each view then catches up with its relay and swaps on its own.
        let swaps = runs
            .iter()
            .zip(views.iter())
            .zip(progress.iter_mut().zip(outcomes))
            .map(
                |((run, (_, started, scratch)), (progress, outcome))| async move {
                    let outcome = match outcome {
                        Some(Err(e)) => Err(e),
                        _ => self.swap(run, scratch, progress).await,
                    };
                    (progress.clone(), *started, outcome)
                },
            );
        let swapped = futures_util::future::join_all(swaps).await;
        for (_, _, scratch) in views {
            scratch.discard(&self.db).await;
        }
        let mut swapped = swapped.into_iter();
        failed
            .into_iter()
            .map(|failed| match failed {
                Some(e) => Err(e),
                None => {
                    let (progress, started, outcome) =
                        swapped.next().expect("one swap per view begun");
                    Ok(finished(progress, started, report, outcome?))
                }
            })
            .collect()
    }

    /// The swap: holding the view's checkpoint row, replays what the relay folded
    /// meanwhile, then replaces the live rows with the scratch rows and stores the
    /// checkpoint, in one transaction. Returns the keys of the rows it changed.
    async fn swap(
        &self,
        run: &Run<'_>,
        scratch: &Scratch,
        progress: &mut Progress,
    ) -> Result<Changed, DbErr> {
        let projection = run.projection;
        progress.phase = Phase::Swapping;
        progress.elapsed = run.started.elapsed();
        (run.report)(progress);
        let _gate = match &self.gate {
            Some(gate) => gate.enter_views().await,
            None => None,
        };
        let live = LiveSide::open(&self.db, &self.url, scratch).await?;
        let txn = loop {
            let txn = live.begin_write().await?;
            let stored = checkpoints::lock(&txn, projection.name(), Hold::Update).await?;
            if stored <= progress.position {
                break txn;
            }
            // The relay folded more meanwhile: replay that tail too. On SQLite the
            // swap's transaction also holds the attached scratch file, so let go of
            // it while the scratch copy is written, then look again.
            let held = if live.own {
                txn.rollback().await?;
                None
            } else {
                Some(txn)
            };
            run.replay(stored, progress).await?;
            if let Some(txn) = held {
                break txn;
            }
        };
        // What the swap changes, while both copies are there to compare.
        let mut changed = Some(BTreeSet::new());
        for table in projection.tables() {
            let Some(keys) = &mut changed else { break };
            let room = CHANGED_KEYS_LIMIT - keys.len();
            match live.changed_keys(&txn, scratch, table, room).await? {
                Some(found) => keys.extend(found),
                None => changed = None,
            }
        }
        let mut rows = 0;
        for table in projection.tables() {
            let name = quote(table.name);
            txn.execute_unprepared(&format!("DELETE FROM {name}"))
                .await?;
            let columns = live.columns(&txn, table.name).await?.join(", ");
            rows += txn
                .execute_unprepared(&format!(
                    "INSERT INTO {name} ({columns}) SELECT {columns} FROM {}",
                    scratch.qualified(table.name)
                ))
                .await?
                .rows_affected();
        }
        checkpoints::store(&txn, projection.name(), progress.position).await?;
        // Every replica re-sends the changed keys (PostgreSQL), this process's and any
        // server's when the rebuild runs from the command line (ADR 0013).
        super::doorbell::notice_rebuild(&txn, projection.name(), changed.as_ref()).await?;
        txn.commit().await?;
        live.close().await;
        progress.rows = rows;
        Ok(changed.map_or(Changed::TooMany, |keys| {
            Changed::Keys(keys.into_iter().collect())
        }))
    }

    /// Replays `projection`'s view into a scratch copy up to the live checkpoint and
    /// compares the two, row by row.
    pub async fn verify(
        &self,
        projection: &dyn Projection,
        report: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Result<VerifyReport, DbErr> {
        let (started, mut progress, scratch) = self.begin(projection, report).await?;
        let run = Run::new(&self.log, &scratch, projection, started, report);
        let outcome = async {
            // Most of the replay without holding anything; the tail holding the view.
            let stored = checkpoints::load_one(&self.db, projection.name()).await?;
            run.replay(stored, &mut progress).await?;
            let live = LiveSide::open(&self.db, &self.url, &scratch).await?;
            let txn = live.begin_read().await?;
            let at = checkpoints::lock(&txn, projection.name(), Hold::Share).await?;
            if at > progress.position {
                run.replay(at, &mut progress).await?;
            }
            let mut rows = 0;
            let mut differences = 0;
            let mut first = Vec::new();
            for table in projection.tables() {
                let diff = live.diff(&txn, &scratch, table).await?;
                rows += diff.rows;
                differences += diff.count;
                first.extend(diff.first);
            }
            txn.commit().await?;
            live.close().await;
            first.truncate(REPORTED_DIFFERENCES);
            Ok::<_, DbErr>(VerifyReport {
                name: projection.name(),
                position: at,
                rows,
                differences,
                first,
                elapsed: started.elapsed(),
            })
        }
        .await;
        scratch.discard(&self.db).await;
        outcome
    }
}

/// How many keys a swap changed, when it counted them.
/// A rebuild's last progress, `Done`, reported, with what its swap changed.
fn finished(
    mut progress: Progress,
    started: Instant,
    report: &(dyn Fn(&Progress) + Send + Sync),
    changed: Changed,
) -> (Progress, Changed) {
    progress.phase = Phase::Done;
    progress.elapsed = started.elapsed();
    report(&progress);
    (progress, changed)
}

fn changed_count(changed: &Changed) -> Option<usize> {
    match changed {
        Changed::Keys(keys) => Some(keys.len()),
        Changed::TooMany => None,
    }
}

/// An SQL identifier, quoted.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Why a rebuild could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("unknown projection {0:?} (known: {1})")]
    Unknown(String, String),
    #[error("projection {0} is being rebuilt already")]
    Running(&'static str),
}

/// The server's rebuilds and verifies: one rebuild at a time per projection, run in the
/// background, its progress watched by `rebuildProgress` and shown by `projections`.
pub struct Rebuilds {
    replayer: Replayer,
    projections: Vec<std::sync::Arc<dyn Projection>>,
    progress: std::collections::HashMap<&'static str, tokio::sync::watch::Sender<Progress>>,
    statuses: std::sync::Arc<super::status::Statuses>,
    checkpoints: std::sync::Arc<super::checkpoints::Checkpoints>,
    /// The relay's safe horizon.
    horizon: tokio::sync::watch::Receiver<i64>,
    /// Told which rows a swap changed, so that subscribers see them.
    live: std::sync::Arc<super::live::LiveViews>,
}

impl Rebuilds {
    pub fn new(
        replayer: Replayer,
        projections: Vec<std::sync::Arc<dyn Projection>>,
        statuses: std::sync::Arc<super::status::Statuses>,
        checkpoints: std::sync::Arc<super::checkpoints::Checkpoints>,
        horizon: tokio::sync::watch::Receiver<i64>,
        live: std::sync::Arc<super::live::LiveViews>,
    ) -> Self {
        let progress = projections
            .iter()
            .map(|p| {
                (
                    p.name(),
                    tokio::sync::watch::Sender::new(Progress::idle(p.name())),
                )
            })
            .collect();
        Self {
            replayer,
            projections,
            progress,
            statuses,
            checkpoints,
            horizon,
            live,
        }
    }

    /// The projection called `name`.
    pub fn projection(&self, name: &str) -> Result<std::sync::Arc<dyn Projection>, StartError> {
        self.projections
            .iter()
            .find(|p| p.name() == name)
            .cloned()
            .ok_or_else(|| {
                StartError::Unknown(
                    name.to_owned(),
                    self.projections
                        .iter()
                        .map(|p| p.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
    }

    /// Progress of the latest rebuild of `name`: its current state, then every step.
    pub fn watch(&self, name: &str) -> Result<tokio::sync::watch::Receiver<Progress>, StartError> {
        let projection = self.projection(name)?;
        Ok(self.progress[projection.name()].subscribe())
    }

    /// Starts rebuilding `name` in the background; its first progress.
    pub fn start(self: &std::sync::Arc<Self>, name: &str) -> Result<Progress, StartError> {
        let projection = self.projection(name)?;
        let name = projection.name();
        let tx = &self.progress[name];
        let mut started = false;
        tx.send_if_modified(|p| {
            if p.phase.is_terminal() || p.phase == Phase::Idle {
                *p = Progress {
                    phase: Phase::Replaying,
                    ..Progress::idle(name)
                };
                started = true;
            }
            started
        });
        if !started {
            return Err(StartError::Running(name));
        }
        let first = tx.borrow().clone();
        let this = self.clone();
        tokio::spawn(async move {
            this.statuses.set_rebuilding(name, true);
            let tx = &this.progress[name];
            let report = |p: &Progress| {
                tx.send_replace(p.clone());
            };
            let horizon = this.horizon.clone();
            let outcome = this
                .replayer
                .rebuild(
                    projection.as_ref(),
                    || {
                        let at = *horizon.borrow();
                        async move { Ok(at) }
                    },
                    &report,
                )
                .await;
            match outcome {
                Ok((done, changed)) => {
                    this.checkpoints.changed(name, done.position);
                    if this.statuses.is_failed(name) {
                        this.statuses.recovered(name);
                    } else {
                        this.statuses.set_rebuilding(name, false);
                        this.statuses.advanced(name);
                    }
                    tracing::info!(
                        projection = name,
                        events = done.done,
                        rows = done.rows,
                        position = done.position,
                        seconds = done.elapsed.as_secs_f64(),
                        changed = ?changed_count(&changed),
                        "projection rebuilt"
                    );
                    // After the checkpoint moved: subscribers re-read up to it. On
                    // PostgreSQL the swap's notice reaches every replica's doorbell
                    // listener, this one's too, which does it there (once).
                    if this.replayer.db.get_database_backend() != DbBackend::Postgres {
                        this.live.rebuilt(name, changed);
                    }
                }
                Err(e) => {
                    this.statuses.set_rebuilding(name, false);
                    tracing::error!(projection = name, error = %e, "projection rebuild failed; the live view is unchanged");
                    tx.send_modify(|p| {
                        p.phase = Phase::Failed;
                        p.error = Some(e.to_string());
                    });
                }
            }
        });
        Ok(first)
    }

    /// Replays `name` into a scratch copy and compares it with the live view. The work
    /// runs in a task of its own, so a caller that goes away (a request timing out) does
    /// not leave the scratch copy behind.
    pub async fn verify(&self, name: &str) -> Result<Result<VerifyReport, DbErr>, StartError> {
        let projection = self.projection(name)?;
        let replayer = self.replayer.clone();
        let task = tokio::spawn(async move { replayer.verify(projection.as_ref(), &|_| {}).await });
        Ok(task
            .await
            .unwrap_or_else(|e| Err(DbErr::Custom(format!("the verify task failed: {e}")))))
    }
}
