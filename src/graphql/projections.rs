//! Operating the read views (admin): rebuild one from the log while it keeps serving,
//! verify one against a fresh replay, follow a rebuild's progress, and follow every
//! projection's status as it changes (what a console shows without polling).

use std::time::Duration;

use async_graphql::{Context, Enum, Json, Object, SimpleObject, Subscription};
use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};

use super::audit::ProjectionStatus;
use super::error::IntoGraphql;
use super::live::{Live, limits};
use super::scalars::Position;
use super::{admin, services};
use crate::error::AppError;
use crate::read::rebuild::{self, Phase, StartError};

#[derive(Default)]
pub struct ProjectionsMutation;

/// Where a rebuild is.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum RebuildPhase {
    /// No rebuild has run since the service started.
    Idle,
    /// Replaying the log into a shadow copy; the live view keeps serving.
    Replaying,
    /// Catching up with the last events and swapping the shadow copy in.
    Swapping,
    /// The rebuilt view is live.
    Done,
    /// The rebuild stopped (see `error`); the live view is unchanged.
    Failed,
}

/// Progress of a projection's rebuild.
#[derive(SimpleObject, Clone)]
pub struct RebuildProgress {
    pub name: String,
    pub phase: RebuildPhase,
    /// Events replayed so far.
    pub events_done: i64,
    /// Events to replay; grows when the log grows during the rebuild.
    pub events_total: i64,
    /// Events replayed per second.
    pub events_per_second: f64,
    /// The log position replayed so far; when DONE, the rebuilt view's checkpoint.
    pub position: Position,
    pub elapsed_millis: i64,
    /// Rows of the view after the swap (DONE only).
    pub rows: i64,
    /// Why the rebuild stopped (FAILED only).
    pub error: Option<String>,
}

impl From<&rebuild::Progress> for RebuildProgress {
    fn from(p: &rebuild::Progress) -> Self {
        Self {
            name: p.name.to_owned(),
            phase: match p.phase {
                Phase::Idle => RebuildPhase::Idle,
                Phase::Replaying => RebuildPhase::Replaying,
                Phase::Swapping => RebuildPhase::Swapping,
                Phase::Done => RebuildPhase::Done,
                Phase::Failed => RebuildPhase::Failed,
            },
            events_done: p.done as i64,
            events_total: p.total as i64,
            events_per_second: p.rate(),
            position: Position(p.position),
            elapsed_millis: p.elapsed.as_millis() as i64,
            rows: p.rows as i64,
            error: p.error.clone(),
        }
    }
}

/// A row that differs between the live view and a fresh replay of the log.
#[derive(SimpleObject)]
pub struct RowDifference {
    pub table: String,
    /// The row's primary key.
    pub key: Json<serde_json::Value>,
    /// The live row; null when the live view lacks it.
    pub live: Option<Json<serde_json::Value>>,
    /// The row as the replay has it; null when the replay has no such row.
    pub replayed: Option<Json<serde_json::Value>>,
}

/// What `verifyProjection` found.
#[derive(SimpleObject)]
pub struct VerifyReport {
    pub name: String,
    /// True when the live view equals the replay.
    pub ok: bool,
    /// The checkpoint both were compared at.
    pub position: Position,
    /// Rows of the replayed view.
    pub rows: i64,
    /// Rows that differ (a changed row counts once).
    pub differences: i64,
    /// The first differing rows, by table and key (at most 10).
    pub first_differences: Vec<RowDifference>,
    pub elapsed_millis: i64,
}

impl From<rebuild::VerifyReport> for VerifyReport {
    fn from(report: rebuild::VerifyReport) -> Self {
        Self {
            name: report.name.to_owned(),
            ok: report.is_ok(),
            position: Position(report.position),
            rows: report.rows as i64,
            differences: report.differences as i64,
            first_differences: report
                .first
                .into_iter()
                .map(|d| RowDifference {
                    table: d.table.to_owned(),
                    key: Json(d.key),
                    live: d.live.map(Json),
                    replayed: d.replayed.map(Json),
                })
                .collect(),
            elapsed_millis: report.elapsed.as_millis() as i64,
        }
    }
}

/// The rebuilds and verifies of the views: an admin's only.
fn rebuilds<'a>(ctx: &Context<'a>) -> Result<&'a std::sync::Arc<rebuild::Rebuilds>, AppError> {
    admin(ctx)?;
    Ok(&services(ctx)?.rebuilds)
}

fn start_error(e: StartError) -> AppError {
    match e {
        StartError::Unknown(..) => AppError::BadUserInput(format!("name: {e}")),
        StartError::Running(_) => AppError::Conflict(e.to_string()),
    }
}

#[Object]
impl ProjectionsMutation {
    /// Admin: rebuilds a view from the event log into a shadow copy while the live view
    /// keeps serving, then swaps it in atomically (queries see the old view or the new
    /// one, never a partial one). Runs in the background: returns its first progress;
    /// follow it with `rebuildProgress` or `projections` (REBUILDING). A failed
    /// projection whose event was fixed runs again after its rebuild. CONFLICT while
    /// the same view is being rebuilt.
    async fn rebuild_projection(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<RebuildProgress> {
        let first = rebuilds(ctx).and_then(|r| r.start(&name).map_err(start_error));
        first.map(|first| RebuildProgress::from(&first)).gql()
    }

    /// Admin: replays the log into a scratch copy of a view, up to the live view's
    /// checkpoint, and compares the two row by row. Read-only; `ok` is false when they
    /// differ, with the first differing rows. It answers within the request timeout for
    /// views of a few hundred thousand events; `ordergraph projections verify` has no
    /// timeout.
    async fn verify_projection(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<VerifyReport> {
        async {
            let report = rebuilds(ctx)?.verify(&name).await.map_err(start_error)??;
            Ok(VerifyReport::from(report))
        }
        .await
        .gql()
    }
}

/// `rebuildProgress(name)`: the latest rebuild's progress first, then every step; the
/// stream completes after the step that ends a rebuild it saw running.
pub(crate) fn progress_stream(
    ctx: &Context<'_>,
    name: &str,
) -> Result<impl Stream<Item = RebuildProgress> + Send + 'static, AppError> {
    let mut rx = rebuilds(ctx)?.watch(name).map_err(start_error)?;
    let mut drain = services(ctx)?.drain.clone();
    Ok(async_stream::stream! {
        let mut seen_running = false;
        loop {
            let progress = rx.borrow_and_update().clone();
            let end = progress.phase.is_terminal() && seen_running;
            seen_running |= matches!(progress.phase, Phase::Replaying | Phase::Swapping);
            yield RebuildProgress::from(&progress);
            if end {
                break;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { break },
                _ = drain.wait_for(|d| *d) => break,
            }
        }
    })
}

/// How long `projectionsUpdated` sleeps when nothing wakes it before it looks again:
/// `lagMillis` grows with the clock alone while a view is behind, and a projection that
/// fails moves no checkpoint. A table equal to the last one sent is not sent again.
const STATUS_RECHECK: Duration = Duration::from_secs(1);

/// The least time between two tables of `projectionsUpdated`: under load the checkpoints
/// move hundreds of times a second, and a table of a view that is behind counts its lag
/// in the log. Ten tables a second is more than a person reads.
const STATUS_MIN_INTERVAL: Duration = Duration::from_millis(100);

/// `projectionsUpdated`: the status table first, then again whenever it differs from the
/// last one sent, woken by a checkpoint that moves, a rebuild's step, or the recheck.
pub(crate) fn status_stream(
    ctx: &Context<'_>,
) -> Result<
    impl Stream<Item = async_graphql::Result<Vec<ProjectionStatus>>> + Send + 'static,
    AppError,
> {
    admin(ctx)?;
    let s = services(ctx)?.clone();
    let mut limits = limits(ctx)?;
    let mut rebuilds: Vec<_> = s
        .projections
        .names()
        .into_iter()
        .filter_map(|name| s.rebuilds.watch(name).ok())
        .collect();
    Ok(async_stream::stream! {
        let mut sent: Option<Vec<ProjectionStatus>> = None;
        loop {
            let table: Vec<ProjectionStatus> = match s.projections.report(&s.db).await {
                Ok(report) => report.into_iter().map(ProjectionStatus::from).collect(),
                Err(e) => {
                    yield Err(AppError::from(e).into_graphql());
                    break;
                }
            };
            let head = table.iter().map(|t| t.head.0).max().unwrap_or_default();
            let checkpoints: Vec<(String, i64)> =
                table.iter().map(|t| (t.name.clone(), t.position.0)).collect();
            if sent.as_ref() != Some(&table) {
                sent = Some(table.clone());
                yield Ok(table);
            }
            // Whichever comes first: a checkpoint past the one just read, a rebuild's
            // step, the recheck, or the end (the server draining, the token expiring).
            let mut moved: FuturesUnordered<_> = checkpoints
                .iter()
                .map(|(name, at)| s.checkpoints.wait_for(name, at + 1, STATUS_RECHECK))
                .collect();
            let mut stepped: FuturesUnordered<_> =
                rebuilds.iter_mut().map(|rx| rx.changed()).collect();
            let ended = tokio::select! {
                Some(_) = moved.next() => None,
                Some(_) = stepped.next() => None,
                () = tokio::time::sleep(STATUS_RECHECK) => None,
                error = limits.ended(head) => Some(error),
            };
            if let Some(error) = ended {
                yield Err(error.into_graphql());
                break;
            }
            tokio::time::sleep(STATUS_MIN_INTERVAL).await;
        }
    })
}

#[derive(Default)]
pub struct ProjectionsSubscription;

#[Subscription]
impl ProjectionsSubscription {
    /// Admin: progress of the latest rebuild of projection `name` (see
    /// `rebuildProjection`): its current state first, then every step; completes after
    /// the step that ends a rebuild it saw running (DONE or FAILED).
    async fn rebuild_progress(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<Live<RebuildProgress>> {
        let stream = progress_stream(ctx, &name).gql()?;
        let stream: Live<RebuildProgress> = Box::pin(stream.map(Ok));
        Ok(stream)
    }

    /// Admin: every projection's status, as `projections` has it: the whole table first,
    /// then the whole table again each time it changes (a checkpoint moves, a rebuild
    /// starts or ends, a projection fails, the head moves), at most ten times a second.
    /// While a view is behind, its `lagMillis` grows with the clock: the table is then
    /// sent again about every second. There is nothing to resume: a new subscription
    /// starts with the table as it is. Ends with SERVER_DRAINING when the server drains.
    async fn projections_updated(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Live<Vec<ProjectionStatus>>> {
        let stream = status_stream(ctx).gql()?;
        let stream: Live<Vec<ProjectionStatus>> = Box::pin(stream);
        Ok(stream)
    }
}
