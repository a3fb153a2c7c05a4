//! The read side fed from the bus (ADR 0016): on a read replica (`READ_DATABASE_URL`) the
//! projectors read the log from the JetStream stream instead of the write database, and
//! fold it into the read database with the same code and the same transactions (each view
//! with its checkpoint, ADR 0001's "never skip" kept by *sequence = position*).
//!
//! - A **watcher** follows the stream's last sequence (every message in the stream is
//!   final: the publisher only publishes below the log's safe horizon): that is the
//!   horizon the projectors fold up to, and each new message wakes them.
//! - Each view reads through its own **cursor**: an ordered pull consumer created from
//!   `ByStartSequence(checkpoint + 1)`. It is created again from the view's checkpoint
//!   whenever anything is off — a broker restart, a message out of sequence, a consumer
//!   that goes quiet while the stream has more — instead of trusting the client library's
//!   own recovery, which was measured not resuming at all after a broker `kill -9` on
//!   2.9 and taking 16 s on 2.15 (`../shared/design/cluster.md`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::{self, stream::Stream};
use futures_util::StreamExt;
use sea_orm::{DbErr, RuntimeErr};
use tokio::sync::{Mutex, watch};

use super::wire::{self, Published};
use super::{BrokerSettings, connect_counting};
use crate::log::reader::{Page, Wanted};
use crate::log::source::EventSource;
use crate::supervise::TaskHealth;
use crate::write::Wakeup;

/// How long a cursor may go without the message the stream is known to have next before
/// it is created again.
const STALL: Duration = Duration::from_secs(1);
/// A cursor idle this long is made again before it is read: the broker drops an ordered
/// consumer that has had no pull request for 30 s, and the client library was seen not
/// to notice on a 2.9 broker (the next message then never came).
const IDLE_REOPEN: Duration = Duration::from_secs(10);
/// How long the watcher waits for a message before it asks the stream where it stands
/// (a consumer the broker lost says nothing).
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Messages one page reads at most, events it wants or not.
const MAX_MESSAGES_PER_PAGE: u64 = 4096;

/// The log as the JetStream stream carries it.
pub struct BusSource {
    settings: BrokerSettings,
    name: String,
    /// The connection, opened on first use and again after a failure.
    js: Mutex<Option<jetstream::Context>>,
    /// Each reader's cursor (a view's projector, a rebuild).
    cursors: std::sync::Mutex<HashMap<&'static str, Arc<Mutex<Option<Cursor>>>>>,
    /// The stream's last sequence, as the watcher last saw it.
    head: watch::Sender<i64>,
    /// Counts the losses of the broker connection: a consumer made before one is not
    /// trusted after it (it is made again from its reader's position).
    breaks: Arc<watch::Sender<u64>>,
}

/// An ordered consumer positioned at `next`, made while the connection had had `breaks`
/// losses.
struct Cursor {
    next: i64,
    breaks: u64,
    /// When it was made or last delivered a message.
    used: std::time::Instant,
    messages: pull::Ordered,
}

fn bus_error(e: impl std::fmt::Display) -> DbErr {
    // A connection error: the relay retries it with backoff, never a view's failure.
    DbErr::Conn(RuntimeErr::Internal(format!("event bus: {e}")))
}

impl BusSource {
    pub fn new(settings: BrokerSettings, node: &str) -> Arc<Self> {
        Arc::new(Self {
            settings,
            name: format!("ordergraph-reader/{node}"),
            js: Mutex::new(None),
            cursors: std::sync::Mutex::new(HashMap::new()),
            head: watch::Sender::new(0),
            breaks: Arc::new(watch::Sender::new(0)),
        })
    }

    /// The stream's last sequence as last seen: every position up to it can be read here.
    pub fn head(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    fn raise_head(&self, to: i64) -> bool {
        self.head.send_if_modified(|known| {
            let raised = to > *known;
            if raised {
                *known = to;
            }
            raised
        })
    }

    async fn context(&self) -> Result<jetstream::Context, DbErr> {
        let mut js = self.js.lock().await;
        if let Some(js) = js.as_ref() {
            return Ok(js.clone());
        }
        let fresh = connect_counting(&self.settings, &self.name, Some(self.breaks.clone()))
            .await
            .map_err(|e| bus_error(format!("{e:#}")))?;
        *js = Some(fresh.clone());
        Ok(fresh)
    }

    async fn stream(&self) -> Result<Stream, DbErr> {
        let js = self.context().await?;
        js.get_stream(&self.settings.stream)
            .await
            .map_err(|e| bus_error(format!("the stream {}: {e}", self.settings.stream)))
    }

    /// An ordered consumer of every message from `next` on.
    async fn open(&self, next: i64) -> Result<Cursor, DbErr> {
        let breaks = *self.breaks.borrow();
        let stream = self.stream().await?;
        let start = u64::try_from(next.max(1)).unwrap_or(1);
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(bus_error)?;
        let messages = consumer.messages().await.map_err(bus_error)?;
        Ok(Cursor {
            next,
            breaks,
            used: std::time::Instant::now(),
            messages,
        })
    }

    fn cursor(&self, reader: &'static str) -> Arc<Mutex<Option<Cursor>>> {
        self.cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(reader)
            .or_default()
            .clone()
    }

    /// Follows the stream's last sequence and wakes the projectors on each new message,
    /// until `shutdown`. A failure (the broker away, the stream not there yet, a consumer
    /// the broker lost) is retried here at once and then every second at most: the
    /// projectors of this replica see nothing new while it is down.
    pub async fn watch(
        self: Arc<Self>,
        wakeup: Wakeup,
        up: TaskHealth,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        up.ready();
        let mut backoff = Duration::from_millis(50);
        loop {
            let started = std::time::Instant::now();
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                ended = self.follow(&wakeup) => {
                    let e = ended.err().unwrap_or_else(|| anyhow::anyhow!("the watcher ended"));
                    tracing::debug!(error = format!("{e:#}"), "following the event stream again");
                }
            }
            if started.elapsed() > Duration::from_secs(5) {
                backoff = Duration::from_millis(50);
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(PROBE_EVERY);
        }
    }

    /// One consumer's worth of following the stream: ends with the error that ended it.
    async fn follow(&self, wakeup: &Wakeup) -> anyhow::Result<()> {
        let mut breaks = self.breaks.subscribe();
        breaks.borrow_and_update();
        let mut stream = self.stream().await?;
        let last = stream.info().await.map_err(bus_error)?.state.last_sequence;
        if self.raise_head(i64::try_from(last).unwrap_or(i64::MAX)) {
            wakeup.wake_local();
        }
        // Only the sequence of each message matters here: headers, no bodies.
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: last + 1,
                },
                headers_only: true,
                ..Default::default()
            })
            .await
            .map_err(bus_error)?;
        let mut messages = consumer.messages().await.map_err(bus_error)?;
        loop {
            let next = tokio::select! {
                _ = breaks.changed() => anyhow::bail!("the broker connection was lost"),
                next = tokio::time::timeout(PROBE_EVERY, messages.next()) => next,
            };
            match next {
                Ok(Some(Ok(message))) => {
                    let sequence = message.info().map_err(bus_error)?.stream_sequence;
                    if self.raise_head(i64::try_from(sequence).unwrap_or(i64::MAX)) {
                        wakeup.wake_local();
                    }
                }
                Ok(Some(Err(e))) => anyhow::bail!("the event stream's watcher: {e}"),
                Ok(None) => anyhow::bail!("the event stream's watcher ended"),
                Err(_quiet) => {
                    // Quiet: is the stream quiet too, or has our consumer gone?
                    let last = stream.info().await.map_err(bus_error)?.state.last_sequence;
                    let last = i64::try_from(last).unwrap_or(i64::MAX);
                    if last > *self.head.borrow() {
                        self.raise_head(last);
                        wakeup.wake_local();
                        anyhow::bail!("the event stream's watcher fell silent behind the stream");
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl EventSource for BusSource {
    async fn horizon(&self, _known: i64) -> Result<i64, DbErr> {
        Ok(*self.head.borrow())
    }

    async fn page(
        &self,
        reader: &'static str,
        after: i64,
        upto: i64,
        wanted: Option<&'static [Wanted]>,
        limit: u64,
    ) -> Result<Page, DbErr> {
        if after >= upto {
            return Ok(Page {
                events: Vec::new(),
                read_to: after.max(upto),
            });
        }
        let slot = self.cursor(reader);
        let mut slot = slot.lock().await;
        let breaks = *self.breaks.borrow();
        if slot.as_ref().is_none_or(|c| {
            c.next != after + 1 || c.breaks != breaks || c.used.elapsed() > IDLE_REOPEN
        }) {
            *slot = None;
            *slot = Some(self.open(after + 1).await?);
        }
        let Some(cursor) = slot.as_mut() else {
            return Err(bus_error("no cursor"));
        };
        let mut events = Vec::new();
        let mut read_to = after;
        let mut read = 0u64;
        while read_to < upto && (events.len() as u64) < limit && read < MAX_MESSAGES_PER_PAGE {
            let next = match tokio::time::timeout(STALL, cursor.messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => {
                    *slot = None;
                    return Err(bus_error(e));
                }
                Ok(None) | Err(_) => {
                    // The stream has this message (it is at or below the head): a
                    // consumer that does not deliver it is lost. Start a new one.
                    *slot = None;
                    return Err(bus_error(format!(
                        "no message {} within {STALL:?}; reading again from there",
                        read_to + 1
                    )));
                }
            };
            cursor.used = std::time::Instant::now();
            let sequence = next.info().map_err(bus_error)?.stream_sequence;
            let message = &next.message;
            let published = match wire::decode(sequence, message.headers.as_ref(), &message.payload)
            {
                Ok(published) if published.position() == read_to + 1 => published,
                Ok(published) => {
                    *slot = None;
                    return Err(DbErr::Custom(format!(
                        "the event stream skipped from position {read_to} to {}: \
                             the stream no longer holds what this view needs (its retention?); \
                             rebuild the view",
                        published.position()
                    )));
                }
                Err(e) => {
                    *slot = None;
                    return Err(DbErr::Custom(format!(
                        "the event stream holds a message that is not the log's: {e}"
                    )));
                }
            };
            read += 1;
            read_to = published.position();
            if let Published::Event(event) = published
                && wanted.is_none_or(|w| Wanted::any(w, &event))
            {
                events.push(event);
            }
        }
        if let Some(cursor) = slot.as_mut() {
            cursor.next = read_to + 1;
        }
        Ok(Page { events, read_to })
    }
}
