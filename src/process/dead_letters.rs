//! The order saga's dead letters (table `saga_dead_letters`): the orders it could not
//! advance, each RETRYING at a scheduled time or PARKED until an admin retries it, with
//! the error, the number of attempts, when they failed, and the event that failed first.
//!
//! The saga writes them (first failure, another failure, success); the admin API lists
//! the parked ones and makes one due again. Writes queue on the write gate like every
//! other writer (one at a time on SQLite). Policy and reasons: ADR 0003. Each saga
//! partition (ADR 0012) retries only its own orders' dead letters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::cluster::Partition;
use crate::domain::Stored;
use crate::entity::saga_dead_letters::{self, Column, Entity, Model};
use crate::read::checkpoints;
use crate::write::{Wakeup, WriteGate, begin_write};

/// Persisted states of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The saga tries the order again at `next_attempt_at`.
    Retrying,
    /// Set aside: the saga leaves it alone until an admin retries it.
    Parked,
}

impl Stored for Status {
    const WHAT: &'static str = "dead letter status";
    const ALL: &'static [Self] = &[Status::Retrying, Status::Parked];

    fn as_str(self) -> &'static str {
        match self {
            Status::Retrying => "RETRYING",
            Status::Parked => "PARKED",
        }
    }
}

/// What becomes of an order after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryAt(DateTime<Utc>),
    Park,
}

impl Next {
    fn status(self) -> Status {
        match self {
            Next::RetryAt(_) => Status::Retrying,
            Next::Park => Status::Parked,
        }
    }

    fn at(self) -> Option<DateTime<Utc>> {
        match self {
            Next::RetryAt(at) => Some(at),
            Next::Park => None,
        }
    }
}

/// One failed attempt, as recorded.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    pub order_id: Uuid,
    pub error: &'a str,
    pub next: Next,
    pub now: DateTime<Utc>,
}

/// How many orders wait, and when the saga must look again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub retrying: i64,
    pub parked: i64,
    /// The earliest scheduled retry.
    pub next_due: Option<DateTime<Utc>>,
}

/// A page of parked orders, by the position of the event that failed first.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Model>,
    pub has_next_page: bool,
    pub total_count: u64,
}

/// The dead letters, shared by the saga and the admin API. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetters {
    db: DatabaseConnection,
    gate: WriteGate,
    /// Wakes the saga when an admin makes an order due.
    wakeup: Wakeup,
    /// Counts the admin's changes made here (shared by the clones), so that the saga
    /// re-reads its dead letters at once after one, and otherwise only once per poll.
    changes: Arc<AtomicU64>,
}

impl DeadLetters {
    pub fn new(db: DatabaseConnection, gate: WriteGate, wakeup: Wakeup) -> Self {
        Self {
            db,
            gate,
            wakeup,
            changes: Arc::default(),
        }
    }

    /// How many changes the admin has made through this value and its clones.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// The dead letter of an order, if it has one.
    pub async fn find(&self, order_id: Uuid) -> Result<Option<Model>, DbErr> {
        Entity::find_by_id(order_id).one(&self.db).await
    }

    /// Records the first failure of an order, caused by the event at `position`, and moves
    /// the consumer's `checkpoint` past that event, in one transaction: after a crash
    /// either both happened (the dead letter owns the order) or neither (the event is
    /// handled again). Idempotent: a second first failure counts as another attempt.
    pub async fn record_first(
        &self,
        checkpoint: &str,
        position: i64,
        failure: Failure<'_>,
    ) -> Result<(), DbErr> {
        let _gate = self.gate.enter_views().await;
        let txn = begin_write(&self.db).await?;
        Entity::insert(saga_dead_letters::ActiveModel {
            order_id: Set(failure.order_id),
            status: Set(failure.next.status().as_str().to_owned()),
            error: Set(failure.error.to_owned()),
            attempts: Set(1),
            first_failed_at: Set(failure.now),
            last_failed_at: Set(failure.now),
            next_attempt_at: Set(failure.next.at()),
            position: Set(position),
        })
        .on_conflict(
            OnConflict::column(Column::OrderId)
                .update_columns([
                    Column::Status,
                    Column::Error,
                    Column::LastFailedAt,
                    Column::NextAttemptAt,
                ])
                .value(
                    Column::Attempts,
                    Expr::col((Entity, Column::Attempts)).add(1),
                )
                .to_owned(),
        )
        .exec(&txn)
        .await?;
        checkpoints::store(&txn, checkpoint, position).await?;
        txn.commit().await
    }

    /// Records another failed attempt of an order that has a dead letter.
    pub async fn record_again(&self, attempts: i32, failure: Failure<'_>) -> Result<(), DbErr> {
        let _gate = self.gate.enter_views().await;
        Entity::update_many()
            .col_expr(Column::Status, Expr::value(failure.next.status().as_str()))
            .col_expr(Column::Error, Expr::value(failure.error))
            .col_expr(Column::Attempts, Expr::value(attempts))
            .col_expr(Column::LastFailedAt, Expr::value(failure.now))
            .col_expr(Column::NextAttemptAt, Expr::value(failure.next.at()))
            .filter(Column::OrderId.eq(failure.order_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The order advanced: its dead letter goes. Only a retrying one: an order an admin
    /// parked meanwhile cannot be, since only the saga parks.
    pub async fn resolve(&self, order_id: Uuid) -> Result<(), DbErr> {
        let _gate = self.gate.enter_views().await;
        Entity::delete_many()
            .filter(Column::OrderId.eq(order_id))
            .filter(Column::Status.eq(Status::Retrying.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Retries of `partition`'s orders due at `now`, the longest overdue first.
    pub async fn due(
        &self,
        now: DateTime<Utc>,
        limit: u64,
        partition: Partition,
    ) -> Result<Vec<Model>, DbErr> {
        in_partition(Entity::find(), partition)
            .filter(Column::Status.eq(Status::Retrying.as_str()))
            .filter(Column::NextAttemptAt.lte(now))
            .order_by_asc(Column::NextAttemptAt)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// How many orders are retrying and parked (in every partition), and the earliest
    /// retry to come of `partition`'s orders: one grouped statement (the saga asks at
    /// every tick of every partition).
    pub async fn summary(&self, partition: Partition) -> Result<Summary, DbErr> {
        let mine = match partition.count {
            0 | 1 => "TRUE".to_owned(),
            count => format!("{} % {count} = {}", Partition::SQL_KEY, partition.index),
        };
        let rows: Vec<(String, i64, Option<DateTime<Utc>>)> = Entity::find()
            .select_only()
            .column(Column::Status)
            .column_as(Expr::col(Column::OrderId).count(), "n")
            .column_as(
                Expr::cust(format!("MIN(CASE WHEN {mine} THEN next_attempt_at END)")),
                "next_due",
            )
            .group_by(Column::Status)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut summary = Summary::default();
        for (status, n, next_due) in rows {
            match Status::parse_stored(&status).map_err(|e| DbErr::Custom(e.to_string()))? {
                Status::Retrying => {
                    summary.retrying = n;
                    summary.next_due = next_due;
                }
                Status::Parked => summary.parked = n,
            }
        }
        Ok(summary)
    }

    /// Parked orders after the cursor `after` (a position), by the position of the event
    /// that failed first.
    pub async fn parked(&self, first: u64, after: Option<i64>) -> Result<Page, DbErr> {
        let txn = crate::read::begin_snapshot(&self.db).await?;
        let parked = || Entity::find().filter(Column::Status.eq(Status::Parked.as_str()));
        let mut query = parked();
        if let Some(after) = after {
            query = query.filter(Column::Position.gt(after));
        }
        let items = query
            .order_by_asc(Column::Position)
            .limit(first + 1)
            .all(&txn)
            .await?;
        let total_count = parked().count(&txn).await?;
        txn.commit().await?;
        let (items, has_next_page) = crate::read::split_page(items, first);
        Ok(Page {
            items,
            has_next_page,
            total_count,
        })
    }

    /// Makes a parked order due now and wakes the saga; `None` when the order is not
    /// parked. The saga then tries it like any retry: the dead letter goes when it
    /// advances, and it is parked again (one more attempt counted) when it still fails.
    pub async fn retry_now(
        &self,
        order_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Model>, DbErr> {
        let updated = {
            let _gate = self.gate.enter_views().await;
            let txn = begin_write(&self.db).await?;
            let result = Entity::update_many()
                .col_expr(Column::Status, Expr::value(Status::Retrying.as_str()))
                .col_expr(Column::NextAttemptAt, Expr::value(Some(now)))
                .filter(Column::OrderId.eq(order_id))
                .filter(Column::Status.eq(Status::Parked.as_str()))
                .exec(&txn)
                .await?;
            let row = Entity::find_by_id(order_id).one(&txn).await?;
            txn.commit().await?;
            (result.rows_affected > 0).then_some(row).flatten()
        };
        if updated.is_some() {
            self.changes.fetch_add(1, Ordering::SeqCst);
            self.wakeup.notify();
        }
        Ok(updated)
    }
}

/// Only the dead letters of `partition`'s orders: the same partition key as
/// [`Partition::index_of`], computed by PostgreSQL. One partition (SQLite) takes all.
fn in_partition(query: sea_orm::Select<Entity>, partition: Partition) -> sea_orm::Select<Entity> {
    if partition.count <= 1 {
        return query;
    }
    query.filter(Expr::cust(format!(
        "{} % {} = {}",
        Partition::SQL_KEY,
        partition.count,
        partition.index
    )))
}
