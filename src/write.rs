//! The write side: the event store, the command executor (one transaction per command:
//! events + normalized write tables + idempotency record), and one module per aggregate
//! with its write tables and its multi-stream commands. A single-stream command is an
//! `Envelope` around the domain command, built where the request is parsed
//! (`graphql::*::into_command`, or the saga): an aggregate whose events are its whole
//! write model (`type Tables = EventsOnly`) needs no module here at all.

pub mod cart;
pub mod catalog;
#[cfg(test)]
mod codec_properties;
pub mod constraint;
pub mod event_store;
pub mod idempotency;
pub mod orders;
pub mod snapshots;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard, watch};
use uuid::Uuid;

use crate::domain::values::{IdempotencyKey, UserId};
use crate::domain::{Aggregate, EventsOnly, WriteTables};
use crate::error::{AppError, AppResult};
use crate::log::reader::Wanted;
use event_store::{AppendError, EventMetadata};

/// How often a command is re-decided after losing an optimistic-concurrency race when the
/// caller gave no `expectedVersion`. Each retry reloads the stream, so a bounded number
/// suffices unless one stream is hammered; past it the caller gets CONFLICT.
const MAX_ATTEMPTS: u32 = 8;

/// Orders writers before they open a transaction.
///
/// SQLite allows one writer at a time and fails a deferred transaction that tries to
/// upgrade after another committed (SQLITE_BUSY_SNAPSHOT): writers of this process queue
/// on one lock, and begin `IMMEDIATE` to also queue behind other processes. Clients'
/// commands (and the relay's folds, which fold more at once for waiting with them) first
/// pass an admission turnstile, one at a time, so that work already under way (the saga's
/// steps and records, the payment simulator's ledger: what the clients' orders wait for)
/// queues behind at most one of them rather than behind every client (ADR 0033).
///
/// PostgreSQL runs writers in parallel; only writers of the *same stream* collide, on
/// UNIQUE(stream_id, version), and the loser must reload and decide again. Within one
/// process they queue on a lock striped by stream id instead, so a hot stream costs a
/// wait rather than O(n²) failed attempts; the retry loop is left for races between
/// processes (replicas).
#[derive(Clone)]
pub struct WriteGate {
    stripes: Arc<[Mutex<()>]>,
    /// SQLite: where clients' commands queue before the write lock.
    admission: Arc<Mutex<()>>,
}

/// Stripes of the PostgreSQL gate: enough that unrelated streams rarely share one.
const STRIPES: usize = 256;

/// Who is writing, for the order of the SQLite gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writing {
    /// A client's command (or a fold of the relay, which takes its turn with them):
    /// admitted one at a time.
    Client,
    /// Work a write already set going (a process manager's step): straight to the lock.
    FollowUp,
}

/// The gate's locks, held until the write is over.
pub struct Entered<'a> {
    _admission: Option<MutexGuard<'a, ()>>,
    _stripes: Vec<MutexGuard<'a, ()>>,
}

impl WriteGate {
    pub fn for_backend(backend: DbBackend) -> Self {
        let stripes = match backend {
            DbBackend::Sqlite => 1,
            _ => STRIPES,
        };
        Self {
            stripes: (0..stripes).map(|_| Mutex::new(())).collect(),
            admission: Arc::new(Mutex::new(())),
        }
    }

    fn is_one_lock(&self) -> bool {
        self.stripes.len() == 1
    }

    /// Waits for the right to write all of `streams`, taking their stripes in ascending
    /// order so that two multi-stream writers cannot deadlock. On SQLite a client's
    /// command passes the admission turnstile first.
    pub async fn enter_all(&self, streams: &[Uuid], who: Writing) -> Entered<'_> {
        let admission = if who == Writing::Client && self.is_one_lock() {
            Some(self.admission.lock().await)
        } else {
            None
        };
        let mut stripes: Vec<usize> = streams.iter().map(|s| self.stripe(*s)).collect();
        if stripes.is_empty() && self.is_one_lock() {
            stripes.push(0);
        }
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].lock().await);
        }
        Entered {
            _admission: admission,
            _stripes: guards,
        }
    }

    fn stripe(&self, stream_id: Uuid) -> usize {
        (stream_id.as_u128() % self.stripes.len() as u128) as usize
    }

    /// Waits for the right to write tables no command writes: the read views and their
    /// checkpoints, the saga's records, the payment simulator's ledger. On SQLite this is
    /// the one write lock, without the clients' turnstile (that work is under way);
    /// on PostgreSQL they need no gate.
    pub async fn enter_views(&self) -> Option<MutexGuard<'_, ()>> {
        if self.is_one_lock() {
            Some(self.stripes[0].lock().await)
        } else {
            None
        }
    }

    /// [`Self::enter_views`] for the relay's folds, which on SQLite take their turn with
    /// the clients' commands: a fold that waited behind many of them folds all their
    /// events at once, where one that went ahead of them would fold a few at a time.
    pub async fn enter_folds(&self) -> Option<Entered<'_>> {
        if self.is_one_lock() {
            Some(self.enter_all(&[], Writing::Client).await)
        } else {
            None
        }
    }
}

/// First key of the per-stream advisory locks ("ogst"): keeps them apart from any other
/// advisory lock on the database.
pub const STREAM_LOCKS: i32 = 0x6f67_7374;

/// On PostgreSQL, waits for the right to write `streams` against writers of *other
/// processes* (the `WriteGate` queues those of this one): a transaction-scoped advisory
/// lock per stream, taken in ascending key order so that two multi-stream writers cannot
/// deadlock, and released by the commit or rollback.
///
/// Without it, replicas writing one hot stream raced on `UNIQUE(stream_id, version)` and
/// lost most attempts (the design note measured 92 % lost at 32 clients, and 32 clients
/// over three replicas got CONFLICT after eight lost races); with it they queue, and the
/// unique index stays as the last guard. It is taken before anything is written, so a
/// writer waiting here has no transaction id yet and does not hold back the relay's
/// horizon (ADR 0001). The key is a 32-bit fold of the stream id: two streams that
/// share one merely queue behind each other.
pub async fn lock_streams(txn: &DatabaseTransaction, streams: &[Uuid]) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let mut keys: Vec<i32> = streams.iter().map(|s| stream_lock_key(*s)).collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    txn.execute_raw(lock_statement(&keys)).await?;
    Ok(())
}

/// One statement that takes the advisory locks `keys` (sorted) one after the other, in
/// that order: a multi-stream command (a checkout, a reservation) waits for each in one
/// round trip. A `VALUES` list is scanned in the order it is written, and each row's
/// lock is taken as that row is produced.
fn lock_statement(keys: &[i32]) -> sea_orm::Statement {
    if let [key] = keys {
        return sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, $2)",
            [STREAM_LOCKS.into(), (*key).into()],
        );
    }
    let rows: Vec<String> = (0..keys.len()).map(|i| format!("(${})", i + 2)).collect();
    let sql = format!(
        "SELECT pg_advisory_xact_lock($1, k) FROM (VALUES {}) AS s(k)",
        rows.join(", ")
    );
    let mut values: Vec<sea_orm::Value> = vec![STREAM_LOCKS.into()];
    values.extend(keys.iter().map(|k| sea_orm::Value::from(*k)));
    sea_orm::Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The 32-bit key of a stream's advisory lock.
/// The second key of `stream_id`'s advisory lock (`lock_streams`).
pub fn stream_lock_key(stream_id: Uuid) -> i32 {
    let v = stream_id.as_u128();
    let folded = (v ^ (v >> 32) ^ (v >> 64) ^ (v >> 96)) as u32;
    i32::from_ne_bytes(folded.to_ne_bytes())
}

/// Inserts `row` into a write table, or updates the `update` columns of the row that
/// already holds its `key`: the write tables that follow a stream's latest state (cart
/// lines, reviews, payments) are kept in step this way.
pub async fn upsert<A>(
    txn: &DatabaseTransaction,
    row: A,
    key: impl IntoIterator<Item = <A::Entity as EntityTrait>::Column>,
    update: impl IntoIterator<Item = <A::Entity as EntityTrait>::Column>,
) -> Result<(), DbErr>
where
    A: ActiveModelTrait + Send,
{
    let on_conflict = OnConflict::columns(key).update_columns(update).to_owned();
    <A::Entity as EntityTrait>::insert(row)
        .on_conflict(on_conflict)
        .exec(txn)
        .await
        .map(|_| ())
}

/// Begins a read-write transaction (IMMEDIATE on SQLite).
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        db.begin_with_options(TransactionOptions {
            isolation_level: None,
            access_mode: None,
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        })
        .await
    } else {
        db.begin().await
    }
}

/// Tells the relay and the process managers that new events were committed, so they
/// look at once instead of at their next poll. Every subscriber sees every signal.
///
/// A commit of this process also counts in `commits`, which the doorbell listener
/// (`read::doorbell`) turns into a coalesced hint to the other replicas on PostgreSQL:
/// their projectors and sagas wake within milliseconds of a write made here, not at
/// their next poll. A hint that arrives wakes this process only (`wake_local`): hints are
/// never passed on.
///
/// The relay's projectors (and the publisher) are woken only for events that one of this
/// process's readers wants ([`Wakeup::interest`]): in a cluster, a replica that folds
/// neither the catalog nor the dashboard has nothing to do for a stock change made
/// elsewhere, and used to read the safe horizon and the log for each one. The readers of
/// one process wake together, so the order in which its views fold is kept.
#[derive(Clone)]
pub struct Wakeup(Arc<WakeupChannels>);

struct WakeupChannels {
    /// Events one of this process's readers wants: the relay's projectors and the
    /// publisher.
    local: watch::Sender<u64>,
    /// Events of an order or a payment: the saga's partitions, which read nothing else.
    saga_local: watch::Sender<u64>,
    commits: watch::Sender<u64>,
    /// What this process's readers of the log want.
    interests: std::sync::Mutex<Interests>,
    /// The (stream type, event type) of every event this process committed since the
    /// last writer hint took them; `None`: anything (a commit that did not say what it
    /// wrote, or more kinds than a hint names).
    written: std::sync::Mutex<Option<std::collections::BTreeSet<Written>>>,
}

/// The (stream type, event type) of a committed event: what wakes whom.
pub type Written = (&'static str, &'static str);

/// At most this many kinds of events are named in one writer hint; more wake everything.
pub const HINT_KINDS: usize = 16;

/// What the readers of the log in this process want woken for.
#[derive(Default)]
struct Interests {
    /// Readers of every event (the publisher, the `events` feed while it has subscribers).
    everything: usize,
    /// Readers of some events: an id each, with what it wants.
    some: Vec<(u64, &'static [Wanted])>,
    next: u64,
}

impl Default for Wakeup {
    fn default() -> Self {
        Self(Arc::new(WakeupChannels {
            local: watch::Sender::new(0),
            saga_local: watch::Sender::new(0),
            commits: watch::Sender::new(0),
            interests: std::sync::Mutex::default(),
            written: std::sync::Mutex::new(Some(std::collections::BTreeSet::new())),
        }))
    }
}

/// A reader's interest in being woken, registered until it is dropped.
pub struct Interest {
    channels: Arc<WakeupChannels>,
    /// `None`: a reader of everything.
    id: Option<u64>,
}

impl Drop for Interest {
    fn drop(&mut self) {
        let mut interests = self
            .channels
            .interests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.id {
            None => interests.everything = interests.everything.saturating_sub(1),
            Some(id) => interests.some.retain(|(mine, _)| *mine != id),
        }
    }
}

fn ring(channel: &watch::Sender<u64>) {
    channel.send_modify(|n| *n = n.wrapping_add(1));
}

impl Wakeup {
    /// Events were committed by this process, or something the saga must look at changed
    /// (an admin made a parked order due): wakes its relay and saga, and counts a commit
    /// for the other replicas' hint. Call it after the commit, never inside the
    /// transaction.
    pub fn notify(&self) {
        ring(&self.0.saga_local);
        *self.written() = None;
        ring(&self.0.local);
        ring(&self.0.commits);
    }

    /// A command of this process committed `written` (`Outcome::written`): wakes the
    /// relay, and the saga only when an order's or a payment's events are among them (a
    /// stock change, a cart line or a review is nothing the saga reads: with K partitions
    /// on each replica, waking them for every commit cost K reads of the log per commit).
    pub fn notify_written(&self, written: &[Written]) {
        if written
            .iter()
            .any(|(stream_type, _)| Self::saga_reads(stream_type))
        {
            ring(&self.0.saga_local);
        }
        {
            // Before the commit count: a hint that sees the commit sees its kinds too.
            let mut kinds = self.written();
            if let Some(set) = kinds.as_mut() {
                set.extend(written.iter().copied());
                if set.len() > HINT_KINDS {
                    *kinds = None;
                }
            }
        }
        if self.wanted(written.iter().copied()) {
            ring(&self.0.local);
        }
        ring(&self.0.commits);
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Option<std::collections::BTreeSet<Written>>> {
        self.0
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What this process committed since the last call (for a writer hint): the kinds
    /// of events, or `None` for anything.
    pub fn take_written(&self) -> Option<Vec<Written>> {
        let mut kinds = self.written();
        let taken = kinds.take().map(|set| set.into_iter().collect());
        *kinds = Some(std::collections::BTreeSet::new());
        taken
    }

    /// Registers a reader of the log that wants the events `wanted` takes (`None`:
    /// every event), until the returned guard is dropped.
    pub fn interest(&self, wanted: Option<&'static [Wanted]>) -> Interest {
        let mut interests = self
            .0
            .interests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = wanted.map(|wanted| {
            interests.next += 1;
            let id = interests.next;
            interests.some.push((id, wanted));
            id
        });
        if id.is_none() {
            interests.everything += 1;
        }
        Interest {
            channels: self.0.clone(),
            id,
        }
    }

    /// Whether a reader of this process wants any of these events.
    fn wanted<'a>(&self, mut written: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        let interests = self
            .0
            .interests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        interests.everything > 0
            || written.any(|(stream_type, event_type)| {
                interests
                    .some
                    .iter()
                    .any(|(_, wanted)| Wanted::takes(wanted, stream_type, event_type))
            })
    }

    /// Whether the saga reads events of `stream_type`.
    fn saga_reads(stream_type: &str) -> bool {
        stream_type == crate::domain::order::Order::STREAM_TYPE
            || stream_type == crate::domain::payment::Payment::STREAM_TYPE
    }

    /// Another replica committed events (its hint arrived): wakes this process's relay
    /// and saga only.
    pub fn wake_local(&self) {
        ring(&self.0.saga_local);
        ring(&self.0.local);
    }

    /// Another replica committed events the saga does not read (its hint says so): wakes
    /// this process's relay only.
    pub fn wake_relay(&self) {
        ring(&self.0.local);
    }

    /// Another replica committed these kinds of events (its hint names them): wakes the
    /// saga when it reads any of them, and the relay when a reader here wants any.
    pub fn wake_for<'a>(&self, written: &[(&'a str, &'a str)]) {
        if written
            .iter()
            .any(|(stream_type, _)| Self::saga_reads(stream_type))
        {
            ring(&self.0.saga_local);
        }
        if self.wanted(written.iter().copied()) {
            ring(&self.0.local);
        }
    }

    /// Rings for any events: the relay's projectors and the publisher.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.local.subscribe()
    }

    /// Rings for events of orders and payments: the saga's partitions.
    pub fn subscribe_saga(&self) -> watch::Receiver<u64> {
        self.0.saga_local.subscribe()
    }

    /// The commits of this process, counted: what the hint to other replicas follows.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.0.commits.subscribe()
    }
}

/// Who issues a command, and how a retry of it is recognised.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub user_id: UserId,
    pub idempotency_key: Option<IdempotencyKey>,
    /// The business process this command belongs to (a checkout and all it causes).
    pub correlation_id: Uuid,
    /// What caused this command: `command:<uuid>` for a client's request,
    /// `event:<position>` for a process manager reacting to an event.
    pub causation_id: String,
}

impl CommandContext {
    /// A client's command, starting a new correlation.
    pub fn client(user_id: UserId, idempotency_key: Option<IdempotencyKey>) -> Self {
        let id = Uuid::new_v4();
        Self {
            user_id,
            idempotency_key,
            correlation_id: id,
            causation_id: format!("command:{id}"),
        }
    }

    /// A client's command, or a process manager's step (caused by an event).
    pub fn writing(&self) -> Writing {
        if self.causation_id.starts_with("event:") {
            Writing::FollowUp
        } else {
            Writing::Client
        }
    }

    /// The id of the stream a creating command starts: derived from the caller and the
    /// idempotency key when there is one, so that a retry lands on the same stream (and
    /// finds it created); otherwise a fresh, time-ordered id. `namespace` keeps the ids of
    /// different kinds apart.
    pub fn new_stream_id(&self, namespace: &Uuid) -> Uuid {
        match &self.idempotency_key {
            Some(key) => keyed_id(namespace, &self.user_id, key),
            None => Uuid::now_v7(),
        }
    }
}

/// The id of the stream that `caller` creates with `key`, in `namespace`.
pub fn keyed_id(namespace: &Uuid, caller: &UserId, key: &IdempotencyKey) -> Uuid {
    Uuid::new_v5(
        namespace,
        format!("{caller}\u{0}{}", key.as_str()).as_bytes(),
    )
}

/// The result of a command, as returned to the caller and replayed for its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Position of the command's last event (of the stream's last event when the command
    /// changed nothing).
    pub position: i64,
    pub stream_id: Uuid,
    pub version: i64,
    /// The kinds of event the command appended, `(stream type, event type)`, each once:
    /// which views its payload waits for (`Services::await_written`). Not recorded with
    /// an idempotency key: a replay appended nothing.
    #[serde(skip)]
    pub written: Vec<(&'static str, &'static str)>,
}

/// What one append did to a stream, as its write tables see it: the stream's state after
/// `events`, in the transaction that appended them.
pub struct Appended<'a, A: Aggregate> {
    pub txn: &'a DatabaseTransaction,
    pub stream_id: Uuid,
    pub state: &'a A,
    pub events: &'a [A::Event],
    pub now: DateTime<Utc>,
}

/// An aggregate whose events also update normalized write tables in the same transaction
/// (it declares `type Tables = WriteTables`).
pub trait WriteModel: Aggregate<Tables = WriteTables> {
    fn update_write_tables(
        txn: &DatabaseTransaction,
        stream_id: Uuid,
        state: &Self,
        events: &[Self::Event],
        now: DateTime<Utc>,
    ) -> impl Future<Output = AppResult<()>> + Send;
}

/// How the write tables of an aggregate are kept in step with what it appends, chosen by
/// what it declares as its `Aggregate::Tables`: through its `WriteModel`, or not at all
/// when its events are its whole write model.
pub trait Tables<A: Aggregate> {
    fn update(appended: Appended<'_, A>) -> impl Future<Output = AppResult<()>> + Send;
}

impl<A: WriteModel> Tables<A> for WriteTables {
    fn update(a: Appended<'_, A>) -> impl Future<Output = AppResult<()>> + Send {
        A::update_write_tables(a.txn, a.stream_id, a.state, a.events, a.now)
    }
}

impl<A: Aggregate> Tables<A> for EventsOnly {
    async fn update(_: Appended<'_, A>) -> AppResult<()> {
        Ok(())
    }
}

/// Why one attempt at a command's transaction ended without commit.
pub enum TxError {
    /// Lost the race on a stream's next version.
    Conflict(Uuid),
    /// Another request recorded the same idempotency key first.
    KeyTaken,
    App(AppError),
}

impl<E: Into<AppError>> From<E> for TxError {
    fn from(e: E) -> Self {
        TxError::App(e.into())
    }
}

/// A command: one transaction over one or more streams.
pub trait Command: Send + Sync {
    /// Name of the operation, part of the idempotency fingerprint.
    fn operation(&self) -> &'static str;
    /// Hash of the canonical input (without the idempotency key).
    fn request_hash(&self) -> String;
    /// Streams the command may write: writers of the same stream queue in-process.
    fn streams(&self) -> Vec<Uuid>;
    /// Whether a lost race is decided again (true) or reported as CONFLICT (an explicit
    /// `expectedVersion` was given).
    fn retry_on_conflict(&self) -> bool {
        true
    }
    /// Loads, decides and appends within `uow`; the executor commits.
    fn run<'a>(
        &'a self,
        uow: &'a mut UnitOfWork,
    ) -> impl Future<Output = Result<Outcome, TxError>> + Send + 'a;
}

/// A stream's state as loaded (and as appended to) within a unit of work.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub stream_id: Uuid,
    pub state: A,
    /// Position of the stream's last event (0 for a new stream).
    pub position: i64,
}

impl<A: Aggregate> Loaded<A> {
    pub fn outcome(&self) -> Outcome {
        Outcome {
            position: self.position,
            stream_id: self.stream_id,
            version: self.state.version(),
            written: Vec::new(),
        }
    }
}

/// One database transaction in which a command loads streams and appends to them.
pub struct UnitOfWork {
    txn: DatabaseTransaction,
    metadata: EventMetadata,
    now: DateTime<Utc>,
    /// Take a snapshot of a stream each time its version crosses a multiple of this
    /// (0: never).
    snapshot_every: i64,
    /// What the command appended so far: `Outcome::written`.
    written: Vec<(&'static str, &'static str)>,
}

impl UnitOfWork {
    pub fn txn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Loads a stream and folds it (from its latest snapshot, when it has one).
    pub async fn load<A: Aggregate>(&self, stream_id: Uuid) -> Result<Loaded<A>, TxError> {
        let folded =
            event_store::fold::<A, _>(&self.txn, stream_id, None, self.snapshot_every > 0).await?;
        Ok(Loaded {
            stream_id,
            state: folded.state,
            position: folded.position,
        })
    }

    /// Appends events after the loaded version (optimistic concurrency) and updates the
    /// write tables; returns the new state.
    pub async fn append<A>(
        &mut self,
        loaded: Loaded<A>,
        events: &[A::Event],
    ) -> Result<Loaded<A>, TxError>
    where
        A: Aggregate,
        A::Tables: Tables<A>,
    {
        if events.is_empty() {
            return Ok(loaded);
        }
        // An aggregate missing from the registry would write events that no fixture
        // guards and no `history` rule covers: refuse, so that its first test fails.
        if crate::log::aggregates::AggregateKind::find(A::STREAM_TYPE).is_none() {
            return Err(AppError::Internal(anyhow::anyhow!(
                "aggregate {} is not registered in log::aggregates::AGGREGATES",
                A::STREAM_TYPE
            ))
            .into());
        }
        let positions = event_store::append(
            &self.txn,
            loaded.stream_id,
            A::STREAM_TYPE,
            loaded.state.version(),
            events,
            &self.metadata,
            self.now,
        )
        .await
        .map_err(|e| match e {
            AppendError::Conflict { stream_id } => TxError::Conflict(stream_id),
            // Not a race that a retry could win: the id is taken for good.
            e @ AppendError::TypeTaken { .. } => TxError::App(AppError::Conflict(e.to_string())),
            AppendError::Db(e) => TxError::App(e.into()),
        })?;
        for event in events {
            let kind = (
                A::STREAM_TYPE,
                crate::domain::DomainEvent::event_type(event),
            );
            if !self.written.contains(&kind) {
                self.written.push(kind);
            }
        }
        let before = loaded.state.version();
        let state = events.iter().fold(loaded.state, |s, e| s.apply(e));
        A::Tables::update(Appended {
            txn: &self.txn,
            stream_id: loaded.stream_id,
            state: &state,
            events,
            now: self.now,
        })
        .await?;
        let position = positions.last().copied().unwrap_or(loaded.position);
        if snapshots::due(before, state.version(), self.snapshot_every) {
            snapshots::store(&self.txn, loaded.stream_id, &state, position, self.now).await?;
        }
        Ok(Loaded {
            stream_id: loaded.stream_id,
            state,
            position,
        })
    }

    /// Load, decide, append: the whole life of a single-stream command.
    pub async fn handle<A>(
        &mut self,
        stream_id: Uuid,
        command: A::Command,
        expected_version: Option<i64>,
    ) -> Result<Loaded<A>, TxError>
    where
        A: Aggregate,
        A::Tables: Tables<A>,
        AppError: From<A::Error>,
    {
        let loaded = self.load::<A>(stream_id).await?;
        if let Some(expected) = expected_version
            && expected != loaded.state.version()
        {
            return Err(AppError::Conflict(format!(
                "expected version {expected}, but the stream is at version {}",
                loaded.state.version()
            ))
            .into());
        }
        let events = loaded.state.decide(command).map_err(AppError::from)?;
        self.append(loaded, &events).await
    }
}

/// A command aimed at one stream.
pub struct Envelope<A: Aggregate> {
    pub operation: &'static str,
    pub request_hash: String,
    pub stream_id: Uuid,
    pub expected_version: Option<i64>,
    pub command: A::Command,
}

impl<A: Aggregate> Envelope<A> {
    /// `operation` asking `command` of `stream_id`, its request fingerprinted as
    /// `request_hash`; decided again after a lost race.
    pub fn new(
        operation: &'static str,
        stream_id: Uuid,
        request_hash: String,
        command: A::Command,
    ) -> Self {
        Self {
            operation,
            request_hash,
            stream_id,
            expected_version: None,
            command,
        }
    }

    /// Refused with CONFLICT unless the stream is at `version` (when given).
    pub fn expecting(mut self, version: Option<i64>) -> Self {
        self.expected_version = version;
        self
    }
}

impl<A> Command for Envelope<A>
where
    A: Aggregate,
    A::Tables: Tables<A>,
    A::Command: Clone + Sync,
    AppError: From<A::Error>,
{
    fn operation(&self) -> &'static str {
        self.operation
    }

    fn request_hash(&self) -> String {
        self.request_hash.clone()
    }

    fn streams(&self) -> Vec<Uuid> {
        vec![self.stream_id]
    }

    fn retry_on_conflict(&self) -> bool {
        self.expected_version.is_none()
    }

    async fn run(&self, uow: &mut UnitOfWork) -> Result<Outcome, TxError> {
        let loaded = uow
            .handle::<A>(self.stream_id, self.command.clone(), self.expected_version)
            .await?;
        Ok(loaded.outcome())
    }
}

/// Executes commands. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    db: DatabaseConnection,
    gate: WriteGate,
    relay_wakeup: Wakeup,
    metrics: Arc<crate::metrics::Metrics>,
    snapshot_every: i64,
}

impl Writer {
    pub fn new(
        db: DatabaseConnection,
        gate: WriteGate,
        relay_wakeup: Wakeup,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            db,
            gate,
            relay_wakeup,
            metrics,
            snapshot_every: 0,
        }
    }

    /// Snapshots each stream every `every` events (0: never).
    pub fn snapshot_every(mut self, every: i64) -> Self {
        self.snapshot_every = every.max(0);
        self
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Runs a command in one transaction (events + write tables + idempotency record),
    /// decided again after a lost concurrency race when the command allows it.
    #[tracing::instrument(skip_all, fields(operation = command.operation(), user = %ctx.user_id))]
    pub async fn execute<C: Command>(
        &self,
        ctx: &CommandContext,
        command: C,
    ) -> AppResult<Outcome> {
        let started = std::time::Instant::now();
        let result = self.execute_inner(ctx, &command).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        self.metrics.command(
            command.operation(),
            outcome,
            started.elapsed().as_secs_f64(),
        );
        result
    }

    async fn execute_inner<C: Command>(
        &self,
        ctx: &CommandContext,
        command: &C,
    ) -> AppResult<Outcome> {
        let request_hash = command.request_hash();
        // The common retry, long after the first attempt, is answered here: no write gate,
        // no transaction.
        if let Some(outcome) = self.recorded(&self.db, ctx, command, &request_hash).await? {
            tracing::debug!("idempotent replay");
            return Ok(outcome);
        }
        match self.attempts(ctx, command, &request_hash).await {
            Err(error) if ctx.idempotency_key.is_some() => {
                self.settle(ctx, command, &request_hash, error).await
            }
            result => result,
        }
    }

    /// The outcome recorded for the caller's idempotency key (none without a key, or when
    /// the key is unused); IDEMPOTENCY_KEY_REUSED when it was recorded for another input.
    async fn recorded<C: Command>(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        ctx: &CommandContext,
        command: &C,
        request_hash: &str,
    ) -> AppResult<Option<Outcome>> {
        match &ctx.idempotency_key {
            Some(key) => {
                idempotency::replay(db, &ctx.user_id, key, command.operation(), request_hash).await
            }
            None => Ok(None),
        }
    }

    /// A duplicate that ran beside the request that recorded its key can fail where the
    /// original succeeded: its decision saw the original's events (a second `createProduct`
    /// finds the product, a second `cancelOrder` the order cancelled), or it lost the race
    /// on the stream the original wrote once too often. Whatever the error, a key recorded
    /// meanwhile means this is a retry, and it answers what the original answered.
    ///
    /// Why the look-up finds the record, also between replicas on PostgreSQL: the
    /// original's events and its key commit in one transaction, and READ COMMITTED shows a
    /// statement only committed rows. A failure caused by the original's events (seen, or
    /// met on UNIQUE(stream_id, version), which waits for the other transaction to end)
    /// therefore comes after that commit, and this look-up, a new statement, sees the key.
    async fn settle<C: Command>(
        &self,
        ctx: &CommandContext,
        command: &C,
        request_hash: &str,
        error: AppError,
    ) -> AppResult<Outcome> {
        match self.recorded(&self.db, ctx, command, request_hash).await {
            Ok(Some(outcome)) => {
                tracing::debug!(
                    failed_with = error.code(),
                    "idempotent replay after a failed attempt"
                );
                Ok(outcome)
            }
            Ok(None) => Err(error),
            Err(AppError::IdempotencyKeyReused) => Err(AppError::IdempotencyKeyReused),
            // The look-up is best effort; the attempt's own error says more.
            Err(lookup) => {
                tracing::warn!(
                    error = %format_args!("{lookup:#}"),
                    "idempotency look-up after a failed attempt failed"
                );
                Err(error)
            }
        }
    }

    /// The attempts at a command: decided again after each lost concurrency race, as long
    /// as the command allows it.
    async fn attempts<C: Command>(
        &self,
        ctx: &CommandContext,
        command: &C,
        request_hash: &str,
    ) -> AppResult<Outcome> {
        let streams = command.streams();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = {
                let _gate = self.gate.enter_all(&streams, ctx.writing()).await;
                self.attempt(ctx, command, request_hash).await
            };
            match result {
                Ok(outcome) => {
                    self.relay_wakeup.notify_written(&outcome.written);
                    return Ok(outcome);
                }
                Err(TxError::Conflict(stream_id)) => {
                    if !command.retry_on_conflict() {
                        return Err(AppError::Conflict(format!(
                            "stream {stream_id} was changed concurrently"
                        )));
                    }
                    if attempt >= MAX_ATTEMPTS {
                        return Err(AppError::Conflict(format!(
                            "stream {stream_id} is too busy: gave up after {attempt} concurrent conflicts; retry"
                        )));
                    }
                    // A little jittered backoff so racing writers spread out.
                    let jitter = rand::random_range(0..(2u64 << attempt.min(6)));
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(TxError::KeyTaken) => {
                    // A concurrent request with the same key won: answer as it did.
                    return self
                        .recorded(&self.db, ctx, command, request_hash)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("idempotency record vanished").into());
                }
                Err(TxError::App(e)) => return Err(e),
            }
        }
    }

    async fn attempt<C: Command>(
        &self,
        ctx: &CommandContext,
        command: &C,
        request_hash: &str,
    ) -> Result<Outcome, TxError> {
        let txn = begin_write(&self.db).await?;
        lock_streams(&txn, &command.streams()).await?;
        // Asked again now that this request holds the write gate (on SQLite, the write
        // lock): a duplicate that held it first has committed, and this one answers as it
        // did rather than deciding again on top of its events.
        if let Some(outcome) = self.recorded(&txn, ctx, command, request_hash).await? {
            txn.rollback().await?;
            return Ok(outcome);
        }
        let mut uow = UnitOfWork {
            txn,
            metadata: EventMetadata {
                user_id: Some(ctx.user_id.to_string()),
                correlation_id: ctx.correlation_id,
                causation_id: ctx.causation_id.clone(),
                idempotency_key: ctx.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            },
            now: Utc::now(),
            snapshot_every: self.snapshot_every,
            written: Vec::new(),
        };
        let mut outcome = command.run(&mut uow).await?;
        outcome.written = std::mem::take(&mut uow.written);
        if let Some(key) = &ctx.idempotency_key {
            let recorded = idempotency::record(
                &uow.txn,
                &ctx.user_id,
                key,
                command.operation(),
                request_hash,
                &outcome,
            )
            .await?;
            if !recorded {
                return Err(TxError::KeyTaken);
            }
        }
        uow.txn.commit().await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod lock_tests {
    use super::{STREAM_LOCKS, lock_statement};

    /// One stream: the plain call; several: one statement, the keys in the order given
    /// (sorted by the caller), after the namespace key.
    #[test]
    fn the_locks_of_a_command_are_taken_in_one_statement_in_key_order() {
        let one = lock_statement(&[7]);
        assert_eq!(one.sql, "SELECT pg_advisory_xact_lock($1, $2)");
        let three = lock_statement(&[-4, 7, 9]);
        assert_eq!(
            three.sql,
            "SELECT pg_advisory_xact_lock($1, k) FROM (VALUES ($2), ($3), ($4)) AS s(k)"
        );
        let values: Vec<sea_orm::Value> = three.values.expect("bound").0;
        assert_eq!(
            values,
            vec![
                STREAM_LOCKS.into(),
                (-4i32).into(),
                7i32.into(),
                9i32.into()
            ]
        );
    }
}

#[cfg(test)]
mod gate_tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sea_orm::DbBackend;
    use uuid::Uuid;

    use super::{WriteGate, Writing};

    /// On SQLite, a follow-up write (a saga step) that arrives while clients queue waits
    /// behind at most one of them, not behind all; every client still gets its turn.
    #[tokio::test]
    async fn on_sqlite_follow_up_work_passes_the_queue_of_clients() {
        let gate = WriteGate::for_backend(DbBackend::Sqlite);
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = gate.enter_all(&[Uuid::nil()], Writing::Client).await;
        let mut tasks = Vec::new();
        let spawn = |name: &'static str, who: Writing| {
            let (gate, order) = (gate.clone(), order.clone());
            tokio::spawn(async move {
                let _held = gate.enter_all(&[Uuid::now_v7()], who).await;
                order.lock().expect("not poisoned").push(name);
            })
        };
        for name in ["client 1", "client 2", "client 3"] {
            tasks.push(spawn(name, Writing::Client));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tasks.push(spawn("saga", Writing::FollowUp));
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(first);
        for task in tasks {
            task.await.expect("no panic");
        }
        let order = order.lock().expect("not poisoned").clone();
        // The first client held the lock; the others queued at the turnstile behind it.
        assert_eq!(order, ["saga", "client 1", "client 2", "client 3"]);
    }

    /// On PostgreSQL clients are not queued apart: writers of different streams never
    /// wait for each other.
    #[tokio::test]
    async fn on_postgres_writers_of_other_streams_do_not_wait() {
        let gate = WriteGate::for_backend(DbBackend::Postgres);
        let _a = gate.enter_all(&[Uuid::from_u128(1)], Writing::Client).await;
        let b = tokio::time::timeout(
            Duration::from_secs(1),
            gate.enter_all(&[Uuid::from_u128(2)], Writing::Client),
        )
        .await;
        assert!(b.is_ok(), "another stream's writer is admitted at once");
    }
}

#[cfg(test)]
mod wakeup_tests {
    use tokio::sync::watch;

    use super::{HINT_KINDS, Wakeup, Wanted};

    /// Whether `rx` was rung since it last looked; it has looked now.
    fn rang(rx: &mut watch::Receiver<u64>) -> bool {
        let rang = rx.has_changed().expect("open");
        rx.borrow_and_update();
        rang
    }

    /// The saga's partitions wake for orders and payments only; the relay for anything
    /// a reader here wants.
    #[test]
    fn a_stock_change_wakes_the_relay_and_an_order_wakes_the_saga_too() {
        let wakeup = Wakeup::default();
        let _everything = wakeup.interest(None);
        let (mut relay, mut saga) = (wakeup.subscribe(), wakeup.subscribe_saga());

        wakeup.notify_written(&[("product", "ProductStockUpdated")]);
        assert!(rang(&mut relay));
        assert!(!rang(&mut saga));

        wakeup.notify_written(&[
            ("product", "ProductStockReserved"),
            ("order", "OrderReserved"),
        ]);
        assert!(rang(&mut relay));
        assert!(rang(&mut saga));

        // A hint that says nothing for the saga; one that does (or an older replica's).
        wakeup.wake_relay();
        assert!(rang(&mut relay));
        assert!(!rang(&mut saga));
        wakeup.wake_local();
        assert!(rang(&mut saga));
        wakeup.wake_for(&[("payment", "PaymentCharged")]);
        assert!(rang(&mut saga));
    }

    /// A replica that folds neither the catalog nor the dashboard has nothing to do for
    /// a stock change, made here or elsewhere.
    #[test]
    fn the_relay_wakes_only_for_events_a_reader_here_wants() {
        const CART: &[Wanted] = &[Wanted::all("cart")];
        const RESERVATIONS: &[Wanted] = &[Wanted::only("product", &["ProductStockReserved"])];
        let wakeup = Wakeup::default();
        let mut relay = wakeup.subscribe();
        let cart = wakeup.interest(Some(CART));
        let reservations = wakeup.interest(Some(RESERVATIONS));

        wakeup.notify_written(&[("product", "ProductStockUpdated")]);
        assert!(!rang(&mut relay), "nobody here reads stock changes");
        wakeup.wake_for(&[("product", "ProductStockUpdated")]);
        assert!(!rang(&mut relay), "nor from another replica");
        wakeup.wake_for(&[("product", "ProductStockReserved")]);
        assert!(rang(&mut relay));
        wakeup.notify_written(&[("cart", "CartItemAdded")]);
        assert!(rang(&mut relay));

        drop(cart);
        wakeup.notify_written(&[("cart", "CartItemAdded")]);
        assert!(!rang(&mut relay), "the cart's reader has stopped");
        let everything = wakeup.interest(None);
        wakeup.wake_for(&[("cart", "CartItemAdded")]);
        assert!(rang(&mut relay), "a reader of everything");
        drop((everything, reservations));
        // Hints of earlier builds, and commits that do not say what they wrote.
        wakeup.wake_relay();
        assert!(rang(&mut relay));
        wakeup.notify();
        assert!(rang(&mut relay));
    }

    /// A hint names every kind of event committed since the last one, or says
    /// "anything" when a commit did not say or there are too many to name.
    #[test]
    fn a_hint_names_the_kinds_committed_since_the_last_or_anything() {
        let wakeup = Wakeup::default();
        wakeup.notify_written(&[("cart", "CartItemAdded")]);
        wakeup.notify_written(&[
            ("product", "ProductStockUpdated"),
            ("cart", "CartItemAdded"),
        ]);
        assert_eq!(
            wakeup.take_written(),
            Some(vec![
                ("cart", "CartItemAdded"),
                ("product", "ProductStockUpdated")
            ])
        );
        assert_eq!(wakeup.take_written(), Some(vec![]));
        wakeup.notify();
        assert_eq!(wakeup.take_written(), None);
        for i in 0..=HINT_KINDS {
            let kind: &'static str = Box::leak(format!("Event{i}").into_boxed_str());
            wakeup.notify_written(&[("product", kind)]);
        }
        assert_eq!(wakeup.take_written(), None, "more than a hint names");
        assert_eq!(wakeup.take_written(), Some(vec![]));
    }

    /// A commit here wakes this process and counts for the other replicas' hint; a hint
    /// from another replica wakes this process only, so hints never echo between replicas.
    #[test]
    fn a_local_commit_is_hinted_onwards_and_a_hint_received_is_not() {
        let wakeup = Wakeup::default();
        let _everything = wakeup.interest(None);
        let (mut local, mut commits) = (wakeup.subscribe(), wakeup.commits());

        wakeup.notify();
        assert!(rang(&mut local));
        assert!(rang(&mut commits));

        wakeup.wake_local();
        assert!(rang(&mut local));
        assert!(!rang(&mut commits));
    }
}
