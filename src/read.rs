//! The read side: the relay that tails the event log, one module per view (its
//! projection, its live loader and its queries), registered once in [`views`]; the
//! checkpoints that say how far each view is, the change bus that announces each
//! committed change, the live views hub that fans changes out to subscriptions, and the
//! raw event feed; on PostgreSQL the doorbell listener that brings every replica the
//! changes, checkpoints and horizon of folds made anywhere.

pub mod bus;
pub mod cart;
pub mod catalog;
pub mod checkpoints;
pub mod dashboard;
pub mod doorbell;
pub mod feed;
pub mod live;
pub mod orders;
pub mod rebuild;
pub mod relay;
pub mod status;
pub mod view;

use sea_orm::{DatabaseTransaction, DbErr};

use crate::entity::events;
use crate::log::reader::Wanted;
use bus::Change;

/// Every view of the service, in the order the relay runs their projections: a new view
/// is one line here (and its module). `View::of` takes a projection only together with
/// its live loader.
pub fn views() -> Vec<view::View> {
    vec![
        view::View::of(catalog::CatalogProjection),
        view::View::of(cart::CartProjection),
        view::View::of(orders::OrderProjection),
        view::View::of(dashboard::DashboardProjection),
    ]
}

/// The projections of every view, in the order the relay runs them.
pub fn all_projections() -> Vec<std::sync::Arc<dyn Projection>> {
    views().into_iter().map(|v| v.projection).collect()
}

/// A projection folds events into its view inside the relay's transaction, which also
/// advances its checkpoint: a view and its checkpoint never disagree.
#[async_trait::async_trait]
pub trait Projection: Send + Sync {
    /// Persisted name of the projection (its checkpoint row): never change it.
    fn name(&self) -> &'static str;

    /// The events this projection folds: of some stream types, all of them or only some
    /// event types. Other events never change its view, so the relay skips it for them
    /// (no transaction at all), a rebuild does not read them, and the lag count
    /// (`projections`, `ordergraph projections status`) does not count them.
    fn wants(&self) -> &'static [Wanted];

    /// The tables of its view, each with its primary key: what a rebuild replaces and a
    /// verify compares. `apply` writes these and nothing else, and reads nothing else.
    fn tables(&self) -> &'static [ViewTable];

    /// Folds `events` (in position order, all above the checkpoint) into the view and
    /// returns what changed. By default: each event it [`wants`](Projection::wants), one at
    /// a time ([`Projection::fold`]), each announcing the key it changed.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[events::Model],
    ) -> Result<Vec<Change>, DbErr> {
        let mut changes = Vec::new();
        for row in events.iter().filter(|e| Wanted::any(self.wants(), e)) {
            if let Some(key) = self.fold(txn, row).await? {
                changes.push(Change {
                    projection: self.name(),
                    key,
                    position: row.position,
                });
            }
        }
        Ok(changes)
    }

    /// Folds one event it wants into the view; the key ([`Change::key`]) of what it
    /// changed, if anything. A projection that folds a batch as a whole (the dashboard's
    /// one key) overrides `apply` instead, and never gets here.
    async fn fold(
        &self,
        _txn: &DatabaseTransaction,
        row: &events::Model,
    ) -> Result<Option<String>, DbErr> {
        Err(DbErr::Custom(format!(
            "projection {} folds no single event (at position {})",
            self.name(),
            row.position
        )))
    }
}

/// One table of a projection's view.
#[derive(Debug, Clone, Copy)]
pub struct ViewTable {
    pub name: &'static str,
    /// Its primary key columns.
    pub key: &'static [&'static str],
    /// The key its rows are announced under on the change bus ([`Change::key`]).
    pub change_key: ChangeKey,
}

/// Which [`Change::key`] a row of a view table belongs to: what a rebuild announces
/// for the rows it changed.
#[derive(Debug, Clone, Copy)]
pub enum ChangeKey {
    /// The value of this column, as text (a UUID hyphenated, lower case).
    Column(&'static str),
    /// One key for the whole table.
    Whole(&'static str),
}

/// Begins a read-only transaction whose statements all see one snapshot, so a view read
/// in several statements (a header and its lines, counters and their checkpoint) is
/// never a mix of two commits. SQLite's read transactions are snapshots already (WAL).
pub async fn begin_snapshot(
    db: &sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::{AccessMode, IsolationLevel, TransactionTrait};
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        db.begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await
    } else {
        db.begin().await
    }
}

/// Splits a page read with `first + 1` rows into the page and whether more follow.
pub(crate) fn split_page<T>(mut items: Vec<T>, first: u64) -> (Vec<T>, bool) {
    let has_next_page = items.len() as u64 > first;
    items.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    (items, has_next_page)
}
