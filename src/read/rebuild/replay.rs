//! The replay: a projection's events read from the log a page at a time and folded into
//! the scratch copy by the projection's own code, the next page read while this one folds.

use super::*;
use crate::entity::events;
use crate::log::reader::Wanted;

/// The events `projection` wants in `(from, to]`.
async fn count(
    db: &DatabaseConnection,
    projection: &dyn Projection,
    from: i64,
    to: i64,
) -> Result<u64, DbErr> {
    Span::new(from, to)
        .wanted(projection.wants())
        .count(db)
        .await
}

/// One replay into a scratch copy.
pub(super) struct Run<'a> {
    /// The log.
    pub(super) live: &'a DatabaseConnection,
    pub(super) scratch: &'a DatabaseConnection,
    pub(super) projection: &'a dyn Projection,
    pub(super) started: Instant,
    pub(super) report: &'a (dyn Fn(&Progress) + Send + Sync),
}

impl<'a> Run<'a> {
    /// A replay of `projection` into `scratch`, reported to `report`.
    pub(super) fn new(
        live: &'a DatabaseConnection,
        scratch: &'a Scratch,
        projection: &'a dyn Projection,
        started: Instant,
        report: &'a (dyn Fn(&Progress) + Send + Sync),
    ) -> Self {
        Self {
            live,
            scratch: &scratch.conn,
            projection,
            started,
            report,
        }
    }

    /// Folds the events the projection wants in `(progress.position, to]` into
    /// the scratch copy, a page per transaction, reading the next page while folding
    /// this one; counts them into `progress.total` first.
    pub(super) async fn replay(&self, to: i64, progress: &mut Progress) -> Result<(), DbErr> {
        if progress.position >= to {
            return Ok(());
        }
        progress.total += count(self.live, self.projection, progress.position, to).await?;
        let mut span = Span::new(progress.position, to).wanted(self.projection.wants());
        let mut page = span.page(self.live, PAGE).await?;
        loop {
            // A short page read to the end of its window, not of the span: read on until
            // the span is done (`Span::page`).
            span = span.rest(&page);
            let next = async {
                match span.is_empty() {
                    true => Ok(None),
                    false => span.page(self.live, PAGE).await.map(Some),
                }
            };
            let fold = async {
                if page.events.is_empty() {
                    return Ok(());
                }
                let txn = self.scratch.begin().await?;
                self.projection.apply(&txn, &page.events).await?;
                txn.commit().await
            };
            let (folded, next) = tokio::join!(fold, next);
            folded?;
            progress.done += page.events.len() as u64;
            progress.position = page.read_to;
            progress.elapsed = self.started.elapsed();
            (self.report)(progress);
            match next? {
                Some(next) => page = next,
                None => break,
            }
        }
        // Nothing more this projection wants up to `to`: the view is at `to`.
        progress.position = to;
        Ok(())
    }
}

/// Folds the events each run's projection wants in `(its position, to]` into its scratch
/// copy, reading each page of the log once for all of them and folding it into every
/// copy at once, while the next page is read. A run whose outcome is set already (it
/// failed) is left out; one that fails now gets its error there and the others go on.
pub(super) async fn together(
    runs: &[Run<'_>],
    to: i64,
    progress: &mut [Progress],
    outcomes: &mut [Option<Result<(), DbErr>>],
) {
    let Some(first) = runs.first() else { return };
    let live = first.live;
    let counted = futures_util::future::join_all(
        runs.iter()
            .zip(progress.iter())
            .map(|(run, p)| count(live, run.projection, p.position, to)),
    )
    .await;
    for ((counted, p), outcome) in counted
        .into_iter()
        .zip(progress.iter_mut())
        .zip(outcomes.iter_mut())
    {
        match counted {
            Ok(n) => p.total += n,
            Err(e) => *outcome = Some(Err(e)),
        }
    }
    let active = |outcomes: &[Option<Result<(), DbErr>>]| -> Vec<usize> {
        (0..runs.len()).filter(|i| outcomes[*i].is_none()).collect()
    };
    let fail_all = |outcomes: &mut [Option<Result<(), DbErr>>], e: &DbErr| {
        for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
            *outcome = Some(Err(DbErr::Custom(format!("reading the log: {e}"))));
        }
    };
    let still = active(outcomes);
    let Some(from) = still.iter().map(|i| progress[*i].position).min() else {
        return;
    };
    if from >= to {
        return;
    }
    let wanted: Vec<Wanted> = still
        .iter()
        .flat_map(|i| runs[*i].projection.wants().iter().copied())
        .collect();
    let mut span = Span::new(from, to).wanted(&wanted);
    let mut page = match span.page(live, PAGE).await {
        Ok(page) => page,
        Err(e) => return fail_all(outcomes, &e),
    };
    loop {
        span = span.rest(&page);
        let next = async {
            match span.is_empty() {
                true => Ok(None),
                false => span.page(live, PAGE).await.map(Some),
            }
        };
        let page_ref = &page;
        let folds = futures_util::future::join_all(
            runs.iter().zip(progress.iter()).zip(outcomes.iter()).map(
                |((run, p), outcome)| async move {
                    if outcome.is_some() {
                        return None;
                    }
                    let mine: Vec<events::Model> = page_ref
                        .events
                        .iter()
                        .filter(|e| {
                            e.position > p.position && Wanted::any(run.projection.wants(), e)
                        })
                        .cloned()
                        .collect();
                    if mine.is_empty() {
                        return Some(Ok(0));
                    }
                    let folded = async {
                        let txn = run.scratch.begin().await?;
                        run.projection.apply(&txn, &mine).await?;
                        txn.commit().await
                    }
                    .await;
                    Some(folded.map(|()| mine.len() as u64))
                },
            ),
        );
        let (folded, next) = tokio::join!(folds, next);
        for (i, folded) in folded.into_iter().enumerate() {
            match folded {
                None => {}
                Some(Ok(n)) => {
                    let p = &mut progress[i];
                    p.done += n;
                    p.position = page.read_to;
                    p.elapsed = runs[i].started.elapsed();
                    (runs[i].report)(p);
                }
                Some(Err(e)) => outcomes[i] = Some(Err(e)),
            }
        }
        match next {
            Ok(Some(next)) => page = next,
            Ok(None) => break,
            Err(e) => return fail_all(outcomes, &e),
        }
        if active(outcomes).is_empty() {
            return;
        }
    }
    // Nothing more any of them wants up to `to`: each view is at `to`.
    for i in active(outcomes) {
        progress[i].position = progress[i].position.max(to);
    }
}
