//! The event bus (ADR 0016): the log published to a NATS JetStream stream, for read
//! replicas with a database of their own and for other services.
//!
//! PostgreSQL (or the SQLite file) stays the source of truth; the stream is derived from
//! it and can be refilled from it. The [`publisher`] is one unit of work of the cluster
//! (one replica at a time) and publishes every position of the log, in order, so that the
//! stream's sequence numbers are the log's positions ([`wire`]).

pub mod publisher;
pub mod source;
pub mod wire;

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};

/// How long a JetStream request (stream info, a message by sequence) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a publish waits for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnecting after the broker went away: 50 ms more per attempt, at most half a second.
const RECONNECT_STEP: Duration = Duration::from_millis(50);
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Where and how the log is published.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// `nats://host:port` (several, comma-separated, for a cluster of brokers).
    pub url: String,
    /// The JetStream stream.
    pub stream: String,
    /// The subjects' first token(s).
    pub prefix: String,
    /// The stream's replicas when the publisher creates it.
    pub replicas: usize,
}

impl BrokerSettings {
    pub fn new(url: &str, stream: &str, prefix: &str, replicas: usize) -> anyhow::Result<Self> {
        let url = url.trim();
        if url.is_empty() {
            anyhow::bail!("ORDERGRAPH_NATS_URL is empty");
        }
        // JetStream refuses these in a stream name.
        if stream.is_empty()
            || !stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            anyhow::bail!(
                "ORDERGRAPH_NATS_STREAM={stream:?}: a stream name is letters, digits, '_' and '-'"
            );
        }
        let tokens_ok = !prefix.is_empty()
            && prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !tokens_ok {
            anyhow::bail!(
                "ORDERGRAPH_NATS_SUBJECT_PREFIX={prefix:?}: subject tokens of letters, digits, \
                 '_' and '-', separated by '.'"
            );
        }
        if !(1..=5).contains(&replicas) {
            anyhow::bail!("ORDERGRAPH_NATS_REPLICAS={replicas}: JetStream keeps 1 to 5 replicas");
        }
        Ok(Self {
            url: url.to_owned(),
            stream: stream.to_owned(),
            prefix: prefix.to_owned(),
            replicas,
        })
    }

    /// Every subject the stream takes: `<prefix>.>`.
    pub fn subjects(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The URL without credentials, for logs.
    pub fn redacted_url(&self) -> String {
        self.url
            .split(',')
            .map(|one| match one.rsplit_once('@') {
                Some((_, host)) => {
                    let scheme = one.split_once("://").map_or("nats", |(s, _)| s);
                    format!("{scheme}://***@{host}")
                }
                None => one.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A connection to the broker and its JetStream context. The client reconnects by itself
/// after a broker restart; what was in flight then fails and is retried by its user.
pub async fn connect(settings: &BrokerSettings, name: &str) -> anyhow::Result<jetstream::Context> {
    connect_counting(settings, name, None).await
}

/// Like [`connect`], counting in `breaks` each time the connection is lost: whatever its
/// user made on the broker before (an ordered consumer) may be gone with it.
pub async fn connect_counting(
    settings: &BrokerSettings,
    name: &str,
    breaks: Option<std::sync::Arc<tokio::sync::watch::Sender<u64>>>,
) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .event_callback(move |event| {
            let breaks = breaks.clone();
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!("the broker connection was lost; reconnecting");
                        if let Some(breaks) = breaks {
                            breaks.send_modify(|n| *n = n.wrapping_add(1));
                        }
                    }
                    async_nats::Event::Connected => tracing::info!("connected to the broker"),
                    other => tracing::debug!(event = %other, "broker connection event"),
                }
            }
        })
        .connection_timeout(REQUEST_TIMEOUT)
        // The library's default doubles up to 4 s: after a short outage the reads and
        // publishes would stay stalled seconds after the broker is back.
        .reconnect_delay_callback(|attempts| {
            RECONNECT_STEP
                .saturating_mul(u32::try_from(attempts).unwrap_or(u32::MAX))
                .min(MAX_RECONNECT_DELAY)
        })
        .connect(settings.url.as_str())
        .await
        .with_context(|| format!("connecting to NATS at {}", settings.redacted_url()))?;
    Ok(jetstream::context::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .ack_timeout(ACK_TIMEOUT)
        .build(client))
}

/// The stream of the log, created (file storage, every subject under the prefix) when it
/// does not exist yet. An existing stream is used as it is: an operator may have created
/// it with the settings production needs (README.md, "The event bus").
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &BrokerSettings,
) -> anyhow::Result<stream::Stream> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: settings.stream.clone(),
            description: Some("ordergraph's event log: sequence = log position".to_owned()),
            subjects: vec![settings.subjects()],
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await
        .with_context(|| format!("opening the JetStream stream {}", settings.stream))?;
    let config = &stream.cached_info().config;
    if config.storage == stream::StorageType::Memory {
        tracing::warn!(
            stream = %settings.stream,
            "the event stream keeps its messages in memory: a broker restart empties it"
        );
    }
    if !config.subjects.iter().any(|s| s == &settings.subjects()) {
        anyhow::bail!(
            "the JetStream stream {} does not take the subjects {} (it takes {:?})",
            settings.stream,
            settings.subjects(),
            config.subjects
        );
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_refuse_names_jetstream_refuses() {
        assert!(BrokerSettings::new("nats://127.0.0.1:4222", "EVENTS", "ordergraph", 1).is_ok());
        assert!(BrokerSettings::new("", "EVENTS", "ordergraph", 1).is_err());
        assert!(BrokerSettings::new("nats://x", "EV.ENTS", "ordergraph", 1).is_err());
        assert!(BrokerSettings::new("nats://x", "EVENTS", "shop.*", 1).is_err());
        assert!(BrokerSettings::new("nats://x", "EVENTS", "shop..x", 1).is_err());
        assert!(BrokerSettings::new("nats://x", "EVENTS", "shop", 0).is_err());
        let s = BrokerSettings::new("nats://x", "EVENTS", "acme.shop", 3).expect("valid");
        assert_eq!(s.subjects(), "acme.shop.>");
    }

    #[test]
    fn credentials_never_reach_the_log() {
        let s = BrokerSettings::new("nats://user:pw@broker:4222,tls://b2:4222", "E", "p", 1)
            .expect("valid");
        assert_eq!(s.redacted_url(), "nats://***@broker:4222,tls://b2:4222");
    }
}
