//! ordergraph: a shop's catalog, carts and orders as a GraphQL service built with CQRS and
//! event sourcing. `Application` wires the parts: a shared `Core` (the database, the
//! change bus, the checkpoints, the live views, the event feed and, on PostgreSQL, the
//! doorbell listener that brings every replica the others' changes) and one small
//! constructor per part built on it (the GraphQL schema, the router, the relay, the saga),
//! the background tasks supervised together (`supervise`). The projectors and the saga
//! partitions are units of work run by the `cluster` member: on PostgreSQL each by one
//! replica at a time, on SQLite all by the one process (ADR 0012). `main.rs` is only the
//! CLI.

pub mod auth;
pub mod broker;
pub mod cluster;
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
use crate::read::bus::{Change, ChangeBus, DoorbellBus, InProcessBus};
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
    /// The write database: the log, the write tables, the saga's state.
    db: sea_orm::DatabaseConnection,
    gate: WriteGate,
    /// The views' database: the write database itself, or a read replica's own
    /// (`READ_DATABASE_URL`, ADR 0016), with the views' checkpoints and the cluster that
    /// folds them.
    views: sea_orm::DatabaseConnection,
    views_url: String,
    /// The write gate of the views' database (the write gate itself when it is the same).
    views_gate: WriteGate,
    /// A read replica's copy of the log: the event bus.
    bus_source: Option<Arc<broker::source::BusSource>>,
    wakeup: write::Wakeup,
    bus: Arc<dyn ChangeBus>,
    projections: Vec<Arc<dyn Projection>>,
    checkpoints: Arc<Checkpoints>,
    /// Copies of catalog rows (ADR 0023): filled by reads and by this replica's folds.
    catalog_cache: Arc<read::cache::CatalogCache>,
    statuses: Arc<read::status::Statuses>,
    metrics: Arc<metrics::Metrics>,
    relay_health: Arc<RelayHealth>,
    live: Arc<read::live::LiveViews>,
    feed: Arc<read::feed::EventFeed>,
    /// On PostgreSQL: the listener that brings this replica every fold's changes,
    /// checkpoints and horizon, and the other replicas' hints and rebuild notices.
    doorbells: Option<Arc<read::doorbell::Doorbells>>,
    /// The highest safe horizon known here, for the event feed and rebuilds: the relay's,
    /// or on PostgreSQL the doorbells' (which follow the relay's too).
    horizon: watch::Receiver<i64>,
    /// Its sender, shared by the projectors and the checkpoint backstop.
    horizon_tx: Arc<watch::Sender<i64>>,
    /// This replica's name in the cluster.
    node: cluster::NodeId,
    /// What this replica knows of the cluster (its units, its lease).
    cluster: Arc<cluster::member::ClusterState>,
    /// The saga's partitions on this backend.
    saga_partitions: u16,
    /// The broker the log is published to (`ORDERGRAPH_NATS_URL`), if any.
    broker: Option<broker::BrokerSettings>,
    /// What this replica knows of the publisher.
    publisher: Arc<broker::publisher::PublisherStatus>,
    /// SQLite: this process's exclusive hold on the database file.
    _sqlite_lock: Option<cluster::sqlite_lock::SqliteLock>,
    /// The relay's own safe horizon (its projectors raise it), which the doorbells follow.
    relay_horizon: watch::Receiver<i64>,
    /// The write database's safe horizon, read once for all of this process's readers of
    /// the log (projectors, saga partitions, publisher).
    log: Arc<log::shared::SharedLog>,
    /// The saga's failed orders, one value for the saga and the admin API (which tells
    /// the saga of its changes through it).
    dead_letters: process::dead_letters::DeadLetters,
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
        settings.check_cluster_settings(&url)?;
        let broker = settings.broker()?;
        let views_url = settings
            .read_database_url
            .clone()
            .unwrap_or_else(|| url.clone());
        let reader = settings.read_database_url.is_some();
        // SQLite is one process: a second one on the same file is refused before it
        // touches the database.
        let sqlite_lock = match cluster::sqlite_lock::database_file(&views_url) {
            Some(file) => Some(cluster::sqlite_lock::acquire(&file)?),
            None => None,
        };
        let db = db::open(&url, settings.db_max_connections).await?;
        tracing::info!(database = %db::redact(&url), "database ready");
        let views_db = if reader {
            let views = db::open(&views_url, settings.db_max_connections).await?;
            tracing::info!(database = %db::redact(&views_url), "read database ready: a read replica fed from the event bus");
            views
        } else {
            db.clone()
        };
        let bus_source = match (&broker, reader) {
            (Some(broker), true) => Some(broker::source::BusSource::new(
                broker.clone(),
                &settings
                    .node_id
                    .as_ref()
                    .map_or_else(|| "reader".to_owned(), ToString::to_string),
            )),
            _ => None,
        };

        let views = read::views();
        let projections: Vec<Arc<dyn Projection>> =
            views.iter().map(|v| v.projection.clone()).collect();
        let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
        read::checkpoints::ensure(&views_db, &names).await?;
        let saga_partitions = settings.saga_partitions_on(db.get_database_backend());
        if !reader {
            process::order_saga::seed_partitions(&db, saga_partitions).await?;
        }
        let checkpoints = Arc::new(Checkpoints::load(&views_db, &names).await?);
        let metrics = Arc::new(metrics::Metrics::default());
        metrics.watch_pool("database", &db);
        if reader {
            metrics.watch_pool("read_database", &views_db);
        }
        let buffer = settings.subscription_buffer.max(1);
        let (horizon_tx, relay_horizon) = watch::channel(0);
        let wakeup = write::Wakeup::default();
        let live = read::live::LiveViews::new(
            &views,
            buffer,
            settings.db_max_connections as usize,
            metrics.clone(),
        );
        let cluster = Arc::new(cluster::member::ClusterState::default());
        let catalog_cache = Arc::new(read::cache::CatalogCache::new(
            settings.read_cache_rows,
            checkpoints.clone(),
            metrics.clone(),
        ));
        // One process on SQLite: the relay publishes in process. On PostgreSQL every
        // replica, this one too, takes changes from the doorbells (ADR 0013).
        let (bus, doorbells): (Arc<dyn ChangeBus>, _) =
            if views_db.get_database_backend() == sea_orm::DbBackend::Postgres {
                let bus = Arc::new(DoorbellBus::new(BUS_CAPACITY));
                let doorbells = read::doorbell::Doorbells::new(
                    views_db.clone(),
                    views_url.clone(),
                    bus.clone(),
                    live.clone(),
                    checkpoints.clone(),
                    Some(catalog_cache.clone()),
                    wakeup.clone(),
                    cluster.clone(),
                )
                .await?;
                (bus, Some(doorbells))
            } else {
                (Arc::new(InProcessBus::new(BUS_CAPACITY)), None)
            };
        let horizon = doorbells
            .as_ref()
            .map_or_else(|| relay_horizon.clone(), |d| d.horizon());
        let gate = WriteGate::for_backend(db.get_database_backend());
        let dead_letters =
            process::dead_letters::DeadLetters::new(db.clone(), gate.clone(), wakeup.clone());
        // The relay's projectors wait on these rings (`SharedHorizon::after_ring`).
        let rings = wakeup.subscribe();
        Ok(Self {
            views_gate: if reader {
                WriteGate::for_backend(views_db.get_database_backend())
            } else {
                gate.clone()
            },
            gate,
            views: views_db,
            views_url,
            bus_source,
            wakeup: wakeup.clone(),
            bus,
            statuses: Arc::new(read::status::Statuses::new(&names, checkpoints.clone())),
            catalog_cache,
            live,
            feed: read::feed::EventFeed::new(buffer, metrics.clone(), wakeup),
            doorbells,
            horizon,
            horizon_tx: Arc::new(horizon_tx),
            node: settings
                .node_id
                .clone()
                .unwrap_or_else(cluster::NodeId::generate),
            cluster,
            saga_partitions,
            broker,
            publisher: Arc::default(),
            _sqlite_lock: sqlite_lock,
            relay_horizon,
            log: Arc::new(log::shared::SharedLog::new(db.clone(), metrics.clone()).ringing(rings)),
            dead_letters,
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
        self.dead_letters.clone()
    }

    /// The relay: the projectors of every view, each run as a unit of work.
    fn relay(&self) -> Relay {
        let source: Arc<dyn log::source::EventSource> = match &self.bus_source {
            Some(bus) => bus.clone(),
            None => Arc::new(log::source::LogSource {
                log: self.log.clone(),
            }),
        };
        Relay {
            db: self.views.clone(),
            source,
            gate: self.views_gate.clone(),
            projections: self.projections.clone(),
            checkpoints: self.checkpoints.clone(),
            bus: self.bus.clone(),
            wakeup: self.wakeup.clone(),
            poll: self.settings.relay_poll(),
            health: self.relay_health.clone(),
            metrics: self.metrics.clone(),
            horizon: self.horizon_tx.clone(),
            statuses: self.statuses.clone(),
            kept: Some(self.catalog_cache.clone()),
            running: Default::default(),
        }
    }

    fn cluster_info(&self) -> cluster::ClusterInfo {
        let names: Vec<&'static str> = self.projections.iter().map(|p| p.name()).collect();
        let mut units = cluster::Unit::all(&names, self.saga_partitions, self.broker.is_some());
        if self.is_reader() {
            // A read replica's cluster folds the views of its read database; the saga and
            // the publisher run on the write side.
            units.retain(|u| u.kind() == cluster::Kind::Projector);
        }
        cluster::ClusterInfo {
            node: self.node.clone(),
            roles: self.roles(),
            units,
            leased: self.is_postgres(),
            started: chrono::Utc::now(),
            state: self.cluster.clone(),
            serving: self.serving(),
        }
    }

    /// How far this replica serves, from its own checkpoints (as the doorbells and its own
    /// projectors moved them): a view with nothing it wants left in the log up to the head
    /// is at the head; the position is the lowest of its views', the lag the events its
    /// most behind view wants and does not show yet (`Statuses::report`).
    fn serving(&self) -> cluster::member::Serving {
        let (statuses, db) = (self.statuses.clone(), self.db.clone());
        Arc::new(move || {
            let (statuses, db) = (statuses.clone(), db.clone());
            Box::pin(async move {
                let report = statuses.report(&db).await?;
                let position = report
                    .iter()
                    .map(|r| if r.lag == 0 { r.head } else { r.position })
                    .min()
                    .unwrap_or_else(|| statuses.head());
                let lag = report.iter().map(|r| r.lag).max().unwrap_or(0);
                Ok((position, lag))
            })
        })
    }

    /// Whether the views' database — and so the cluster that folds them — is PostgreSQL.
    fn is_postgres(&self) -> bool {
        self.views.get_database_backend() == sea_orm::DbBackend::Postgres
    }

    /// A read replica: views in a database of their own, fed from the event bus.
    fn is_reader(&self) -> bool {
        self.bus_source.is_some()
    }

    /// What this replica does: as configured, but on a read replica only serving and
    /// folding (the saga and the publisher run on the write side).
    fn roles(&self) -> cluster::Roles {
        let roles = self.settings.roles;
        if self.is_reader() {
            cluster::Roles {
                saga: false,
                publisher: false,
                ..roles
            }
        } else {
            roles
        }
    }

    /// The publisher of the log to the broker, when one is configured.
    fn publisher(&self) -> Option<broker::publisher::Publisher> {
        Some(broker::publisher::Publisher {
            db: self.db.clone(),
            settings: self.broker.clone()?,
            node: self.node.to_string(),
            log: self.log.clone(),
            wakeup: self.wakeup.clone(),
            poll: self.settings.relay_poll(),
            status: self.publisher.clone(),
            metrics: self.metrics.clone(),
        })
    }

    /// This replica's member of the cluster, which runs the units it holds: the
    /// projectors with `relay`, the saga partitions with `saga`, the publisher with
    /// `publisher`.
    fn member(
        &self,
        relay: Arc<Relay>,
        saga: Arc<process::order_saga::OrderSaga>,
        publisher: Option<Arc<broker::publisher::Publisher>>,
    ) -> cluster::member::Member {
        use cluster::Unit;
        use cluster::member::UnitRun;
        let units = self.cluster_info().units;
        let runner = move |unit: Unit, fence: cluster::Fence| -> UnitRun {
            match unit {
                Unit::Projector(name) => {
                    let relay = relay.clone();
                    Box::pin(async move {
                        relay.run_projector(name, fence).await;
                        Ok(())
                    })
                }
                Unit::Saga(partition) => {
                    let saga = saga.clone();
                    Box::pin(async move {
                        match saga.run_partition(partition, fence).await {
                            Ok(()) => Ok(()),
                            // An injected fault plays a crashed process: the service stops.
                            Err(e @ process::order_saga::SagaError::Injected(_)) => {
                                Err(Failure::Stop(e.into()))
                            }
                            Err(e) => Err(Failure::restart(e)),
                        }
                    })
                }
                Unit::Publisher => {
                    let publisher = publisher.clone();
                    Box::pin(async move {
                        match publisher {
                            Some(publisher) => publisher.run(fence).await,
                            // Not a unit of this service without a broker.
                            None => {
                                fence.released().await;
                                Ok(())
                            }
                        }
                    })
                }
            }
        };
        let health = self.relay_health.clone();
        cluster::member::Member {
            url: self.views_url.clone(),
            node: self.node.clone(),
            roles: self.roles(),
            lease: self.settings.lease(),
            units,
            runner: Arc::new(runner),
            state: self.cluster.clone(),
            metrics: self.metrics.clone(),
            coverage: Arc::new(move |unheld: &[String]| health.set_unheld(unheld)),
            serving: self.serving(),
            preconnected: std::sync::Mutex::new(None),
        }
    }

    /// Keeps this replica's checkpoints fresh from the table (PostgreSQL, where another
    /// replica may hold a projector).
    fn backstop(&self) -> cluster::backstop::CheckpointBackstop {
        cluster::backstop::CheckpointBackstop {
            db: self.views.clone(),
            checkpoints: self.checkpoints.clone(),
            statuses: self.statuses.clone(),
            horizon: self.horizon_tx.clone(),
            health: self.relay_health.clone(),
            metrics: self.metrics.clone(),
            cluster: self.cluster.clone(),
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
            gateway: Arc::new(process::gateway::SimulatedGateway::new(
                self.db.clone(),
                self.gate.clone(),
            )),
            dead_letters: self.dead_letters(),
            retry: self.settings.saga_retry(),
            metrics: self.metrics.clone(),
            log: self.log.clone(),
            wakeup: self.wakeup.subscribe_saga(),
            poll: self.settings.relay_poll(),
            fault,
        }
    }

    fn schema(&self) -> graphql::AppSchema {
        let rebuilds = read::rebuild::Rebuilds::new(
            read::rebuild::Replayer {
                db: self.views.clone(),
                log: self.db.clone(),
                url: self.views_url.clone(),
                gate: Some(self.views_gate.clone()),
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
                views: self.views.clone(),
                writer: self.writer(),
                checkpoints: self.checkpoints.clone(),
                consistency_wait: self.settings.consistency_wait(),
                catalog_cache: self.catalog_cache.clone(),
                live: self.live.clone(),
                feed: self.feed.clone(),
                drain: self.drain.clone(),
                projections: self.statuses.clone(),
                rebuilds: Arc::new(rebuilds),
                dead_letters: self.dead_letters(),
                cluster: self.cluster_info(),
                wants: self
                    .projections
                    .iter()
                    .map(|p| (p.name(), p.wants()))
                    .collect(),
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
                sharing: http::shared::Sharing::new(self.metrics.clone(), s.share_subscriptions),
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
                publisher: (self.broker.is_some() && !self.is_reader())
                    .then(|| self.publisher.clone()),
            },
            s.request_timeout(),
        )
    }
}

/// The background tasks, ready to be started under one supervisor.
struct Background {
    /// Runs the units of work this replica holds (projectors, saga partitions).
    member: Arc<cluster::member::Member>,
    /// PostgreSQL: keeps the checkpoints fresh when another replica folds.
    backstop: Option<Arc<cluster::backstop::CheckpointBackstop>>,
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
        let core = Core::open(settings, drain_rx).await?;
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
            member: Arc::new(core.member(
                Arc::new(core.relay()),
                Arc::new(core.saga()),
                core.publisher().map(Arc::new),
            )),
            backstop: core.is_postgres().then(|| Arc::new(core.backstop())),
            live_changes: core.bus.subscribe(),
        };
        tracing::info!(
            node = %core.node,
            roles = %core.settings.roles,
            saga_partitions = core.saga_partitions,
            "cluster member"
        );
        if core.is_postgres() {
            // The first claims then wait for no connection when the service starts.
            if let Err(e) = background.member.preconnect().await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "no lease connection yet; retrying when serving"
                );
            }
        }
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
        let member = background.member;
        let leased = core.is_postgres();
        supervisor.spawn("cluster", move |up, stopped| {
            let member = member.clone();
            async move {
                if leased {
                    member.run(up, stopped.receiver()).await
                } else {
                    member.run_local(up, stopped.receiver()).await
                }
            }
        });
        if let Some(backstop) = background.backstop {
            supervisor.spawn("checkpoint-backstop", move |up, stopped| {
                backstop.clone().run(up, stopped.receiver())
            });
        }
        let (live, bus, db) = (core.live.clone(), core.bus.clone(), core.views.clone());
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
        let (feed, log, horizon) = (core.feed.clone(), core.log.clone(), core.horizon.clone());
        supervisor.spawn("event-feed", move |up, stopped| {
            let run = feed
                .clone()
                .run(log.clone(), horizon.clone(), up, stopped.wait());
            async move { run.await.map_err(Failure::restart) }
        });
        if let Some(source) = core.bus_source.clone() {
            // A read replica: the stream's head wakes its projectors, and its own commits
            // (mutations go to the write database) hint the write side's publisher.
            let wakeup = core.wakeup.clone();
            supervisor.spawn("bus-watcher", move |up, stopped| {
                let run = source.clone().watch(wakeup.clone(), up, stopped.wait());
                async move { run.await.map_err(Failure::Restart) }
            });
            let (db, wakeup) = (core.db.clone(), core.wakeup.clone());
            supervisor.spawn("writer-hints", move |up, stopped| {
                // The write side's replicas are not in this one's cluster: always hint.
                let run = read::doorbell::send_hints(
                    db.clone(),
                    uuid::Uuid::new_v4(),
                    wakeup.clone(),
                    || true,
                );
                let stop = stopped.wait();
                async move {
                    up.ready();
                    tokio::select! {
                        _ = run => {}
                        _ = stop => {}
                    }
                    Ok(())
                }
            });
        }
        if let Some(doorbells) = core.doorbells.clone() {
            let local = core.relay_horizon.clone();
            supervisor.spawn("doorbells", move |up, stopped| {
                let run = doorbells.clone().run(local.clone(), up, stopped.wait());
                async move { run.await.map_err(Failure::Restart) }
            });
        }
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
