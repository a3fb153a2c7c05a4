//! Load benchmark: the real service, in process, driven over HTTP by N concurrent clients,
//! beside a baseline from the same run: the bare SQL transaction one `adjustStock` runs.
//!
//! `cargo bench --bench load` (bench profile = optimised like release). Knobs, all optional:
//! `BENCH_CLIENTS=1,8,32`, `BENCH_SECS=5` (measured seconds per point), `BENCH_WARMUP_SECS=1`,
//! `BENCH_PRODUCTS=256`, `BENCH_BACKENDS=sqlite,postgres`, `BENCH_DATABASE_URL` (PostgreSQL
//! server to create the scratch databases on; default `postgres://postgres@127.0.0.1:5432/test`,
//! skipped when unreachable unless set explicitly). Results go to stdout and
//! `target/bench-load.md`; BENCHMARKS.md explains how to read them.
//!
//! Per backend and per client count N it runs three phases back to back, each on its own fresh
//! set of `BENCH_PRODUCTS` products (streams of one event, created before anything is timed):
//! 1. **mix**: the service under a realistic mix of mutations (see `MIX`), for the warm-up
//!    (unrecorded) plus the measured seconds;
//! 2. **adjustStock only**: the service under `adjustStock(delta: +1)` alone, as long: the
//!    like-for-like comparison with the baseline;
//! 3. **raw**: N tasks running, as many times as phase 2 did (warm-up, then measured; so every
//!    stream grows by as many events and replays as much), the statements of one
//!    `adjustStock` transaction (`Writer::attempt` / `UnitOfWork::handle` in src/write.rs, as
//!    PostgreSQL logs them with `log_statement = all`) through `sqlx`, on a second database
//!    seeded the same way, with the same pool settings (`ordergraph::db::connect`), the same
//!    `WriteGate` (one lock on SQLite, striped by stream on PostgreSQL), the same event
//!    encoding and fold, and the same optimistic-concurrency retry. What the service adds on top is HTTP, JWT, GraphQL,
//!    and read-your-writes: the wait for the relay to fold the event into the view, then the
//!    view read.
//!
//! Relay lag is measured without any hook in src/: for every successful mutation,
//! (wall-clock time the response arrived) − (`events.recorded_at` of the returned position).
//! `recorded_at` is stamped inside the write transaction, before its commit, so this is an
//! upper bound of commit → view: it also holds the rest of the write transaction, the view
//! read and the response transfer. Both timestamps come from the same process clock.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use ordergraph::auth::{Role, mint_token};
use ordergraph::config::Settings;
use ordergraph::domain::product::{Product, ProductCommand, ProductEvent};
use ordergraph::domain::values::StockDelta;
use ordergraph::domain::{Aggregate, Stored};
use ordergraph::write::event_store;
use ordergraph::write::{STREAM_LOCKS, WriteGate, Writing, stream_lock_key};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::DbBackend;
use sea_orm::sqlx::{self, AssertSqlSafe, PgPool, Row, SqlitePool};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The allocator the `ordergraph` binary ships with (ADR 0018): the service measured here
/// runs in this process, so it allocates as it does in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The realistic mix: (operation, weight). Stock corrections dominate a shop's admin traffic,
/// shoppers fill carts, and new products arrive now and then.
const MIX: [(Op, u32); 3] = [
    (Op::AdjustStock, 6),
    (Op::AddToCart, 3),
    (Op::CreateProduct, 1),
];
const ADJUST_ONLY: [(Op, u32); 1] = [(Op::AdjustStock, 1)];

/// A shopper's cart stream is replayed on every command (no snapshots), so one customer that
/// adds forever would measure an ever longer replay. Each client therefore signs in as a new
/// customer after this many `addToCart` calls: carts of realistic length.
const CART_ADDS_PER_CUSTOMER: u32 = 20;

/// Same retry policy as `Writer::execute` (src/write.rs): bounded attempts, jittered backoff.
const MAX_ATTEMPTS: u32 = 8;

/// Latencies are recorded in microseconds, up to a minute.
const HIST_MAX_US: u64 = 60_000_000;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

const ADJUST_STOCK: &str = "mutation Adjust($id: UUID!) { adjustStock(input: {productId: $id, delta: 1}) { position product { id stock version } } }";
const ADD_TO_CART: &str = "mutation Add($id: UUID!) { addToCart(input: {productId: $id, quantity: 1}) { position cart { itemCount total items { productId quantity } } } }";
const CREATE_PRODUCT: &str = "mutation Create($sku: String!, $stock: Int!) { createProduct(input: {sku: $sku, name: \"Bench product\", description: \"made by benches/load.rs\", price: \"9.99\", initialStock: $stock}) { position product { id sku stock } } }";

// The statements of one adjustStock transaction, in the order src/write.rs issues them
// (`UnitOfWork::handle`: lock the stream, load it, then event_store::append, then
// update_write_tables). PostgreSQL: BEGIN; SELECT pg_advisory_xact_lock (the stream's
// lock against other processes, `write::lock_streams`); SELECT its latest snapshot and the
// events after it in one statement (`event_store::fold`, the same text on both
// databases, numbered for PostgreSQL); INSERT … RETURNING; UPDATE … RETURNING; COMMIT
// (SeaORM uses RETURNING on PostgreSQL).
const PG_STREAM_LOCK: &str = "SELECT pg_advisory_xact_lock($1, $2)";
const PG_LOAD_STREAM: &str = r#"WITH "s0" AS (SELECT "version", "state", "position" FROM "snapshots" WHERE "stream_id" = $1 AND "stream_type" = $2 AND "state_version" = $3 ORDER BY "version" DESC LIMIT 1) SELECT 0 AS "stream", 0 AS "part", "version", "position", NULL AS "event_type", NULL AS "event_version", "state" AS "data" FROM "s0" UNION ALL SELECT 0, 1, "version", "position", "event_type", "event_version", "data" FROM (SELECT "version", "position", "event_type", "event_version", "data" FROM "events" WHERE "stream_id" = $4 AND "stream_type" = $5 AND "version" > COALESCE((SELECT "version" FROM "s0"), 0) ORDER BY "version") AS "e0""#;
const PG_INSERT_EVENT: &str = r#"INSERT INTO "events" ("stream_id", "stream_type", "version", "event_type", "event_version", "data", "metadata", "recorded_at") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING "position""#;
const PG_UPDATE_PRODUCT: &str = r#"UPDATE "products" SET "sku" = $1, "name" = $2, "description" = $3, "price_cents" = $4, "stock" = $5, "status" = $6, "version" = $7, "updated_at" = $8 WHERE "products"."id" = $9 RETURNING "id", "sku", "name", "description", "price_cents", "stock", "status", "version", "updated_at""#;
// SQLite: BEGIN IMMEDIATE (behind the process's write gate); SELECT the latest snapshot and
// the events after it (one statement on SQLite, `event_store::fold`); INSERT; UPDATE;
// SELECT the updated row (SeaORM's UpdateOne reads it back when RETURNING is off); COMMIT.
const SQLITE_LOAD_STREAM: &str = r#"WITH "s0" AS (SELECT "version", "state", "position" FROM "snapshots" WHERE "stream_id" = ? AND "stream_type" = ? AND "state_version" = ? ORDER BY "version" DESC LIMIT 1) SELECT 0 AS "stream", 0 AS "part", "version", "position", NULL AS "event_type", NULL AS "event_version", "state" AS "data" FROM "s0" UNION ALL SELECT 0, 1, "version", "position", "event_type", "event_version", "data" FROM (SELECT "version", "position", "event_type", "event_version", "data" FROM "events" WHERE "stream_id" = ? AND "stream_type" = ? AND "version" > COALESCE((SELECT "version" FROM "s0"), 0) ORDER BY "version") AS "e0""#;
const SQLITE_INSERT_EVENT: &str = r#"INSERT INTO "events" ("stream_id", "stream_type", "version", "event_type", "event_version", "data", "metadata", "recorded_at") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"#;
const SQLITE_UPDATE_PRODUCT: &str = r#"UPDATE "products" SET "sku" = ?, "name" = ?, "description" = ?, "price_cents" = ?, "stock" = ?, "status" = ?, "version" = ?, "updated_at" = ? WHERE "products"."id" = ?"#;
const SQLITE_FIND_PRODUCT: &str = r#"SELECT "products"."id", "products"."sku", "products"."name", "products"."description", "products"."price_cents", "products"."stock", "products"."status", "products"."version", "products"."updated_at" FROM "products" WHERE "products"."id" = ? LIMIT ?"#;

fn main() -> anyhow::Result<()> {
    // The default multi-threaded runtime (one worker per core): server, relay, clients and
    // baseline all share it, as they share the machine.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

// ---------------------------------------------------------------------------------------
// Configuration and orchestration
// ---------------------------------------------------------------------------------------

struct Config {
    clients: Vec<usize>,
    secs: f64,
    warmup_secs: f64,
    products: usize,
    backends: Vec<String>,
    pg_url: String,
    pg_explicit: bool,
    load_at_start: String,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        fn var(name: &str) -> Option<String> {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        }
        let clients = var("BENCH_CLIENTS")
            .unwrap_or_else(|| "1,8,32".into())
            .split(',')
            .map(|s| s.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .context("BENCH_CLIENTS: a comma-separated list of client counts")?;
        if clients.is_empty() || clients.contains(&0) {
            bail!("BENCH_CLIENTS: client counts must be positive");
        }
        let secs: f64 = var("BENCH_SECS")
            .unwrap_or_else(|| "5".into())
            .parse()
            .context("BENCH_SECS: seconds")?;
        let warmup_secs: f64 = var("BENCH_WARMUP_SECS")
            .unwrap_or_else(|| "1".into())
            .parse()
            .context("BENCH_WARMUP_SECS: seconds")?;
        if !(secs > 0.0 && warmup_secs >= 0.0) {
            bail!("BENCH_SECS must be positive and BENCH_WARMUP_SECS non-negative");
        }
        let products: usize = var("BENCH_PRODUCTS")
            .unwrap_or_else(|| "256".into())
            .parse()
            .context("BENCH_PRODUCTS: a count")?;
        if products == 0 {
            bail!("BENCH_PRODUCTS must be positive");
        }
        let backends = var("BENCH_BACKENDS")
            .unwrap_or_else(|| "sqlite,postgres".into())
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect();
        let pg_explicit = var("BENCH_DATABASE_URL").is_some();
        let pg_url = var("BENCH_DATABASE_URL").unwrap_or_else(|| DEFAULT_PG_URL.into());
        Ok(Self {
            clients,
            secs,
            warmup_secs,
            products,
            backends,
            pg_url,
            pg_explicit,
            load_at_start: load_average(),
        })
    }

    fn wants(&self, backend: &str) -> bool {
        self.backends.iter().any(|b| b == backend)
    }
}

async fn run() -> anyhow::Result<()> {
    let cfg = Config::from_env()?;
    let started = Utc::now();
    let mut sections = Vec::new();
    let mut notes = Vec::new();

    if cfg.wants("sqlite") {
        let dir = tempfile::tempdir()?;
        let service_url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("service.db").display()
        );
        let raw_url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("baseline.db").display()
        );
        eprintln!("== SQLite (files in {})", dir.path().display());
        let result = bench_backend("SQLite", &cfg, &service_url, &raw_url, dir.path()).await?;
        sections.push(result.markdown(&cfg));
    }

    if cfg.wants("postgres") {
        match postgres_admin(&cfg).await? {
            Some(admin) => {
                let id = Uuid::new_v4().simple();
                let service_db = format!("bench_{id}");
                let raw_db = format!("bench_{id}_raw");
                for name in [&service_db, &raw_db] {
                    sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
                        .execute(&admin)
                        .await
                        .with_context(|| format!("CREATE DATABASE {name}"))?;
                }
                let dir = tempfile::tempdir()?;
                eprintln!("== PostgreSQL (databases {service_db}, {raw_db})");
                let result = bench_backend(
                    "PostgreSQL",
                    &cfg,
                    &database_url(&cfg.pg_url, &service_db)?,
                    &database_url(&cfg.pg_url, &raw_db)?,
                    dir.path(),
                )
                .await;
                // Dropped whatever happened; FORCE ends connections a failed run left behind.
                for name in [&service_db, &raw_db] {
                    if let Err(e) = sqlx::query(AssertSqlSafe(format!(
                        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                    )))
                    .execute(&admin)
                    .await
                    {
                        eprintln!("warning: DROP DATABASE {name} failed: {e}");
                    }
                }
                admin.close().await;
                sections.push(result?.markdown(&cfg));
            }
            None => notes.push(format!(
                "PostgreSQL skipped: {} is not reachable (set BENCH_DATABASE_URL).",
                redact(&cfg.pg_url)
            )),
        }
    }

    let report = report_markdown(&cfg, started, &sections, &notes);
    println!("{report}");
    let path = target_dir().join("bench-load.md");
    std::fs::create_dir_all(target_dir())?;
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("written to {}", path.display());
    Ok(())
}

/// Connects to the PostgreSQL server of the benchmark, or `None` when the default URL is not
/// reachable (an explicit `BENCH_DATABASE_URL` that does not answer is an error).
async fn postgres_admin(cfg: &Config) -> anyhow::Result<Option<PgPool>> {
    let connect = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&cfg.pg_url);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(pool)) => Ok(Some(pool)),
        Ok(Err(e)) if cfg.pg_explicit => Err(anyhow::Error::new(e).context(format!(
            "BENCH_DATABASE_URL={} is not reachable",
            redact(&cfg.pg_url)
        ))),
        Err(_) if cfg.pg_explicit => bail!(
            "BENCH_DATABASE_URL={} did not answer within 5 s",
            redact(&cfg.pg_url)
        ),
        _ => Ok(None),
    }
}

fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(admin_url).context("BENCH_DATABASE_URL is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

fn redact(url: &str) -> String {
    ordergraph::db::redact(url)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// One client count: the three phases.
struct Point {
    clients: usize,
    mix: Phase,
    adjust: Phase,
    raw: Phase,
}

struct BackendResult {
    name: &'static str,
    points: Vec<Point>,
    peak_rss_kib: Option<u64>,
    peak_reset: bool,
    products: usize,
}

async fn bench_backend(
    name: &'static str,
    cfg: &Config,
    service_url: &str,
    raw_url: &str,
    scratch: &Path,
) -> anyhow::Result<BackendResult> {
    // VmHWM is per process and only grows: reset it so each backend reports its own peak.
    let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let secret = hex_secret();
    let admin_token: Arc<str> = mint_token(&secret, "bench-admin", Role::Admin, TOKEN_TTL)?.into();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build()?;

    // Every phase gets its own fresh set of products (streams of one event), so no phase
    // replays what an earlier one appended. All sets are created before anything is timed.
    let points = cfg.clients.len();
    let per_set = cfg.products;

    // The baseline database: migrated and seeded by the service itself (so its rows and
    // streams are exactly what the service writes), then the service is stopped: nothing
    // else touches it while the raw loop runs.
    let seeder = Service::start(raw_url, &scratch.join("seed"), &secret).await?;
    let raw_products =
        seed_products(&http, &seeder.url, &admin_token, per_set * points, "R").await?;
    seeder.stop().await?;

    let service = Service::start(service_url, &scratch.join("service"), &secret).await?;
    let products =
        seed_products(&http, &service.url, &admin_token, per_set * 2 * points, "P").await?;

    let raw = RawDb::connect(raw_url).await?;
    let observer = RawDb::connect(service_url).await?;
    let load = Load {
        http: http.clone(),
        url: service.url.clone(),
        secret: secret.clone(),
        admin_token: admin_token.clone(),
    };
    let mut sets = products.chunks(per_set).map(|c| Arc::new(c.to_vec()));
    let mut raw_sets = raw_products.chunks(per_set);

    let mut results = Vec::new();
    for (i, &n) in cfg.clients.iter().enumerate() {
        let tag = format!("{}{i}", &name[..1]);
        eprintln!("-- {name}, {n} client(s): mix");
        let set = sets.next().context("a product set per phase")?;
        let mut mix = load.run(n, &MIX, set, &format!("{tag}m"), cfg).await?;
        mix.lag = Some(observer.lag(&mix.completions).await?);
        eprintln!("{}", mix.summary());

        eprintln!("-- {name}, {n} client(s): adjustStock only");
        let set = sets.next().context("a product set per phase")?;
        let mut adjust = load
            .run(n, &ADJUST_ONLY, set, &format!("{tag}a"), cfg)
            .await?;
        adjust.lag = Some(observer.lag(&adjust.completions).await?);
        eprintln!("{}", adjust.summary());

        // As many transactions as the service's adjustStock-only phase ran (warm-up and
        // measured), so that every stream grows exactly as much: a faster loop would
        // otherwise replay longer streams and look slower than it is.
        eprintln!("-- {name}, {n} task(s): raw SQL transaction");
        let raw_set = raw_sets.next().context("a raw product set per point")?;
        let baseline = run_raw(
            &raw,
            raw_set,
            n,
            adjust.warmup_ops,
            adjust.measured_ops(),
            cfg,
        )
        .await?;
        eprintln!("{}", baseline.summary());
        results.push(Point {
            clients: n,
            mix,
            adjust,
            raw: baseline,
        });
    }

    let peak_rss_kib = proc_status_kib("VmHWM");
    observer.close().await;
    raw.close().await;
    service.stop().await?;
    Ok(BackendResult {
        name,
        points: results,
        peak_rss_kib,
        peak_reset,
        products: per_set,
    })
}

const TOKEN_TTL: Duration = Duration::from_secs(3600);

fn hex_secret() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// The service, built and served in this process exactly as `ordergraph` serves it.
struct Service {
    url: String,
    shutdown: oneshot::Sender<()>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Service {
    async fn start(database_url: &str, data_dir: &Path, secret: &str) -> anyhow::Result<Self> {
        let settings = Settings {
            bind: "127.0.0.1:0".parse()?,
            database_url: Some(database_url.to_owned()),
            data_dir: data_dir.to_path_buf(),
            jwt_secret: Some(SecretString::from(secret.to_owned())),
            ..Settings::default()
        };
        let app = ordergraph::Application::build(settings).await?;
        let url = format!("http://{}/graphql", app.local_addr());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            url,
            shutdown,
            handle,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.handle.await.context("the service task panicked")?
    }
}

/// Creates `count` products with a large stock (so `addToCart` never runs out) through the
/// service, 8 at a time, and returns their ids.
async fn seed_products(
    http: &reqwest::Client,
    url: &str,
    admin_token: &str,
    count: usize,
    prefix: &str,
) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(count);
    let skus: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:05}")).collect();
    for chunk in skus.chunks(8) {
        let requests = chunk.iter().map(|sku| {
            let body = json!({
                "query": CREATE_PRODUCT,
                "variables": { "sku": sku, "stock": 1_000_000 },
            });
            send(http, url, admin_token, body)
        });
        for result in futures_util::future::join_all(requests).await {
            let data = result.map_err(|e| anyhow::anyhow!("seeding a product failed: {e}"))?;
            let id = data["product"]["id"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .context("createProduct answered without a product id")?;
            ids.push(id);
        }
    }
    Ok(ids)
}

// ---------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    AdjustStock,
    AddToCart,
    CreateProduct,
    /// The baseline: one adjustStock transaction through sqlx.
    RawAdjust,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::AdjustStock => "adjustStock",
            Op::AddToCart => "addToCart",
            Op::CreateProduct => "createProduct",
            Op::RawAdjust => "raw adjustStock tx",
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).unwrap()
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.clamp(1, HIST_MAX_US));
}

struct OpStats {
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            latency: histogram(),
            errors: BTreeMap::new(),
        }
    }
}

impl OpStats {
    fn merge(&mut self, other: &OpStats) {
        self.latency.add(&other.latency).unwrap();
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
    }
}

/// What one phase measured.
#[derive(Default)]
struct Phase {
    /// From the end of the warm-up to the last recorded completion.
    elapsed: Duration,
    by_op: BTreeMap<Op, OpStats>,
    /// (position, wall-clock arrival of the response) of every recorded success.
    completions: Vec<(i64, DateTime<Utc>)>,
    lag: Option<Histogram<u64>>,
    /// Baseline only: optimistic-concurrency retries (unique (stream_id, version) lost).
    retries: u64,
    /// Requests (or transactions) started during the warm-up, not recorded.
    warmup_ops: u64,
    /// Share of the machine's CPU time that went to other processes than this one and
    /// PostgreSQL during the phase: interference from whatever else ran.
    other_cpu: Option<f64>,
}

impl Phase {
    fn merge(&mut self, client: ClientStats) {
        for (op, stats) in client.by_op {
            self.by_op.entry(op).or_default().merge(&stats);
        }
        self.completions.extend(client.completions);
        self.retries += client.retries;
        self.warmup_ops += client.warmup_ops;
    }

    /// Recorded requests, successful or not.
    fn measured_ops(&self) -> u64 {
        self.by_op
            .values()
            .map(|s| s.latency.len() + s.errors.values().sum::<u64>())
            .sum()
    }

    fn all(&self) -> OpStats {
        let mut all = OpStats::default();
        for stats in self.by_op.values() {
            all.merge(stats);
        }
        all
    }

    fn ops_per_sec(&self, stats: &OpStats) -> f64 {
        stats.latency.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn summary(&self) -> String {
        let mut s = String::new();
        for (op, stats) in &self.by_op {
            let _ = writeln!(
                s,
                "   {:<20} {:>9.1} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}",
                op.name(),
                self.ops_per_sec(stats),
                ms(stats.latency.value_at_quantile(0.5)),
                ms(stats.latency.value_at_quantile(0.99)),
                errors_text(&stats.errors),
            );
        }
        if let Some(lag) = &self.lag {
            let _ = writeln!(
                s,
                "   relay lag (upper bound)   p50 {:.2} ms  p99 {:.2} ms",
                ms(lag.value_at_quantile(0.5)),
                ms(lag.value_at_quantile(0.99)),
            );
        }
        if self.retries > 0 {
            let _ = writeln!(s, "   conflict retries {}", self.retries);
        }
        let _ = writeln!(s, "   other processes' CPU {}", pct(self.other_cpu));
        s.trim_end().to_owned()
    }
}

#[derive(Default)]
struct ClientStats {
    by_op: BTreeMap<Op, OpStats>,
    completions: Vec<(i64, DateTime<Utc>)>,
    retries: u64,
    warmup_ops: u64,
}

impl ClientStats {
    fn ok(&mut self, op: Op, latency: Duration) {
        record(&mut self.by_op.entry(op).or_default().latency, latency);
    }

    fn error(&mut self, op: Op, code: String) {
        *self
            .by_op
            .entry(op)
            .or_default()
            .errors
            .entry(code)
            .or_default() += 1;
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn errors_text(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        "0".into()
    } else {
        errors
            .iter()
            .map(|(code, n)| format!("{n}× {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Sends one GraphQL request; `Ok(first field of data)` or `Err(error code)`.
async fn send(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> Result<Value, String> {
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            format!(
                "TRANSPORT ({})",
                if e.is_timeout() { "timeout" } else { "error" }
            )
        })?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|_| "TRANSPORT (body)".to_owned())?;
    let mut value: Value = serde_json::from_slice(&bytes).map_err(|_| format!("HTTP {status}"))?;
    if let Some(error) = value
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return Err(error["extensions"]["code"]
            .as_str()
            .unwrap_or("NO_CODE")
            .to_owned());
    }
    value
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .and_then(|data| data.values_mut().next())
        .map(Value::take)
        .ok_or_else(|| format!("HTTP {status} without data"))
}

fn position_of(data: &Value) -> Option<i64> {
    data["position"].as_str().and_then(|p| p.parse().ok())
}

/// The service under load: shared by the clients of one phase.
#[derive(Clone)]
struct Load {
    http: reqwest::Client,
    url: String,
    secret: String,
    admin_token: Arc<str>,
}

impl Load {
    async fn run(
        &self,
        clients: usize,
        mix: &'static [(Op, u32)],
        products: Arc<Vec<Uuid>>,
        tag: &str,
        cfg: &Config,
    ) -> anyhow::Result<Phase> {
        let cpu = CpuSample::take();
        let start = Instant::now();
        let warm_end = start + Duration::from_secs_f64(cfg.warmup_secs);
        let deadline = warm_end + Duration::from_secs_f64(cfg.secs);
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                let load = self.clone();
                let products = products.clone();
                let tag = format!("{tag}c{client}");
                tokio::spawn(async move {
                    load.client(tag, client, mix, products, warm_end, deadline)
                        .await
                })
            })
            .collect();
        let mut phase = Phase::default();
        let mut last = warm_end;
        for task in tasks {
            let (stats, finished) = task.await??;
            last = last.max(finished);
            phase.merge(stats);
        }
        phase.elapsed = last - warm_end;
        phase.other_cpu = CpuSample::other_share_since(cpu);
        Ok(phase)
    }

    /// One client: sends one request at a time until the deadline. Only requests started
    /// after the warm-up are recorded. Returns its stats and when its last request ended.
    async fn client(
        self,
        tag: String,
        client: usize,
        mix: &'static [(Op, u32)],
        products: Arc<Vec<Uuid>>,
        warm_end: Instant,
        deadline: Instant,
    ) -> anyhow::Result<(ClientStats, Instant)> {
        let mut rng = StdRng::seed_from_u64(0x5eed ^ client as u64);
        let total_weight: u32 = mix.iter().map(|(_, w)| w).sum();
        let mut stats = ClientStats::default();
        let mut customer = 0u32;
        let mut customer_adds = 0u32;
        let mut customer_token = self.customer_token(&tag, customer)?;
        let mut skus = 0u64;
        let mut finished = Instant::now();
        loop {
            let mut pick = rng.random_range(0..total_weight);
            let op = mix
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map_or(Op::AdjustStock, |(op, _)| *op);
            let product = products[rng.random_range(0..products.len())];
            let (token, body): (&str, Value) = match op {
                Op::AddToCart => {
                    if customer_adds == CART_ADDS_PER_CUSTOMER {
                        customer += 1;
                        customer_adds = 0;
                        customer_token = self.customer_token(&tag, customer)?;
                    }
                    customer_adds += 1;
                    (
                        &customer_token,
                        json!({ "query": ADD_TO_CART, "variables": { "id": product } }),
                    )
                }
                Op::CreateProduct => {
                    skus += 1;
                    (
                        &*self.admin_token,
                        json!({
                            "query": CREATE_PRODUCT,
                            "variables": { "sku": format!("{tag}-{skus}"), "stock": 1000 },
                        }),
                    )
                }
                _ => (
                    &*self.admin_token,
                    json!({ "query": ADJUST_STOCK, "variables": { "id": product } }),
                ),
            };
            let started = Instant::now();
            if started >= deadline {
                break;
            }
            let result = send(&self.http, &self.url, token, body).await;
            finished = Instant::now();
            let arrived = Utc::now();
            if started < warm_end {
                stats.warmup_ops += 1;
                continue;
            }
            match result {
                Ok(data) => {
                    stats.ok(op, finished - started);
                    match position_of(&data) {
                        Some(position) => stats.completions.push((position, arrived)),
                        None => stats.error(op, "NO_POSITION".into()),
                    }
                }
                Err(code) => stats.error(op, code),
            }
        }
        Ok((stats, finished))
    }

    fn customer_token(&self, tag: &str, customer: u32) -> anyhow::Result<String> {
        mint_token(
            &self.secret,
            &format!("shopper-{tag}-{customer}"),
            Role::Customer,
            TOKEN_TTL,
        )
    }
}

// ---------------------------------------------------------------------------------------
// The baseline: one adjustStock transaction through sqlx
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
enum RawDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

enum RawError {
    /// Lost the race on UNIQUE(stream_id, version), as `AppendError::Conflict`.
    Conflict,
    Other(String),
}

impl From<sqlx::Error> for RawError {
    fn from(e: sqlx::Error) -> Self {
        RawError::Other(format!("database: {e}"))
    }
}

impl RawDb {
    /// The pool the service would open (`ordergraph::db::connect` with the default pool
    /// size, WAL and busy timeout on SQLite), taken out of SeaORM.
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let db = ordergraph::db::connect(url, Settings::default().db_max_connections).await?;
        Ok(match db.get_database_backend() {
            DbBackend::Postgres => RawDb::Postgres(db.get_postgres_connection_pool().clone()),
            DbBackend::Sqlite => RawDb::Sqlite(db.get_sqlite_connection_pool().clone()),
            other => bail!("unsupported backend {other:?}"),
        })
    }

    async fn close(&self) {
        match self {
            RawDb::Postgres(p) => p.close().await,
            RawDb::Sqlite(p) => p.close().await,
        }
    }

    fn backend(&self) -> DbBackend {
        match self {
            RawDb::Postgres(_) => DbBackend::Postgres,
            RawDb::Sqlite(_) => DbBackend::Sqlite,
        }
    }

    /// Lag of every completion: arrival of the response − `recorded_at` of its position.
    async fn lag(&self, completions: &[(i64, DateTime<Utc>)]) -> anyhow::Result<Histogram<u64>> {
        let mut lag = histogram();
        let (Some(low), Some(high)) = (
            completions.iter().map(|c| c.0).min(),
            completions.iter().map(|c| c.0).max(),
        ) else {
            return Ok(lag);
        };
        let recorded: BTreeMap<i64, DateTime<Utc>> = match self {
            RawDb::Postgres(p) => sqlx::query_as::<_, (i64, DateTime<Utc>)>(
                "SELECT position, recorded_at FROM events WHERE position BETWEEN $1 AND $2",
            )
            .bind(low)
            .bind(high)
            .fetch_all(p)
            .await?
            .into_iter()
            .collect(),
            RawDb::Sqlite(p) => sqlx::query_as::<_, (i64, DateTime<Utc>)>(
                "SELECT position, recorded_at FROM events WHERE position BETWEEN ? AND ?",
            )
            .bind(low)
            .bind(high)
            .fetch_all(p)
            .await?
            .into_iter()
            .collect(),
        };
        for (position, arrived) in completions {
            let at = recorded
                .get(position)
                .with_context(|| format!("position {position} is not in the events table"))?;
            let us = (*arrived - *at).num_microseconds().unwrap_or(0).max(1);
            lag.saturating_record(u64::try_from(us).unwrap_or(1).min(HIST_MAX_US));
        }
        Ok(lag)
    }

    /// One adjustStock(+1) command: attempts retried as `Writer::execute` retries them.
    /// Returns the number of retries.
    async fn adjust_stock(&self, gate: &WriteGate, product: Uuid) -> Result<u64, String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = {
                let _gate = gate.enter_all(&[product], Writing::Client).await;
                match self {
                    RawDb::Postgres(p) => attempt_postgres(p, product).await,
                    RawDb::Sqlite(p) => attempt_sqlite(p, product).await,
                }
            };
            match result {
                Ok(()) => return Ok(u64::from(attempt - 1)),
                Err(RawError::Conflict) if attempt < MAX_ATTEMPTS => {
                    let jitter = rand::random_range(0..(2u64 << attempt.min(6)));
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(RawError::Conflict) => return Err("CONFLICT".into()),
                Err(RawError::Other(e)) => return Err(e),
            }
        }
    }
}

/// Decodes the loaded rows as `event_store::fold` does (a snapshot first, if any, then
/// the events after it), then folds them as `Writer::attempt` does.
macro_rules! fold_stream {
    ($rows:expr) => {{
        let mut state = Product::default();
        for row in &$rows {
            let _stream: i32 = row.try_get("stream")?;
            let part: i32 = row.try_get("part")?;
            let _version: i64 = row.try_get("version")?;
            let _position: i64 = row.try_get("position")?;
            let data: Value = row.try_get("data")?;
            if part == 0 {
                state = serde_json::from_value(data)
                    .map_err(|e| RawError::Other(format!("snapshot does not read: {e}")))?;
                continue;
            }
            let event_type: String = row.try_get("event_type")?;
            let event_version: i32 = row.try_get("event_version")?;
            let event: ProductEvent = event_store::decode(&event_type, event_version, &data)
                .map_err(|e| RawError::Other(format!("event does not decode: {e}")))?;
            state = state.apply(&event);
        }
        state
    }};
}

/// What the command decides and what the INSERT and UPDATE bind.
struct Decided {
    version: i64,
    event_type: String,
    event_version: i32,
    data: Value,
    metadata: Value,
    now: DateTime<Utc>,
    next: Product,
}

fn decide(state: Product) -> Result<Decided, RawError> {
    let command = ProductCommand::AdjustStock {
        delta: StockDelta::parse(1).map_err(|e| RawError::Other(e.to_string()))?,
        reason: None,
    };
    let events = state
        .decide(command)
        .map_err(|e| RawError::Other(e.to_string()))?;
    let [event] = events.as_slice() else {
        return Err(RawError::Other(
            "adjustStock decided more than one event".into(),
        ));
    };
    let (event_type, data) =
        event_store::encode(event).map_err(|e| RawError::Other(e.to_string()))?;
    // The JSON `EventMetadata` serializes to for a client's command without a key.
    let id = Uuid::new_v4();
    let metadata = json!({
        "userId": "bench-admin",
        "correlationId": id,
        "causationId": format!("command:{id}"),
    });
    let event_version = ordergraph::log::upcast::current_version(&event_type);
    Ok(Decided {
        version: state.version() + 1,
        event_type,
        event_version,
        data,
        metadata,
        now: Utc::now(),
        next: state.apply(event),
    })
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

async fn attempt_postgres(pool: &PgPool, id: Uuid) -> Result<(), RawError> {
    let mut tx = pool.begin().await?;
    sqlx::query(PG_STREAM_LOCK)
        .bind(STREAM_LOCKS)
        .bind(stream_lock_key(id))
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(PG_LOAD_STREAM)
        .bind(id)
        .bind(Product::STREAM_TYPE)
        .bind(Product::STATE_VERSION)
        .bind(id)
        .bind(Product::STREAM_TYPE)
        .fetch_all(&mut *tx)
        .await?;
    let state = fold_stream!(rows);
    let d = decide(state)?;
    let inserted = sqlx::query_scalar::<_, i64>(PG_INSERT_EVENT)
        .bind(id)
        .bind("product")
        .bind(d.version)
        .bind(&d.event_type)
        .bind(d.event_version)
        .bind(&d.data)
        .bind(&d.metadata)
        .bind(d.now)
        .fetch_one(&mut *tx)
        .await;
    match inserted {
        Err(e) if unique_violation(&e) => return Err(RawError::Conflict),
        other => other?,
    };
    let p = &d.next;
    let updated = sqlx::query(PG_UPDATE_PRODUCT)
        .bind(p.sku.as_ref().map(|s| s.as_str().to_owned()))
        .bind(p.name.as_ref().map(|s| s.as_str().to_owned()))
        .bind(p.description.as_ref().map(|s| s.as_str().to_owned()))
        .bind(p.price.cents())
        .bind(p.stock)
        .bind(p.status.as_str())
        .bind(p.version)
        .bind(d.now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if updated.is_none() {
        return Err(RawError::Other("product row not updated".into()));
    }
    tx.commit().await?;
    Ok(())
}

async fn attempt_sqlite(pool: &SqlitePool, id: Uuid) -> Result<(), RawError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let rows = sqlx::query(SQLITE_LOAD_STREAM)
        .bind(id)
        .bind(Product::STREAM_TYPE)
        .bind(Product::STATE_VERSION)
        .bind(id)
        .bind(Product::STREAM_TYPE)
        .fetch_all(&mut *tx)
        .await?;
    let d = decide(fold_stream!(rows))?;
    let inserted = sqlx::query(SQLITE_INSERT_EVENT)
        .bind(id)
        .bind("product")
        .bind(d.version)
        .bind(&d.event_type)
        .bind(d.event_version)
        .bind(&d.data)
        .bind(&d.metadata)
        .bind(d.now)
        .execute(&mut *tx)
        .await;
    match inserted {
        Err(e) if unique_violation(&e) => return Err(RawError::Conflict),
        other => other?,
    };
    let p = &d.next;
    let updated = sqlx::query(SQLITE_UPDATE_PRODUCT)
        .bind(p.sku.as_ref().map(|s| s.as_str().to_owned()))
        .bind(p.name.as_ref().map(|s| s.as_str().to_owned()))
        .bind(p.description.as_ref().map(|s| s.as_str().to_owned()))
        .bind(p.price.cents())
        .bind(p.stock)
        .bind(p.status.as_str())
        .bind(p.version)
        .bind(d.now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(RawError::Other("product row not updated".into()));
    }
    sqlx::query(SQLITE_FIND_PRODUCT)
        .bind(id)
        .bind(1_i64)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// N tasks running the raw transaction: `warmup` unrecorded transactions, then `measured`
/// recorded ones (counted across tasks), or until the time cap of a service phase.
async fn run_raw(
    raw: &RawDb,
    products: &[Uuid],
    tasks: usize,
    warmup: u64,
    measured: u64,
    cfg: &Config,
) -> anyhow::Result<Phase> {
    let cpu = CpuSample::take();
    let gate = WriteGate::for_backend(raw.backend());
    let products = Arc::new(products.to_vec());
    let tickets = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(cfg.warmup_secs + cfg.secs);
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (raw, gate, products) = (raw.clone(), gate.clone(), products.clone());
            let tickets = tickets.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(0xba5e ^ task as u64);
                let mut stats = ClientStats::default();
                let mut first_measured: Option<Instant> = None;
                let mut finished = Instant::now();
                loop {
                    let product = products[rng.random_range(0..products.len())];
                    let ticket = tickets.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    if ticket >= warmup + measured || started >= deadline {
                        break;
                    }
                    let result = raw.adjust_stock(&gate, product).await;
                    finished = Instant::now();
                    if ticket < warmup {
                        stats.warmup_ops += 1;
                        continue;
                    }
                    first_measured.get_or_insert(started);
                    match result {
                        Ok(retries) => {
                            stats.retries += retries;
                            stats.ok(Op::RawAdjust, finished - started);
                        }
                        Err(e) => stats.error(Op::RawAdjust, e),
                    }
                }
                (stats, first_measured, finished)
            })
        })
        .collect();
    let mut phase = Phase::default();
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    for handle in handles {
        let (stats, first_measured, finished) = handle.await?;
        if let Some(f) = first_measured {
            first = Some(first.map_or(f, |x| x.min(f)));
            last = Some(last.map_or(finished, |x| x.max(finished)));
        }
        phase.merge(stats);
    }
    if let (Some(first), Some(last)) = (first, last) {
        phase.elapsed = last - first;
    }
    phase.other_cpu = CpuSample::other_share_since(cpu);
    Ok(phase)
}

// ---------------------------------------------------------------------------------------
// Interference: CPU time of everything else on the machine
// ---------------------------------------------------------------------------------------

/// CPU time counters (clock ticks) at one moment: the whole machine, this process, and
/// every PostgreSQL process (the server under test; other databases' work counts as ours).
struct CpuSample {
    total: u64,
    busy: u64,
    ours: u64,
}

impl CpuSample {
    fn take() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        let mut ours = process_ticks("/proc/self/stat").map(|(_, t)| t)?;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            if let Some((comm, ticks)) = process_ticks(&format!("/proc/{pid}/stat"))
                && comm == "postgres"
            {
                ours += ticks;
            }
        }
        Some(Self {
            total,
            busy: total.saturating_sub(idle),
            ours,
        })
    }

    /// Share of all CPU time since `start` that other processes used (0.0 to 1.0).
    fn other_share_since(start: Option<Self>) -> Option<f64> {
        let (start, end) = (start?, Self::take()?);
        let total = end.total.saturating_sub(start.total);
        let busy = end.busy.saturating_sub(start.busy);
        let ours = end.ours.saturating_sub(start.ours);
        (total > 0).then(|| busy.saturating_sub(ours) as f64 / total as f64)
    }
}

/// (comm, utime + stime) of a process from its `/proc/<pid>/stat`.
fn process_ticks(path: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // After the comm: state is field 3; utime and stime are fields 14 and 15.
    let rest: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn pct(share: Option<f64>) -> String {
    share.map_or_else(|| "?".into(), |s| format!("{:.0}%", s * 100.0))
}

// ---------------------------------------------------------------------------------------
// Machine facts and the report
// ---------------------------------------------------------------------------------------

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `git describe --always --dirty` of the source tree, when it is a git checkout.
fn revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|r| !r.is_empty())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown memory".into(),
            |kib| format!("{:.1} GiB RAM", kib as f64 / 1024.0 / 1024.0),
        );
    format!("{cpus} CPU(s), {model}, {memory}")
}

fn report_markdown(
    cfg: &Config,
    started: DateTime<Utc>,
    sections: &[String],
    notes: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# ordergraph load benchmark\n");
    let _ = writeln!(s, "- date: {}", started.format("%Y-%m-%d %H:%M UTC"));
    if let Some(revision) = revision() {
        let _ = writeln!(s, "- revision: {revision}");
    }
    let _ = writeln!(s, "- machine: {}", machine());
    let _ = writeln!(
        s,
        "- load average (1/5/15 min) at start: {}, at end: {} (anything else running shares the cores)",
        cfg.load_at_start,
        load_average()
    );
    let _ = writeln!(
        s,
        "- command: `cargo bench --bench load` (clients {:?}, {} s measured after {} s warm-up per phase, {} products)",
        cfg.clients, cfg.secs, cfg.warmup_secs, cfg.products
    );
    let _ = writeln!(
        s,
        "- service settings: defaults (pool {} connections, relay poll {} ms, consistency wait {} ms)",
        Settings::default().db_max_connections,
        Settings::default().relay_poll_ms,
        Settings::default().consistency_wait_ms
    );
    let weights: u32 = MIX.iter().map(|(_, w)| w).sum();
    let mix = MIX
        .iter()
        .map(|(op, w)| format!("{}% {}", w * 100 / weights, op.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        s,
        "- mix: {mix}; a new customer every {CART_ADDS_PER_CUSTOMER} addToCart calls per client"
    );
    let _ = writeln!(
        s,
        "- latencies in ms; ratio = service ÷ raw; relay lag = response arrival − events.recorded_at (upper bound of commit → view)"
    );
    let _ = writeln!(
        s,
        "- each phase on fresh products; the raw phase runs as many transactions as the service's adjustStock-only phase, so streams grow alike"
    );
    let _ = writeln!(
        s,
        "- other CPU = share of the machine's CPU time used during the phase by processes other than this one and PostgreSQL: above a few % the figures are disturbed"
    );
    for note in notes {
        let _ = writeln!(s, "- {note}");
    }
    for section in sections {
        let _ = writeln!(s, "\n{section}");
    }
    s
}

impl BackendResult {
    fn markdown(&self, _cfg: &Config) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## {}\n", self.name);
        let rss = self.peak_rss_kib.map_or_else(
            || "unknown".into(),
            |k| format!("{:.0} MiB", k as f64 / 1024.0),
        );
        let _ = writeln!(
            s,
            "Peak RSS of the bench process (VmHWM{}: server, relay, clients and raw pool): {rss}.\n",
            if self.peak_reset {
                ", reset at the start of this backend"
            } else {
                ", not resettable here: cumulative"
            },
        );
        let _ = writeln!(s, "### adjustStock alone vs the raw transaction\n");
        let _ = writeln!(
            s,
            "| clients | service ops/s | raw ops/s | ratio | service p50 | raw p50 | ratio | service p99 | raw p99 | ratio | errors (service / raw) | raw retries | events/stream at end | relay lag p50 | relay lag p99 | other CPU (service / raw) |"
        );
        let _ = writeln!(
            s,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
        );
        for p in &self.points {
            let svc = p.adjust.all();
            let raw = p.raw.all();
            let (so, ro) = (p.adjust.ops_per_sec(&svc), p.raw.ops_per_sec(&raw));
            let q = |h: &Histogram<u64>, q: f64| ms(h.value_at_quantile(q));
            let lag = p.adjust.lag.as_ref();
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {:.2}× | {:.2} | {:.2} | {:.1}× | {:.2} | {:.2} | {:.1}× | {} / {} | {} | {:.0} | {} | {} | {} / {} |",
                p.clients,
                so,
                ro,
                so / ro.max(1e-9),
                q(&svc.latency, 0.5),
                q(&raw.latency, 0.5),
                q(&svc.latency, 0.5) / q(&raw.latency, 0.5).max(1e-9),
                q(&svc.latency, 0.99),
                q(&raw.latency, 0.99),
                q(&svc.latency, 0.99) / q(&raw.latency, 0.99).max(1e-9),
                errors_text(&svc.errors),
                errors_text(&raw.errors),
                p.raw.retries,
                1.0 + (p.adjust.warmup_ops + p.adjust.measured_ops()) as f64 / self.products as f64,
                lag.map_or("–".into(), |l| format!("{:.2}", q(l, 0.5))),
                lag.map_or("–".into(), |l| format!("{:.2}", q(l, 0.99))),
                pct(p.adjust.other_cpu),
                pct(p.raw.other_cpu),
            );
        }
        let _ = writeln!(s, "\n### Realistic mix\n");
        let _ = writeln!(
            s,
            "| clients | operation | ops/s | p50 | p99 | errors | relay lag p50 | relay lag p99 | other CPU |"
        );
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---|---:|---:|---:|");
        for p in &self.points {
            let raw_ops = p.raw.ops_per_sec(&p.raw.all());
            for (op, stats) in &p.mix.by_op {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {:.2} | {:.2} | {} | | | |",
                    p.clients,
                    op.name(),
                    p.mix.ops_per_sec(stats),
                    ms(stats.latency.value_at_quantile(0.5)),
                    ms(stats.latency.value_at_quantile(0.99)),
                    errors_text(&stats.errors),
                );
            }
            let all = p.mix.all();
            let ops = p.mix.ops_per_sec(&all);
            let lag = p.mix.lag.as_ref();
            let _ = writeln!(
                s,
                "| {} | **all** | {:.0} ({:.2}× raw) | {:.2} | {:.2} | {} | {} | {} | {} |",
                p.clients,
                ops,
                ops / raw_ops.max(1e-9),
                ms(all.latency.value_at_quantile(0.5)),
                ms(all.latency.value_at_quantile(0.99)),
                errors_text(&all.errors),
                lag.map_or("–".into(), |l| format!(
                    "{:.2}",
                    ms(l.value_at_quantile(0.5))
                )),
                lag.map_or("–".into(), |l| format!(
                    "{:.2}",
                    ms(l.value_at_quantile(0.99))
                )),
                pct(p.mix.other_cpu),
            );
        }
        s
    }
}
