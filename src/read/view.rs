//! One registration per view. A view is its projection (the events it wants, its tables,
//! its fold: [`Projection`]) together with its live side (how the live views hub loads one
//! of its keys after a change: [`LiveView`]); a subscription's watch names the view it
//! watches by type (`live::Watch::View`). [`View::of`] takes the two together, so a
//! projection without a live loader cannot be registered at all, and `read::views()` is
//! the one list every part reads: the relay, rebuild and verify, the status table, the
//! checkpoints and the hub.
//!
//! ```compile_fail
//! // A projection with no live side is not a view: this does not compile.
//! use ordergraph::read::{Projection, ViewTable, bus::Change, view::View};
//! use ordergraph::log::reader::Wanted;
//! struct NoLoader;
//! #[async_trait::async_trait]
//! impl Projection for NoLoader {
//!     fn name(&self) -> &'static str { "no-loader" }
//!     fn wants(&self) -> &'static [Wanted] { &[] }
//!     fn tables(&self) -> &'static [ViewTable] { &[] }
//!     async fn apply(
//!         &self,
//!         _: &sea_orm::DatabaseTransaction,
//!         _: &[ordergraph::entity::events::Model],
//!     ) -> Result<Vec<Change>, sea_orm::DbErr> { Ok(vec![]) }
//! }
//! let _ = View::of(NoLoader);
//! ```

use std::any::Any;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, TryGetable,
};

use super::Projection;
use super::bus::Change;

/// A view's live side: the state the hub loads for one key after a change and hands to
/// every subscription watching that key.
#[async_trait::async_trait]
pub trait LiveView: Projection + Sized + 'static {
    /// The view's name: its projection's ([`Projection::name`]).
    const NAME: &'static str;

    /// What one key of the view is, as subscriptions receive it.
    type State: Clone + Send + Sync + 'static;

    /// The current state of `key` and the position it reflects, read after a change at
    /// `position`; `None` when the view has no such key.
    async fn load(
        db: &DatabaseConnection,
        key: &str,
        position: i64,
    ) -> Result<Option<(i64, Self::State)>, DbErr>;

    /// The keys whose rows moved to a position in `(after, upto]`, each with that
    /// position, oldest first, at most `limit`: what every replica reads after a doorbell
    /// (`read::doorbell`), once for all of its subscribers, on one index. A view keeps a
    /// row carrying the position of each key's latest change (a cart emptied keeps its
    /// header at the emptying event), or no replica but the folding one could learn of it.
    async fn moved(
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Vec<(i64, String)>, DbErr>;

    /// Whether a state loaded at `loaded` is what the change at `changed` sends. By
    /// default only a state exactly at the change: a newer one means a newer change of the
    /// key is queued behind, which sends it, so positions leave the hub in order.
    fn sends(loaded: i64, changed: i64) -> bool {
        loaded == changed
    }

    /// Routing keys of a loaded state besides its own key (an order's owner, so that a
    /// customer's open-ended watch is woken by their orders only).
    fn routes(_state: &Self::State) -> Vec<String> {
        Vec::new()
    }
}

/// The row a UUID key names, found by `find`, with its position: the [`LiveView::load`] of
/// a view keyed by UUID. A key that is not a UUID names no row.
pub async fn by_id<T, F, Fut>(
    key: &str,
    find: F,
    position: fn(&T) -> i64,
) -> Result<Option<(i64, T)>, DbErr>
where
    F: FnOnce(uuid::Uuid) -> Fut,
    Fut: Future<Output = Result<Option<T>, DbErr>>,
{
    let Ok(id) = uuid::Uuid::parse_str(key) else {
        return Ok(None);
    };
    Ok(find(id).await?.map(|row| (position(&row), row)))
}

/// The rows of a view table whose `position` column moved into `(after, upto]`, oldest
/// first, at most `limit`: a read on the position index, which a caller may narrow
/// further (the catalog view to some products, the order view to a user's orders).
pub fn moved_rows<C>(position: C, after: i64, upto: i64, limit: u64) -> Select<C::EntityName>
where
    C: ColumnTrait,
    C::EntityName: EntityTrait<Column = C>,
{
    <C::EntityName as EntityTrait>::find()
        .filter(position.gt(after))
        .filter(position.lte(upto))
        .order_by_asc(position)
        .limit(limit)
}

/// The keys of a view table whose `position` column moved into `(after, upto]`, each with
/// that position, oldest first, at most `limit` ([`moved_rows`], their `key` column
/// alone, of type `K`): the [`LiveView::moved`] of a view that keeps one row per key at
/// the position of the key's latest change.
pub async fn moved<K, C>(
    db: &DatabaseConnection,
    key: C,
    position: C,
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<(i64, String)>, DbErr>
where
    K: TryGetable + ToString,
    C: ColumnTrait,
    C::EntityName: EntityTrait<Column = C>,
{
    let rows: Vec<(K, i64)> = moved_rows(position, after, upto, limit)
        .select_only()
        .column(key)
        .column(position)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(key, position)| (position, key.to_string()))
        .collect())
}

/// One key of one view at `position`, loaded once by the hub.
#[derive(Debug)]
pub struct ViewChange {
    pub projection: &'static str,
    pub key: String,
    pub position: i64,
    /// The view's [`LiveView::State`]; a watch of that view takes it back by type.
    pub state: Arc<dyn Any + Send + Sync>,
    /// Every routing key of the change: its key first, then [`LiveView::routes`].
    pub routes: Vec<String>,
}

/// The state a change names, by `V`'s loader, if it is what the change sends.
async fn load_change<V: LiveView>(
    db: &DatabaseConnection,
    change: &Change,
) -> Result<Option<ViewChange>, DbErr> {
    let Some((position, state)) = V::load(db, &change.key, change.position).await? else {
        return Ok(None);
    };
    if !V::sends(position, change.position) {
        return Ok(None);
    }
    let mut routes = vec![change.key.clone()];
    routes.extend(V::routes(&state));
    Ok(Some(ViewChange {
        projection: V::NAME,
        key: change.key.clone(),
        position,
        state: Arc::new(state),
        routes,
    }))
}

/// `V`'s keys that moved in a range, as changes of `V`.
async fn moved_changes<V: LiveView>(
    db: &DatabaseConnection,
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<Change>, DbErr> {
    Ok(V::moved(db, after, upto, limit)
        .await?
        .into_iter()
        .map(|(position, key)| Change {
            projection: V::NAME,
            key,
            position,
        })
        .collect())
}

/// [`load_change`] of one view, its type erased for the hub's table of views.
type Load = for<'a> fn(
    &'a DatabaseConnection,
    &'a Change,
) -> BoxFuture<'a, Result<Option<ViewChange>, DbErr>>;

/// [`moved_changes`] of one view, its type erased.
type Moved =
    for<'a> fn(&'a DatabaseConnection, i64, i64, u64) -> BoxFuture<'a, Result<Vec<Change>, DbErr>>;

/// A registered view: its projection and its live loader, taken together.
#[derive(Clone)]
pub struct View {
    pub projection: Arc<dyn Projection>,
    load: Load,
    moved: Moved,
}

impl View {
    pub fn of<V: LiveView>(view: V) -> Self {
        assert_eq!(
            view.name(),
            V::NAME,
            "a view's live name is its projection's name"
        );
        Self {
            projection: Arc::new(view),
            load: |db, change| Box::pin(load_change::<V>(db, change)),
            moved: |db, after, upto, limit| Box::pin(moved_changes::<V>(db, after, upto, limit)),
        }
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Loads the state a change names, if it is what the change sends.
    pub async fn load(
        &self,
        db: &DatabaseConnection,
        change: &Change,
    ) -> Result<Option<ViewChange>, DbErr> {
        (self.load)(db, change).await
    }

    /// The changes of the keys whose rows moved into `(after, upto]`, oldest first, at
    /// most `limit` ([`LiveView::moved`]).
    pub async fn moved(
        &self,
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Vec<Change>, DbErr> {
        (self.moved)(db, after, upto, limit).await
    }
}
