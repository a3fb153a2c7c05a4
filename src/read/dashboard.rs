//! The dashboard view: orders per status, revenue (confirmed minus refunded, in cents),
//! and orders placed per UTC day — counters moved by each event, never recomputed by
//! scanning orders. The projection remembers each order's status and total in its own
//! table so a transition moves exactly one count.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::bus::Change;
use super::catalog::{ROWS_PER_STATEMENT, catalog_view};
use super::view::LiveView;
use super::{Announces, ChangeKey, Projection, ViewTable};
use crate::domain::order::{Order, OrderEvent, OrderStatus};
use crate::domain::payment::{Payment, PaymentEvent};
use crate::domain::product::ProductStatus;
use crate::domain::{Aggregate, Stored};
use crate::entity::events;
use crate::log::codec::decode_row;
use crate::log::reader::Wanted;

/// The `dashboard_counters` table. The running figures, one row per counter name.
pub mod dashboard_counters {
    crate::entity::table! {
        "dashboard_counters" {
            #[sea_orm(primary_key, auto_increment = false)]
            pub name: String,
            pub value: i64,
        }
    }
}

/// The `dashboard_daily` table. Orders placed per day (UTC).
pub mod dashboard_daily {
    crate::entity::table! {
        "dashboard_daily" {
            #[sea_orm(primary_key, auto_increment = false)]
            pub day: String,
            pub orders: i64,
        }
    }
}

/// The `dashboard_orders` table. What the dashboard remembers of each order: its status and total.
pub mod dashboard_orders {
    crate::entity::table! {
        "dashboard_orders" {
            #[sea_orm(primary_key, auto_increment = false)]
            pub order_id: Uuid,
            pub status: String,
            pub total_cents: i64,
        }
    }
}

pub const NAME: &str = "dashboard";

/// The one key of the dashboard view on the change bus.
pub const KEY: &str = "dashboard";

/// The product events the dashboard announces (`lowStock`) and writes nothing for.
const STOCK: Wanted = Wanted::all(crate::domain::product::Product::STREAM_TYPE);

const REVENUE: &str = "revenue_cents";

fn status_counter(status: OrderStatus) -> String {
    format!("status:{}", status.as_str())
}

pub struct DashboardProjection;

/// On a row that exists already (by `key`), adds `delta` to its `column` in the database:
/// a counter is moved, never read and written back.
fn increment<E: EntityTrait>(key: E::Column, column: E::Column, delta: i64) -> OnConflict {
    OnConflict::column(key)
        .value(column, Expr::col((E::default(), column)).add(delta))
        .to_owned()
}

async fn bump(txn: &DatabaseTransaction, name: &str, delta: i64) -> Result<(), DbErr> {
    dashboard_counters::Entity::insert(dashboard_counters::ActiveModel {
        name: Set(name.to_owned()),
        value: Set(delta),
    })
    .on_conflict(increment::<dashboard_counters::Entity>(
        dashboard_counters::Column::Name,
        dashboard_counters::Column::Value,
        delta,
    ))
    .exec(txn)
    .await?;
    Ok(())
}

fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

#[async_trait::async_trait]
impl Projection for DashboardProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [ViewTable] {
        &[
            ViewTable {
                name: "dashboard_counters",
                key: &["name"],
                change_key: ChangeKey::Whole(KEY),
            },
            ViewTable {
                name: "dashboard_daily",
                key: &["day"],
                change_key: ChangeKey::Whole(KEY),
            },
            ViewTable {
                name: "dashboard_orders",
                key: &["order_id"],
                change_key: ChangeKey::Whole(KEY),
            },
        ]
    }

    fn wants(&self) -> &'static [Wanted] {
        const {
            &[
                Wanted::all(Order::STREAM_TYPE),
                Wanted::all(Payment::STREAM_TYPE),
                STOCK,
            ]
        }
    }

    /// Product events move `lowStock`, which is read from the catalog view: they write
    /// nothing here.
    fn announces(&self) -> Option<Announces> {
        Some(Announces {
            wanted: const { &[STOCK] },
            key: KEY,
        })
    }

    /// Folds a batch in a few statements whatever its length (ADR 0022): the orders the
    /// batch names are read in one query, its events are applied in memory in position
    /// order (statuses, each counter's and each day's sum, the revenue saturating event
    /// by event as before), then each touched row is written once. The one change is
    /// announced at the last event that touched the figures.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[events::Model],
    ) -> Result<Vec<Change>, DbErr> {
        let mut steps = Vec::with_capacity(events.len());
        for row in events {
            steps.push((row, Step::of(row)?));
        }
        let named: Vec<uuid::Uuid> = steps
            .iter()
            .filter_map(|(_, step)| match step {
                Step::Placed { order_id, .. } | Step::Status { order_id, .. } => Some(*order_id),
                _ => None,
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut orders = Figures::load(txn, &named).await?;
        let mut last = None;
        for (row, step) in steps {
            if orders.fold(txn, row, step).await? {
                last = Some(row.position);
            }
        }
        orders.write(txn).await?;
        Ok(last
            .map(|position| Change {
                projection: NAME,
                key: KEY.to_owned(),
                position,
            })
            .into_iter()
            .collect())
    }
}

/// What one event does to the figures.
enum Step {
    /// An order placed: a pending order of `total`, counted on its day.
    Placed {
        order_id: uuid::Uuid,
        total: i64,
        day: String,
    },
    /// An order's status moved (or `None`: an order event that moves none).
    Status {
        order_id: uuid::Uuid,
        status: Option<OrderStatus>,
    },
    /// A refund takes back what the confirmation counted.
    Refunded { cents: i64 },
    /// Touches the figures without writing any (a stock change moves `lowStock`).
    Touches,
    /// Nothing the dashboard shows.
    Nothing,
}

impl Step {
    fn of(row: &events::Model) -> Result<Self, DbErr> {
        Ok(if row.stream_type == Order::STREAM_TYPE {
            let order_id = row.stream_id;
            let status = match decode_row::<OrderEvent>(row)? {
                OrderEvent::Placed { total, .. } => {
                    return Ok(Step::Placed {
                        order_id,
                        total: total.cents(),
                        day: day_of(row.recorded_at),
                    });
                }
                OrderEvent::Reserved {} => Some(OrderStatus::Reserved),
                OrderEvent::Rejected { .. } => Some(OrderStatus::Rejected),
                OrderEvent::Confirmed {} => Some(OrderStatus::Confirmed),
                OrderEvent::Cancelled { .. } => Some(OrderStatus::Cancelled),
                OrderEvent::Shipped {} => Some(OrderStatus::Shipped),
                OrderEvent::Delivered {} => Some(OrderStatus::Delivered),
                OrderEvent::StockReleased {} => None,
            };
            Step::Status { order_id, status }
        } else if row.stream_type == Payment::STREAM_TYPE {
            match decode_row::<PaymentEvent>(row)? {
                PaymentEvent::Refunded { amount, .. } => Step::Refunded {
                    cents: amount.cents(),
                },
                _ => Step::Nothing,
            }
        } else if row.stream_type == crate::domain::product::Product::STREAM_TYPE {
            Step::Touches
        } else {
            Step::Nothing
        })
    }
}

/// One order as the dashboard knows it, in a batch.
struct KnownOrder {
    status: String,
    total_cents: i64,
    /// Placed in this batch: inserted, not updated.
    new: bool,
    /// Its status moved in this batch.
    moved: bool,
}

/// A batch's figures: the orders it names, each counter's and each day's sum (a counter
/// an event moved is written even when its sum is 0, as one event at a time wrote it),
/// and the revenue once an event moved it.
struct Figures {
    orders: HashMap<uuid::Uuid, KnownOrder>,
    counters: BTreeMap<String, i64>,
    days: BTreeMap<String, i64>,
    revenue: Option<i64>,
}

impl Figures {
    /// The stored orders of `named` (one query per `ROWS_PER_STATEMENT` ids).
    async fn load(txn: &DatabaseTransaction, named: &[uuid::Uuid]) -> Result<Self, DbErr> {
        let mut orders = HashMap::with_capacity(named.len());
        for chunk in named.chunks(ROWS_PER_STATEMENT) {
            let rows = dashboard_orders::Entity::find()
                .filter(dashboard_orders::Column::OrderId.is_in(chunk.iter().copied()))
                .all(txn)
                .await?;
            for row in rows {
                orders.insert(
                    row.order_id,
                    KnownOrder {
                        status: row.status,
                        total_cents: row.total_cents,
                        new: false,
                        moved: false,
                    },
                );
            }
        }
        Ok(Self {
            orders,
            counters: BTreeMap::new(),
            days: BTreeMap::new(),
            revenue: None,
        })
    }

    fn count(&mut self, counter: String, delta: i64) {
        *self.counters.entry(counter).or_default() += delta;
    }

    /// Adds `delta` to the revenue, saturating at the bounds of `i64` cents as each event
    /// did (the stored value is read once, when the first event moves it). Every order's
    /// total is bounded, but their sum is not: a plain `value + delta` would fail the
    /// projection on PostgreSQL (bigint out of range) and turn the column into a float
    /// on SQLite, and an accepted event must never make a view FAILED.
    async fn earn(&mut self, txn: &DatabaseTransaction, delta: i64) -> Result<(), DbErr> {
        let current = match self.revenue {
            Some(value) => value,
            None => dashboard_counters::Entity::find_by_id(REVENUE.to_owned())
                .one(txn)
                .await?
                .map_or(0, |c| c.value),
        };
        self.revenue = Some(current.saturating_add(delta));
        Ok(())
    }

    /// Applies one event; whether it touched the figures.
    async fn fold(
        &mut self,
        txn: &DatabaseTransaction,
        row: &events::Model,
        step: Step,
    ) -> Result<bool, DbErr> {
        match step {
            Step::Placed {
                order_id,
                total,
                day,
            } => {
                if self.orders.contains_key(&order_id) {
                    // Inserting it again failed on its key, one event at a time.
                    return Err(DbErr::Custom(format!(
                        "dashboard: order {order_id} placed again (event at {})",
                        row.position
                    )));
                }
                self.orders.insert(
                    order_id,
                    KnownOrder {
                        status: OrderStatus::Pending.as_str().to_owned(),
                        total_cents: total,
                        new: true,
                        moved: true,
                    },
                );
                self.count(status_counter(OrderStatus::Pending), 1);
                *self.days.entry(day).or_default() += 1;
            }
            Step::Status { order_id, status } => {
                let Some(status) = status else {
                    return Ok(true);
                };
                let Some(known) = self.orders.get_mut(&order_id) else {
                    // An order the dashboard never saw placed: nothing to move.
                    return Ok(true);
                };
                let total = known.total_cents;
                if known.status != status.as_str() {
                    let was = std::mem::replace(&mut known.status, status.as_str().to_owned());
                    known.moved = true;
                    self.count(format!("status:{was}"), -1);
                    self.count(status_counter(status), 1);
                }
                // Revenue counts an order once it is confirmed (paid).
                if status == OrderStatus::Confirmed {
                    self.earn(txn, total).await?;
                }
            }
            Step::Refunded { cents } => self.earn(txn, -cents).await?,
            Step::Touches => {}
            Step::Nothing => return Ok(false),
        }
        Ok(true)
    }

    /// Writes each touched row once.
    async fn write(self, txn: &DatabaseTransaction) -> Result<(), DbErr> {
        let placed: Vec<dashboard_orders::ActiveModel> = self
            .orders
            .iter()
            .filter(|(_, o)| o.new)
            .map(|(id, o)| dashboard_orders::ActiveModel {
                order_id: Set(*id),
                status: Set(o.status.clone()),
                total_cents: Set(o.total_cents),
            })
            .collect();
        for chunk in placed.chunks(ROWS_PER_STATEMENT) {
            dashboard_orders::Entity::insert_many(chunk.iter().cloned())
                .exec_without_returning(txn)
                .await?;
        }
        let mut moved: BTreeMap<&str, Vec<uuid::Uuid>> = BTreeMap::new();
        for (id, o) in self.orders.iter().filter(|(_, o)| o.moved && !o.new) {
            moved.entry(o.status.as_str()).or_default().push(*id);
        }
        for (status, ids) in moved {
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                dashboard_orders::Entity::update_many()
                    .col_expr(dashboard_orders::Column::Status, Expr::value(status))
                    .filter(dashboard_orders::Column::OrderId.is_in(chunk.iter().copied()))
                    .exec(txn)
                    .await?;
            }
        }
        for (name, delta) in &self.counters {
            bump(txn, name, *delta).await?;
        }
        for (day, orders) in &self.days {
            dashboard_daily::Entity::insert(dashboard_daily::ActiveModel {
                day: Set(day.clone()),
                orders: Set(*orders),
            })
            .on_conflict(increment::<dashboard_daily::Entity>(
                dashboard_daily::Column::Day,
                dashboard_daily::Column::Orders,
                *orders,
            ))
            .exec(txn)
            .await?;
        }
        if let Some(revenue) = self.revenue {
            use dashboard_counters::Column;
            let counter = dashboard_counters::ActiveModel {
                name: Set(REVENUE.to_owned()),
                value: Set(revenue),
            };
            crate::db::upsert(txn, counter, [Column::Name], [Column::Value]).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl LiveView for DashboardProjection {
    const NAME: &'static str = NAME;
    type State = DashboardRead;

    async fn load(
        db: &DatabaseConnection,
        _key: &str,
        position: i64,
    ) -> Result<Option<(i64, Self::State)>, DbErr> {
        let figures = read(db, Utc::now(), position).await?;
        Ok(Some((figures.position, figures)))
    }

    /// One key, whose figures have no position of their own: a range in which the
    /// projection folded anything may have moved them, so it names the key at its end
    /// (the doorbell says whether the fold changed the figures at all).
    async fn moved(
        _db: &DatabaseConnection,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Vec<(i64, String)>, DbErr> {
        Ok(if after < upto && limit > 0 {
            vec![(upto, KEY.to_owned())]
        } else {
            Vec::new()
        })
    }

    /// One key: any figures at or above the change are the right ones to send.
    fn sends(loaded: i64, changed: i64) -> bool {
        loaded >= changed
    }
}

/// The dashboard's figures as stored, and the position they reflect.
#[derive(Debug, Clone)]
pub struct DashboardRead {
    pub by_status: Vec<(OrderStatus, i64)>,
    pub revenue_cents: i64,
    pub orders_today: i64,
    pub position: i64,
    /// The position of the last stock change at or before `position`, once asked for
    /// (`last_stock_change`): shared by every subscriber sent these figures, so a frame
    /// reads the log once on each replica however many admins watch.
    pub stock_at: Arc<tokio::sync::OnceCell<i64>>,
}

/// The position of the last product event at or before `at` (0 if none): where the
/// catalog must be for `lowStock` to show the stock of `at`. One probe of the
/// `(stream_type, position)` index of the log.
pub async fn last_stock_change<C: ConnectionTrait>(log: &C, at: i64) -> Result<i64, DbErr> {
    use sea_orm::sea_query::Func;
    let last: Option<Option<i64>> = events::Entity::find()
        .select_only()
        .expr(Func::max(Expr::col(events::Column::Position)))
        .filter(events::Column::StreamType.eq(crate::domain::product::Product::STREAM_TYPE))
        .filter(events::Column::Position.lte(at))
        .into_tuple()
        .one(log)
        .await?;
    Ok(last.flatten().unwrap_or(0))
}

/// Reads the figures in one snapshot. `known` is the projection's checkpoint as seen
/// *before* the snapshot began: every event up to it is visible in the snapshot. The
/// stored checkpoint is written with every change of the figures, so the larger of the
/// two is exactly the position the figures reflect.
pub async fn read(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    known: i64,
) -> Result<DashboardRead, DbErr> {
    let txn = super::begin_snapshot(db).await?;
    let figures = read_figures(&txn, now).await;
    let stored = super::checkpoints::load_one(&txn, NAME).await;
    txn.commit().await?;
    let mut figures = figures?;
    figures.position = std::cmp::max(known, stored?);
    Ok(figures)
}

async fn read_figures<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
) -> Result<DashboardRead, DbErr> {
    let counters = dashboard_counters::Entity::find().all(db).await?;
    let value = |name: &str| {
        counters
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.value)
    };
    let by_status = OrderStatus::ALL
        .iter()
        .copied()
        .map(|s| (s, value(&status_counter(s))))
        .collect();
    let orders_today = dashboard_daily::Entity::find_by_id(day_of(now))
        .one(db)
        .await?
        .map_or(0, |d| d.orders);
    Ok(DashboardRead {
        by_status,
        revenue_cents: value(REVENUE),
        orders_today,
        position: 0,
        stock_at: Arc::default(),
    })
}

/// Active products with at most `threshold` units on hand, fewest first.
pub async fn low_stock<C: ConnectionTrait>(
    db: &C,
    threshold: i64,
    limit: u64,
) -> Result<Vec<catalog_view::Model>, DbErr> {
    catalog_view::Entity::find()
        .filter(catalog_view::Column::Status.eq(ProductStatus::Active.as_str()))
        .filter(catalog_view::Column::Stock.lte(threshold))
        .order_by_asc(catalog_view::Column::Stock)
        .order_by_asc(catalog_view::Column::Sku)
        .limit(limit)
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use sea_orm::TransactionTrait;

    use super::*;
    use crate::db::TestDatabase;
    use crate::read::orders::tests::{random_batches, random_log};

    // The fold as it was before batches were merged, one statement or more per event:
    // the reference the batched fold must match.

    /// Adds `delta` to a money counter, saturating at the bounds of `i64` cents. Every order's
    /// total is bounded, but their sum is not: a plain `value + delta` would fail the
    /// projection on PostgreSQL (bigint out of range) and turn the column into a float on
    /// SQLite, and an accepted event must never make a view FAILED. The relay holds the
    /// view's checkpoint row while it folds, so read-then-write races with no one.
    async fn bump_saturating(
        txn: &DatabaseTransaction,
        name: &str,
        delta: i64,
    ) -> Result<(), DbErr> {
        let current = dashboard_counters::Entity::find_by_id(name.to_owned())
            .one(txn)
            .await?
            .map_or(0, |c| c.value);
        let counter = dashboard_counters::ActiveModel {
            name: Set(name.to_owned()),
            value: Set(current.saturating_add(delta)),
        };
        use dashboard_counters::Column;
        crate::db::upsert(txn, counter, [Column::Name], [Column::Value]).await
    }

    /// Moves the order from its remembered status to `status`.
    async fn transition(
        txn: &DatabaseTransaction,
        order_id: uuid::Uuid,
        status: OrderStatus,
    ) -> Result<Option<i64>, DbErr> {
        let Some(known) = dashboard_orders::Entity::find_by_id(order_id)
            .one(txn)
            .await?
        else {
            return Ok(None);
        };
        if known.status != status.as_str() {
            bump(txn, &format!("status:{}", known.status), -1).await?;
            bump(txn, &status_counter(status), 1).await?;
            dashboard_orders::Entity::update(dashboard_orders::ActiveModel {
                order_id: Set(order_id),
                status: Set(status.as_str().to_owned()),
                ..Default::default()
            })
            .exec(txn)
            .await?;
        }
        Ok(Some(known.total_cents))
    }

    async fn reference_apply(
        txn: &DatabaseTransaction,
        events: &[events::Model],
    ) -> Result<Vec<Change>, DbErr> {
        let mut last = None;
        for row in events {
            let touched = if row.stream_type == Order::STREAM_TYPE {
                let status = match decode_row::<OrderEvent>(row)? {
                    OrderEvent::Placed { total, .. } => {
                        dashboard_orders::Entity::insert(dashboard_orders::ActiveModel {
                            order_id: Set(row.stream_id),
                            status: Set(OrderStatus::Pending.as_str().to_owned()),
                            total_cents: Set(total.cents()),
                        })
                        .exec(txn)
                        .await?;
                        bump(txn, &status_counter(OrderStatus::Pending), 1).await?;
                        dashboard_daily::Entity::insert(dashboard_daily::ActiveModel {
                            day: Set(day_of(row.recorded_at)),
                            orders: Set(1),
                        })
                        .on_conflict(increment::<dashboard_daily::Entity>(
                            dashboard_daily::Column::Day,
                            dashboard_daily::Column::Orders,
                            1,
                        ))
                        .exec(txn)
                        .await?;
                        None
                    }
                    OrderEvent::Reserved {} => Some(OrderStatus::Reserved),
                    OrderEvent::Rejected { .. } => Some(OrderStatus::Rejected),
                    OrderEvent::Confirmed {} => Some(OrderStatus::Confirmed),
                    OrderEvent::Cancelled { .. } => Some(OrderStatus::Cancelled),
                    OrderEvent::Shipped {} => Some(OrderStatus::Shipped),
                    OrderEvent::Delivered {} => Some(OrderStatus::Delivered),
                    OrderEvent::StockReleased {} => None,
                };
                if let Some(status) = status {
                    let total = transition(txn, row.stream_id, status).await?;
                    // Revenue counts an order once it is confirmed (paid).
                    if status == OrderStatus::Confirmed
                        && let Some(total) = total
                    {
                        bump_saturating(txn, REVENUE, total).await?;
                    }
                }
                true
            } else if row.stream_type == Payment::STREAM_TYPE {
                match decode_row::<PaymentEvent>(row)? {
                    // A refund takes back what the confirmation counted.
                    PaymentEvent::Refunded { amount, .. } => {
                        bump_saturating(txn, REVENUE, -amount.cents()).await?;
                        true
                    }
                    _ => false,
                }
            } else {
                // Stock changes move `lowStock`.
                row.stream_type == crate::domain::product::Product::STREAM_TYPE
            };
            if touched {
                last = Some(row.position);
            }
        }
        Ok(last
            .map(|position| Change {
                projection: NAME,
                key: KEY.to_owned(),
                position,
            })
            .into_iter()
            .collect())
    }

    /// Folds each batch, by the reference or by `apply`, a transaction each. Stops at
    /// the first batch that fails (rolled back), with its first position.
    async fn fold_in(
        db: &DatabaseConnection,
        batches: &[&[events::Model]],
        by_reference: bool,
    ) -> (Vec<Change>, Option<i64>) {
        let mut changes = Vec::new();
        for batch in batches {
            let txn = db.begin().await.expect("a transaction");
            let folded = if by_reference {
                reference_apply(&txn, batch).await
            } else {
                DashboardProjection.apply(&txn, batch).await
            };
            match folded {
                Ok(folded) => changes.extend(folded),
                Err(_) => {
                    txn.rollback().await.expect("a rollback");
                    return (changes, batch.first().map(|e| e.position));
                }
            }
            txn.commit().await.expect("a commit");
        }
        (changes, None)
    }

    type Tables = (
        Vec<dashboard_counters::Model>,
        Vec<dashboard_daily::Model>,
        Vec<dashboard_orders::Model>,
    );

    async fn tables(db: &DatabaseConnection) -> Tables {
        (
            dashboard_counters::Entity::find()
                .order_by_asc(dashboard_counters::Column::Name)
                .all(db)
                .await
                .expect("the counters"),
            dashboard_daily::Entity::find()
                .order_by_asc(dashboard_daily::Column::Day)
                .all(db)
                .await
                .expect("the days"),
            dashboard_orders::Entity::find()
                .order_by_asc(dashboard_orders::Column::OrderId)
                .all(db)
                .await
                .expect("the orders"),
        )
    }

    async fn empty(db: &DatabaseConnection) {
        dashboard_counters::Entity::delete_many()
            .exec(db)
            .await
            .expect("emptied");
        dashboard_daily::Entity::delete_many()
            .exec(db)
            .await
            .expect("emptied");
        dashboard_orders::Entity::delete_many()
            .exec(db)
            .await
            .expect("emptied");
    }

    /// An order placed and moved on within one batch leaves its counters at 0, and the
    /// rows are there, as one event at a time left them: a whole short log of one order at
    /// a time, folded as one batch.
    #[tokio::test]
    async fn counters_a_batch_moves_back_to_zero_are_written() {
        let reference = TestDatabase::new().await;
        let batched = TestDatabase::new().await;
        for seed in 0..8_u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let log: Vec<events::Model> = random_log(&mut rng, 1, 40)
                .into_iter()
                .filter(|e| Wanted::any(DashboardProjection.wants(), e))
                .collect();
            for db in [&reference, &batched] {
                empty(&db.db).await;
            }
            let whole = [log.as_slice()];
            let (expected, failed) = fold_in(&reference.db, &whole, true).await;
            assert_eq!(failed, None, "seed {seed}");
            let (changes, failed) = fold_in(&batched.db, &whole, false).await;
            assert_eq!(failed, None, "seed {seed}");
            let figures = tables(&reference.db).await;
            assert!(
                figures.0.iter().any(|c| c.value == 0),
                "seed {seed}: {:?}",
                figures.0
            );
            assert_eq!(tables(&batched.db).await, figures, "seed {seed}");
            assert_eq!(changes, expected, "seed {seed}");
        }
        for db in [reference, batched] {
            db.close().await;
        }
    }

    /// A shop's log (orders going every way an order goes, odd events, stock changes)
    /// folded in random batches leaves the figures and announces the changes exactly as
    /// the fold that ran a statement or more per event did; batches of one leave the
    /// same figures too. On PostgreSQL too when `TEST_DATABASE_URL` is set.
    #[tokio::test]
    async fn a_batch_folds_as_its_events_one_at_a_time() {
        let reference = TestDatabase::new().await;
        let single = TestDatabase::new().await;
        let batched = TestDatabase::new().await;
        for seed in 0..8_u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let log: Vec<events::Model> = random_log(&mut rng, 6, 300)
                .into_iter()
                .filter(|e| Wanted::any(DashboardProjection.wants(), e))
                .collect();
            for db in [&reference, &single, &batched] {
                empty(&db.db).await;
            }
            let batches = random_batches(&mut rng, &log);
            let (expected, failed) = fold_in(&reference.db, &batches, true).await;
            assert_eq!(failed, None, "seed {seed}: the reference folds the log");
            let (changes, failed) = fold_in(&batched.db, &batches, false).await;
            assert_eq!(failed, None, "seed {seed}: batches");
            let one_by_one: Vec<&[events::Model]> = log.chunks(1).collect();
            let (_, failed) = fold_in(&single.db, &one_by_one, false).await;
            assert_eq!(failed, None, "seed {seed}: batches of one");

            let figures = tables(&reference.db).await;
            assert!(
                figures.0.iter().any(|c| c.name == REVENUE) && figures.0.len() >= 5,
                "seed {seed}: the log moves the revenue and most statuses: {:?}",
                figures.0
            );
            assert_eq!(tables(&batched.db).await, figures, "seed {seed}: batches");
            assert_eq!(
                tables(&single.db).await,
                figures,
                "seed {seed}: batches of one"
            );
            assert_eq!(changes, expected, "seed {seed}: the changes announced");
        }
        for db in [reference, single, batched] {
            db.close().await;
        }
    }
}
