//! Prometheus metrics, served on `/metrics`. The registry belongs to the application (no
//! process-global recorder), so several applications can live in one process (tests).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub operation: String,
    /// `ok`, or the error code in lower case (e.g. `conflict`).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabel {
    pub projection: String,
}

pub struct Metrics {
    registry: Registry,
    commands: Family<CommandLabels, Counter>,
    command_seconds: Family<OperationLabel, Histogram>,
    projection_position: Family<ProjectionLabel, Gauge>,
    log_head: Gauge,
    subscriptions: Family<SubscriptionLabel, Gauge>,
    lagged: Family<SubscriptionLabel, Counter>,
    events_applied: Family<ProjectionLabel, Counter>,
    projection_lag: Family<ProjectionLabel, Gauge>,
    projection_failed: Family<ProjectionLabel, Gauge>,
    saga_parked: Gauge,
    saga_retrying: Gauge,
    ws_connections: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionLabel {
    /// The projection watched, or `events` for the raw feed.
    pub feed: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ordergraph");
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "commands",
            "Commands executed, by outcome",
            commands.clone(),
        );
        let command_seconds = Family::<OperationLabel, Histogram>::new_with_constructor(|| {
            // 0.5 ms … ~4 s
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "command_duration_seconds",
            "Time to decide and commit a command (without the read-your-writes wait)",
            command_seconds.clone(),
        );
        let projection_position = Family::<ProjectionLabel, Gauge>::default();
        registry.register(
            "projection_position",
            "Position of the last event folded into each view",
            projection_position.clone(),
        );
        let log_head = Gauge::default();
        registry.register(
            "event_log_safe_head",
            "Highest position below which every event is final (the relay's horizon)",
            log_head.clone(),
        );
        let subscriptions = Family::<SubscriptionLabel, Gauge>::default();
        registry.register(
            "subscriptions_open",
            "Open subscriptions, by view (or the raw events feed)",
            subscriptions.clone(),
        );
        let lagged = Family::<SubscriptionLabel, Counter>::default();
        registry.register(
            "subscriptions_lagged",
            "Times a subscription fell behind its in-memory buffer and re-read from the database",
            lagged.clone(),
        );
        let ws_connections = Gauge::default();
        registry.register(
            "websocket_connections",
            "Open GraphQL WebSocket connections",
            ws_connections.clone(),
        );
        let events_applied = Family::<ProjectionLabel, Counter>::default();
        registry.register(
            "projection_events_applied",
            "Events folded into each view",
            events_applied.clone(),
        );
        let projection_lag = Family::<ProjectionLabel, Gauge>::default();
        registry.register(
            "projection_lag_positions",
            "Positions between the log's safe head and each view's checkpoint",
            projection_lag.clone(),
        );
        let projection_failed = Family::<ProjectionLabel, Gauge>::default();
        registry.register(
            "projection_failed",
            "1 when the projection stopped at an event it cannot fold",
            projection_failed.clone(),
        );
        let saga_parked = Gauge::default();
        registry.register(
            "saga_orders_parked",
            "Orders the saga set aside until an admin retries them (retryOrder)",
            saga_parked.clone(),
        );
        let saga_retrying = Gauge::default();
        registry.register(
            "saga_orders_retrying",
            "Orders whose next saga attempt is scheduled after a failure",
            saga_retrying.clone(),
        );
        Self {
            registry,
            saga_parked,
            saga_retrying,
            subscriptions,
            events_applied,
            projection_lag,
            projection_failed,
            lagged,
            ws_connections,
            commands,
            command_seconds,
            projection_position,
            log_head,
        }
    }
}

impl Metrics {
    pub fn command(&self, operation: &str, outcome: &str, seconds: f64) {
        self.commands
            .get_or_create(&CommandLabels {
                operation: operation.to_owned(),
                outcome: outcome.to_ascii_lowercase(),
            })
            .inc();
        self.command_seconds
            .get_or_create(&OperationLabel {
                operation: operation.to_owned(),
            })
            .observe(seconds);
    }

    pub fn projection_at(&self, projection: &str, position: i64) {
        self.projection_position
            .get_or_create(&ProjectionLabel {
                projection: projection.to_owned(),
            })
            .set(position);
    }

    pub fn head_at(&self, position: i64) {
        self.log_head.set(position);
    }

    fn projection(name: &str) -> ProjectionLabel {
        ProjectionLabel {
            projection: name.to_owned(),
        }
    }

    pub fn events_applied(&self, projection: &str, n: u64) {
        self.events_applied
            .get_or_create(&Self::projection(projection))
            .inc_by(n);
    }

    pub fn projection_lag(&self, projection: &str, positions: i64) {
        self.projection_lag
            .get_or_create(&Self::projection(projection))
            .set(positions.max(0));
    }

    /// Whether `projection` has stopped at an event it cannot fold (1) or runs (0). Set
    /// for every projection, so that the series exists at 0 while nothing has failed: an
    /// alert on `ordergraph_projection_failed > 0` then also sees the series go back to 0
    /// after a rebuild, and an absent series means a broken scrape, not good health.
    pub fn projection_failed(&self, projection: &str, failed: bool) {
        self.projection_failed
            .get_or_create(&Self::projection(projection))
            .set(i64::from(failed));
    }

    /// The orders in the saga's dead letters, by state.
    pub fn saga_dead_letters(&self, retrying: i64, parked: i64) {
        self.saga_retrying.set(retrying);
        self.saga_parked.set(parked);
    }

    fn feed(feed: &str) -> SubscriptionLabel {
        SubscriptionLabel {
            feed: feed.to_owned(),
        }
    }

    pub fn subscription_opened(&self, feed: &str) {
        self.subscriptions.get_or_create(&Self::feed(feed)).inc();
    }

    pub fn subscription_closed(&self, feed: &str) {
        self.subscriptions.get_or_create(&Self::feed(feed)).dec();
    }

    pub fn subscriber_lagged(&self, feed: &str) {
        self.lagged.get_or_create(&Self::feed(feed)).inc();
    }

    pub fn websocket_opened(&self) {
        self.ws_connections.inc();
    }

    pub fn websocket_closed(&self) {
        self.ws_connections.dec();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
