//! The dashboard view: orders per status, revenue (confirmed minus refunded, in cents),
//! and orders placed per UTC day — counters moved by each event, never recomputed by
//! scanning orders. The projection remembers each order's status and total in its own
//! table so a transition moves exactly one count.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::bus::Change;
use super::catalog::catalog_view;
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

/// Adds `delta` to a money counter, saturating at the bounds of `i64` cents. Every order's
/// total is bounded, but their sum is not: a plain `value + delta` would fail the
/// projection on PostgreSQL (bigint out of range) and turn the column into a float on
/// SQLite, and an accepted event must never make a view FAILED. The relay holds the
/// view's checkpoint row while it folds, so read-then-write races with no one.
async fn bump_saturating(txn: &DatabaseTransaction, name: &str, delta: i64) -> Result<(), DbErr> {
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

fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

impl DashboardProjection {
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

    async fn apply(
        &self,
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
                    let total = Self::transition(txn, row.stream_id, status).await?;
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
