//! Prometheus metrics, served on `/metrics`. The registry belongs to the application (no
//! process-global recorder), so several applications can live in one process (tests).
//!
//! Besides the domain's figures: HTTP latency by route, method and status class
//! ([`track_http`]); GraphQL operation latency by type and name and errors by
//! `extensions.code` ([`OperationTimer`], a step of the GraphQL request pipeline); and,
//! measured at each scrape ([`Metrics::scrape`]), each projection's lag in seconds, the
//! database pools and the process (the standard unprefixed `process_*` names, read from
//! `/proc`); and each pool's acquire times ([`AcquireTimes`]), which only sqlx's tracing
//! events carry (`db::tag_acquires` and `telemetry::pool_acquire_layer` say how they get
//! here).
//! Every label's values are bounded: routes are the router's, operation names are only
//! those of documents that validated, at most [`MAX_OPERATION_NAMES`] of them, later ones
//! counted as `other`, and codes are the API's.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::graphql::traces::Operation;

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

/// What a read of the log asked the database (`log::shared`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogRead {
    /// The safe horizon.
    Horizon,
    /// A page of events.
    Page,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogReadLabel {
    /// `horizon` or `page`.
    pub read: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadCacheLabel {
    /// `product`, `page`, or `payload` (a mutation's product, after its fold).
    pub read: &'static str,
    /// `hit` (served from memory) or `miss` (read from the database).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    /// The replica's node id (ORDERGRAPH_NODE_ID).
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route's path pattern (`/graphql`), or `unmatched`.
    pub route: String,
    pub method: String,
    /// `2xx`, `4xx`, …
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GraphqlOperationLabels {
    /// `query`, `mutation` or `subscription`.
    pub r#type: String,
    /// The operation's name, `anonymous`, or `other` past the cap on names.
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// `database` (DATABASE_URL's pool), or `read_database` (a read replica's
    /// READ_DATABASE_URL).
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolStateLabels {
    pub pool: String,
    /// `in_use` or `idle`.
    pub state: String,
}

/// Most distinct operation names labelled; the rest are `other`.
pub const MAX_OPERATION_NAMES: usize = 200;

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
    cluster_units_held: Family<NodeLabel, Gauge>,
    cluster_lease_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    cluster_fenced: Gauge,
    ws_connections: Gauge,
    ws_operations: Gauge,
    subscription_executions: Gauge,
    subscriptions_asleep: Gauge,
    http_seconds: Family<HttpLabels, Histogram>,
    operation_seconds: Family<GraphqlOperationLabels, Histogram>,
    operation_names: Mutex<HashSet<String>>,
    graphql_errors: Family<CodeLabel, Counter>,
    projection_lag_seconds: Family<ProjectionLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pool_connections: Family<PoolStateLabels, Gauge>,
    pool_max: Family<PoolLabel, Gauge>,
    /// The pools measured at each scrape, by name ([`Metrics::watch_pool`]); their
    /// acquire times are encoded by [`PoolAcquireCollector`].
    pools: Arc<Mutex<Vec<WatchedPool>>>,
    /// The `process_*` metrics, unprefixed as every exporter names them.
    process: Registry,
    process_rss: Gauge,
    process_cpu: Counter<f64, std::sync::atomic::AtomicU64>,
    /// The CPU seconds the counter was last brought up to.
    process_cpu_seen: Mutex<f64>,
    process_fds: Gauge,
    process_threads: Gauge,
    bus_published: Gauge,
    bus_lag: Gauge,
    bus_diverged: Gauge,
    bus_gaps: Counter,
    log_reads: Family<LogReadLabel, Counter>,
    read_cache: Family<ReadCacheLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionLabel {
    /// The projection watched, or `events` for the raw feed.
    pub feed: String,
}

/// Registers `metric` under `name` with `help`, and gives it back to be kept.
fn register<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ordergraph");
        let commands = register(
            &mut registry,
            "commands",
            "Commands executed, by outcome",
            Family::<CommandLabels, Counter>::default(),
        );
        let command_seconds = register(
            &mut registry,
            "command_duration_seconds",
            "Time to decide and commit a command (without the read-your-writes wait)",
            Family::<OperationLabel, Histogram>::new_with_constructor(|| {
                // 0.5 ms … ~4 s
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
        );
        let projection_position = register(
            &mut registry,
            "projection_position",
            "Position of the last event folded into each view",
            Family::<ProjectionLabel, Gauge>::default(),
        );
        let log_head = register(
            &mut registry,
            "event_log_safe_head",
            "Highest position below which every event is final (the relay's horizon)",
            Gauge::default(),
        );
        let subscriptions = register(
            &mut registry,
            "subscriptions_open",
            "Open subscriptions of the change hub, by view (or the raw events feed): one per execution, which identical WebSocket subscriptions share",
            Family::<SubscriptionLabel, Gauge>::default(),
        );
        let lagged = register(
            &mut registry,
            "subscriptions_lagged",
            "Times a subscription fell behind its in-memory buffer and re-read from the database",
            Family::<SubscriptionLabel, Counter>::default(),
        );
        let ws_connections = register(
            &mut registry,
            "websocket_connections",
            "Open GraphQL WebSocket connections",
            Gauge::default(),
        );
        let ws_operations = register(
            &mut registry,
            "websocket_operations",
            "GraphQL subscription operations open on WebSockets",
            Gauge::default(),
        );
        let subscription_executions = register(
            &mut registry,
            "subscription_executions",
            "Executions serving the WebSocket operations (identical subscriptions share one)",
            Gauge::default(),
        );
        let subscriptions_asleep = register(
            &mut registry,
            "subscription_executions_asleep",
            "Of those executions, the ones asleep: dropped until their next change, only the view they follow kept",
            Gauge::default(),
        );
        let events_applied = register(
            &mut registry,
            "projection_events_applied",
            "Events folded into each view",
            Family::<ProjectionLabel, Counter>::default(),
        );
        let projection_lag = register(
            &mut registry,
            "projection_lag_positions",
            "Positions between the log's safe head and each view's checkpoint",
            Family::<ProjectionLabel, Gauge>::default(),
        );
        let projection_failed = register(
            &mut registry,
            "projection_failed",
            "1 when the projection stopped at an event it cannot fold",
            Family::<ProjectionLabel, Gauge>::default(),
        );
        let saga_parked = register(
            &mut registry,
            "saga_orders_parked",
            "Orders the saga set aside until an admin retries them (retryOrder)",
            Gauge::default(),
        );
        let cluster_units_held = register(
            &mut registry,
            "cluster_units_held",
            "Units of work (projectors, saga partitions) this replica holds, by node id",
            Family::<NodeLabel, Gauge>::default(),
        );
        let cluster_lease_age = register(
            &mut registry,
            "cluster_lease_age_seconds",
            "Time since this replica's last successful lease heartbeat was sent (PostgreSQL)",
            Gauge::<f64, std::sync::atomic::AtomicU64>::default(),
        );
        let cluster_fenced = register(
            &mut registry,
            "cluster_fenced",
            "1 while this replica has stopped its units because its lease may be gone",
            Gauge::default(),
        );
        let saga_retrying = register(
            &mut registry,
            "saga_orders_retrying",
            "Orders whose next saga attempt is scheduled after a failure",
            Gauge::default(),
        );
        let latency = || Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let http_seconds = register(
            &mut registry,
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to the response's head: a streamed subscription is not counted to its end), by route, method and status class",
            Family::<HttpLabels, Histogram>::new_with_constructor(latency),
        );
        let operation_seconds = register(
            &mut registry,
            "graphql_operation_duration_seconds",
            "Time to execute a GraphQL query or mutation that validated (any transport), by type and name",
            Family::<GraphqlOperationLabels, Histogram>::new_with_constructor(latency),
        );
        let graphql_errors = register(
            &mut registry,
            "graphql_errors",
            "GraphQL errors sent, by extensions.code",
            Family::<CodeLabel, Counter>::default(),
        );
        let projection_lag_seconds = register(
            &mut registry,
            "projection_lag_seconds",
            "Time since the oldest event a view has not folded yet was recorded (0 when caught up)",
            Family::default(),
        );
        let pool_connections = register(
            &mut registry,
            "db_pool_connections",
            "Database pool connections, by pool and state (in_use or idle)",
            Family::<PoolStateLabels, Gauge>::default(),
        );
        let pool_max = register(
            &mut registry,
            "db_pool_max_connections",
            "Size limit of each database pool",
            Family::<PoolLabel, Gauge>::default(),
        );
        let pools = Arc::new(Mutex::new(Vec::new()));
        registry.register_collector(Box::new(PoolAcquireCollector(pools.clone())));
        // The event bus (src/broker.rs): 0 on a replica that does not publish.
        let bus_published = register(
            &mut registry,
            "bus_published_position",
            "Last log position the broker acknowledged to this replica's publisher",
            Gauge::default(),
        );
        let bus_lag = register(
            &mut registry,
            "bus_publish_lag",
            "Log positions final in the log and not yet published, as this replica's publisher last saw",
            Gauge::default(),
        );
        let bus_diverged = register(
            &mut registry,
            "bus_diverged",
            "1 while publishing is stopped because the event stream and the log disagree",
            Gauge::default(),
        );
        let bus_gaps = register(
            &mut registry,
            "bus_gap_markers",
            "Gap markers published for positions whose transaction rolled back",
            Counter::default(),
        );
        let log_reads = register(
            &mut registry,
            "log_reads",
            "Reads of the event log this process's readers share: safe horizons and pages",
            Family::<LogReadLabel, Counter>::default(),
        );
        let read_cache = register(
            &mut registry,
            "read_cache",
            "Catalog reads served from memory (hit) or from the database (miss)",
            Family::<ReadCacheLabel, Counter>::default(),
        );
        let mut process = Registry::default();
        let process_rss = register(
            &mut process,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            Gauge::default(),
        );
        let process_cpu = register(
            &mut process,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            Counter::default(),
        );
        let process_fds = register(
            &mut process,
            "process_open_fds",
            "Number of open file descriptors",
            Gauge::default(),
        );
        let process_threads = register(
            &mut process,
            "process_threads",
            "Number of OS threads in the process",
            Gauge::default(),
        );
        Self {
            http_seconds,
            operation_seconds,
            operation_names: Mutex::new(HashSet::new()),
            graphql_errors,
            projection_lag_seconds,
            pool_connections,
            pool_max,
            pools,
            process,
            process_rss,
            process_cpu,
            process_cpu_seen: Mutex::new(0.0),
            process_fds,
            process_threads,
            bus_published,
            bus_lag,
            bus_diverged,
            bus_gaps,
            log_reads,
            read_cache,
            registry,
            saga_parked,
            saga_retrying,
            cluster_units_held,
            cluster_lease_age,
            cluster_fenced,
            subscriptions,
            events_applied,
            projection_lag,
            projection_failed,
            lagged,
            ws_connections,
            ws_operations,
            subscription_executions,
            subscriptions_asleep,
            commands,
            command_seconds,
            projection_position,
            log_head,
        }
    }
}

impl Metrics {
    /// The last position the broker acknowledged to this replica's publisher.
    pub fn bus_published(&self, position: i64) {
        self.bus_published.set(position);
    }

    /// Positions final in the log and not yet published.
    pub fn bus_lag(&self, positions: i64) {
        self.bus_lag.set(positions.max(0));
    }

    /// Whether publishing is stopped for a mismatch between the stream and the log.
    pub fn bus_diverged(&self, diverged: bool) {
        self.bus_diverged.set(i64::from(diverged));
    }

    pub fn bus_gaps(&self, n: u64) {
        self.bus_gaps.inc_by(n);
    }

    /// The shared log asked the database for `read` once.
    pub fn log_read(&self, read: LogRead) {
        let read = match read {
            LogRead::Horizon => "horizon",
            LogRead::Page => "page",
        };
        self.log_reads.get_or_create(&LogReadLabel { read }).inc();
    }

    /// A catalog read (`product`, `page` or `payload`) was served from memory or not.
    pub fn read_cache(&self, read: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.read_cache
            .get_or_create(&ReadCacheLabel { read, result })
            .inc();
    }

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

    /// This replica in the cluster: the units it holds, the age of its lease heartbeat
    /// (`None`: no lease connection), and whether it has fenced itself.
    pub fn cluster(&self, node: &str, held: i64, lease_age_secs: Option<f64>, fenced: bool) {
        self.cluster_units_held
            .get_or_create(&NodeLabel {
                node: node.to_owned(),
            })
            .set(held);
        self.cluster_lease_age.set(lease_age_secs.unwrap_or(0.0));
        self.cluster_fenced.set(i64::from(fenced));
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

    /// A WebSocket operation opened (+1) or ended (-1).
    pub fn websocket_operation(&self, delta: i64) {
        self.ws_operations.inc_by(delta);
    }

    /// An execution serving WebSocket operations started (+1) or ended (-1).
    pub fn subscription_execution(&self, delta: i64) {
        self.subscription_executions.inc_by(delta);
    }

    /// A subscription's execution fell asleep (+1) or woke or ended asleep (-1).
    pub fn subscription_asleep(&self, delta: i64) {
        self.subscriptions_asleep.inc_by(delta);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail. The text ends with `# EOF`, written once,
        // after both registries.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.process);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }

    /// One HTTP request answered.
    pub fn http_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_seconds
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status: format!("{}xx", status / 100),
            })
            .observe(seconds);
    }

    /// One GraphQL operation executed. `name` is labelled as is while fewer than
    /// [`MAX_OPERATION_NAMES`] names are known, else `other`.
    fn operation(&self, ty: &str, name: Option<&str>, seconds: f64) {
        let name = match name {
            None => "anonymous".to_owned(),
            Some(name) => {
                let mut names = self
                    .operation_names
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if names.contains(name) || names.len() < MAX_OPERATION_NAMES {
                    names.insert(name.to_owned());
                    name.to_owned()
                } else {
                    "other".to_owned()
                }
            }
        };
        self.operation_seconds
            .get_or_create(&GraphqlOperationLabels {
                r#type: ty.to_owned(),
                name,
            })
            .observe(seconds);
    }

    /// One GraphQL error sent with `code` (an error without one is BAD_USER_INPUT, as
    /// the transport labels it).
    pub fn graphql_error(&self, code: Option<&str>) {
        let code = match code {
            None => "BAD_USER_INPUT",
            Some(code)
                if code.len() <= 40
                    && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
            {
                code
            }
            Some(_) => "other",
        };
        self.graphql_errors
            .get_or_create(&CodeLabel {
                code: code.to_owned(),
            })
            .inc();
    }

    fn graphql_errors(&self, response: &async_graphql::Response) {
        for error in &response.errors {
            self.graphql_error(crate::graphql::error::code_of(error));
        }
    }

    /// Measures what is measured at each scrape: the views' lag in seconds (read from
    /// `db`), the database pools ([`Metrics::watch_pool`]) and the process.
    pub async fn scrape(
        &self,
        db: &sea_orm::DatabaseConnection,
        projections: &crate::read::status::Statuses,
    ) {
        match projections.report(db).await {
            Ok(report) => {
                for line in report {
                    self.projection_lag_seconds
                        .get_or_create(&Self::projection(line.name))
                        .set(line.lag_millis as f64 / 1000.0);
                }
            }
            // The other figures are still worth serving; the series keep their last value.
            Err(e) => tracing::warn!(error = %e, "could not measure the projections' lag"),
        }
        self.pools();
        self.process();
    }

    /// Measures `db`'s pool at each scrape, labelled `pool="{name}"`: its connections
    /// in use and idle, its size limit, and the time each acquire from it took (when
    /// [`crate::db::connect`] could tag it). Called once per pool, at start-up.
    pub fn watch_pool(&self, name: &'static str, db: &sea_orm::DatabaseConnection) {
        let watched = WatchedPool {
            name,
            acquires: crate::db::acquire_times(db),
            db: db.clone(),
        };
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.retain(|pool| pool.name != name);
        pools.push(watched);
    }

    fn pools(&self) {
        use sea_orm::DatabaseBackend;
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        for pool in pools.iter() {
            let db = &pool.db;
            // Each getter panics for another backend: ask the one this connection has.
            let (size, idle, max) = match db.get_database_backend() {
                DatabaseBackend::Postgres => {
                    let pool = db.get_postgres_connection_pool();
                    (
                        pool.size(),
                        pool.num_idle(),
                        pool.options().get_max_connections(),
                    )
                }
                DatabaseBackend::Sqlite => {
                    let pool = db.get_sqlite_connection_pool();
                    (
                        pool.size(),
                        pool.num_idle(),
                        pool.options().get_max_connections(),
                    )
                }
                _ => continue,
            };
            let idle = i64::try_from(idle).unwrap_or(i64::MAX);
            let state = |state: &str| PoolStateLabels {
                pool: pool.name.to_owned(),
                state: state.to_owned(),
            };
            self.pool_connections
                .get_or_create(&state("in_use"))
                .set((i64::from(size) - idle).max(0));
            self.pool_connections
                .get_or_create(&state("idle"))
                .set(idle);
            self.pool_max
                .get_or_create(&PoolLabel {
                    pool: pool.name.to_owned(),
                })
                .set(i64::from(max));
        }
    }

    /// The process's figures from `/proc/self` (Linux); elsewhere they stay at 0.
    fn process(&self) {
        let Some(process) = ProcSelf::read() else {
            return;
        };
        self.process_rss.set(process.rss_bytes);
        let mut seen = self
            .process_cpu_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if process.cpu_seconds > *seen {
            self.process_cpu.inc_by(process.cpu_seconds - *seen);
            *seen = process.cpu_seconds;
        }
        self.process_fds.set(process.open_fds);
        self.process_threads.set(process.threads);
    }
}

/// A database pool measured at each scrape.
#[derive(Debug)]
struct WatchedPool {
    name: &'static str,
    db: sea_orm::DatabaseConnection,
    /// `None` for a pool [`crate::db::connect`] could not tag.
    acquires: Option<Arc<AcquireTimes>>,
}

/// The time each acquire from one database pool took, from the call to the connection
/// in hand: waiting for a free connection, or for a new one to open, and sqlx's check of
/// one idle for a while (a ping, `db::IDLE_BEFORE_PING`). By Little's law, the rate of its sum is
/// the mean number of tasks waiting on the pool (`rate(…_sum[1m])`). sqlx reports an
/// acquire only when it gets its connection: one that times out (10 s, then the request
/// fails as `INTERNAL`) or whose task is dropped while it waits is not in it.
#[derive(Debug)]
pub struct AcquireTimes(Histogram);

impl Default for AcquireTimes {
    fn default() -> Self {
        // 10 µs (a ping of an idle connection) … 10 s (the acquire timeout), 1-2.5-5 per
        // decade so that a rule can name a round bound (`le="1.0"`, as the exposition
        // writes it).
        Self(Histogram::new([
            0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
            0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]))
    }
}

impl AcquireTimes {
    pub fn observe(&self, seconds: f64) {
        self.0.observe(seconds);
    }
}

/// Encodes the watched pools' [`AcquireTimes`] at each scrape, labelled by pool (the
/// histograms are made where the pools are, before this registry knows them).
#[derive(Debug)]
struct PoolAcquireCollector(Arc<Mutex<Vec<WatchedPool>>>);

impl prometheus_client::collector::Collector for PoolAcquireCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::TypedMetric as _;
        let pools = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut family = encoder.encode_descriptor(
            "db_pool_acquire_seconds",
            "Time each acquire from a database pool took (waiting for a connection, opening one, or checking an idle one), by pool; rate(_sum) is the mean number of tasks waiting. Acquires that timed out are not counted",
            None,
            Histogram::TYPE,
        )?;
        for pool in pools.iter() {
            if let Some(acquires) = &pool.acquires {
                acquires.0.encode(family.encode_family(&PoolLabel {
                    pool: pool.name.to_owned(),
                })?)?;
            }
        }
        Ok(())
    }
}

/// What `/proc/self` says about this process.
#[derive(Debug, Default)]
struct ProcSelf {
    rss_bytes: i64,
    cpu_seconds: f64,
    open_fds: i64,
    threads: i64,
}

impl ProcSelf {
    fn read() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<i64>().ok())
        };
        // The fields after the command name (which may hold spaces, within parentheses):
        // utime and stime are the 12th and 13th, in clock ticks of USER_HZ, which Linux
        // fixes at 100 for user space.
        let after_name = stat.rsplit_once(')')?.1;
        let ticks: Vec<f64> = after_name
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|n| n.parse().ok())
            .collect();
        Some(Self {
            rss_bytes: field("VmRSS:")?.saturating_mul(1024),
            cpu_seconds: ticks.iter().sum::<f64>() / 100.0,
            open_fds: std::fs::read_dir("/proc/self/fd")
                .map(|dir| i64::try_from(dir.count()).unwrap_or(i64::MAX))
                .unwrap_or(0),
            threads: field("Threads:")?,
        })
    }
}

/// Axum middleware: the latency of every HTTP request, by route pattern (bounded: the
/// router's, or `unmatched`), method and status class.
pub async fn track_http(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "OPTIONS" | "HEAD" | "PUT" | "DELETE" | "PATCH") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.http_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The operation metrics of one GraphQL request, a step of the request pipeline
/// (`graphql::pipeline`): times each query and mutation by type and name, and counts the
/// errors sent by code. A name is labelled only once its document validated (a client
/// cannot fill the label space with names that never ran).
pub(crate) struct OperationTimer {
    metrics: Arc<Metrics>,
    /// The type and name of the operation, once its document validated.
    operation: Mutex<Option<Operation>>,
}

impl OperationTimer {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            operation: Mutex::new(None),
        }
    }

    /// Errors of a request over HTTP (its refusals included).
    pub(crate) fn responded(&self, response: &async_graphql::Response) {
        self.metrics.graphql_errors(response);
    }

    /// Errors of a stream (WebSocket and multipart operations, subscriptions' events).
    pub(crate) fn stream<'s>(
        &self,
        stream: futures_util::stream::BoxStream<'s, async_graphql::Response>,
    ) -> futures_util::stream::BoxStream<'s, async_graphql::Response> {
        use futures_util::StreamExt as _;
        let metrics = self.metrics.clone();
        stream
            .inspect(move |response| metrics.graphql_errors(response))
            .boxed()
    }

    /// The request's document validated: its operation (as parsed) may be labelled.
    pub(crate) fn validated(&self, operation: Option<Operation>) {
        *self
            .operation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = operation;
    }

    /// The time to execute a query or mutation, over any transport (a subscription is
    /// not timed: it lasts as long as its client wants).
    pub(crate) async fn execute(
        &self,
        execution: impl Future<Output = async_graphql::Response>,
    ) -> async_graphql::Response {
        let started = Instant::now();
        let response = execution.await;
        let operation = self
            .operation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // A subscription's stream runs `execute` for each event it resolves: not timed.
        if let Some((ty, name)) = operation
            && ty != "subscription"
        {
            self.metrics
                .operation(ty, name.as_deref(), started.elapsed().as_secs_f64());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_past_the_cap_are_counted_as_other() {
        let metrics = Metrics::default();
        for i in 0..MAX_OPERATION_NAMES + 50 {
            metrics.operation("query", Some(&format!("Op{i}")), 0.001);
        }
        // A name known before the cap is still labelled after it.
        metrics.operation("query", Some("Op0"), 0.001);
        metrics.operation("mutation", None, 0.001);
        let text = metrics.render();
        let labelled = |name: &str| {
            text.contains(&format!(
                "ordergraph_graphql_operation_duration_seconds_count{{type=\"query\",name=\"{name}\"}}"
            ))
        };
        assert!(labelled("Op0") && labelled(&format!("Op{}", MAX_OPERATION_NAMES - 1)));
        assert!(!labelled(&format!("Op{MAX_OPERATION_NAMES}")));
        assert!(text.contains(
            "ordergraph_graphql_operation_duration_seconds_count{type=\"query\",name=\"other\"} 50"
        ));
        assert!(text.contains("name=\"anonymous\""));
    }

    #[test]
    fn an_unexpected_code_is_counted_as_other() {
        let metrics = Metrics::default();
        metrics.graphql_error(Some("NOT_FOUND"));
        metrics.graphql_error(Some("a code {with} \"quotes\""));
        metrics.graphql_error(None);
        let text = metrics.render();
        for code in ["NOT_FOUND", "other", "BAD_USER_INPUT"] {
            assert!(
                text.contains(&format!(
                    "ordergraph_graphql_errors_total{{code=\"{code}\"}} 1"
                )),
                "{code}: {text}"
            );
        }
    }
}
