//! The write side: the event store, the command executor (one transaction per command:
//! events + normalized write tables + idempotency record), and one module of command
//! handlers per aggregate.

pub mod cart;
pub mod catalog;
pub mod constraint;
pub mod event_store;
pub mod idempotency;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard, Notify};
use uuid::Uuid;

use crate::domain::Aggregate;
use crate::domain::values::{IdempotencyKey, UserId};
use crate::error::{AppError, AppResult};
use event_store::{AppendError, EventMetadata};

/// How often a command is re-decided after losing an optimistic-concurrency race when the
/// caller gave no `expectedVersion`. Each retry reloads the stream, so a bounded number
/// suffices unless one stream is hammered; past it the caller gets CONFLICT.
const MAX_ATTEMPTS: u32 = 8;

/// Orders writers before they open a transaction.
///
/// SQLite allows one writer at a time and fails a deferred transaction that tries to
/// upgrade after another committed (SQLITE_BUSY_SNAPSHOT): writers of this process queue
/// on one lock, and begin `IMMEDIATE` to also queue behind other processes.
///
/// PostgreSQL runs writers in parallel; only writers of the *same stream* collide, on
/// UNIQUE(stream_id, version), and the loser must reload and decide again. Within one
/// process they queue on a lock striped by stream id instead, so a hot stream costs a
/// wait rather than O(n²) failed attempts; the retry loop is left for races between
/// processes (replicas).
#[derive(Clone)]
pub struct WriteGate(Arc<[Mutex<()>]>);

/// Stripes of the PostgreSQL gate: enough that unrelated streams rarely share one.
const STRIPES: usize = 256;

impl WriteGate {
    pub fn for_backend(backend: DbBackend) -> Self {
        let stripes = match backend {
            DbBackend::Sqlite => 1,
            _ => STRIPES,
        };
        Self((0..stripes).map(|_| Mutex::new(())).collect())
    }

    /// Waits for the right to write `stream_id` (on SQLite: to write at all).
    pub async fn enter(&self, stream_id: Uuid) -> MutexGuard<'_, ()> {
        let stripe = (stream_id.as_u128() % self.0.len() as u128) as usize;
        self.0[stripe].lock().await
    }

    /// Waits for the right to write the read views. On SQLite this is the one write
    /// lock; on PostgreSQL views need no gate (only the relay writes them).
    pub async fn enter_views(&self) -> Option<MutexGuard<'_, ()>> {
        if self.0.len() == 1 {
            Some(self.0[0].lock().await)
        } else {
            None
        }
    }
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

/// Who issues a command, and how a retry of it is recognised.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub user_id: UserId,
    pub idempotency_key: Option<IdempotencyKey>,
    pub correlation_id: Uuid,
}

/// The result of a command, as returned to the caller and replayed for its idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Position of the command's last event (of the stream's last event when the command
    /// changed nothing).
    pub position: i64,
    pub stream_id: Uuid,
    pub version: i64,
}

/// A command aimed at one stream, with what identifies its input for idempotency.
pub struct Envelope<A: Aggregate> {
    /// Name of the operation, part of the idempotency fingerprint.
    pub operation: &'static str,
    /// Hash of the canonical input (without the idempotency key).
    pub request_hash: String,
    pub stream_id: Uuid,
    pub expected_version: Option<i64>,
    pub command: A::Command,
}

/// An aggregate whose events also update normalized write tables in the same transaction.
pub trait WriteModel: Aggregate {
    fn update_write_tables(
        txn: &DatabaseTransaction,
        stream_id: Uuid,
        state: &Self,
        events: &[Self::Event],
        now: DateTime<Utc>,
    ) -> impl Future<Output = AppResult<()>> + Send;
}

/// Executes commands. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    db: DatabaseConnection,
    gate: WriteGate,
    relay_wakeup: Arc<Notify>,
    metrics: Arc<crate::metrics::Metrics>,
}

enum AttemptError {
    /// Lost the race on the stream's next version.
    Conflict(Uuid),
    /// Another request recorded the same idempotency key first.
    KeyTaken,
    App(AppError),
}

impl<E: Into<AppError>> From<E> for AttemptError {
    fn from(e: E) -> Self {
        AttemptError::App(e.into())
    }
}

impl Writer {
    pub fn new(
        db: DatabaseConnection,
        gate: WriteGate,
        relay_wakeup: Arc<Notify>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            db,
            gate,
            relay_wakeup,
            metrics,
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Runs one command: load, decide, append + write tables + idempotency record in one
    /// transaction; retried on a concurrency conflict unless `expected_version` was given.
    #[tracing::instrument(skip_all, fields(operation = envelope.operation, stream_id = %envelope.stream_id, user = %ctx.user_id))]
    pub async fn execute<A>(
        &self,
        ctx: &CommandContext,
        envelope: Envelope<A>,
    ) -> AppResult<Outcome>
    where
        A: WriteModel,
        A::Command: Clone,
        AppError: From<A::Error>,
    {
        let started = std::time::Instant::now();
        let operation = envelope.operation;
        let result = self.execute_inner::<A>(ctx, envelope).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        self.metrics
            .command(operation, outcome, started.elapsed().as_secs_f64());
        result
    }

    async fn execute_inner<A>(
        &self,
        ctx: &CommandContext,
        envelope: Envelope<A>,
    ) -> AppResult<Outcome>
    where
        A: WriteModel,
        A::Command: Clone,
        AppError: From<A::Error>,
    {
        if let Some(key) = &ctx.idempotency_key
            && let Some(outcome) = idempotency::replay(
                &self.db,
                &ctx.user_id,
                key,
                envelope.operation,
                &envelope.request_hash,
            )
            .await?
        {
            tracing::debug!("idempotent replay");
            return Ok(outcome);
        }

        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = {
                let _gate = self.gate.enter(envelope.stream_id).await;
                self.attempt::<A>(ctx, &envelope).await
            };
            match result {
                Ok(outcome) => {
                    self.relay_wakeup.notify_one();
                    return Ok(outcome);
                }
                Err(AttemptError::Conflict(stream_id)) => {
                    if let Some(expected) = envelope.expected_version {
                        return Err(AppError::Conflict(format!(
                            "stream {stream_id} is no longer at version {expected}: it was changed concurrently"
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
                Err(AttemptError::KeyTaken) => {
                    // A concurrent request with the same key won: answer as it did.
                    let key = ctx
                        .idempotency_key
                        .as_ref()
                        .ok_or_else(|| anyhow::anyhow!("key taken without a key"))?;
                    return idempotency::replay(
                        &self.db,
                        &ctx.user_id,
                        key,
                        envelope.operation,
                        &envelope.request_hash,
                    )
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("idempotency record vanished").into());
                }
                Err(AttemptError::App(e)) => return Err(e),
            }
        }
    }

    async fn attempt<A>(
        &self,
        ctx: &CommandContext,
        envelope: &Envelope<A>,
    ) -> Result<Outcome, AttemptError>
    where
        A: WriteModel,
        A::Command: Clone,
        AppError: From<A::Error>,
    {
        let stream_id = envelope.stream_id;
        let txn = begin_write(&self.db).await?;
        let rows = event_store::load_stream(&txn, stream_id).await?;
        let mut state = A::default();
        for row in &rows {
            let event: A::Event = event_store::decode(&row.event_type, &row.data).map_err(|e| {
                anyhow::Error::new(e).context(format!(
                    "event at position {} of stream {stream_id} does not decode",
                    row.position
                ))
            })?;
            state = state.apply(&event);
        }
        if let Some(expected) = envelope.expected_version
            && expected != state.version()
        {
            return Err(AppError::Conflict(format!(
                "expected version {expected}, but the stream is at version {}",
                state.version()
            ))
            .into());
        }
        let events = state
            .decide(envelope.command.clone())
            .map_err(AppError::from)?;
        let outcome = if events.is_empty() {
            Outcome {
                position: rows.last().map_or(0, |r| r.position),
                stream_id,
                version: state.version(),
            }
        } else {
            let now = Utc::now();
            let metadata = EventMetadata {
                user_id: Some(ctx.user_id.to_string()),
                correlation_id: ctx.correlation_id,
                causation_id: ctx.correlation_id,
                idempotency_key: ctx.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            };
            let positions = event_store::append(
                &txn,
                stream_id,
                A::STREAM_TYPE,
                state.version(),
                &events,
                &metadata,
                now,
            )
            .await
            .map_err(|e| match e {
                AppendError::Conflict { stream_id } => AttemptError::Conflict(stream_id),
                AppendError::Db(e) => AttemptError::App(e.into()),
            })?;
            let state = events.iter().fold(state, |s, e| s.apply(e));
            A::update_write_tables(&txn, stream_id, &state, &events, now).await?;
            Outcome {
                position: positions.last().copied().unwrap_or(0),
                stream_id,
                version: state.version(),
            }
        };
        if let Some(key) = &ctx.idempotency_key {
            let recorded = idempotency::record(
                &txn,
                &ctx.user_id,
                key,
                envelope.operation,
                &envelope.request_hash,
                &outcome,
            )
            .await?;
            if !recorded {
                return Err(AttemptError::KeyTaken);
            }
        }
        txn.commit().await?;
        Ok(outcome)
    }
}
