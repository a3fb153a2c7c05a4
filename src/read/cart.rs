//! The cart view: per user, a table of the items added to their own cart
//! (`cart_view_items`) and a header row (`cart_view`: version, position). Lines are priced
//! from the catalog view when read, so a price change shows in every cart.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, Statement, Value,
};
use uuid::Uuid;

use super::bus::Change;
use super::catalog::{ROWS_PER_STATEMENT, catalog_view};
use super::view::{self, LiveView};
use super::{ChangeKey, Projection, ViewTable, catalog};
use crate::domain::Aggregate;
use crate::domain::cart::{Cart, CartEvent, LineChange};
use crate::entity::events;
use crate::log::codec::decode_row;
use crate::log::reader::Wanted;

/// The `cart_view` table. The header row of each user's cart: its version and position.
pub mod cart_view {
    crate::entity::table! {
        "cart_view" {
            #[sea_orm(primary_key, auto_increment = false)]
            pub user_id: String,
            pub version: i64,
            pub updated_at: DateTimeUtc,
            pub position: i64,
        }
    }
}

/// The `cart_view_items` table. The items of each user's cart, one row per product.
pub mod cart_view_items {
    crate::entity::table! {
        "cart_view_items" {
            #[sea_orm(primary_key, auto_increment = false)]
            pub user_id: String,
            #[sea_orm(primary_key, auto_increment = false)]
            pub product_id: Uuid,
            pub quantity: i32,
            pub added_position: i64,
        }
    }
}

pub const NAME: &str = "cart";

pub struct CartProjection;

#[async_trait::async_trait]
impl Projection for CartProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [ViewTable] {
        &[
            ViewTable {
                name: "cart_view",
                key: &["user_id"],
                change_key: ChangeKey::Column("user_id"),
            },
            ViewTable {
                name: "cart_view_items",
                key: &["user_id", "product_id"],
                change_key: ChangeKey::Column("user_id"),
            },
        ]
    }

    fn wants(&self) -> &'static [Wanted] {
        const { &[Wanted::all(Cart::STREAM_TYPE)] }
    }

    /// Folds a batch with a few statements whatever its length, as the catalog does (ADR
    /// 0022): each cart's events are merged in position order into its header (the last
    /// event's version and position) and the final state of each line its events name,
    /// then every touched row is written once: the carts cleared lose their lines in one
    /// `DELETE`, the lines removed in another, the lines set are upserted in one
    /// multi-row `INSERT … ON CONFLICT` (two when some must also take a new
    /// `added_position`), and the headers in one more. Every event still announces its
    /// cart at its own position.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[events::Model],
    ) -> Result<Vec<Change>, DbErr> {
        let mut carts: Vec<CartChange> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut changes = Vec::new();
        for row in events.iter().filter(|e| Wanted::any(self.wants(), e)) {
            let event: CartEvent = decode_row(row)?;
            let (user_id, change) = event.change();
            let at = match index.get(user_id.as_str()) {
                Some(&at) => at,
                None => {
                    index.insert(user_id.as_str().to_owned(), carts.len());
                    carts.push(CartChange::new(user_id.as_str().to_owned(), row));
                    carts.len() - 1
                }
            };
            carts[at].fold(row, change);
            changes.push(Change {
                projection: NAME,
                key: user_id.as_str().to_owned(),
                position: row.position,
            });
        }
        write_carts(txn, &carts).await?;
        Ok(changes)
    }
}

/// One cart's changes in a batch, its events merged in position order.
struct CartChange {
    /// The header as the last event leaves it.
    header: cart_view::Model,
    /// Whether an event of the batch cleared the cart: every line the view had before
    /// the batch is gone, and `lines` holds only what was set after the last clear.
    cleared: bool,
    /// The final state of each line an event of the batch (after the last clear) named.
    lines: BTreeMap<Uuid, LineWrite>,
}

/// What a batch leaves of one line of a cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineWrite {
    /// The line holds `quantity`. A line the view did not have is added at
    /// `added_position` (the batch's first event that set it); one it had keeps its own,
    /// unless `fresh`: then the line was removed or cleared earlier in the batch, so
    /// whatever row the view had is gone and the line is new at `added_position`.
    Set {
        quantity: i32,
        added_position: i64,
        fresh: bool,
    },
    /// The line is gone (removed, and not set again after).
    Removed,
}

impl CartChange {
    fn new(user_id: String, row: &events::Model) -> Self {
        Self {
            header: cart_view::Model {
                user_id,
                version: row.version,
                updated_at: row.recorded_at,
                position: row.position,
            },
            cleared: false,
            lines: BTreeMap::new(),
        }
    }

    /// Merges one event (stored as `row`) into the cart's changes: what folding it into
    /// the view after the events merged so far would do.
    fn fold(&mut self, row: &events::Model, change: LineChange) {
        self.header.version = row.version;
        self.header.updated_at = row.recorded_at;
        self.header.position = row.position;
        match change {
            LineChange::Set {
                product_id,
                quantity,
            } => {
                let quantity = i32::try_from(quantity).unwrap_or(i32::MAX);
                let added = |fresh| LineWrite::Set {
                    quantity,
                    added_position: row.position,
                    fresh,
                };
                match self.lines.get_mut(&product_id) {
                    // Set earlier in the batch: a new quantity only, as an upsert of a
                    // line the view has.
                    Some(LineWrite::Set { quantity: q, .. }) => *q = quantity,
                    // Removed earlier in the batch: the line is new here.
                    Some(line) => *line = added(true),
                    // First named here: new here, or the view's line with a new quantity
                    // (it cannot have one after a clear).
                    None => {
                        self.lines.insert(product_id, added(self.cleared));
                    }
                }
            }
            LineChange::Remove { product_id } => {
                if self.cleared {
                    // The clear deletes whatever the view had: only what the batch set
                    // since is to be undone.
                    self.lines.remove(&product_id);
                } else {
                    self.lines.insert(product_id, LineWrite::Removed);
                }
            }
            LineChange::Clear => {
                self.cleared = true;
                self.lines.clear();
            }
        }
    }
}

/// Writes a batch's cart changes, each row it touches once, in a few statements of at
/// most `ROWS_PER_STATEMENT` rows: first the deletions (the lines of the carts cleared,
/// then the lines removed), then the lines set, then the headers. The per-event fold
/// upserts and deletes without asking whether a row was there, so no statement here
/// expects a number of rows either.
async fn write_carts(txn: &DatabaseTransaction, carts: &[CartChange]) -> Result<(), DbErr> {
    use cart_view_items::Column as Item;
    let cleared: Vec<&str> = carts
        .iter()
        .filter(|c| c.cleared)
        .map(|c| c.header.user_id.as_str())
        .collect();
    for chunk in cleared.chunks(ROWS_PER_STATEMENT) {
        cart_view_items::Entity::delete_many()
            .filter(Item::UserId.is_in(chunk.iter().copied()))
            .exec(txn)
            .await?;
    }
    let mut removed: Vec<(&str, Uuid)> = Vec::new();
    // Lines that keep the `added_position` of a row the view has, and lines that are new.
    let (mut kept, mut fresh) = (Vec::new(), Vec::new());
    for cart in carts {
        let user_id = cart.header.user_id.as_str();
        for (&product_id, line) in &cart.lines {
            match *line {
                LineWrite::Removed => removed.push((user_id, product_id)),
                LineWrite::Set {
                    quantity,
                    added_position,
                    fresh: new,
                } => {
                    let item = cart_view_items::ActiveModel {
                        user_id: Set(user_id.to_owned()),
                        product_id: Set(product_id),
                        quantity: Set(quantity),
                        added_position: Set(added_position),
                    };
                    if new {
                        fresh.push(item)
                    } else {
                        kept.push(item)
                    }
                }
            }
        }
    }
    for chunk in removed.chunks(ROWS_PER_STATEMENT) {
        delete_lines(txn, chunk).await?;
    }
    upsert_lines(txn, &kept, &[Item::Quantity]).await?;
    upsert_lines(txn, &fresh, &[Item::Quantity, Item::AddedPosition]).await?;
    for chunk in carts.chunks(ROWS_PER_STATEMENT) {
        use cart_view::Column;
        let headers = chunk
            .iter()
            .map(|c| cart_view::ActiveModel::from(c.header.clone()));
        let update = [Column::Version, Column::UpdatedAt, Column::Position];
        cart_view::Entity::insert_many(headers)
            .on_conflict(
                OnConflict::column(Column::UserId)
                    .update_columns(update)
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Inserts `lines`, or, where the cart has the line already, sets its `update` columns
/// from them: a multi-row `INSERT … ON CONFLICT … DO UPDATE` per `ROWS_PER_STATEMENT`.
async fn upsert_lines(
    txn: &DatabaseTransaction,
    lines: &[cart_view_items::ActiveModel],
    update: &[cart_view_items::Column],
) -> Result<(), DbErr> {
    use cart_view_items::Column;
    for chunk in lines.chunks(ROWS_PER_STATEMENT) {
        cart_view_items::Entity::insert_many(chunk.iter().cloned())
            .on_conflict(
                OnConflict::columns([Column::UserId, Column::ProductId])
                    .update_columns(update.iter().copied())
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// `DELETE FROM cart_view_items WHERE (user_id, product_id) IN (VALUES (…), …)`: both
/// databases take a row value against a `VALUES` list (SQLite since 3.15), and the
/// parameters carry their types.
async fn delete_lines(txn: &DatabaseTransaction, lines: &[(&str, Uuid)]) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let mut values: Vec<Value> = Vec::with_capacity(lines.len() * 2);
    let mut tuples = Vec::with_capacity(lines.len());
    for &(user_id, product_id) in lines {
        values.push(user_id.into());
        values.push(product_id.into());
        tuples.push(match backend {
            DbBackend::Postgres => format!("(${}, ${})", values.len() - 1, values.len()),
            _ => "(?, ?)".to_owned(),
        });
    }
    let sql = format!(
        "DELETE FROM \"cart_view_items\" WHERE (\"user_id\", \"product_id\") IN (VALUES {})",
        tuples.join(", ")
    );
    txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl LiveView for CartProjection {
    const NAME: &'static str = NAME;
    type State = CartRead;

    /// Every user has a cart (an empty one at position 0 before their first change).
    async fn load(
        db: &DatabaseConnection,
        key: &str,
        _position: i64,
    ) -> Result<Option<(i64, Self::State)>, DbErr> {
        let cart = find(db, key).await?;
        Ok(Some((cart.position, cart)))
    }

    /// By the header: it stays when the cart is emptied (at the emptying event's
    /// position), so a cleared cart is read like any other change.
    async fn moved(
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Vec<(i64, String)>, DbErr> {
        use cart_view::Column;
        view::moved::<String, _>(db, Column::UserId, Column::Position, after, upto, limit).await
    }
}

/// One line of a cart as read: the view's quantity, priced from the catalog view.
#[derive(Debug, Clone)]
pub struct CartLine {
    pub product_id: Uuid,
    pub quantity: i32,
    /// The catalog row; `None` only if the catalog view lacks the product.
    pub product: Option<catalog_view::Model>,
}

#[derive(Debug, Clone)]
pub struct CartRead {
    pub user_id: String,
    pub lines: Vec<CartLine>,
    pub updated_at: Option<DateTime<Utc>>,
    pub position: i64,
}

/// A user's cart, read in one snapshot: header, lines and their products (three queries,
/// whatever its size).
pub async fn find(db: &DatabaseConnection, user_id: &str) -> Result<CartRead, DbErr> {
    let txn = super::begin_snapshot(db).await?;
    let cart = find_in(&txn, user_id).await;
    txn.commit().await?;
    cart
}

async fn find_in<C: ConnectionTrait>(db: &C, user_id: &str) -> Result<CartRead, DbErr> {
    let header = cart_view::Entity::find_by_id(user_id.to_owned())
        .one(db)
        .await?;
    let items = cart_view_items::Entity::find()
        .filter(cart_view_items::Column::UserId.eq(user_id))
        .order_by_asc(cart_view_items::Column::AddedPosition)
        .all(db)
        .await?;
    let ids: Vec<Uuid> = items.iter().map(|i| i.product_id).collect();
    let mut products: HashMap<Uuid, catalog_view::Model> = catalog::find_many(db, &ids)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    Ok(CartRead {
        user_id: user_id.to_owned(),
        lines: items
            .into_iter()
            .map(|i| CartLine {
                product_id: i.product_id,
                quantity: i.quantity,
                product: products.remove(&i.product_id),
            })
            .collect(),
        updated_at: header.as_ref().map(|h| h.updated_at),
        position: header.map_or(0, |h| h.position),
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use sea_orm::TransactionTrait;

    use super::*;
    use crate::db::TestDatabase;
    use crate::domain::cart::cart_stream_id;
    use crate::domain::values::UserId;
    use crate::log::codec::encode;
    use crate::log::upcast::current_version;
    use crate::read::orders::tests::{keys, random_batches};

    /// `event` of `user`'s cart at `position`, as the write side stores it.
    fn stored(position: i64, version: i64, user: &UserId, event: &CartEvent) -> events::Model {
        let (event_type, data) = encode(event).expect("an event encodes");
        events::Model {
            position,
            stream_id: cart_stream_id(user),
            stream_type: Cart::STREAM_TYPE.to_owned(),
            version,
            event_version: current_version(&event_type),
            event_type,
            data,
            metadata: serde_json::json!({}),
            recorded_at: chrono::Utc::now() + chrono::Duration::milliseconds(position),
        }
    }

    /// A log of cart events of `users` carts over `products` products, as the write side
    /// would store them: additions, new quantities, removals and clears of what each cart
    /// holds, so lines come and go and come back; and now and then one the aggregate
    /// would not decide (a new quantity or a removal of a line the cart lacks, a clear of
    /// an empty cart), which the fold takes as it comes.
    fn random_log(
        rng: &mut StdRng,
        users: usize,
        products: usize,
        len: usize,
    ) -> Vec<events::Model> {
        let product_ids: Vec<Uuid> = (0..products)
            .map(|_| Uuid::from_u128(rng.random()))
            .collect();
        let user_ids: Vec<UserId> = (0..users)
            .map(|u| UserId::parse(&format!("user-{u}")).expect("a user id"))
            .collect();
        let mut carts: Vec<BTreeMap<Uuid, u32>> = vec![BTreeMap::new(); users];
        let mut versions = vec![0_i64; users];
        let mut log = Vec::with_capacity(len);
        for position in 1..=len as i64 {
            let u = rng.random_range(0..users);
            let user_id = user_ids[u].clone();
            let lines = &mut carts[u];
            let any = product_ids[rng.random_range(0..products)];
            let held = (!lines.is_empty()).then(|| {
                *lines
                    .keys()
                    .nth(rng.random_range(0..lines.len()))
                    .expect("a line")
            });
            let event = match (rng.random_range(0..20), held) {
                (0, _) => CartEvent::Cleared { user_id },
                (1, _) => CartEvent::ItemRemoved {
                    user_id,
                    product_id: any,
                },
                (2, _) => CartEvent::QuantityChanged {
                    user_id,
                    product_id: any,
                    quantity: rng.random_range(1..=99),
                },
                (3..=6, Some(product_id)) => CartEvent::ItemRemoved {
                    user_id,
                    product_id,
                },
                (7..=10, Some(product_id)) => CartEvent::QuantityChanged {
                    user_id,
                    product_id,
                    quantity: rng.random_range(1..=99),
                },
                _ => {
                    let added = rng.random_range(1..=5);
                    CartEvent::ItemAdded {
                        user_id,
                        product_id: any,
                        added,
                        quantity: (lines.get(&any).copied().unwrap_or(0) + added).min(99),
                    }
                }
            };
            match event.change().1 {
                LineChange::Set {
                    product_id,
                    quantity,
                } => {
                    lines.insert(product_id, quantity);
                }
                LineChange::Remove { product_id } => {
                    lines.remove(&product_id);
                }
                LineChange::Clear => lines.clear(),
            }
            versions[u] += 1;
            log.push(stored(position, versions[u], &user_ids[u], &event));
        }
        log
    }

    /// The fold as it was before batches were merged, one event at a time with a
    /// statement or two each: the reference the batched fold must match.
    async fn fold_one(txn: &DatabaseTransaction, row: &events::Model) -> Change {
        let event: CartEvent = decode_row(row).expect("an event decodes");
        let (user_id, change) = event.change();
        let user_id = user_id.as_str().to_owned();
        let lines = || {
            cart_view_items::Entity::delete_many()
                .filter(cart_view_items::Column::UserId.eq(user_id.clone()))
        };
        match change {
            LineChange::Set {
                product_id,
                quantity,
            } => {
                use cart_view_items::Column;
                let item = cart_view_items::ActiveModel {
                    user_id: Set(user_id.clone()),
                    product_id: Set(product_id),
                    quantity: Set(i32::try_from(quantity).unwrap_or(i32::MAX)),
                    added_position: Set(row.position),
                };
                let key = [Column::UserId, Column::ProductId];
                crate::db::upsert(txn, item, key, [Column::Quantity])
                    .await
                    .expect("a line upserted");
            }
            LineChange::Remove { product_id } => {
                lines()
                    .filter(cart_view_items::Column::ProductId.eq(product_id))
                    .exec(txn)
                    .await
                    .expect("a line deleted");
            }
            LineChange::Clear => {
                lines().exec(txn).await.expect("the lines deleted");
            }
        }
        let header = cart_view::ActiveModel {
            user_id: Set(user_id.clone()),
            version: Set(row.version),
            updated_at: Set(row.recorded_at),
            position: Set(row.position),
        };
        let changed = [
            cart_view::Column::Version,
            cart_view::Column::UpdatedAt,
            cart_view::Column::Position,
        ];
        crate::db::upsert(txn, header, [cart_view::Column::UserId], changed)
            .await
            .expect("a header upserted");
        Change {
            projection: NAME,
            key: user_id,
            position: row.position,
        }
    }

    /// Folds `log` by the reference, one event per transaction.
    async fn fold_by_reference(db: &DatabaseConnection, log: &[events::Model]) -> Vec<Change> {
        let mut changes = Vec::new();
        for row in log {
            let txn = db.begin().await.expect("a transaction");
            changes.push(fold_one(&txn, row).await);
            txn.commit().await.expect("a commit");
        }
        changes
    }

    /// Folds each batch with `CartProjection::apply`, a transaction each, as the relay does.
    async fn fold_in(db: &DatabaseConnection, batches: &[&[events::Model]]) -> Vec<Change> {
        let mut changes = Vec::new();
        for batch in batches {
            let txn = db.begin().await.expect("a transaction");
            changes.extend(CartProjection.apply(&txn, batch).await.expect("a fold"));
            txn.commit().await.expect("a commit");
        }
        changes
    }

    type Rows = (Vec<cart_view::Model>, Vec<cart_view_items::Model>);

    async fn rows(db: &DatabaseConnection) -> Rows {
        let headers = cart_view::Entity::find()
            .order_by_asc(cart_view::Column::UserId)
            .all(db)
            .await
            .expect("the headers");
        let lines = cart_view_items::Entity::find()
            .order_by_asc(cart_view_items::Column::UserId)
            .order_by_asc(cart_view_items::Column::ProductId)
            .all(db)
            .await
            .expect("the lines");
        (headers, lines)
    }

    async fn empty(db: &DatabaseConnection) {
        cart_view_items::Entity::delete_many()
            .exec(db)
            .await
            .expect("the lines deleted");
        cart_view::Entity::delete_many()
            .exec(db)
            .await
            .expect("the headers deleted");
    }

    /// Folding a log in batches of any length (each cart's events merged, each touched
    /// row written once) leaves the view and announces the changes exactly as folding it
    /// one event at a time does: by the fold as it was (a statement or two per event),
    /// and by `apply` with batches of one. On PostgreSQL too when `TEST_DATABASE_URL` is
    /// set.
    #[tokio::test]
    async fn a_batch_folds_as_its_events_one_at_a_time() {
        let reference = TestDatabase::new().await;
        let single = TestDatabase::new().await;
        let batched = TestDatabase::new().await;
        for seed in 0..8_u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let log = random_log(&mut rng, 5, 6, 300);
            for db in [&reference, &single, &batched] {
                empty(&db.db).await;
            }
            let expected = fold_by_reference(&reference.db, &log).await;
            let one_by_one: Vec<&[events::Model]> = log.chunks(1).collect();
            let singly = fold_in(&single.db, &one_by_one).await;
            let batches = random_batches(&mut rng, &log);
            let changes = fold_in(&batched.db, &batches).await;

            let view = rows(&reference.db).await;
            assert!(!view.1.is_empty(), "seed {seed}: the carts hold lines");
            assert_eq!(rows(&single.db).await, view, "seed {seed}: batches of one");
            assert_eq!(rows(&batched.db).await, view, "seed {seed}: batches");
            assert_eq!(
                keys(&singly),
                keys(&expected),
                "seed {seed}: batches of one"
            );
            assert_eq!(keys(&changes), keys(&expected), "seed {seed}: batches");
        }
        for db in [reference, single, batched] {
            db.close().await;
        }
    }

    /// A page as long as a rebuild's touches more rows than one statement takes: the
    /// rows are written in several statements, and the view is still the one the events
    /// make one at a time.
    #[tokio::test]
    async fn a_page_of_more_rows_than_a_statement_takes_folds_as_its_events() {
        let reference = TestDatabase::new().await;
        let batched = TestDatabase::new().await;
        let mut rng = StdRng::seed_from_u64(99);
        let log = random_log(&mut rng, 2 * ROWS_PER_STATEMENT, 4, 6 * ROWS_PER_STATEMENT);
        let expected = fold_by_reference(&reference.db, &log).await;
        let changes = fold_in(&batched.db, &[&log[..]]).await;
        let view = rows(&reference.db).await;
        assert!(view.0.len() > ROWS_PER_STATEMENT, "{} carts", view.0.len());
        assert!(view.1.len() > ROWS_PER_STATEMENT, "{} lines", view.1.len());
        assert_eq!(rows(&batched.db).await, view);
        assert_eq!(keys(&changes), keys(&expected));
        reference.close().await;
        batched.close().await;
    }

    /// The cases the merge must get right, in one batch on a view that holds the lines
    /// already: a line removed and added again (a new `added_position`), a cart cleared
    /// and refilled, a quantity changed several times, a line added twice.
    #[tokio::test]
    async fn a_batch_removes_and_adds_lines_again() {
        let db = TestDatabase::new().await;
        let (alice, bob) = (
            UserId::parse("alice").expect("a user id"),
            UserId::parse("bob").expect("a user id"),
        );
        let (p, q, r) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let add = |user: &UserId, product_id, quantity| CartEvent::ItemAdded {
            user_id: user.clone(),
            product_id,
            added: quantity,
            quantity,
        };
        let set = |user: &UserId, product_id, quantity| CartEvent::QuantityChanged {
            user_id: user.clone(),
            product_id,
            quantity,
        };
        let remove = |user: &UserId, product_id| CartEvent::ItemRemoved {
            user_id: user.clone(),
            product_id,
        };
        let clear = |user: &UserId| CartEvent::Cleared {
            user_id: user.clone(),
        };
        let events = [
            // Before the batch.
            (&alice, add(&alice, p, 1)),
            (&alice, add(&alice, q, 2)),
            (&bob, add(&bob, p, 3)),
            (&bob, add(&bob, q, 4)),
            // The batch, from position 5.
            (&alice, remove(&alice, p)),
            (&alice, set(&alice, q, 5)),
            (&bob, clear(&bob)),
            (&alice, add(&alice, p, 6)),
            (&bob, add(&bob, q, 7)),
            (&alice, set(&alice, q, 8)),
            (&alice, add(&alice, r, 9)),
            (&alice, set(&alice, r, 10)),
        ];
        let mut versions: HashMap<&str, i64> = HashMap::new();
        let log: Vec<events::Model> = events
            .iter()
            .enumerate()
            .map(|(i, (user, event))| {
                let version = versions.entry(user.as_str()).or_default();
                *version += 1;
                stored(i as i64 + 1, *version, user, event)
            })
            .collect();
        let changes = fold_in(&db.db, &[&log[..4], &log[4..]]).await;
        let (headers, lines) = rows(&db.db).await;
        let lines: Vec<(&str, Uuid, i32, i64)> = lines
            .iter()
            .map(|l| {
                (
                    l.user_id.as_str(),
                    l.product_id,
                    l.quantity,
                    l.added_position,
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                ("alice", p, 6, 8),
                ("alice", q, 8, 2),
                ("alice", r, 10, 11),
                ("bob", q, 7, 9),
            ]
        );
        let headers: Vec<(&str, i64, i64)> = headers
            .iter()
            .map(|h| (h.user_id.as_str(), h.version, h.position))
            .collect();
        assert_eq!(headers, [("alice", 8, 12), ("bob", 4, 9)]);
        let positions: Vec<i64> = changes.iter().map(|c| c.position).collect();
        assert_eq!(positions, (1..=12).collect::<Vec<_>>());
        db.close().await;
    }

    /// An event that does not decode fails the whole batch, as it failed its own fold:
    /// the relay then folds the batch one event at a time and stops at it.
    #[tokio::test]
    async fn a_batch_holding_an_event_that_does_not_decode_fails() {
        let db = TestDatabase::new().await;
        let mut rng = StdRng::seed_from_u64(3);
        let mut log = random_log(&mut rng, 2, 3, 20);
        log[10].data = serde_json::json!({ "nothing": "of a cart" });
        let txn = db.db.begin().await.expect("a transaction");
        CartProjection
            .apply(&txn, &log)
            .await
            .expect_err("an event that does not decode fails the batch");
        txn.rollback().await.expect("a rollback");
        db.close().await;
    }
}
