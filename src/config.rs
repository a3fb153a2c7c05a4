//! One typed configuration, built once at start-up from flags and environment variables.
//!
//! Every default gives the embedded run: SQLite under `./data`, a development JWT secret
//! generated on first start, `127.0.0.1:8080`. README.md lists every variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// Why PostgreSQL needs `ORDERGRAPH_JWT_SECRET`.
pub const SHARED_SECRET_REQUIRED: &str = "on PostgreSQL, set ORDERGRAPH_JWT_SECRET: \
    replicas sharing a database must verify each other's tokens, and a generated \
    development secret is one replica's own (generate one with `openssl rand -hex 32`, and \
    give the same to every replica and to `ordergraph token`)";

/// Runtime settings of the service. Built by clap from flags and `env`, or by tests directly.
#[derive(clap::Args, Clone, Debug)]
pub struct Settings {
    /// Address to listen on. Port 0 picks a free port (tests use it).
    #[arg(long, env = "ORDERGRAPH_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Web origins besides the API's own that may call it from a browser (CORS) and open
    /// WebSockets: `scheme://host[:port]`, comma-separated, or `*`. Empty: none.
    #[arg(long, env = "ORDERGRAPH_CORS_ORIGINS", default_value = "")]
    pub cors_origins: crate::http::cors::AllowedOrigins,

    /// Database URL: `postgres://…` for PostgreSQL or `sqlite://…?mode=rwc`.
    /// Unset: an embedded SQLite file `ordergraph.db` in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Directory for the embedded database and the generated development JWT secret.
    #[arg(long, env = "ORDERGRAPH_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// HS256 secret used to verify bearer tokens. Unset: a random development secret is
    /// generated once and kept in `<data dir>/jwt-secret` (mode 0600).
    #[arg(long, env = "ORDERGRAPH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    /// How long a mutation waits for its projection to reach the written position
    /// (read-your-writes) before answering CONSISTENCY_TIMEOUT.
    #[arg(long, env = "ORDERGRAPH_CONSISTENCY_WAIT_MS", default_value_t = 5_000)]
    pub consistency_wait_ms: u64,

    /// How many catalog products `product(id)` keeps in memory (and a hundredth as many
    /// `products` pages), exact: dropped whenever the catalog changes (ADR 0023). 0 turns
    /// the cache off.
    #[arg(long, env = "ORDERGRAPH_READ_CACHE_ROWS", default_value_t = 10_000)]
    pub read_cache_rows: usize,

    /// Whether identical WebSocket subscriptions (same operation, same caller) share one
    /// execution, each message rendered once for all of them (ADR 0024).
    #[arg(
        long,
        env = "ORDERGRAPH_SHARE_SUBSCRIPTIONS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub share_subscriptions: bool,

    /// Whether a WebSocket subscription's execution sleeps while its view does not
    /// change: it keeps only the view it follows, and each change wakes an execution
    /// (`http::shared::sleeping`).
    #[arg(
        long,
        env = "ORDERGRAPH_SLEEPING_SUBSCRIPTIONS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub sleeping_subscriptions: bool,

    /// How long a woken subscription's execution stays awake after its last message
    /// before it sleeps again (0: after every message).
    #[arg(
        long,
        env = "ORDERGRAPH_SUBSCRIPTION_SLEEP_AFTER_MS",
        default_value_t = 2_000
    )]
    pub subscription_sleep_after_ms: u64,

    /// Upper bound on the time one HTTP request may take.
    #[arg(long, env = "ORDERGRAPH_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ORDERGRAPH_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest response, in bytes: a whole batch, one WebSocket message or one multipart
    /// part. An operation whose result does not fit is answered with an error instead.
    #[arg(long, env = "ORDERGRAPH_MAX_RESPONSE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_response_bytes: usize,

    /// Longest GraphQL document (the query text), in bytes (it is refused unparsed past it).
    #[arg(long, env = "ORDERGRAPH_MAX_DOCUMENT_BYTES", default_value_t = crate::graphql::MAX_DOCUMENT_BYTES)]
    pub max_document_bytes: usize,

    /// Most lexical tokens one GraphQL document may have (it is refused unparsed past it).
    #[arg(long, env = "ORDERGRAPH_MAX_DOCUMENT_TOKENS", default_value_t = crate::graphql::MAX_DOCUMENT_TOKENS)]
    pub max_document_tokens: usize,

    /// Most nodes (selections, argument values, directives) validating one GraphQL
    /// document may visit, with its fragments expanded.
    #[arg(long, env = "ORDERGRAPH_MAX_DOCUMENT_NODES", default_value_t = crate::graphql::MAX_DOCUMENT_NODES)]
    pub max_document_nodes: usize,

    /// Most operations in one batch request (a JSON array of requests).
    #[arg(long, env = "ORDERGRAPH_MAX_BATCH_OPERATIONS", default_value_t = 10)]
    pub max_batch_operations: usize,

    /// Most complexity the operations of one batch may add up to (each one is also
    /// held to the per-operation limit).
    #[arg(long, env = "ORDERGRAPH_MAX_BATCH_COMPLEXITY", default_value_t = crate::graphql::MAX_COMPLEXITY)]
    pub max_batch_complexity: usize,

    /// A persisted query manifest (Apollo's `apollo-persisted-query-manifest` JSON, or a
    /// `{"<sha256>": "<document>"}` object): when set, only its documents run (ADR 0010).
    /// Unset: any document runs, and automatic persisted queries register documents.
    #[arg(long, env = "ORDERGRAPH_PERSISTED_QUERIES")]
    pub persisted_queries: Option<PathBuf>,

    /// Bytes of query text the automatic persisted query registry may hold (least
    /// recently used documents are evicted past it).
    #[arg(
        long,
        env = "ORDERGRAPH_PERSISTED_QUERY_CACHE_BYTES",
        default_value_t = 8 * 1024 * 1024
    )]
    pub persisted_query_cache_bytes: usize,

    /// Time a client has to send a request's headers, on a new connection and between
    /// two requests on a kept-alive one (an idle keep-alive connection is closed after it).
    #[arg(long, env = "ORDERGRAPH_HEADER_TIMEOUT_SECS", default_value_t = 30)]
    pub header_timeout_secs: u64,

    /// Most connections open at once (HTTP and WebSocket); past it a connection gets 503.
    /// Lowered at start-up to fit the process's file-descriptor limit.
    #[arg(long, env = "ORDERGRAPH_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most anonymous subscription connections (WebSocket or multipart) open at once.
    #[arg(
        long,
        env = "ORDERGRAPH_MAX_ANONYMOUS_CONNECTIONS",
        default_value_t = 1_000
    )]
    pub max_anonymous_connections: usize,

    /// Longest token lifetime accepted, in seconds (`exp - iat`, or the time left for a
    /// token without `iat`). Unset: any lifetime.
    #[arg(long, env = "ORDERGRAPH_MAX_TOKEN_LIFETIME_SECS")]
    pub max_token_lifetime_secs: Option<u64>,

    /// Size of the database connection pool; also how many subscriptions read their
    /// starting state at once (the others wait their turn).
    #[arg(long, env = "ORDERGRAPH_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// How often the relay polls the event log when nothing woke it (writes from other
    /// processes). Writes of this process wake it at once.
    #[arg(long, env = "ORDERGRAPH_RELAY_POLL_MS", default_value_t = 250)]
    pub relay_poll_ms: u64,

    /// How long a WebSocket client has to send `connection_init` before the socket is
    /// closed with 4408.
    #[arg(long, env = "ORDERGRAPH_WS_INIT_TIMEOUT_MS", default_value_t = 3_000)]
    pub ws_init_timeout_ms: u64,

    /// How often the server pings an idle WebSocket client (keep-alive).
    #[arg(long, env = "ORDERGRAPH_WS_KEEPALIVE_SECS", default_value_t = 15)]
    pub ws_keepalive_secs: u64,

    /// How often an idle multipart HTTP subscription sends a heartbeat part (Apollo
    /// Router's interval: clients and proxies drop a silent stream).
    #[arg(
        long,
        env = "ORDERGRAPH_MULTIPART_HEARTBEAT_MS",
        default_value_t = 5_000
    )]
    pub multipart_heartbeat_ms: u64,

    /// Most subscriptions open at once on one WebSocket connection.
    #[arg(
        long,
        env = "ORDERGRAPH_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 100
    )]
    pub max_subscriptions_per_connection: usize,

    /// Most WebSocket connections one signed-in user may hold open at once.
    #[arg(
        long,
        env = "ORDERGRAPH_MAX_CONNECTIONS_PER_USER",
        default_value_t = 16
    )]
    pub max_connections_per_user: usize,

    /// Changes (or events) a subscriber may fall behind in memory before a view
    /// subscription is conflated (re-reads the latest state of its keys) or the `events`
    /// feed serves it from the table until it catches up.
    #[arg(long, env = "ORDERGRAPH_SUBSCRIPTION_BUFFER", default_value_t = 1024)]
    pub subscription_buffer: usize,

    /// On shutdown, how long subscribers get to receive SERVER_DRAINING and disconnect.
    #[arg(long, env = "ORDERGRAPH_DRAIN_TIMEOUT_MS", default_value_t = 5_000)]
    pub drain_timeout_ms: u64,

    /// Snapshot each aggregate's state every this many events of its stream, so loading a
    /// long stream reads the snapshot and the tail (0: never snapshot).
    #[arg(long, env = "ORDERGRAPH_SNAPSHOT_EVERY", default_value_t = 100)]
    pub snapshot_every: i64,

    /// Delay before the order saga tries an order again after its first failure (say,
    /// the payment provider is unavailable); it doubles with each failure, with jitter.
    #[arg(long, env = "ORDERGRAPH_SAGA_RETRY_INITIAL_MS", default_value_t = 20)]
    pub saga_retry_initial_ms: u64,

    /// Longest delay between two attempts of one order by the saga.
    #[arg(long, env = "ORDERGRAPH_SAGA_RETRY_MAX_MS", default_value_t = 5_000)]
    pub saga_retry_max_ms: u64,

    /// Attempts before the saga parks an order that keeps failing with an unexpected
    /// error (a transient payment error is retried without limit).
    #[arg(long, env = "ORDERGRAPH_SAGA_MAX_ATTEMPTS", default_value_t = 10)]
    pub saga_max_attempts: u32,

    /// Base URL of an OpenTelemetry collector's OTLP/HTTP receiver
    /// (`http://collector:4318`): exports a trace span per GraphQL operation (ADR 0014).
    /// Unset: OpenTelemetry's own `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`)
    /// if set, else no traces.
    #[arg(long, env = "ORDERGRAPH_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// What this replica does: a comma list of `api`, `projector` (folds views), `saga`
    /// (runs order saga partitions) and `publisher` (publishes the log to NATS when
    /// `ORDERGRAPH_NATS_URL` is set). A replica with none of the last three never claims
    /// a unit of work. PostgreSQL only; SQLite runs everything in one process.
    #[arg(
        long,
        env = "ORDERGRAPH_ROLES",
        default_value = "api,projector,saga,publisher"
    )]
    pub roles: crate::cluster::Roles,

    /// This replica's name in the cluster (its lease connection's `application_name` is
    /// `ordergraph/<id>`). Unset: `<hostname>-<pid>`. Must be unique among the replicas.
    #[arg(long, env = "ORDERGRAPH_NODE_ID")]
    pub node_id: Option<crate::cluster::NodeId>,

    /// The lease of a replica's units of work, in milliseconds: a replica that stops
    /// answering loses them after this long (and stops them itself before).
    #[arg(long, env = "ORDERGRAPH_LEASE_MS", default_value_t = 3_000)]
    pub lease_ms: u64,

    /// Partitions of the order saga (by order id), each a unit of work with its own
    /// checkpoint: orders of different partitions proceed in parallel. PostgreSQL only
    /// (SQLite runs one).
    #[arg(long, env = "ORDERGRAPH_SAGA_PARTITIONS", default_value_t = 8)]
    pub saga_partitions: u16,

    /// A read replica's own database (`postgres://…`, or `sqlite://…?mode=rwc` for a single
    /// read replica): its views are folded there from the event bus (`ORDERGRAPH_NATS_URL`
    /// is required) and its queries and subscriptions read them there. `DATABASE_URL`
    /// stays the write database (PostgreSQL): mutations, `history` and the temporal
    /// queries go there. ADR 0016.
    #[arg(long, env = "READ_DATABASE_URL")]
    pub read_database_url: Option<String>,

    /// A NATS server with JetStream (`nats://host:4222`): the write side publishes every
    /// event of the log to it, in position order (ADR 0016). Unset: nothing is published.
    #[arg(long, env = "ORDERGRAPH_NATS_URL")]
    pub nats_url: Option<String>,

    /// The JetStream stream the log is published to (created with file storage if
    /// missing). Its sequence numbers are the log's positions.
    #[arg(
        long,
        env = "ORDERGRAPH_NATS_STREAM",
        default_value = "ORDERGRAPH_EVENTS"
    )]
    pub nats_stream: String,

    /// The first token of every published subject:
    /// `<prefix>.<stream type>.<event type>`, and `<prefix>._gap` for a rolled-back
    /// position.
    #[arg(
        long,
        env = "ORDERGRAPH_NATS_SUBJECT_PREFIX",
        default_value = "ordergraph"
    )]
    pub nats_subject_prefix: String,

    /// Replicas of the stream when the publisher creates it: 1 on a single broker, 3 on
    /// a JetStream cluster in production (an R1 stream on a broker with the default
    /// `sync_interval` can lose acknowledged messages in a crash; README.md, "The event
    /// bus").
    #[arg(long, env = "ORDERGRAPH_NATS_REPLICAS", default_value_t = 1)]
    pub nats_replicas: usize,

    /// Test hook: stop the order saga at a step boundary, as if the process died there.
    #[cfg(feature = "test-hooks")]
    #[arg(skip)]
    pub saga_fault: Option<crate::process::order_saga::SagaFault>,
}

impl Default for Settings {
    /// The embedded defaults, without reading flags or the environment (tests start here).
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cors_origins: crate::http::cors::AllowedOrigins::default(),
            database_url: None,
            data_dir: PathBuf::from("./data"),
            jwt_secret: None,
            consistency_wait_ms: 5_000,
            read_cache_rows: 10_000,
            share_subscriptions: true,
            sleeping_subscriptions: true,
            subscription_sleep_after_ms: 2_000,
            request_timeout_secs: 30,
            max_body_bytes: 1024 * 1024,
            max_response_bytes: 8 * 1024 * 1024,
            max_document_bytes: crate::graphql::MAX_DOCUMENT_BYTES,
            max_document_tokens: crate::graphql::MAX_DOCUMENT_TOKENS,
            max_document_nodes: crate::graphql::MAX_DOCUMENT_NODES,
            max_batch_operations: 10,
            max_batch_complexity: crate::graphql::MAX_COMPLEXITY,
            persisted_queries: None,
            persisted_query_cache_bytes: 8 * 1024 * 1024,
            header_timeout_secs: 30,
            max_connections: 10_000,
            max_anonymous_connections: 1_000,
            max_token_lifetime_secs: None,
            db_max_connections: 16,
            relay_poll_ms: 250,
            ws_init_timeout_ms: 3_000,
            ws_keepalive_secs: 15,
            multipart_heartbeat_ms: 5_000,
            max_subscriptions_per_connection: 100,
            max_connections_per_user: 16,
            subscription_buffer: 1024,
            snapshot_every: 100,
            drain_timeout_ms: 5_000,
            saga_retry_initial_ms: 20,
            saga_retry_max_ms: 5_000,
            saga_max_attempts: 10,
            otlp_endpoint: None,
            roles: crate::cluster::Roles::default(),
            node_id: None,
            lease_ms: 3_000,
            saga_partitions: 8,
            read_database_url: None,
            nats_url: None,
            nats_stream: "ORDERGRAPH_EVENTS".to_owned(),
            nats_subject_prefix: "ordergraph".to_owned(),
            nats_replicas: 1,
            #[cfg(feature = "test-hooks")]
            saga_fault: None,
        }
    }
}

impl Settings {
    /// The database URL in effect: the configured one, or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("ordergraph.db").display()
            ),
        }
    }

    pub fn consistency_wait(&self) -> Duration {
        Duration::from_millis(self.consistency_wait_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn relay_poll(&self) -> Duration {
        Duration::from_millis(self.relay_poll_ms)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    /// Refuses what cannot work on this database: roles other than everything on SQLite
    /// (one process does all the work there), and PostgreSQL without a configured JWT
    /// secret (replicas cannot share a generated development secret: each would mint and
    /// accept its own tokens).
    pub fn check_cluster_settings(&self, url: &str) -> anyhow::Result<()> {
        if let Some(read) = &self.read_database_url {
            if self.nats_url.is_none() {
                anyhow::bail!(
                    "READ_DATABASE_URL makes this a read replica, fed from the event bus: set \
                     ORDERGRAPH_NATS_URL too (the broker the write side publishes to)"
                );
            }
            if !url.starts_with("postgres") {
                anyhow::bail!(
                    "a read replica (READ_DATABASE_URL) sends its mutations to the write \
                     database, which must then be PostgreSQL: set DATABASE_URL to it"
                );
            }
            if read.trim() == url.trim() {
                anyhow::bail!(
                    "READ_DATABASE_URL is DATABASE_URL: a read replica keeps its views in a \
                     database of its own (unset READ_DATABASE_URL to serve from the write database)"
                );
            }
            if !read.starts_with("postgres") && !self.roles.is_everything() {
                anyhow::bail!(
                    "ORDERGRAPH_ROLES={} needs a PostgreSQL read database: on an SQLite read \
                     database one read replica folds every view",
                    self.roles
                );
            }
            if self.jwt_secret.is_none() {
                anyhow::bail!(SHARED_SECRET_REQUIRED);
            }
            return Ok(());
        }
        let postgres = url.starts_with("postgres");
        if !postgres && !self.roles.is_everything() {
            anyhow::bail!(
                "ORDERGRAPH_ROLES={} needs PostgreSQL: on SQLite one process does all the \
                 work (api,projector,saga,publisher). Unset ORDERGRAPH_ROLES, or set DATABASE_URL to a \
                 PostgreSQL database to run several replicas",
                self.roles
            );
        }
        if postgres && self.jwt_secret.is_none() {
            anyhow::bail!(SHARED_SECRET_REQUIRED);
        }
        Ok(())
    }

    /// The broker the log is published to, when one is configured.
    pub fn broker(&self) -> anyhow::Result<Option<crate::broker::BrokerSettings>> {
        let Some(url) = &self.nats_url else {
            return Ok(None);
        };
        crate::broker::BrokerSettings::new(
            url,
            &self.nats_stream,
            &self.nats_subject_prefix,
            self.nats_replicas,
        )
        .map(Some)
    }

    /// The lease of a replica's units (at least 300 ms).
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.max(300))
    }

    /// The saga partitions on this backend: as configured on PostgreSQL (1 to 1024), one
    /// on SQLite.
    pub fn saga_partitions_on(&self, backend: sea_orm::DbBackend) -> u16 {
        match backend {
            sea_orm::DbBackend::Postgres => self.saga_partitions.clamp(1, 1024),
            _ => 1,
        }
    }

    /// When the order saga tries an order again after a failure.
    pub fn saga_retry(&self) -> crate::process::order_saga::RetryPolicy {
        crate::process::order_saga::RetryPolicy {
            initial: Duration::from_millis(self.saga_retry_initial_ms.max(1)),
            max: Duration::from_millis(
                self.saga_retry_max_ms
                    .max(self.saga_retry_initial_ms)
                    .max(1),
            ),
            max_attempts: i32::try_from(self.saga_max_attempts.max(1)).unwrap_or(i32::MAX),
        }
    }

    /// The WebSocket transport's limits and timers.
    pub fn websocket(&self) -> crate::http::ws::WsSettings {
        crate::http::ws::WsSettings {
            init_timeout: Duration::from_millis(self.ws_init_timeout_ms),
            keepalive: Duration::from_secs(self.ws_keepalive_secs.max(1)),
            multipart_heartbeat: Duration::from_millis(self.multipart_heartbeat_ms.max(1)),
            max_subscriptions: self.max_subscriptions_per_connection,
            max_connections_per_user: self.max_connections_per_user,
            max_anonymous_connections: self.max_anonymous_connections,
            sleep_after: self
                .sleeping_subscriptions
                .then(|| Duration::from_millis(self.subscription_sleep_after_ms)),
        }
    }

    /// Limits on one GraphQL document (build it once: its parsing slots are shared).
    pub fn document_limits(&self) -> crate::graphql::limits::DocumentLimits {
        crate::graphql::limits::DocumentLimits::new(
            self.max_document_bytes,
            self.max_document_tokens,
            self.max_document_nodes,
        )
    }

    /// The persisted queries: the manifest's allow-list when one is configured, else
    /// automatic persisted queries.
    pub fn persisted_queries(&self) -> anyhow::Result<crate::graphql::persisted::PersistedQueries> {
        use crate::graphql::persisted::PersistedQueries;
        match &self.persisted_queries {
            Some(manifest) => PersistedQueries::allow_list(manifest),
            None => Ok(PersistedQueries::automatic(
                self.persisted_query_cache_bytes,
            )),
        }
    }

    /// Limits of the HTTP server; the connection cap is lowered to what the process's
    /// file-descriptor limit allows, keeping room for the database pool and the rest.
    pub fn serve_limits(&self, descriptors: Option<u64>) -> crate::http::serve::ServeLimits {
        let reserve = u64::from(self.db_max_connections) + 64;
        let fits = descriptors.map_or(usize::MAX, |limit| {
            usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX)
        });
        crate::http::serve::ServeLimits {
            header_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
            max_connections: self.max_connections.min(fits).max(1),
        }
    }
}
