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

/// The running service: a bound listener, the router, and the relay, ready to run.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    relay: Relay,
    saga: process::order_saga::OrderSaga,
    local_addr: SocketAddr,
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
        let projections: Vec<Arc<dyn Projection>> = vec![
            Arc::new(read::catalog::CatalogProjection),
            Arc::new(read::cart::CartProjection),
            Arc::new(read::orders::OrderProjection),
            Arc::new(read::dashboard::DashboardProjection),
        ];
        let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
        let checkpoints = Arc::new(Checkpoints::load(&db, &names).await?);
        let health = Arc::new(RelayHealth::default());
        let metrics = Arc::new(metrics::Metrics::default());
        let writer = Writer::new(db.clone(), gate.clone(), wakeup.clone(), metrics.clone());

        let writer_for_saga = writer.clone();
        let schema = graphql::build_schema(graphql::Services {
            db: db.clone(),
            writer,
            checkpoints: checkpoints.clone(),
            consistency_wait: settings.consistency_wait(),
        });
        let router = http::router(
            http::HttpState {
                schema,
                verifier: TokenVerifier::new(&secret),
                db: db.clone(),
                relay_health: health.clone(),
                metrics: metrics.clone(),
            },
            settings.max_body_bytes,
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
            wakeup: wakeup.subscribe(),
            poll: settings.relay_poll(),
            fault,
        };
        let relay = Relay {
            db,
            gate,
            projections,
            checkpoints,
            bus,
            wakeup: wakeup.subscribe(),
            poll: settings.relay_poll(),
            health,
            metrics,
        };

        let listener = TcpListener::bind(settings.bind)
            .await
            .with_context(|| format!("binding {}", settings.bind))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            router,
            relay,
            saga,
            local_addr,
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then drains requests and stops the relay.
    /// If the relay stops on its own, the service stops too rather than serve stale views.
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
        tracing::info!(address = %self.local_addr, "serving GraphQL on http://{}/graphql", self.local_addr);

        let server_stop = {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(server_stop);
        let mut server = tokio::spawn(async move { server.await });
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
        let _ = stop_tx.send(true);
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
