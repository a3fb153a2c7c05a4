//! ordergraph: a shop's catalog, carts and orders as a GraphQL service built with CQRS and
//! event sourcing. `Application` wires the parts: a shared `Core` (the database, the
//! change bus, the checkpoints, the live views and the event feed) and one small
//! constructor per part built on it (the GraphQL schema, the router, the relay, the saga),
//! the background tasks supervised together (`supervise`). `main.rs` is only the CLI.

pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod entity;
pub mod error;
pub mod graphql;
pub mod http;
pub mod log;
pub mod metrics;
pub mod process;
pub mod read;
pub mod supervise;
pub mod telemetry;
pub mod write;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::TokenVerifier;
use crate::config::Settings;
use crate::read::Projection;
use crate::read::bus::{Change, ChangeBus, InProcessBus};
use crate::read::checkpoints::Checkpoints;
use crate::read::relay::{Relay, RelayHealth};
use crate::supervise::{Failure, Supervisor, Tasks};
use crate::write::{WriteGate, Writer};

/// Capacity of the in-process change bus (changes a slow listener may fall behind).
const BUS_CAPACITY: usize = 4096;

/// Raises the soft limit on open file descriptors to the hard limit (each connection
/// holds one; the default soft limit is often 1024 or less) and returns it, or `None`
/// where it cannot be read.
fn descriptor_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "could not read or raise the file-descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// What every part of the service is built on: one of each, shared.
struct Core {
    settings: Settings,
    url: String,
    db: sea_orm::DatabaseConnection,
    gate: WriteGate,
    wakeup: write::Wakeup,
    bus: Arc<dyn ChangeBus>,
    projections: Vec<Arc<dyn Projection>>,
    checkpoints: Arc<Checkpoints>,
    statuses: Arc<read::status::Statuses>,
    metrics: Arc<metrics::Metrics>,
    relay_health: Arc<RelayHealth>,
    live: Arc<read::live::LiveViews>,
    feed: Arc<read::feed::EventFeed>,
    /// The relay's safe horizon, for the event feed and rebuilds.
    horizon: watch::Receiver<i64>,
    /// Its sender, until the relay takes it.
    horizon_tx: Option<watch::Sender<i64>>,
    /// True once the server drains.
    drain: watch::Receiver<bool>,
    connections: Arc<http::ws::Connections>,
    tasks: Arc<Tasks>,
    /// The bounds on a document, shared by every transport (one parsing semaphore).
    document_limits: graphql::limits::DocumentLimits,
    /// The registry of persisted queries, shared by the schema and the transport.
    persisted: graphql::persisted::PersistedQueries,
}

impl Core {
    /// Connects and migrates; loads the checkpoints of every projection.
    async fn open(settings: Settings, drain: watch::Receiver<bool>) -> anyhow::Result<Self> {
        if settings.database_url.is_none() {
            std::fs::create_dir_all(&settings.data_dir).with_context(|| {
                format!("creating data directory {}", settings.data_dir.display())
            })?;
        }
        let url = settings.effective_database_url();
        let db = db::connect(&url, settings.db_max_connections).await?;
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            db::check_postgres(&url).await?;
        }
        db::migrate(&db).await?;
        tracing::info!(database = %db::redact(&url), "database ready");

        let views = read::views();
        let projections: Vec<Arc<dyn Projection>> =
            views.iter().map(|v| v.projection.clone()).collect();
        let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
        read::checkpoints::ensure(&db, &names).await?;
        let checkpoints = Arc::new(Checkpoints::load(&db, &names).await?);
        let metrics = Arc::new(metrics::Metrics::default());
        let buffer = settings.subscription_buffer.max(1);
        let (horizon_tx, horizon) = watch::channel(0);
        Ok(Self {
            gate: WriteGate::for_backend(db.get_database_backend()),
            wakeup: write::Wakeup::default(),
            bus: Arc::new(InProcessBus::new(BUS_CAPACITY)),
            statuses: Arc::new(read::status::Statuses::new(&names, checkpoints.clone())),
            live: read::live::LiveViews::new(&views, buffer, metrics.clone()),
            feed: read::feed::EventFeed::new(buffer, metrics.clone()),
            horizon,
            horizon_tx: Some(horizon_tx),
            relay_health: Arc::new(RelayHealth::default()),
            connections: Arc::new(http::ws::Connections::default()),
            tasks: Arc::new(Tasks::default()),
            document_limits: settings.document_limits(),
            persisted: settings.persisted_queries()?,
            projections,
            checkpoints,
            metrics,
            drain,
            settings,
            url,
            db,
        })
    }

    fn writer(&self) -> Writer {
        Writer::new(
            self.db.clone(),
            self.gate.clone(),
            self.wakeup.clone(),
            self.metrics.clone(),
        )
        .snapshot_every(self.settings.snapshot_every)
    }

    fn dead_letters(&self) -> process::dead_letters::DeadLetters {
        process::dead_letters::DeadLetters::new(
            self.db.clone(),
            self.gate.clone(),
            self.wakeup.clone(),
        )
    }

    /// The relay: the one writer of the core's horizon.
    fn relay(&mut self) -> Relay {
        let horizon = self
            .horizon_tx
            .take()
            .expect("a core has one relay: Application::build makes it once");
        Relay {
            db: self.db.clone(),
            gate: self.gate.clone(),
            projections: self.projections.clone(),
            checkpoints: self.checkpoints.clone(),
            bus: self.bus.clone(),
            wakeup: self.wakeup.subscribe(),
            poll: self.settings.relay_poll(),
            health: self.relay_health.clone(),
            metrics: self.metrics.clone(),
            horizon,
            statuses: self.statuses.clone(),
        }
    }

    fn saga(&self) -> process::order_saga::OrderSaga {
        #[cfg(feature = "test-hooks")]
        let fault = self.settings.saga_fault.clone();
        #[cfg(not(feature = "test-hooks"))]
        let fault = None;
        process::order_saga::OrderSaga {
            db: self.db.clone(),
            gate: self.gate.clone(),
            writer: self.writer(),
            gateway: Arc::new(process::gateway::SimulatedGateway::new(self.db.clone())),
            dead_letters: self.dead_letters(),
            retry: self.settings.saga_retry(),
            metrics: self.metrics.clone(),
            wakeup: self.wakeup.subscribe(),
            poll: self.settings.relay_poll(),
            fault,
        }
    }

    fn schema(&self) -> graphql::AppSchema {
        let rebuilds = read::rebuild::Rebuilds::new(
            read::rebuild::Replayer {
                db: self.db.clone(),
                url: self.url.clone(),
                gate: Some(self.gate.clone()),
            },
            self.projections.clone(),
            self.statuses.clone(),
            self.checkpoints.clone(),
            self.horizon.clone(),
            self.live.clone(),
        );
        graphql::build_schema(
            graphql::Services {
                db: self.db.clone(),
                writer: self.writer(),
                checkpoints: self.checkpoints.clone(),
                consistency_wait: self.settings.consistency_wait(),
                live: self.live.clone(),
                feed: self.feed.clone(),
                drain: self.drain.clone(),
                projections: self.statuses.clone(),
                rebuilds: Arc::new(rebuilds),
                dead_letters: self.dead_letters(),
            },
            self.persisted.clone(),
            self.document_limits.clone(),
            self.metrics.clone(),
        )
    }

    fn router(&self, verifier: TokenVerifier) -> axum::Router {
        let s = &self.settings;
        http::router(
            http::HttpState {
                schema: self.schema(),
                verifier,
                db: self.db.clone(),
                relay_health: self.relay_health.clone(),
                metrics: self.metrics.clone(),
                connections: self.connections.clone(),
                ws: s.websocket(),
                drain: self.drain.clone(),
                max_message_bytes: s.max_body_bytes,
                max_response_bytes: s.max_response_bytes,
                max_batch_operations: s.max_batch_operations,
                max_batch_complexity: s.max_batch_complexity,
                document_limits: self.document_limits.clone(),
                persisted: self.persisted.clone(),
                projections: self.statuses.clone(),
                tasks: self.tasks.clone(),
                origins: s.cors_origins.clone(),
            },
            s.request_timeout(),
        )
    }
}

/// The background tasks, ready to be started under one supervisor.
struct Background {
    relay: Arc<Relay>,
    saga: Arc<process::order_saga::OrderSaga>,
    /// The live views' first receiver of the bus, subscribed before the relay runs so that
    /// the hub misses no change.
    live_changes: tokio::sync::broadcast::Receiver<Change>,
}

/// The running service: a bound listener, the router, and the background tasks, ready to
/// run.
pub struct Application {
    core: Core,
    listener: TcpListener,
    router: axum::Router,
    background: Background,
    drain: watch::Sender<bool>,
    local_addr: SocketAddr,
    serve_limits: http::serve::ServeLimits,
}

impl Application {
    /// Connects, migrates, and binds; nothing is served until `run_until_stopped`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let (drain, drain_rx) = watch::channel(false);
        let mut core = Core::open(settings, drain_rx).await?;
        let s = &core.settings;
        let (secret, development) = auth::resolve_secret(s.jwt_secret.as_ref(), &s.data_dir)?;
        if development {
            tracing::warn!(
                path = %s.data_dir.join("jwt-secret").display(),
                "using a generated development JWT secret; set ORDERGRAPH_JWT_SECRET in production"
            );
        }
        let verifier = TokenVerifier::new(&secret).max_lifetime(
            s.max_token_lifetime_secs
                .map(std::time::Duration::from_secs),
        );
        let background = Background {
            relay: Arc::new(core.relay()),
            saga: Arc::new(core.saga()),
            live_changes: core.bus.subscribe(),
        };
        let router = core.router(verifier);

        let bind = core.settings.bind;
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        let local_addr = listener.local_addr()?;
        let serve_limits = core.settings.serve_limits(descriptor_limit());
        tracing::info!(
            max_connections = serve_limits.max_connections,
            header_timeout_secs = serve_limits.header_timeout.as_secs(),
            "connection limits"
        );
        Ok(Self {
            core,
            listener,
            router,
            background,
            drain,
            local_addr,
            serve_limits,
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The change bus the relay publishes on (to embed the service, or to compare
    /// subscriptions against a bare fan-out of the bus in a benchmark).
    pub fn change_bus(&self) -> Arc<dyn ChangeBus> {
        self.core.bus.clone()
    }

    /// Starts the relay, the saga, the live views and the event feed under one
    /// supervisor (ADR 0006).
    fn supervise(core: &Core, background: Background, stop: watch::Receiver<bool>) -> Supervisor {
        let mut supervisor = Supervisor::new(core.tasks.clone(), stop);
        let relay = background.relay;
        supervisor.spawn("relay", move |up, stopped| {
            let relay = relay.clone();
            async move {
                relay.run(up, stopped.wait()).await;
                Ok(())
            }
        });
        let saga = background.saga;
        supervisor.spawn("order-saga", move |up, stopped| {
            let saga = saga.clone();
            async move {
                match saga.run(up, stopped.receiver()).await {
                    Ok(()) => Ok(()),
                    // An injected fault plays a crashed process: the service stops.
                    Err(e @ process::order_saga::SagaError::Injected(_)) => {
                        Err(Failure::Stop(e.into()))
                    }
                    Err(e) => Err(Failure::restart(e)),
                }
            }
        });
        let (live, bus, db) = (core.live.clone(), core.bus.clone(), core.db.clone());
        let mut first = Some(background.live_changes);
        supervisor.spawn("live-views", move |up, stopped| {
            // A restarted hub listens from now on, and has its subscribers re-read.
            let restarted = first.is_none();
            let changes = first.take().unwrap_or_else(|| bus.subscribe());
            let run = live
                .clone()
                .run(changes, restarted, db.clone(), up, stopped.wait());
            async move { run.await.map_err(Failure::Restart) }
        });
        let (feed, db, horizon) = (core.feed.clone(), core.db.clone(), core.horizon.clone());
        supervisor.spawn("event-feed", move |up, stopped| {
            let run = feed
                .clone()
                .run(db.clone(), horizon.clone(), up, stopped.wait());
            async move { run.await.map_err(Failure::restart) }
        });
        supervisor
    }

    /// Serves until `shutdown` resolves, then drains: every subscription ends with
    /// SERVER_DRAINING and its resume position, WebSockets close (at most the drain
    /// timeout), requests in flight finish, and the background tasks stop. A background
    /// task that dies is restarted (ADR 0006); one that asks to stop the service (an
    /// injected fault) stops it.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (core, drain, address) = (self.core, self.drain, self.local_addr);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut supervisor = Self::supervise(&core, self.background, stop_rx.clone());
        tracing::info!(%address, "serving GraphQL on http://{address}/graphql");

        let server_stop = {
            let mut rx = stop_rx;
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let mut server = tokio::spawn(http::serve::serve(
            self.listener,
            self.router,
            self.serve_limits,
            server_stop,
        ));
        tokio::pin!(shutdown);

        let result = tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                Ok(())
            }
            e = supervisor.failed() => Err(e),
            r = &mut server => {
                r.context("server task failed")?.context("server failed")?;
                Ok(())
            }
        };
        // Subscribers first: they get SERVER_DRAINING while the views still run.
        let _ = drain.send(true);
        if !core
            .connections
            .wait_closed(core.settings.drain_timeout())
            .await
        {
            tracing::warn!("some WebSocket clients did not disconnect in time");
        }
        let _ = stop_tx.send(true);
        supervisor.join().await;
        if !server.is_finished() {
            let _ = server.await;
        }
        result
    }
}
