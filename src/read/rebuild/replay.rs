//! The replay: a projection's events read from the log a page at a time and folded into
//! the scratch copy by the projection's own code, the next page read while this one folds.

use super::*;

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
