//! The order saga: a process manager with its own checkpoint. For every order or payment
//! event it reconciles that order: it reads the order's and the payment's state and takes
//! the next step — reserve inventory, charge, confirm, or compensate (release stock,
//! refund) — until nothing is left to do.
//!
//! One order never holds up the others (ADR 0003). When reconciling an order fails, the
//! order gets a dead letter (`dead_letters`) and the saga goes on with the next event:
//! - the payment provider is unavailable: the order's next attempt is scheduled (backoff
//!   with jitter, capped), without limit — an outage is no reason to give up an order;
//! - retrying cannot help (an event that does not decode, a domain error, an order that
//!   does not settle): the order is parked at once, until an admin retries it;
//! - anything else: retried like a transient error, then parked after a bounded number
//!   of attempts.
//!
//! Events of an order that has a dead letter are not handled one by one: its next attempt
//! reconciles from the order's whole state, those events included. Only an unreachable
//! database stops the saga as a whole (it backs off and handles the same event again):
//! it would fail every order alike, and parking them all would be wrong.
//!
//! Crash safety: the checkpoint advances past an event only once its order was reconciled,
//! or its dead letter recorded in the same transaction; a crash replays the event, and a
//! scheduled retry is a row that outlives the process. Every step is idempotent (the
//! aggregates record nothing twice, and the gateway answers a repeated idempotency key
//! with its first result), so a replay or a retry neither reserves nor charges twice.
//! Commands keep the checkout's correlation id and cite the event that caused them.
//!
//! Partitions (ADR 0012): the orders are split by id into `ORDERGRAPH_SAGA_PARTITIONS`
//! partitions (an order event's order is its stream; a payment event's, the order id in
//! its data), each a unit of work one replica runs at a time, with its own checkpoint
//! and its own share of the dead letters. Orders of different partitions proceed in
//! parallel; the steps of one order stay in sequence in its partition. A partition checks
//! its fence token before every step and every checkpoint commit, and the checkpoint row,
//! locked, is the data fence behind it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr, EntityTrait};
use tokio::sync::watch;
use uuid::Uuid;

use super::dead_letters::{DeadLetters, Failure, Next};
use super::gateway::{ChargeOutcome, GatewayError, PaymentGateway};
use crate::cluster::{Fence, Fenced, Partition};
use crate::domain::order::{Order, OrderCommand, OrderStatus, Reservation};
use crate::domain::payment::{Payment, PaymentCommand, PaymentEvent, PaymentStatus};
use crate::domain::{Aggregate, DomainEvent};
use crate::entity::events;
use crate::error::AppError;
use crate::log::reader::Span;
use crate::log::shared::SharedLog;
use crate::metrics::Metrics;
use crate::read::checkpoints::{self, Hold};
use crate::write::event_store::{self, EventMetadata, FoldError};
use crate::write::orders::{ReleaseOrder, ReserveOrder, SettlePayment, payment_stream_id};
use crate::write::{CommandContext, WriteGate, Writer, begin_write};

/// How often a partition reads its dead letters when nothing it knows of changed them:
/// what an admin changed through another replica, and the `saga_dead_letters` figures.
/// Every partition of every replica reads them (two statements), so not at every poll.
const DEAD_LETTERS_POLL: Duration = Duration::from_secs(1);

/// Persisted name of the saga's checkpoint before it was partitioned; each partition's
/// checkpoint is named after it ([`checkpoint_name`]) and seeded from it.
pub const NAME: &str = "order-saga";

/// The persisted name of a partition's checkpoint: `order-saga:<index>/<count>`. The count
/// is part of it because a partition's orders depend on it: with another count, every
/// partition starts afresh, from where all of the old ones had got ([`seed_partitions`]).
pub fn checkpoint_name(partition: Partition) -> String {
    format!("{NAME}:{}/{}", partition.index, partition.count)
}

/// Makes sure every partition of `count` has its checkpoint row, seeded from where the
/// saga had got: the lowest checkpoint of the partitions of another count (every event up
/// to it was handled by one of them), else today's single checkpoint, else 0. Idempotent,
/// and safe when several replicas start together (an existing row is never changed).
/// Every step is idempotent, so events a partition sees again change nothing.
pub async fn seed_partitions(db: &DatabaseConnection, count: u16) -> Result<(), DbErr> {
    let names: Vec<String> = Partition::all(count)
        .into_iter()
        .map(checkpoint_name)
        .collect();
    let rows = checkpoints::all(db).await?;
    if names.iter().all(|n| rows.iter().any(|r| &r.name == n)) {
        return Ok(());
    }
    let prefix = format!("{NAME}:");
    let seed = rows
        .iter()
        .filter(|r| r.name.starts_with(&prefix) && !names.contains(&r.name))
        .map(|r| r.position)
        .min()
        .or_else(|| rows.iter().find(|r| r.name == NAME).map(|r| r.position))
        .unwrap_or(0);
    for name in &names {
        checkpoints::ensure_at(db, name, seed).await?;
    }
    Ok(())
}

/// Events (and due retries) read per batch.
const BATCH: u64 = 256;

/// Steps one reconciliation may take: each moves the state forward, so more is a bug.
const MAX_STEPS: usize = 8;

/// Longest error text kept in a dead letter.
const MAX_ERROR_CHARS: usize = 2_000;

/// The next thing an order needs, decided from the order's and its payment's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reserve,
    /// Charge through the gateway, then record its answer and settle the order by it in
    /// one transaction: confirmed, or (declined) its stock released and it rejected.
    Charge,
    /// A charge recorded without the confirmation: only in a log written before ADR 0032.
    Confirm,
    /// Payment declined, stock still held: give it back and reject the order. Only in a
    /// log written before ADR 0032, which recorded a decline on its own.
    ReleaseAndReject(String),
    /// Cancelled or rejected while holding stock.
    Release,
    /// Cancelled after the payment succeeded.
    Refund,
}

/// The saga's decision: pure, from state alone, so a replay decides the same.
pub fn next_step(order: &Order, payment: &Payment) -> Option<Step> {
    if !order.exists {
        return None;
    }
    match order.status {
        OrderStatus::Pending if order.reservation == Reservation::NotStarted => Some(Step::Reserve),
        OrderStatus::Reserved => match payment.status {
            PaymentStatus::NotStarted => Some(Step::Charge),
            PaymentStatus::Succeeded => Some(Step::Confirm),
            PaymentStatus::Declined => Some(Step::ReleaseAndReject(payment.decline_text())),
            PaymentStatus::Refunded => Some(Step::Release),
        },
        status if status.is_failed() => {
            if order.reservation == Reservation::Reserved {
                Some(Step::Release)
            } else if payment.status == PaymentStatus::Succeeded {
                Some(Step::Refund)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Where a test may stop the saga, as if the process died there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    AfterReserve,
    /// The gateway charged, nothing recorded yet.
    AfterGatewayCharge,
    /// The gateway's answer is recorded, and in the same transaction the order confirmed
    /// or (declined) its stock released and the order rejected.
    AfterSettle,
    /// A confirmation on its own: of a charge a version before ADR 0032 recorded alone.
    AfterConfirm,
    AfterRelease,
    /// The gateway refunded, nothing recorded yet.
    AfterGatewayRefund,
    AfterRecordRefund,
}

/// Fault injection for tests: the saga stops the first time it reaches `at`.
#[derive(Debug, Clone)]
pub struct SagaFault {
    pub at: Boundary,
}

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("fault injected at {0:?}")]
    Injected(Boundary),
    #[error("shutting down")]
    Stopping,
    /// The partition is no longer this replica's to run (ADR 0012).
    #[error("the saga partition was fenced: {0}")]
    Fenced(#[from] Fenced),
    /// Another holder of the partition has moved its checkpoint past this event.
    #[error("another replica has handled this partition past position {0}")]
    Overtaken(i64),
    /// The payment provider asked to be tried again later.
    #[error("payment provider temporarily unavailable: {0}")]
    Transient(String),
    /// A stored event the saga needs cannot be read by this build.
    #[error("event {event_type} at position {position} does not decode: {reason}")]
    Undecodable {
        event_type: String,
        position: i64,
        reason: String,
    },
    #[error("order {0} did not settle after {MAX_STEPS} saga steps")]
    Unsettled(Uuid),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// How the saga treats an order whose attempt failed (ADR 0003).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not this order's failure: the whole saga stops (a fault, a shutdown) or backs off
    /// and tries the same event again (the database is unreachable).
    Global,
    /// The payment provider is unavailable: retry later, without limit.
    Transient,
    /// Unexpected, and it may pass: retry later, then park after a bounded number of
    /// attempts.
    Unknown,
    /// Retrying cannot help until someone fixes the cause: park now.
    Permanent,
}

impl From<FoldError> for SagaError {
    fn from(e: FoldError) -> Self {
        match e {
            FoldError::Undecodable {
                event_type,
                position,
                reason,
                ..
            } => SagaError::Undecodable {
                event_type,
                position,
                reason,
            },
            FoldError::Db(e) => SagaError::Db(e),
        }
    }
}

impl SagaError {
    /// Whether telling this error's verdict needs to know if the database answers.
    fn involves_the_database(&self) -> bool {
        matches!(
            self,
            SagaError::Db(_) | SagaError::App(AppError::Internal(_))
        )
    }

    /// The verdict on one order's failed attempt; `database_reachable` is asked only
    /// when [`Self::involves_the_database`].
    pub fn verdict(&self, database_reachable: bool) -> Verdict {
        match self {
            SagaError::Injected(_)
            | SagaError::Stopping
            | SagaError::Fenced(_)
            | SagaError::Overtaken(_) => Verdict::Global,
            SagaError::Transient(_) => Verdict::Transient,
            SagaError::Undecodable { .. } | SagaError::Unsettled(_) => Verdict::Permanent,
            SagaError::App(AppError::Unavailable(_)) => Verdict::Global,
            SagaError::Db(e) if crate::error::unavailable(e) => Verdict::Global,
            SagaError::Db(_) | SagaError::App(AppError::Internal(_)) if !database_reachable => {
                Verdict::Global
            }
            SagaError::App(e) => match e {
                // The domain refused a step: the same state decides the same again.
                AppError::Validation(_)
                | AppError::BadUserInput(_)
                | AppError::NotFound(_)
                | AppError::Product(_)
                | AppError::Cart(_)
                | AppError::Order(_)
                | AppError::Unauthenticated(_)
                | AppError::Forbidden(_)
                | AppError::IdempotencyKeyReused => Verdict::Permanent,
                // A lost race, a constraint hit by one, a database error the database
                // survived: the next attempt may well pass.
                _ => Verdict::Unknown,
            },
            SagaError::Db(_) => Verdict::Unknown,
        }
    }
}

/// When the saga tries an order again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure; it doubles with each failure after it.
    pub initial: Duration,
    /// Longest delay between two attempts.
    pub max: Duration,
    /// Attempts before an order failing with an unexpected error is parked (transient
    /// payment errors are retried without limit).
    pub max_attempts: i32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(20),
            max: Duration::from_secs(5),
            max_attempts: 10,
        }
    }
}

impl RetryPolicy {
    /// The delay after `failures` failed attempts (1 or more): `initial × 2^(failures-1)`,
    /// capped at `max`, of which a random half (`jitter` in 0..=1) is taken off, so
    /// orders that failed together (an outage) do not all come back together.
    pub fn delay(&self, failures: i32, jitter: f64) -> Duration {
        let doublings = u32::try_from(failures.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        let full = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        full.mul_f64(1.0 - jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// What becomes of an order after its `failures`-th failed attempt with `verdict`
    /// (never `Global`: that one is no order's).
    pub fn next(&self, verdict: Verdict, failures: i32, now: DateTime<Utc>, jitter: f64) -> Next {
        let retry = || {
            let delay = chrono::Duration::from_std(self.delay(failures, jitter))
                .unwrap_or(chrono::Duration::MAX);
            Next::RetryAt(now.checked_add_signed(delay).unwrap_or(now))
        };
        match verdict {
            Verdict::Transient => retry(),
            Verdict::Unknown if failures < self.max_attempts => retry(),
            _ => Next::Park,
        }
    }
}

/// What a partition last read of its dead letters: when, the admin's change count then,
/// and when its next retry falls due.
#[derive(Default)]
struct DeadLetterView {
    read_at: Option<std::time::Instant>,
    changes: u64,
    next_due: Option<DateTime<Utc>>,
}

/// One partition's run: which orders, its checkpoint row, its fence token, and what it
/// knows its orders need.
struct Part {
    partition: Partition,
    checkpoint: String,
    fence: Fence,
    settled: Settled,
    letters: Letters,
}

/// What a partition knows of its dead letters between two reads of them. Only the
/// partition that holds an order's partition records its first failure (an admin can
/// only make a parked order due again), so once a read found none, there is none until
/// this run records one.
#[derive(Default)]
struct Letters {
    /// The last read found none, and this run recorded none since.
    none: std::sync::atomic::AtomicBool,
    /// This run recorded a first failure since the last read: read them again.
    recorded: std::sync::atomic::AtomicBool,
}

impl Letters {
    fn none(&self) -> bool {
        self.none.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn recorded(&self) {
        self.none.store(false, std::sync::atomic::Ordering::SeqCst);
        self.recorded
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether one was recorded since the last read; the next read starts now.
    fn take_recorded(&self) -> bool {
        self.recorded
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    fn read(&self, summary: &super::dead_letters::Summary) {
        let none = summary.retrying == 0 && summary.parked == 0;
        self.none.store(none, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The most settled orders a partition remembers; past that it forgets them all at once
/// (their next events are reconciled from the database, as before it knew them).
const SETTLED_ORDERS: usize = 16_384;

/// Orders that needed nothing more when last reconciled, with how far each one's order
/// and payment streams had been read then (the positions of their last events). An
/// event of such an order at or below those positions is already in the state that
/// reconciliation saw, and its decision is a pure function of that state
/// ([`next_step`]): handling it again would load both streams and decide nothing. Those
/// are mostly the saga's own steps' events (reserved, charged, confirmed), which follow
/// every order it settles.
#[derive(Default)]
struct Settled(std::sync::Mutex<HashMap<Uuid, (i64, i64)>>);

impl Settled {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (i64, i64)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Order `order_id` needs nothing more with its streams read up to these positions.
    fn note(&self, order_id: Uuid, order_at: i64, payment_at: i64) {
        let mut known = self.lock();
        if known.len() >= SETTLED_ORDERS && !known.contains_key(&order_id) {
            known.clear();
        }
        known.insert(order_id, (order_at, payment_at));
    }

    /// Forgets `order_id` (its next event is reconciled from the database).
    fn forget(&self, order_id: Uuid) {
        self.lock().remove(&order_id);
    }

    /// Whether `event`, of order `order_id`, was in the state last found settled.
    fn covers(&self, order_id: Uuid, event: &events::Model) -> bool {
        let Some(&(order_at, payment_at)) = self.lock().get(&order_id) else {
            return false;
        };
        if event.stream_type == Order::STREAM_TYPE && event.stream_id == order_id {
            event.position <= order_at
        } else if event.stream_type == Payment::STREAM_TYPE
            && event.stream_id == payment_stream_id(order_id)
        {
            event.position <= payment_at
        } else {
            false
        }
    }
}

pub struct OrderSaga {
    pub db: DatabaseConnection,
    /// Its checkpoint writes queue with every other writer (one at a time on SQLite).
    pub gate: WriteGate,
    pub writer: Writer,
    pub gateway: Arc<dyn PaymentGateway>,
    /// Orders it could not advance: retrying or parked.
    pub dead_letters: DeadLetters,
    pub retry: RetryPolicy,
    pub metrics: Arc<Metrics>,
    /// The write database's log: its safe horizon and recent events, shared with the
    /// process's other readers.
    pub log: Arc<SharedLog>,
    pub wakeup: watch::Receiver<u64>,
    pub poll: Duration,
    pub fault: Option<SagaFault>,
}

impl OrderSaga {
    /// Runs one partition until its fence is released (the unit is lost, given up, or
    /// the service stops). Returns an error only for an injected fault (the service then
    /// stops, as a crashed process would); other failures are retried, and a fenced
    /// partition simply ends.
    pub async fn run_partition(
        self: Arc<Self>,
        partition: Partition,
        fence: Fence,
    ) -> Result<(), SagaError> {
        let part = Part {
            partition,
            checkpoint: checkpoint_name(partition),
            fence,
            settled: Settled::default(),
            letters: Letters::default(),
        };
        let mut shutdown = part.fence.stop_signal();
        let mut wakeup = self.wakeup.clone();
        let mut checkpoint = checkpoints::load_one(&self.db, &part.checkpoint).await?;
        let mut dead = DeadLetterView::default();
        let mut backoff = Duration::from_millis(50);
        // Whether nothing but the poll's timer started this tick.
        let mut polled = false;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match self
                .tick(&part, &mut checkpoint, &shutdown, &mut dead, polled)
                .await
            {
                Ok(next_due) => {
                    backoff = Duration::from_millis(50);
                    // Wake for new events, for the earliest retry, or to poll.
                    let retry = async {
                        match next_due {
                            Some(at) => {
                                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                                tokio::time::sleep_until(tokio::time::Instant::now() + wait).await;
                            }
                            None => std::future::pending().await,
                        }
                    };
                    polled = false;
                    tokio::select! {
                        _ = shutdown.changed() => return Ok(()),
                        Ok(()) = wakeup.changed() => {}
                        _ = tokio::time::sleep(self.poll) => polled = true,
                        _ = retry => {}
                    }
                }
                Err(SagaError::Stopping) => return Ok(()),
                Err(e @ (SagaError::Fenced(_) | SagaError::Overtaken(_))) => {
                    tracing::warn!(partition = partition.index, error = %e, "saga partition stopped");
                    return Ok(());
                }
                Err(e @ SagaError::Injected(_)) => return Err(e),
                Err(e) => {
                    tracing::error!(
                        partition = partition.index,
                        error = format!("{e:#}"),
                        "order saga cannot go on; retrying"
                    );
                    tokio::select! {
                        _ = shutdown.changed() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Handles the new events, then the retries that are due; returns when the next
    /// retry is due. The dead letters are read again only when this partition recorded
    /// one, a retry falls due, the admin changed one here, or [`DEAD_LETTERS_POLL`] has
    /// passed (an admin's change through another replica): every commit wakes every
    /// partition, and an order handled without a failure changes none of them, so it
    /// must not cost each partition two queries.
    async fn tick(
        &self,
        part: &Part,
        checkpoint: &mut i64,
        shutdown: &watch::Receiver<bool>,
        dead: &mut DeadLetterView,
        polled: bool,
    ) -> Result<Option<DateTime<Utc>>, SagaError> {
        self.follow_log(part, checkpoint, shutdown, polled).await?;
        let changes = self.dead_letters.changes();
        let stale = dead.read_at.is_none_or(|at| {
            at.elapsed() >= self.poll.max(DEAD_LETTERS_POLL) || changes != dead.changes
        });
        let recorded = part.letters.take_recorded();
        if recorded || stale || dead.next_due.is_some_and(|due| due <= Utc::now()) {
            dead.changes = changes;
            self.retry_due(part, shutdown).await?;
            let summary = self.dead_letters.summary(part.partition).await?;
            part.letters.read(&summary);
            self.metrics
                .saga_dead_letters(summary.retrying, summary.parked);
            dead.next_due = summary.next_due;
            dead.read_at = Some(std::time::Instant::now());
        }
        Ok(dead.next_due)
    }

    /// Handles the events up to the horizon. A poll (`polled`) takes a horizon another
    /// reader read within the poll interval.
    async fn follow_log(
        &self,
        part: &Part,
        checkpoint: &mut i64,
        shutdown: &watch::Receiver<bool>,
        polled: bool,
    ) -> Result<(), SagaError> {
        let horizon = if polled {
            self.log.horizon_polled(*checkpoint, self.poll).await?
        } else {
            self.log.horizon(*checkpoint).await?
        };
        while *checkpoint < horizon {
            let span = Span::new(*checkpoint, horizon)
                .of_types(&[Order::STREAM_TYPE, Payment::STREAM_TYPE]);
            let page = self.log.page(span, BATCH).await?;
            let (batch, upto) = (page.events, page.read_to);
            for event in &batch {
                if *shutdown.borrow() {
                    return Err(SagaError::Stopping);
                }
                self.handle(part, event).await?;
                *checkpoint = event.position;
            }
            // Past the last order or payment event nothing needs the saga: advance in
            // memory only (after a restart those events are filtered out again).
            *checkpoint = (*checkpoint).max(upto);
            // A long backlog does not hold up the retries that fall due meanwhile.
            if *checkpoint < horizon {
                self.retry_due(part, shutdown).await?;
            }
        }
        Ok(())
    }

    /// Handles one event and moves the checkpoint past it; an error only when the whole
    /// saga must stop or back off.
    async fn handle(&self, part: &Part, event: &events::Model) -> Result<(), SagaError> {
        let (order_id, unreadable) = self.order_of(event).await?;
        if !part.partition.owns(order_id) {
            // Another partition's order: its checkpoint moves past it in memory only,
            // like a view's past an event it does not want.
            return Ok(());
        }
        if unreadable.is_none() && part.settled.covers(order_id, event) {
            // Seen by the last reconciliation, which found nothing to do: so would this
            // one. In memory only, as above; after a restart it is reconciled again.
            return Ok(());
        }
        part.settled.forget(order_id);
        self.handle_own(part, order_id, unreadable, event).await
    }

    async fn handle_own(
        &self,
        part: &Part,
        order_id: Uuid,
        unreadable: Option<SagaError>,
        event: &events::Model,
    ) -> Result<(), SagaError> {
        // Known to have none: no look-up (most orders never fail).
        if !part.letters.none() && self.dead_letters.find(order_id).await?.is_some() {
            // Retrying or parked: its next attempt takes the whole state, this event's
            // change included.
            tracing::debug!(%order_id, position = event.position, "event of an order with a dead letter");
            return self.advance(part, event.position).await;
        }
        let result = match unreadable {
            Some(e) => Err(e),
            None => {
                let cause = metadata_of(event);
                self.reconcile(part, order_id, &cause, event.position).await
            }
        };
        let error = match result {
            Ok(()) => return self.advance(part, event.position).await,
            Err(e) => e,
        };
        let verdict = self.verdict(&error).await;
        if verdict == Verdict::Global {
            return Err(error);
        }
        let now = Utc::now();
        let next = self.retry.next(verdict, 1, now, rand::random());
        let text = describe(&error);
        part.fence.check()?;
        part.letters.recorded();
        self.dead_letters
            .record_first(
                &part.checkpoint,
                event.position,
                Failure {
                    order_id,
                    error: &text,
                    next,
                    now,
                },
            )
            .await?;
        log_failure(order_id, 1, event.position, &text, next, now);
        Ok(())
    }

    /// Moves the partition's stored checkpoint past the event at `position`, under both
    /// fences: the token (checked just before the statement that moves it) and the row,
    /// which must not be at or past `position` already (another holder handled it: stop).
    /// Nearly always one statement; a transaction that locks the row tells "overtaken"
    /// from "no row yet" when it did not move.
    async fn advance(&self, part: &Part, position: i64) -> Result<(), SagaError> {
        part.fence.check()?;
        let _gate = self.gate.enter_views().await;
        // The common case in one statement: the row is behind `position` and moves.
        if checkpoints::advance_past(&self.db, &part.checkpoint, position).await? {
            return Ok(());
        }
        // It did not move: overtaken (stop), or no row yet.
        let txn = begin_write(&self.db).await?;
        let stored = checkpoints::lock(&txn, &part.checkpoint, Hold::Update).await?;
        if stored >= position {
            txn.rollback().await?;
            return Err(SagaError::Overtaken(stored));
        }
        checkpoints::store(&txn, &part.checkpoint, position).await?;
        if let Err(why) = part.fence.check() {
            txn.rollback().await?;
            return Err(why.into());
        }
        txn.commit().await?;
        Ok(())
    }

    /// Tries again every order whose retry is due.
    async fn retry_due(
        &self,
        part: &Part,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), SagaError> {
        for letter in self
            .dead_letters
            .due(Utc::now(), BATCH, part.partition)
            .await?
        {
            if *shutdown.borrow() {
                return Err(SagaError::Stopping);
            }
            let cause = events::Entity::find_by_id(letter.position)
                .one(&self.db)
                .await?
                .map(|event| metadata_of(&event))
                .unwrap_or_default();
            let error = match self
                .reconcile(part, letter.order_id, &cause, letter.position)
                .await
            {
                Ok(()) => {
                    part.fence.check()?;
                    self.dead_letters.resolve(letter.order_id).await?;
                    tracing::info!(
                        order_id = %letter.order_id,
                        attempts = letter.attempts + 1,
                        "order advanced on a retry"
                    );
                    continue;
                }
                Err(e) => e,
            };
            let verdict = self.verdict(&error).await;
            if verdict == Verdict::Global {
                return Err(error);
            }
            let attempts = letter.attempts.saturating_add(1);
            let now = Utc::now();
            let next = self.retry.next(verdict, attempts, now, rand::random());
            let text = describe(&error);
            part.fence.check()?;
            self.dead_letters
                .record_again(
                    attempts,
                    Failure {
                        order_id: letter.order_id,
                        error: &text,
                        next,
                        now,
                    },
                )
                .await?;
            log_failure(letter.order_id, attempts, letter.position, &text, next, now);
        }
        Ok(())
    }

    async fn verdict(&self, error: &SagaError) -> Verdict {
        let reachable = !error.involves_the_database() || self.db.ping().await.is_ok();
        error.verdict(reachable)
    }

    /// The order an event concerns. An order event names it in its stream; a payment
    /// event in its data. A payment event that does not decode is that order's failure
    /// (returned beside it): its order is told from another event of the same stream,
    /// or, when none can be read, it stands under its own stream's id.
    async fn order_of(
        &self,
        event: &events::Model,
    ) -> Result<(Uuid, Option<SagaError>), SagaError> {
        if event.stream_type != Payment::STREAM_TYPE {
            return Ok((event.stream_id, None));
        }
        let error = match decode::<PaymentEvent>(event) {
            Ok(payment) => return Ok((payment_order(&payment), None)),
            Err(e) => e,
        };
        let order_id = event_store::load_stream(&self.db, event.stream_id)
            .await?
            .iter()
            .find_map(|row| decode::<PaymentEvent>(row).ok())
            .map_or(event.stream_id, |payment| payment_order(&payment));
        Ok((order_id, Some(error)))
    }

    /// Takes steps until the order needs nothing more (a bounded number: each step moves
    /// the state forward, so a loop would be a bug).
    async fn reconcile(
        &self,
        part: &Part,
        order_id: Uuid,
        cause: &EventMetadata,
        position: i64,
    ) -> Result<(), SagaError> {
        for _ in 0..MAX_STEPS {
            let (order, payment) = event_store::fold_two::<Order, Payment, _>(
                &self.db,
                order_id,
                payment_stream_id(order_id),
            )
            .await?;
            let settled = || {
                part.settled
                    .note(order_id, order.position, payment.position)
            };
            let (order, payment) = (&order.state, &payment.state);
            let Some(step) = next_step(order, payment) else {
                settled();
                return Ok(());
            };
            let Some(owner) = order.user_id.clone() else {
                settled();
                return Ok(());
            };
            let ctx = CommandContext {
                user_id: owner,
                idempotency_key: None,
                correlation_id: cause.correlation_id,
                causation_id: format!("event:{position}"),
            };
            tracing::debug!(%order_id, ?step, "order saga step");
            // Before every step (a reservation, a charge, a confirmation…): the partition
            // may have moved to another replica meanwhile.
            part.fence.check()?;
            self.take(step, order_id, order, payment, &ctx).await?;
        }
        Err(SagaError::Unsettled(order_id))
    }

    fn boundary(&self, at: Boundary) -> Result<(), SagaError> {
        match &self.fault {
            Some(fault) if fault.at == at => Err(SagaError::Injected(at)),
            _ => Ok(()),
        }
    }

    async fn take(
        &self,
        step: Step,
        order_id: Uuid,
        order: &Order,
        payment: &Payment,
        ctx: &CommandContext,
    ) -> Result<(), SagaError> {
        let products = || {
            let mut quantities: BTreeMap<Uuid, i64> = BTreeMap::new();
            for line in &order.lines {
                *quantities.entry(line.product_id).or_default() += i64::from(line.quantity);
            }
            quantities
        };
        match step {
            Step::Reserve => {
                self.writer
                    .execute(
                        ctx,
                        ReserveOrder {
                            order_id,
                            quantities: products(),
                        },
                    )
                    .await?;
                self.boundary(Boundary::AfterReserve)
            }
            Step::Charge => {
                let token = order.payment_token.as_ref().map_or("", |t| t.as_str());
                let key = format!("charge:{order_id}");
                // One call: a transient failure schedules this order's next attempt and
                // the saga goes on with the others (issue, point 4).
                let outcome = gateway_result(self.gateway.charge(&key, order.total, token).await)?;
                self.boundary(Boundary::AfterGatewayCharge)?;
                let answer = match outcome {
                    ChargeOutcome::Succeeded { charge_id } => PaymentCommand::RecordCharge {
                        order_id,
                        amount: order.total,
                        charge_id,
                    },
                    ChargeOutcome::Declined { reason } => PaymentCommand::RecordDecline {
                        order_id,
                        amount: order.total,
                        reason,
                    },
                };
                // The answer and the confirmation (or, declined, the release and the
                // rejection) in one transaction (ADR 0032).
                self.writer
                    .execute(
                        ctx,
                        SettlePayment {
                            order_id,
                            answer,
                            products: products().into_keys().collect(),
                        },
                    )
                    .await?;
                self.boundary(Boundary::AfterSettle)
            }
            Step::Confirm => {
                self.writer
                    .order_step(ctx, "confirmOrder", order_id, OrderCommand::Confirm)
                    .await?;
                self.boundary(Boundary::AfterConfirm)
            }
            step @ (Step::ReleaseAndReject(_) | Step::Release) => {
                // Stock back either way; a declined payment also rejects the order.
                let reject = match step {
                    Step::ReleaseAndReject(reason) => Some(reason),
                    _ => None,
                };
                self.writer
                    .execute(
                        ctx,
                        ReleaseOrder {
                            order_id,
                            products: products().into_keys().collect(),
                            reject,
                        },
                    )
                    .await?;
                self.boundary(Boundary::AfterRelease)
            }
            Step::Refund => {
                let charge_id = payment.charge_id.clone().unwrap_or_default();
                let key = format!("refund:{order_id}");
                let refund_id =
                    gateway_result(self.gateway.refund(&key, &charge_id, payment.amount).await)?;
                self.boundary(Boundary::AfterGatewayRefund)?;
                self.writer
                    .record_payment(ctx, order_id, PaymentCommand::RecordRefund { refund_id })
                    .await?;
                self.boundary(Boundary::AfterRecordRefund)
            }
        }
    }
}

fn gateway_result<T>(result: Result<T, GatewayError>) -> Result<T, SagaError> {
    match result {
        Ok(value) => Ok(value),
        Err(GatewayError::Transient(reason)) => Err(SagaError::Transient(reason)),
        Err(GatewayError::Internal(e)) => Err(AppError::Internal(e).into()),
    }
}

fn payment_order(event: &PaymentEvent) -> Uuid {
    match event {
        PaymentEvent::Charged { order_id, .. }
        | PaymentEvent::Declined { order_id, .. }
        | PaymentEvent::Refunded { order_id, .. } => *order_id,
    }
}

fn decode<E: DomainEvent>(row: &events::Model) -> Result<E, SagaError> {
    event_store::decode(&row.event_type, row.event_version, &row.data).map_err(|e| {
        SagaError::Undecodable {
            event_type: row.event_type.clone(),
            position: row.position,
            reason: e.to_string(),
        }
    })
}

fn metadata_of(event: &events::Model) -> EventMetadata {
    serde_json::from_value(event.metadata.clone()).unwrap_or_default()
}

/// The error and its causes on one line, for the dead letter (no backtrace).
fn describe(error: &SagaError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if text.chars().count() > MAX_ERROR_CHARS {
        text = text.chars().take(MAX_ERROR_CHARS).collect::<String>() + "…";
    }
    text
}

/// A parked order is logged once, at WARN (the admin must act); the first retry of an
/// order at INFO, the later ones at DEBUG (an outage must not flood the log).
fn log_failure(
    order_id: Uuid,
    attempts: i32,
    position: i64,
    error: &str,
    next: Next,
    now: DateTime<Utc>,
) {
    match next {
        Next::Park => tracing::warn!(
            %order_id,
            attempts,
            position,
            error,
            "order parked: the saga goes on without it; fix the cause, then retryOrder"
        ),
        Next::RetryAt(at) => {
            let retry_in_ms = (at - now).num_milliseconds();
            if attempts == 1 {
                tracing::info!(%order_id, retry_in_ms, error, "order attempt failed; retrying it later");
            } else {
                tracing::debug!(%order_id, attempts, retry_in_ms, error, "order attempt failed again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::{OrderEvent, OrderLine, RejectedAt};
    use crate::domain::values::{Money, PaymentToken, ProductName, ShippingAddress, Sku, UserId};

    fn row(stream_type: &str, stream_id: Uuid, position: i64) -> events::Model {
        events::Model {
            position,
            stream_id,
            stream_type: stream_type.to_owned(),
            version: 1,
            event_type: "Anything".to_owned(),
            event_version: 1,
            data: serde_json::json!({}),
            metadata: serde_json::json!({}),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn a_settled_order_covers_its_events_up_to_where_its_streams_were_read() {
        let (order, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let payment = payment_stream_id(order);
        let settled = Settled::default();
        assert!(!settled.covers(order, &row(Order::STREAM_TYPE, order, 5)));
        settled.note(order, 10, 20);
        // Each stream up to its own position, and no further.
        assert!(settled.covers(order, &row(Order::STREAM_TYPE, order, 10)));
        assert!(!settled.covers(order, &row(Order::STREAM_TYPE, order, 11)));
        assert!(settled.covers(order, &row(Payment::STREAM_TYPE, payment, 20)));
        assert!(!settled.covers(order, &row(Payment::STREAM_TYPE, payment, 21)));
        // Not another order's streams, nor a stream of the wrong kind.
        assert!(!settled.covers(other, &row(Order::STREAM_TYPE, other, 1)));
        assert!(!settled.covers(order, &row(Payment::STREAM_TYPE, order, 1)));
        assert!(!settled.covers(order, &row(Order::STREAM_TYPE, payment, 1)));
        // Forgotten when it is reconciled again.
        settled.forget(order);
        assert!(!settled.covers(order, &row(Order::STREAM_TYPE, order, 1)));
    }

    #[test]
    fn a_partition_remembers_a_bounded_number_of_settled_orders() {
        let settled = Settled::default();
        for i in 0..=SETTLED_ORDERS as u128 {
            settled.note(Uuid::from_u128(i), 1, 1);
            assert!(settled.lock().len() <= SETTLED_ORDERS);
        }
    }

    #[test]
    fn a_partition_looks_up_dead_letters_only_after_a_read_found_some_or_it_recorded_one() {
        use super::super::dead_letters::Summary;
        let letters = Letters::default();
        assert!(!letters.none(), "before the first read, it does not know");
        letters.read(&Summary::default());
        assert!(letters.none(), "a read that found none");
        assert!(!letters.take_recorded());
        letters.recorded();
        assert!(!letters.none(), "it recorded one since");
        assert!(letters.take_recorded(), "so it reads them again");
        assert!(!letters.take_recorded(), "once");
        letters.read(&Summary {
            retrying: 0,
            parked: 1,
            next_due: None,
        });
        assert!(!letters.none(), "a parked order is one");
        letters.read(&Summary::default());
        assert!(letters.none(), "and when it is resolved, none again");
    }

    fn placed() -> OrderEvent {
        OrderEvent::Placed {
            user_id: UserId::parse("alice").unwrap(),
            lines: vec![OrderLine {
                product_id: Uuid::from_u128(1),
                sku: Sku::parse("A").unwrap(),
                name: ProductName::parse("A").unwrap(),
                unit_price: Money::from_cents(100),
                quantity: 1,
            }],
            total: Money::from_cents(100),
            shipping_address: ShippingAddress::parse("x").unwrap(),
            payment_token: PaymentToken::parse("tok_visa").unwrap(),
        }
    }

    fn order(events: &[OrderEvent]) -> Order {
        events.iter().fold(Order::default(), |o, e| o.apply(e))
    }

    fn payment(events: &[PaymentEvent]) -> Payment {
        events.iter().fold(Payment::default(), |p, e| p.apply(e))
    }

    fn charged() -> PaymentEvent {
        PaymentEvent::Charged {
            order_id: Uuid::from_u128(5),
            amount: Money::from_cents(100),
            charge_id: "ch".into(),
        }
    }

    fn cancelled() -> OrderEvent {
        OrderEvent::Cancelled {
            by: UserId::parse("alice").unwrap(),
            reason: None,
        }
    }

    #[test]
    fn a_placed_order_is_reserved_first() {
        assert_eq!(
            next_step(&order(&[placed()]), &payment(&[])),
            Some(Step::Reserve)
        );
    }

    #[test]
    fn a_reserved_order_is_charged_then_confirmed() {
        let reserved = order(&[placed(), OrderEvent::Reserved {}]);
        assert_eq!(next_step(&reserved, &payment(&[])), Some(Step::Charge));
        assert_eq!(
            next_step(&reserved, &payment(&[charged()])),
            Some(Step::Confirm)
        );
        let confirmed = order(&[placed(), OrderEvent::Reserved {}, OrderEvent::Confirmed {}]);
        assert_eq!(next_step(&confirmed, &payment(&[charged()])), None);
    }

    #[test]
    fn a_declined_payment_releases_the_stock_and_rejects_with_the_reason() {
        let reserved = order(&[placed(), OrderEvent::Reserved {}]);
        let declined = payment(&[PaymentEvent::Declined {
            order_id: Uuid::from_u128(5),
            amount: Money::from_cents(100),
            reason: "card declined".into(),
        }]);
        assert_eq!(
            next_step(&reserved, &declined),
            Some(Step::ReleaseAndReject(
                "payment declined: card declined".into()
            ))
        );
    }

    #[test]
    fn an_order_rejected_for_stock_needs_nothing_more() {
        let rejected = order(&[
            placed(),
            OrderEvent::Rejected {
                at: RejectedAt::Stock,
                reason: "x".into(),
            },
        ]);
        assert_eq!(next_step(&rejected, &payment(&[])), None);
    }

    #[test]
    fn a_cancelled_order_releases_its_stock_then_refunds_its_payment_once() {
        let cancelled_reserved = order(&[
            placed(),
            OrderEvent::Reserved {},
            OrderEvent::Confirmed {},
            cancelled(),
        ]);
        assert_eq!(
            next_step(&cancelled_reserved, &payment(&[charged()])),
            Some(Step::Release)
        );
        let released = order(&[
            placed(),
            OrderEvent::Reserved {},
            OrderEvent::Confirmed {},
            cancelled(),
            OrderEvent::StockReleased {},
        ]);
        assert_eq!(
            next_step(&released, &payment(&[charged()])),
            Some(Step::Refund)
        );
        let refunded = payment(&[
            charged(),
            PaymentEvent::Refunded {
                order_id: Uuid::from_u128(5),
                amount: Money::from_cents(100),
                refund_id: "re".into(),
            },
        ]);
        assert_eq!(next_step(&released, &refunded), None);
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn a_retry_waits_twice_as_long_after_each_failure_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let ms = |failures, jitter| policy.delay(failures, jitter).as_millis();
        // No jitter drawn: the full delay.
        assert_eq!([1, 2, 3, 4].map(|n| ms(n, 0.0)), [20, 40, 80, 160]);
        assert_eq!(ms(9, 0.0), 5_000, "capped");
        assert_eq!(ms(i32::MAX, 0.0), 5_000, "however many failures");
        // The jitter takes off at most half.
        assert_eq!(ms(1, 1.0), 10);
        assert_eq!(ms(20, 0.5), 3_750);
    }

    /// What the default policy does after `failures` failures of this kind, at time 0
    /// with no jitter drawn.
    fn next_after(verdict: Verdict, failures: i32) -> Next {
        RetryPolicy::default().next(verdict, failures, at(0), 0.0)
    }

    #[test]
    fn a_payment_outage_is_retried_without_limit() {
        assert_eq!(
            next_after(Verdict::Transient, 10_000),
            Next::RetryAt(at(5_000))
        );
    }

    #[test]
    fn an_unexpected_error_is_retried_a_bounded_number_of_times_then_parked() {
        let max = RetryPolicy::default().max_attempts;
        assert_eq!(next_after(Verdict::Unknown, 1), Next::RetryAt(at(20)));
        assert_eq!(
            next_after(Verdict::Unknown, max - 1),
            Next::RetryAt(at(5_000))
        );
        assert_eq!(next_after(Verdict::Unknown, max), Next::Park);
    }

    #[test]
    fn what_retrying_cannot_fix_is_parked_at_once() {
        for error in [
            SagaError::Undecodable {
                event_type: "OrderPlaced".into(),
                position: 3,
                reason: "x".into(),
            },
            SagaError::Unsettled(Uuid::from_u128(1)),
            SagaError::App(AppError::Order(crate::domain::order::OrderError::NotFound)),
            SagaError::App(AppError::Validation(
                crate::domain::values::ValidationError::new("sku", "bad"),
            )),
        ] {
            assert_eq!(error.verdict(true), Verdict::Permanent, "{error}");
            assert_eq!(next_after(error.verdict(true), 1), Next::Park);
        }
    }

    #[test]
    fn a_database_error_is_one_orders_only_while_the_database_answers() {
        let db_error = || SagaError::Db(DbErr::Custom("connection reset".into()));
        let internal = || SagaError::App(AppError::Internal(anyhow::anyhow!("pool timed out")));
        assert_eq!(db_error().verdict(true), Verdict::Unknown);
        assert_eq!(internal().verdict(true), Verdict::Unknown);
        // Unreachable: every order would fail alike; none is parked, the saga backs off.
        assert_eq!(db_error().verdict(false), Verdict::Global);
        assert_eq!(internal().verdict(false), Verdict::Global);
        assert!(db_error().involves_the_database());
        // A transient payment error or a lost race is not the database's.
        assert_eq!(
            SagaError::Transient("busy".into()).verdict(false),
            Verdict::Transient
        );
        assert_eq!(
            SagaError::App(AppError::Conflict("raced".into())).verdict(true),
            Verdict::Unknown
        );
        assert_eq!(
            SagaError::Injected(Boundary::AfterReserve).verdict(true),
            Verdict::Global
        );
    }

    #[test]
    fn a_dead_letter_says_what_failed_and_why_on_one_line() {
        let error = SagaError::App(AppError::Internal(
            anyhow::Error::new(DbErr::Custom("disk full".into())).context("database error"),
        ));
        assert_eq!(describe(&error), "database error: Custom Error: disk full");
    }

    #[test]
    fn a_pending_order_cancelled_before_reservation_needs_nothing() {
        assert_eq!(
            next_step(&order(&[placed(), cancelled()]), &payment(&[])),
            None
        );
    }
}
