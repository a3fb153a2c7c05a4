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
        Self {
            registry,
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
