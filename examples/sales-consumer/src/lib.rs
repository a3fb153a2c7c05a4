//! An example of another service consuming ordergraph's event stream on NATS JetStream
//! (README.md, "The event bus"): it keeps `units_sold` — units of confirmed orders per
//! product per day (UTC, the day the order was confirmed) — in a database of its own.
//!
//! **Exactly once.** The stream's sequence is ordergraph's log position. The position of
//! the last message applied is stored in the same transaction as what it changed, so a
//! crash loses or repeats nothing: after a restart — or after any loss of the broker
//! connection — the consumer is made again from `ByStartSequence(position + 1)`. It does
//! not rely on the client library's own recovery of an ordered consumer, which may resume
//! late or not at all after a broker restart.
//!
//! It reads only the order events (`<prefix>.order.>`): `OrderPlaced` (its lines are kept
//! until the order ends), `OrderConfirmed` (its lines are counted), `OrderRejected` and
//! `OrderCancelled` before confirmation (its lines are dropped). An event version it does
//! not know stops it, loudly, rather than miscounting.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull},
};
use futures_util::{FutureExt as _, StreamExt as _};
use serde::Deserialize;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::sync::watch;

/// Messages applied in one transaction at most.
const BATCH: usize = 256;

/// Where to read and where to write.
#[derive(Debug, Clone)]
pub struct Config {
    /// `nats://host:4222`.
    pub nats_url: String,
    /// ordergraph's stream (`ORDERGRAPH_NATS_STREAM`).
    pub stream: String,
    /// ordergraph's subject prefix (`ORDERGRAPH_NATS_SUBJECT_PREFIX`).
    pub subject_prefix: String,
    /// This service's own database: `sqlite://sales.db?mode=rwc`.
    pub database_url: String,
}

/// One row of `units_sold`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sold {
    pub product_id: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub units: i64,
}

/// Opens this service's database and creates its tables.
pub async fn open(database_url: &str) -> anyhow::Result<SqlitePool> {
    let options: SqliteConnectOptions = database_url
        .parse()
        .with_context(|| format!("the database URL {database_url}"))?;
    let pool = SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal))
        .await
        .with_context(|| format!("opening {database_url}"))?;
    for statement in [
        "CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL)",
        "INSERT OR IGNORE INTO checkpoint (id, position) VALUES (1, 0)",
        "CREATE TABLE IF NOT EXISTS open_order_lines (order_id TEXT NOT NULL, product_id TEXT NOT NULL, quantity INTEGER NOT NULL, PRIMARY KEY (order_id, product_id))",
        "CREATE TABLE IF NOT EXISTS units_sold (product_id TEXT NOT NULL, day TEXT NOT NULL, units INTEGER NOT NULL, PRIMARY KEY (product_id, day))",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    Ok(pool)
}

/// The position of the last message applied.
pub async fn position(pool: &SqlitePool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT position FROM checkpoint WHERE id = 1")
            .fetch_one(pool)
            .await?,
    )
}

/// The whole `units_sold` table, ordered.
pub async fn units_sold(pool: &SqlitePool) -> anyhow::Result<Vec<Sold>> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT product_id, day, units FROM units_sold ORDER BY product_id, day")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(product_id, day, units)| Sold {
            product_id,
            day,
            units,
        })
        .collect())
}

/// Consumes until `shutdown`: connects, follows the stream from the stored position, and
/// starts again from the stored position after any failure.
pub async fn run(config: &Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let pool = open(&config.database_url).await?;
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            ended = session(config, &pool) => {
                let e = ended.err().unwrap_or_else(|| anyhow::anyhow!("the consumer ended"));
                // An event this consumer cannot read stops it: going on would miscount.
                if e.downcast_ref::<Unknown>().is_some() {
                    return Err(e);
                }
                tracing::warn!(error = format!("{e:#}"), "consuming again from the stored position");
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// An event this consumer does not know how to read.
#[derive(Debug)]
struct Unknown(String);

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unknown {}

/// One connection's worth of consuming.
async fn session(config: &Config, pool: &SqlitePool) -> anyhow::Result<()> {
    // Counts the losses of the connection: the consumer is not trusted across one.
    let breaks = Arc::new(watch::Sender::new(0u64));
    let counter = breaks.clone();
    let client = async_nats::ConnectOptions::new()
        .name("sales-consumer")
        .reconnect_delay_callback(|attempts| Duration::from_millis(50 * attempts.min(10) as u64))
        .event_callback(move |event| {
            let counter = counter.clone();
            async move {
                if matches!(event, async_nats::Event::Disconnected) {
                    counter.send_modify(|n| *n += 1);
                }
            }
        })
        .connect(config.nats_url.as_str())
        .await
        .with_context(|| format!("connecting to {}", config.nats_url))?;
    let mut broken = breaks.subscribe();
    let js = jetstream::new(client);
    let stream = js
        .get_stream(&config.stream)
        .await
        .with_context(|| format!("the stream {}", config.stream))?;
    let from = position(pool).await? + 1;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: format!("{}.order.>", config.subject_prefix),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: u64::try_from(from)?,
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    tracing::info!(from, "consuming");
    loop {
        let first = tokio::select! {
            _ = broken.changed() => bail!("the broker connection was lost"),
            next = messages.next() => next,
        };
        let Some(first) = first else {
            bail!("the consumer ended");
        };
        let mut batch = vec![first?];
        // Whatever else is there already goes in the same transaction.
        while batch.len() < BATCH {
            match messages.next().now_or_never() {
                Some(Some(next)) => batch.push(next?),
                _ => break,
            }
        }
        apply(pool, &batch).await?;
    }
}

#[derive(Deserialize)]
struct Placed {
    lines: Vec<Line>,
}

#[derive(Deserialize)]
struct Line {
    product_id: String,
    quantity: i64,
}

/// Applies `batch` and stores its last position, in one transaction. A message at or
/// below the stored position was applied already and is skipped.
async fn apply(pool: &SqlitePool, batch: &[jetstream::Message]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let stored: i64 = sqlx::query_scalar("SELECT position FROM checkpoint WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    let mut last = stored;
    for message in batch {
        let position = i64::try_from(
            message
                .info()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .stream_sequence,
        )?;
        if position <= last {
            continue;
        }
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .with_context(|| format!("message {position} has no {name}"))
        };
        let order = header("Ordergraph-Stream-Id")?;
        let version = header("Ordergraph-Event-Version")?;
        match header("Ordergraph-Event-Type")?.as_str() {
            "OrderPlaced" => {
                if version != "1" {
                    return Err(Unknown(format!(
                        "OrderPlaced version {version} at position {position} is newer than this consumer"
                    ))
                    .into());
                }
                let placed: Placed = serde_json::from_slice(&message.payload)
                    .with_context(|| format!("OrderPlaced at position {position}"))?;
                for line in placed.lines {
                    sqlx::query(
                        "INSERT INTO open_order_lines (order_id, product_id, quantity) VALUES (?, ?, ?) \
                         ON CONFLICT (order_id, product_id) DO UPDATE SET quantity = quantity + excluded.quantity",
                    )
                    .bind(&order)
                    .bind(&line.product_id)
                    .bind(line.quantity)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            "OrderConfirmed" => {
                let at = header("Ordergraph-Recorded-At")?;
                let day = chrono::DateTime::parse_from_rfc3339(&at)
                    .with_context(|| format!("the time of position {position}"))?
                    .with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d")
                    .to_string();
                sqlx::query(
                    "INSERT INTO units_sold (product_id, day, units) \
                     SELECT product_id, ?, quantity FROM open_order_lines WHERE order_id = ? \
                     ON CONFLICT (product_id, day) DO UPDATE SET units = units + excluded.units",
                )
                .bind(&day)
                .bind(&order)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM open_order_lines WHERE order_id = ?")
                    .bind(&order)
                    .execute(&mut *tx)
                    .await?;
            }
            "OrderRejected" | "OrderCancelled" => {
                sqlx::query("DELETE FROM open_order_lines WHERE order_id = ?")
                    .bind(&order)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
        last = position;
    }
    sqlx::query("UPDATE checkpoint SET position = ? WHERE id = 1")
        .bind(last)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
