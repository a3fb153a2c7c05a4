//! Logs and traces, set up once by the CLI ([`init`]); tests do not call it.
//!
//! **Logs**: `tracing` with an env filter (`RUST_LOG`), as text or JSON lines on stderr.
//!
//! **Traces** (ADR 0014): off unless an OTLP endpoint is configured
//! (`ORDERGRAPH_OTLP_ENDPOINT`, or OpenTelemetry's own `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: [`Traces::configured`]). Then a second layer,
//! `tracing-opentelemetry`, turns the spans of GraphQL operations
//! (`graphql/traces.rs`, target [`TRACE_TARGET`]) and the spans of this crate opened
//! inside them (a command's `execute`) into OpenTelemetry spans, which a batch processor
//! sends over OTLP/HTTP (protobuf) from a thread of its own: a request never waits for
//! the exporter, and a full queue drops spans instead. Off, no layer takes the spans of
//! [`TRACE_TARGET`] (the log layer never does), so their call sites are disabled and the
//! schema's request pipeline does not even have the step that opens them.
//!
//! **Pool acquires**: a third layer, [`pool_acquire_layer`], takes sqlx's event for each
//! connection acquired from a database pool and records its duration in that pool's
//! histogram (`ordergraph_db_pool_acquire_seconds`; `db::tag_acquires` says how a pool is
//! told from another). The log layer never shows those events.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// The target of the spans that exist only to be exported: one per GraphQL operation and
/// one per read-your-writes wait. The log layer never takes them (they would add nothing
/// to a log line and cost a span per request).
pub const TRACE_TARGET: &str = "ordergraph::trace";

/// The service's name in traces when neither `OTEL_SERVICE_NAME` nor a `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` names it.
const SERVICE_NAME: &str = "ordergraph";

/// How long shutting down may wait for the last spans to be sent: a collector that is
/// down must not hold up a deploy.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether and where traces are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Traces {
    Off,
    /// OTLP over HTTP with protobuf bodies. `endpoint` is `ORDERGRAPH_OTLP_ENDPOINT`'s base
    /// URL (`/v1/traces` is appended, as for `OTEL_EXPORTER_OTLP_ENDPOINT`); `None` leaves
    /// the endpoint to the exporter, which reads the standard `OTEL_EXPORTER_OTLP_*`
    /// variables (as it does the headers, timeout and compression in any case).
    Otlp {
        endpoint: Option<String>,
    },
}

impl Traces {
    /// What the configuration asks for: `ordergraph_endpoint` (`ORDERGRAPH_OTLP_ENDPOINT`)
    /// first, then the OpenTelemetry variables read through `env`. Off unless an endpoint
    /// is set; off when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. An
    /// exporter or protocol this service does not have (only `otlp` over `http/protobuf`)
    /// is refused, rather than silently sending nothing.
    pub fn configured(
        ordergraph_endpoint: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(Traces::Off);
        }
        if let Some(exporter) = var("OTEL_TRACES_EXPORTER") {
            match exporter.trim() {
                "none" => return Ok(Traces::Off),
                "otlp" => {}
                other => anyhow::bail!(
                    "OTEL_TRACES_EXPORTER={other:?} is not supported: ordergraph exports traces with OTLP only (set it to otlp or none)"
                ),
            }
        }
        let endpoint = ordergraph_endpoint
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| format!("{}/v1/traces", e.trim_end_matches('/')));
        let standard = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .any(|name| var(name).is_some());
        if endpoint.is_none() && !standard {
            return Ok(Traces::Off);
        }
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = var(name)
                && protocol.trim() != "http/protobuf"
            {
                anyhow::bail!(
                    "{name}={protocol:?} is not supported: ordergraph sends OTLP over http/protobuf (point it at the collector's HTTP port, 4318)"
                );
            }
        }
        Ok(Traces::Otlp { endpoint })
    }
}

/// What `init` set up, to be shut down when the process ends.
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued, waiting at most a few seconds, and stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The processor's shutdown blocks its caller on a channel: off the runtime's
        // threads.
        let done = tokio::task::spawn_blocking(move || {
            let result = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
            drop(provider);
            result
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "traces not all exported at shutdown"),
            Err(e) => tracing::warn!(error = %e, "the trace exporter's shutdown failed"),
        }
    }
}

/// Installs the global subscriber once, for the CLI: the log layer, and the trace layer
/// when `traces` asks for one.
pub fn init(json: bool, traces: &Traces) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"))
        // Whatever RUST_LOG says: the trace-only spans are not log material, nor are
        // the acquire events, which are all "slow" by design (db::tag_acquires).
        .add_directive(
            format!("{TRACE_TARGET}=off")
                .parse()
                .expect("a valid directive: the target is a constant"),
        )
        .add_directive(
            format!("{}=off", crate::db::ACQUIRE_TARGET)
                .parse()
                .expect("a valid directive: the target is a constant"),
        );
    // Colours only on a terminal: a log redirected to a file or a collector gets no
    // escape codes (NO_COLOR turns them off on a terminal too).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let logs = if json {
        logs.json().with_filter(filter).boxed()
    } else {
        logs.with_filter(filter).boxed()
    };
    let (exported, provider) = match traces {
        Traces::Off => (None, None),
        Traces::Otlp { endpoint } => {
            let provider = provider(endpoint.as_deref())?;
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("ordergraph"))
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_location(false)
                .with_target(false)
                .with_filter(tracing_subscriber::filter::dynamic_filter_fn(|meta, cx| {
                    // The operation and wait spans; and, inside a traced operation,
                    // this crate's own spans and events (a command's `execute`, a
                    // warning), never a background task's.
                    meta.target() == TRACE_TARGET
                        || (meta.target().starts_with("ordergraph")
                            && *meta.level() <= Level::INFO
                            && cx.lookup_current().is_some())
                }));
            (Some(layer), Some(provider))
        }
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(exported)
        .with(pool_acquire_layer())
        .try_init()
        .context("installing the global tracing subscriber")?;
    if let Traces::Otlp { endpoint } = traces {
        tracing::info!(
            endpoint = endpoint.as_deref().unwrap_or("from OTEL_EXPORTER_OTLP_*"),
            "exporting traces over OTLP/HTTP"
        );
    }
    Ok(Telemetry { provider })
}

/// The layer that records each acquire from a tagged database pool in its histogram
/// (`db::record_acquire`). It takes only sqlx's acquire events; the service's own
/// subscriber has it ([`init`]), and so must any other subscriber that wants the figures.
pub fn pool_acquire_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    PoolAcquires.with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target(crate::db::ACQUIRE_TARGET, Level::INFO),
    )
}

struct PoolAcquires;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PoolAcquires {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut acquire = AcquireEvent::default();
        event.record(&mut acquire);
        if let (Some(tag), Some(seconds)) = (acquire.threshold_secs, acquire.seconds) {
            crate::db::record_acquire(tag, seconds);
        }
    }
}

/// The fields of sqlx's acquire event.
#[derive(Default)]
struct AcquireEvent {
    /// `acquired_after_secs`: the acquire's duration.
    seconds: Option<f64>,
    /// `slow_acquire_threshold_secs`: the pool's tag.
    threshold_secs: Option<f64>,
}

impl tracing::field::Visit for AcquireEvent {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        match field.name() {
            "acquired_after_secs" => self.seconds = Some(value),
            "slow_acquire_threshold_secs" => self.threshold_secs = Some(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

/// The tracer provider: the OTLP/HTTP exporter behind a batch processor (its queue,
/// batch size and delay from the standard `OTEL_BSP_*` variables), the sampler from
/// `OTEL_TRACES_SAMPLER` (default: the parent's decision, else every trace), and the
/// resource from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.
fn provider(endpoint: Option<&str>) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{Protocol, WithExportConfig as _};
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Some(endpoint) = endpoint {
        exporter = exporter.with_endpoint(endpoint);
    }
    let exporter = exporter
        .build()
        .context("configuring the OTLP trace exporter")?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build())
}

/// The standard resource (`service.name`, the SDK, `OTEL_RESOURCE_ATTRIBUTES`), named
/// `ordergraph` unless the environment names it, with the service's version.
fn resource() -> opentelemetry_sdk::Resource {
    use opentelemetry::KeyValue;
    let detected = opentelemetry_sdk::Resource::builder().build();
    let unnamed = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_none_or(|name| name.as_str().starts_with("unknown_service"));
    let builder = opentelemetry_sdk::Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if unnamed {
        builder.with_service_name(SERVICE_NAME).build()
    } else {
        builder.build()
    }
}

/// Propagation of the W3C trace context (`traceparent`, `tracestate`) from a request's
/// headers: the parent a GraphQL operation's span joins.
pub fn remote_parent(headers: &axum::http::HeaderMap) -> opentelemetry::Context {
    use opentelemetry::propagation::TextMapPropagator as _;
    opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .extract(&opentelemetry_http::HeaderExtractor(headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(ours: Option<&str>, vars: &[(&str, &str)]) -> anyhow::Result<Traces> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Traces::configured(ours, |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_configured() {
        assert_eq!(configured(None, &[]).ok(), Some(Traces::Off));
        assert_eq!(
            configured(Some(" "), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]).ok(),
            Some(Traces::Off)
        );
        assert_eq!(
            configured(None, &[("OTEL_SERVICE_NAME", "shop")]).ok(),
            Some(Traces::Off)
        );
    }

    #[test]
    fn the_ordergraph_endpoint_is_a_base_url_like_the_standard_one() {
        assert_eq!(
            configured(Some("http://collector:4318/"), &[]).ok(),
            Some(Traces::Otlp {
                endpoint: Some("http://collector:4318/v1/traces".into())
            })
        );
        for var in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ] {
            assert_eq!(
                configured(None, &[(var, "http://collector:4318")]).ok(),
                Some(Traces::Otlp { endpoint: None }),
                "{var}"
            );
        }
    }

    #[test]
    fn the_standard_switches_turn_traces_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                configured(Some("http://c:4318"), &[endpoint, off]).ok(),
                Some(Traces::Off),
                "{off:?}"
            );
        }
        assert_eq!(
            configured(None, &[endpoint, ("OTEL_SDK_DISABLED", "false")]).ok(),
            Some(Traces::Otlp { endpoint: None })
        );
    }

    #[test]
    fn an_exporter_or_protocol_the_service_lacks_is_refused() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
        ] {
            let refusal = configured(None, &[endpoint, (var, value)])
                .expect_err("refused")
                .to_string();
            assert!(refusal.contains(var), "{refusal}");
        }
        assert!(
            configured(
                None,
                &[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]
            )
            .is_ok()
        );
    }

    #[test]
    fn a_traceparent_header_is_the_remote_parent() {
        use opentelemetry::trace::TraceContextExt as _;
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "traceparent",
            axum::http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let parent = remote_parent(&headers);
        let span = parent.span();
        let context = span.span_context();
        assert!(context.is_remote() && context.is_sampled());
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        let none = remote_parent(&axum::http::HeaderMap::new());
        assert!(!none.span().span_context().is_valid());
    }
}
