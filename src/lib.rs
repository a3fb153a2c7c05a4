//! ordergraph: a shop's catalog, carts and orders as a GraphQL service built with CQRS and
//! event sourcing. `Application` wires the parts; `main.rs` is only the CLI.

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
use crate::read::bus::{ChangeBus, InProcessBus};
use crate::read::checkpoints::Checkpoints;
use crate::read::relay::{Relay, RelayHealth};
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

/// The running service: a bound listener, the router, and the relay, ready to run.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    relay: Relay,
    saga: process::order_saga::OrderSaga,
    live: Arc<read::live::LiveViews>,
    live_changes: tokio::sync::broadcast::Receiver<read::bus::Change>,
    feed: Arc<read::feed::EventFeed>,
    horizon: watch::Receiver<i64>,
    db: sea_orm::DatabaseConnection,
    drain: watch::Sender<bool>,
    connections: Arc<http::ws::Connections>,
    drain_timeout: std::time::Duration,
    bus: Arc<dyn ChangeBus>,
    local_addr: SocketAddr,
    serve_limits: http::serve::ServeLimits,
}

impl Application {
    /// Connects, migrates, and binds; nothing is served until `run_until_stopped`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
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

        let (secret, development) =
            auth::resolve_secret(settings.jwt_secret.as_ref(), &settings.data_dir)?;
        if development {
            tracing::warn!(
                path = %settings.data_dir.join("jwt-secret").display(),
                "using a generated development JWT secret; set ORDERGRAPH_JWT_SECRET in production"
            );
        }

        let gate = WriteGate::for_backend(db.get_database_backend());
        let wakeup = write::Wakeup::default();
        let bus: Arc<dyn ChangeBus> = Arc::new(InProcessBus::new(BUS_CAPACITY));
        let projections: Vec<Arc<dyn Projection>> = read::all_projections();
        let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
        read::checkpoints::ensure(&db, &names).await?;
        let checkpoints = Arc::new(Checkpoints::load(&db, &names).await?);
        let health = Arc::new(RelayHealth::default());
        let statuses = Arc::new(read::status::Statuses::new(&names, checkpoints.clone()));
        let metrics = Arc::new(metrics::Metrics::default());
        let writer = Writer::new(db.clone(), gate.clone(), wakeup.clone(), metrics.clone())
            .snapshot_every(settings.snapshot_every);
        let dead_letters =
            process::dead_letters::DeadLetters::new(db.clone(), gate.clone(), wakeup.clone());

        let writer_for_saga = writer.clone();
        let live = read::live::LiveViews::new(settings.subscription_buffer.max(1), metrics.clone());
        // Listening before the relay runs: the hub misses no change.
        let live_changes = bus.subscribe();
        let feed = read::feed::EventFeed::new(settings.subscription_buffer.max(1), metrics.clone());
        let (horizon_tx, horizon) = watch::channel(0);
        let (drain, drain_rx) = watch::channel(false);
        let connections = Arc::new(http::ws::Connections::default());
        let rebuilds = Arc::new(read::rebuild::Rebuilds::new(
            read::rebuild::Replayer {
                db: db.clone(),
                url: url.clone(),
                gate: Some(gate.clone()),
            },
            projections.clone(),
            statuses.clone(),
            checkpoints.clone(),
            horizon.clone(),
            live.clone(),
        ));
        let document_limits = settings.document_limits();
        let persisted = settings.persisted_queries()?;
        let schema = graphql::build_schema(
            graphql::Services {
                db: db.clone(),
                writer,
                checkpoints: checkpoints.clone(),
                consistency_wait: settings.consistency_wait(),
                live: live.clone(),
                feed: feed.clone(),
                drain: drain_rx.clone(),
                projections: statuses.clone(),
                rebuilds,
                dead_letters: dead_letters.clone(),
            },
            persisted.clone(),
            document_limits.clone(),
            metrics.clone(),
        );
        let router = http::router(
            http::HttpState {
                schema,
                verifier: TokenVerifier::new(&secret).max_lifetime(
                    settings
                        .max_token_lifetime_secs
                        .map(std::time::Duration::from_secs),
                ),
                db: db.clone(),
                relay_health: health.clone(),
                metrics: metrics.clone(),
                connections: connections.clone(),
                ws: settings.websocket(),
                drain: drain_rx,
                max_message_bytes: settings.max_body_bytes,
                max_response_bytes: settings.max_response_bytes,
                max_batch_operations: settings.max_batch_operations,
                max_batch_complexity: settings.max_batch_complexity,
                document_limits,
                persisted,
                projections: statuses.clone(),
                origins: settings.cors_origins.clone(),
            },
            settings.request_timeout(),
        );
        #[cfg(feature = "test-hooks")]
        let fault = settings.saga_fault.clone();
        #[cfg(not(feature = "test-hooks"))]
        let fault = None;
        let saga = process::order_saga::OrderSaga {
            db: db.clone(),
            gate: gate.clone(),
            writer: writer_for_saga,
            gateway: Arc::new(process::gateway::SimulatedGateway::new(db.clone())),
            dead_letters,
            retry: settings.saga_retry(),
            metrics: metrics.clone(),
            wakeup: wakeup.subscribe(),
            poll: settings.relay_poll(),
            fault,
        };
        let relay = Relay {
            db: db.clone(),
            gate,
            projections,
            checkpoints,
            bus: bus.clone(),
            wakeup: wakeup.subscribe(),
            poll: settings.relay_poll(),
            health,
            metrics,
            horizon: horizon_tx,
            statuses,
        };

        let listener = TcpListener::bind(settings.bind)
            .await
            .with_context(|| format!("binding {}", settings.bind))?;
        let local_addr = listener.local_addr()?;
        let serve_limits = settings.serve_limits(descriptor_limit());
        tracing::info!(
            max_connections = serve_limits.max_connections,
            header_timeout_secs = serve_limits.header_timeout.as_secs(),
            "connection limits"
        );
        Ok(Self {
            listener,
            router,
            relay,
            saga,
            live,
            live_changes,
            feed,
            horizon,
            db,
            drain,
            connections,
            drain_timeout: settings.drain_timeout(),
            bus,
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
        self.bus.clone()
    }

    /// Serves until `shutdown` resolves, then drains: every subscription ends with
    /// SERVER_DRAINING and its resume position, WebSockets close (at most the drain
    /// timeout), requests in flight finish, and the relay stops. If the relay stops on
    /// its own, the service stops too rather than serve stale views.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let relay_stop = {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let mut relay = tokio::spawn(self.relay.run(relay_stop));
        let mut saga = tokio::spawn(self.saga.run(stop_rx.clone()));
        let stopped = |rx: &watch::Receiver<bool>| {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let live = tokio::spawn(self.live.clone().run(
            self.live_changes,
            self.db.clone(),
            stopped(&stop_rx),
        ));
        let feed = tokio::spawn(self.feed.clone().run(
            self.db.clone(),
            self.horizon,
            stopped(&stop_rx),
        ));
        tracing::info!(address = %self.local_addr, "serving GraphQL on http://{}/graphql", self.local_addr);

        let server_stop = {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let server = http::serve::serve(self.listener, self.router, self.serve_limits, server_stop);
        let mut server = tokio::spawn(server);
        tokio::pin!(shutdown);

        let result = tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                Ok(())
            }
            r = &mut relay => {
                Err(anyhow::anyhow!("the event relay stopped unexpectedly: {r:?}"))
            }
            r = &mut saga => {
                Err(anyhow::anyhow!("the order saga stopped unexpectedly: {r:?}"))
            }
            r = &mut server => {
                r.context("server task failed")?.context("server failed")?;
                Ok(())
            }
        };
        // Subscribers first: they get SERVER_DRAINING while the views still run.
        let _ = self.drain.send(true);
        if !self.connections.wait_closed(self.drain_timeout).await {
            tracing::warn!("some WebSocket clients did not disconnect in time");
        }
        let _ = stop_tx.send(true);
        let _ = live.await;
        let _ = feed.await;
        if !server.is_finished() {
            let _ = server.await;
        }
        if !relay.is_finished() {
            let _ = relay.await;
        }
        if !saga.is_finished() {
            let _ = saga.await;
        }
        result
    }
}
