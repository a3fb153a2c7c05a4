//! The read side: the relay that tails the event log, one module per view (its
//! projection, its live loader and its queries), registered once in [`views`]; the
//! checkpoints that say how far each view is, the change bus that announces each
//! committed change, the live views hub that fans changes out to subscriptions, and the
//! raw event feed; on PostgreSQL the doorbell listener that brings every replica the
//! changes, checkpoints and horizon of folds made anywhere.

pub mod bus;
pub mod cache;
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

/// Rows a fold wrote, as its transaction left them, of the views whose rows this
/// process keeps in memory (`read::cache`): the catalog's products.
#[derive(Debug, Default)]
pub struct FoldedRows {
    pub products: Vec<catalog::catalog_view::Model>,
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

    /// The part of [`wants`](Projection::wants) (each entry also listed there) that
    /// writes no row of the view and only announces a change of it, under the key
    /// named: the dashboard wants stock changes because its `lowStock` is read from the
    /// catalog view when it is loaded. A page of such events alone needs no transaction:
    /// the relay advances the view in memory and rings its doorbell outside one, and the
    /// lag count leaves them out (they cannot put the stored view behind). `apply` still
    /// gets them in a page that also holds events that write.
    fn announces(&self) -> Option<Announces> {
        None
    }

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

    /// [`apply`](Projection::apply) for the relay, which also keeps in memory, once the
    /// transaction commits, the rows it wrote of a view whose rows are kept there (the
    /// catalog's products, ADR 0023): those, as the transaction leaves them. By default
    /// `apply`, and none. A rebuild calls `apply`, which pays for no rows it would not use.
    async fn apply_keeping(
        &self,
        txn: &DatabaseTransaction,
        events: &[events::Model],
    ) -> Result<(Vec<Change>, FoldedRows), DbErr> {
        Ok((self.apply(txn, events).await?, FoldedRows::default()))
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

/// Events a projection folds only to announce a change of one key ([`Projection::announces`]).
#[derive(Debug, Clone, Copy)]
pub struct Announces {
    pub wanted: &'static [Wanted],
    pub key: &'static str,
}

impl Announces {
    /// The change that `events` announce when none of them writes a row, else `None`.
    pub fn change(&self, projection: &'static str, events: &[events::Model]) -> Option<Change> {
        let last = events.last()?;
        events
            .iter()
            .all(|e| Wanted::any(self.wanted, e))
            .then(|| Change {
                projection,
                key: self.key.to_owned(),
                position: last.position,
            })
    }
}

/// What a projection's view may be behind: the events it wants, less those it only
/// announces ([`Projection::announces`]).
pub fn written_by(projection: &dyn Projection) -> Vec<Wanted> {
    let announced = projection.announces().map_or(&[][..], |a| a.wanted);
    projection
        .wants()
        .iter()
        .filter(|w| !announced.contains(w))
        .copied()
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: i64, stream_type: &str) -> events::Model {
        events::Model {
            position,
            stream_id: uuid::Uuid::nil(),
            stream_type: stream_type.to_owned(),
            version: position,
            event_type: "Anything".to_owned(),
            event_version: 1,
            data: serde_json::json!({}),
            metadata: serde_json::json!({}),
            recorded_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn what_a_view_announces_it_also_wants_and_is_not_behind() {
        for projection in all_projections() {
            let written = written_by(projection.as_ref());
            let announced = projection.announces().map_or(&[][..], |a| a.wanted);
            for w in announced {
                assert!(
                    projection.wants().contains(w),
                    "{} announces {w:?} without wanting it",
                    projection.name()
                );
                assert!(!written.contains(w), "{}: {w:?}", projection.name());
            }
            assert_eq!(
                written.len() + announced.len(),
                projection.wants().len(),
                "{}",
                projection.name()
            );
        }
    }

    #[test]
    fn a_page_is_announced_only_when_every_event_in_it_is() {
        let dashboard = dashboard::DashboardProjection;
        let announces = dashboard
            .announces()
            .expect("the dashboard announces stock");
        let stock = [event(3, "product"), event(4, "product")];
        let change = announces.change("dashboard", &stock).expect("announced");
        assert_eq!((change.key.as_str(), change.position), ("dashboard", 4));
        let mixed = [event(3, "product"), event(4, "order")];
        assert!(announces.change("dashboard", &mixed).is_none());
        assert!(announces.change("dashboard", &[]).is_none());
    }
}
