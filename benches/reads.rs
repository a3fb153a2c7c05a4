//! Read benchmark: ordergraph's read side beside PostGraphile 5 serving the very same
//! `catalog_view` table of the same PostgreSQL database, with the same load generator, the
//! same number of client connections and the same database pool size, in the same run.
//!
//! Both servers run as their own processes (ordergraph's release binary; PostGraphile 5.1.5
//! on Node.js 22 from `benches/peer`, installed with `npm ci` there when missing), so each
//! one's memory is its own. The catalog is created through ordergraph's `createProduct`
//! mutations (the view is a projection of the log), then both answer, in alternating rounds:
//!
//! - **list page**: ordergraph `products(first: 20)` against PostGraphile
//!   `allCatalogViews(first: 20, orderBy: SKU_ASC)`: the first page in SKU order, the same
//!   five columns and `pageInfo`;
//! - **single product**: ordergraph `product(id:)` against `catalogViewByRowId(rowId:)`,
//!   a random product of the catalog per request;
//! - **list page with `totalCount`**: the same page and the number of products, on both;
//! - **single product, under writes**: the single product again while `adjustStock`
//!   changes random products through ordergraph (BENCH_WRITE_RATE per second, 50): each
//!   change moves the table both servers read, and drops ordergraph's in-memory copy of
//!   the product it changed (ADR 0023);
//! - **list page, under writes**: the list page again under the same writes (each one
//!   drops ordergraph's in-memory pages);
//! - **search** (ordergraph only: PostGraphile has no text search without a plugin):
//!   `products(first: 20, search:)` for a SKU fragment (a few matches), and for a word of
//!   every product's name (every product matches).
//!
//! Then, unless BENCH_SQLITE=0, ordergraph alone on SQLite (a file of its own, the same
//! number of products created the same way): list page, single product and both searches.
//!
//! The products are created through the API (the view is built by the relay, as in
//! production): BENCH_SEED_CLIENTS (64) clients, each sending batches of
//! BENCH_SEED_BATCH (10) `createProduct` operations per HTTP request.
//!
//! `cargo bench --bench reads` (env: BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test,
//! BENCH_PRODUCTS=2000, BENCH_CLIENTS=32, BENCH_SECS=10, BENCH_ROUNDS=2, BENCH_SQLITE=1).
//! Results go to stdout and `target/bench-reads.md`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use sea_orm::sqlx::{self, AssertSqlSafe, PgPool};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

const SECRET: &str = "reads-bench-secret-not-for-production";
const CREATE: &str = "mutation($sku: String!) { createProduct(input: {sku: $sku, name: \"Bench product\", description: \"A product of the read benchmark\", price: \"4.20\", initialStock: 100}) { product { id } } }";
const OG_LIST: &str = "{ products(first: 20) { edges { node { id sku name price stock } } pageInfo { hasNextPage endCursor } } }";
const PEER_LIST: &str = "{ allCatalogViews(first: 20, orderBy: SKU_ASC) { nodes { rowId sku name priceCents stock } pageInfo { hasNextPage endCursor } } }";
const OG_COUNTED: &str = "{ products(first: 20) { totalCount edges { node { id sku name price stock } } pageInfo { hasNextPage endCursor } } }";
const PEER_COUNTED: &str = "{ allCatalogViews(first: 20, orderBy: SKU_ASC) { totalCount nodes { rowId sku name priceCents stock } pageInfo { hasNextPage endCursor } } }";
const OG_ONE: &str = "query($id: UUID!) { product(id: $id) { id sku name price stock } }";
const PEER_ONE: &str =
    "query($id: UUID!) { catalogViewByRowId(rowId: $id) { rowId sku name priceCents stock } }";
const OG_SEARCH: &str =
    "query($q: String!) { products(first: 20, search: $q) { edges { node { id sku name } } } }";
const OG_SEARCH_WORD: &str =
    "{ products(first: 20, search: \"bench\") { edges { node { id sku name } } } }";

/// What one load phase sends.
#[derive(Clone, Copy, PartialEq)]
enum Ask {
    /// The same document each time.
    Same,
    /// A random product of the catalog (`$id`).
    ById,
    /// A SKU fragment (`$q`): four digits, varying from one request to the next.
    SkuFragment,
}

struct Config {
    pg_url: String,
    products: usize,
    clients: usize,
    secs: u64,
    rounds: usize,
    sqlite: bool,
    seed_clients: usize,
    seed_batch: usize,
    /// `adjustStock` per second through ordergraph during the "under writes" phases.
    write_rate: f64,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or(default.to_owned());
        Ok(Self {
            pg_url: var(
                "BENCH_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            products: var("BENCH_PRODUCTS", "2000")
                .parse()
                .context("BENCH_PRODUCTS")?,
            clients: var("BENCH_CLIENTS", "32")
                .parse()
                .context("BENCH_CLIENTS")?,
            secs: var("BENCH_SECS", "10").parse().context("BENCH_SECS")?,
            rounds: var("BENCH_ROUNDS", "2").parse().context("BENCH_ROUNDS")?,
            sqlite: var("BENCH_SQLITE", "1") != "0",
            seed_clients: var("BENCH_SEED_CLIENTS", "64")
                .parse()
                .context("BENCH_SEED_CLIENTS")?,
            seed_batch: var("BENCH_SEED_BATCH", "10")
                .parse()
                .context("BENCH_SEED_BATCH")?,
            write_rate: var("BENCH_WRITE_RATE", "50")
                .parse()
                .context("BENCH_WRITE_RATE")?,
        })
    }
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cfg = Config::from_env()?;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&cfg.pg_url)
        .await
        .with_context(|| format!("BENCH_DATABASE_URL={} is not reachable", cfg.pg_url))?;
    let load_before = load_average();
    let name = format!("bench_reads_{}", Uuid::new_v4().simple());
    sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&admin)
        .await?;
    let result = bench(&cfg, &database_url(&cfg.pg_url, &name)?).await;
    // Dropped whatever happened; FORCE ends the connections of both servers.
    sqlx::query(AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
    )))
    .execute(&admin)
    .await?;
    let mut report = result?;
    if cfg.sqlite {
        report.push('\n');
        report.push_str(&bench_sqlite(&cfg).await?);
    }
    report.push_str(&format!(
        "\nMachine: {} × {}; load average (1 min) {load_before} before the run, {} after it.\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model(),
        load_average(),
    ));
    println!("{report}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-reads.md");
    std::fs::write(&out, &report)?;
    eprintln!("written to {}", out.display());
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// One measured phase: requests per second and latency of one server under one query.
struct Phase {
    server: &'static str,
    what: &'static str,
    round: usize,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
    fn cell(&self) -> String {
        format!(
            "{:.0} / {:.2} / {:.2} / {}",
            self.rate(),
            self.ms(0.5),
            self.ms(0.99),
            self.errors
        )
    }
}

fn http_client(cfg: &Config) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.clients.max(cfg.seed_clients))
        .build()?)
}

fn admin_token() -> anyhow::Result<String> {
    ordergraph::auth::mint_token(
        SECRET,
        "bench-admin",
        ordergraph::auth::Role::Admin,
        Duration::from_secs(24 * 3600),
    )
}

async fn bench(cfg: &Config, url: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let pool = cfg.clients.to_string();
    // Plain TCP for both: sqlx's default (`sslmode=prefer`) would take TLS where the
    // server offers it, node-postgres's default does not.
    let og = Server::ordergraph(&without_tls(url)?, dir.path(), &pool).await?;
    let http = http_client(cfg)?;
    let admin = admin_token()?;

    eprintln!("== creating {} products through ordergraph", cfg.products);
    let started = Instant::now();
    let ids = seed(&http, &og.url, &admin, cfg).await?;
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    wait_for_view(&db, cfg.products).await?;
    let seeded = started.elapsed();
    // Fresh statistics for both servers' plans, as autovacuum would give them in time.
    sqlx::query("VACUUM ANALYZE catalog_view")
        .execute(&db)
        .await?;
    let table_mib = table_size_mib(&db).await?;

    let peer = Server::postgraphile(url, &pool).await?;
    let ids = Arc::new(ids);
    let targets: [(&'static str, &Server, [&'static str; 5]); 2] = [
        (
            "ordergraph",
            &og,
            [OG_LIST, OG_COUNTED, OG_ONE, OG_ONE, OG_LIST],
        ),
        (
            "PostGraphile 5",
            &peer,
            [PEER_LIST, PEER_COUNTED, PEER_ONE, PEER_ONE, PEER_LIST],
        ),
    ];
    // Both answer the same first page (the same SKUs in the same order) and the same
    // count before any timing.
    let first = |v: &Value| -> Vec<String> {
        let nodes: Vec<&Value> = match v["data"]["products"]["edges"].as_array() {
            Some(edges) => edges.iter().map(|e| &e["node"]).collect(),
            None => v["data"]["allCatalogViews"]["nodes"]
                .as_array()
                .map(|n| n.iter().collect())
                .unwrap_or_default(),
        };
        nodes
            .iter()
            .map(|n| n["sku"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let a = post(&http, &og.url, OG_COUNTED, json!({})).await?;
    let b = post(&http, &peer.url, PEER_COUNTED, json!({})).await?;
    if first(&a) != first(&b)
        || first(&a).len() != 20
        || a["data"]["products"]["totalCount"] != b["data"]["allCatalogViews"]["totalCount"]
    {
        bail!("the two servers do not answer the same first page:\n{a}\n{b}");
    }

    let mut phases = Vec::new();
    for round in 1..=cfg.rounds {
        for (pick, what) in PAIRED.iter().enumerate() {
            // Alternate who goes first from one round to the next.
            let order: Vec<usize> = if round % 2 == 1 {
                vec![0, 1]
            } else {
                vec![1, 0]
            };
            for i in order {
                let (server, target, queries) = targets[i];
                let ask = if *what == "single product" || *what == UNDER_WRITES {
                    Ask::ById
                } else {
                    Ask::Same
                };
                eprintln!("== round {round}: {server}, {what}");
                // Stock changes through ordergraph while either server reads: every one
                // changes the table both read (and drops ordergraph's copies of it).
                let writer = (*what == UNDER_WRITES || *what == LIST_UNDER_WRITES).then(|| {
                    tokio::spawn(write_load(
                        http.clone(),
                        og.url.clone(),
                        admin.clone(),
                        ids.clone(),
                        cfg.write_rate,
                        Duration::from_secs(cfg.secs + 1),
                    ))
                });
                let phase = load(
                    &http,
                    &target.url,
                    queries[pick],
                    ask,
                    &ids,
                    cfg,
                    server,
                    what,
                    round,
                )
                .await?;
                if let Some(writer) = writer {
                    writer.await??;
                }
                phases.push(phase);
            }
        }
    }
    let searches = searches(&http, &og.url, &ids, cfg).await?;

    let tls: Vec<(String, bool, i64)> = sqlx::query_as(
        "SELECT coalesce(application_name, ''), ssl, count(*) FROM pg_stat_ssl \
         JOIN pg_stat_activity USING (pid) WHERE datname = current_database() \
         AND pid <> pg_backend_pid() GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&db)
    .await?;
    eprintln!("== the servers' connections (application, TLS, count): {tls:?}");
    let og_mem = og.memory();
    let peer_mem = peer.memory();
    Ok(report(
        cfg, &phases, &searches, og_mem, peer_mem, table_mib, seeded,
    ))
}

/// The phases run on both servers, in this order in each round.
const PAIRED: [&str; 5] = [
    "list page",
    "list page + totalCount",
    "single product",
    UNDER_WRITES,
    LIST_UNDER_WRITES,
];

/// A single product while `adjustStock` changes random products (`BENCH_WRITE_RATE`).
const UNDER_WRITES: &str = "single product, under writes";

/// The list page while `adjustStock` changes random products (`BENCH_WRITE_RATE`).
const LIST_UNDER_WRITES: &str = "list page, under writes";

const ADJUST: &str =
    "mutation($id: UUID!) { adjustStock(input: {productId: $id, delta: 1}) { position } }";

/// `adjustStock` on random products at `rate` per second for `lasting` (open loop).
async fn write_load(
    http: reqwest::Client,
    url: String,
    admin: String,
    ids: Arc<Vec<String>>,
    rate: f64,
    lasting: Duration,
) -> anyhow::Result<()> {
    let every = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for k in 0u64.. {
        let at = start + every * u32::try_from(k)?;
        if at >= start + lasting {
            break;
        }
        tokio::time::sleep_until(at).await;
        let id = ids[(k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % ids.len() as u64) as usize].clone();
        let (http, url, admin) = (http.clone(), url.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            let resp: Value = http
                .post(&url)
                .bearer_auth(&admin)
                .json(&json!({ "query": ADJUST, "variables": { "id": id } }))
                .send()
                .await?
                .json()
                .await?;
            anyhow::ensure!(resp.get("errors").is_none(), "adjustStock: {resp}");
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// ordergraph's two searches.
async fn searches(
    http: &reqwest::Client,
    url: &str,
    ids: &Arc<Vec<String>>,
    cfg: &Config,
) -> anyhow::Result<Vec<Phase>> {
    let mut phases = Vec::new();
    for (what, paced_what, query, ask) in [
        (
            "search, a SKU fragment",
            "search, a SKU fragment, at half its peak rate",
            OG_SEARCH,
            Ask::SkuFragment,
        ),
        (
            "search, a word of every name",
            "search, a word of every name, at half its peak rate",
            OG_SEARCH_WORD,
            Ask::Same,
        ),
    ] {
        eprintln!("== ordergraph, {what}");
        let peak = load(http, url, query, ask, ids, cfg, "ordergraph", what, 1).await?;
        let rate = peak.rate() / 2.0;
        phases.push(peak);
        eprintln!("== ordergraph, {paced_what} ({rate:.0}/s)");
        phases.push(paced(http, url, query, ask, ids, cfg, rate, paced_what).await?);
    }
    Ok(phases)
}

/// The variables of the `k`-th request of a phase.
fn ask_vars(ask: Ask, ids: &[String], seed: u64) -> Value {
    match ask {
        Ask::ById => json!({ "id": ids[(seed % ids.len() as u64) as usize] }),
        Ask::SkuFragment => json!({ "q": format!("{:04}", seed % 10_000) }),
        Ask::Same => json!({}),
    }
}

/// `query` sent open-loop at `rate` requests a second for `secs` seconds after a
/// one-second warm-up, each timed from when it was due (not from when it was sent), so a
/// server that falls behind shows it in the latencies: the latency a user sees at that
/// load, where a closed loop of `clients` measures a saturated server's queue.
#[allow(clippy::too_many_arguments)]
async fn paced(
    http: &reqwest::Client,
    url: &str,
    query: &'static str,
    ask: Ask,
    ids: &Arc<Vec<String>>,
    cfg: &Config,
    rate: f64,
    what: &'static str,
) -> anyhow::Result<Phase> {
    let every = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = tokio::time::Instant::now();
    let warm = start + Duration::from_secs(1);
    let end = warm + Duration::from_secs(cfg.secs);
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for k in 0u32.. {
        let due = start + every * k;
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let seed = u64::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        let vars = ask_vars(ask, ids, seed);
        let (http, url, errors) = (http.clone(), url.to_owned(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let ok = match post(&http, &url, query, vars).await {
                Ok(v) => v.get("errors").is_none() && !v["data"].is_null(),
                Err(_) => false,
            };
            if due < warm {
                return None;
            }
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Some(due.elapsed().as_micros() as u64)
        }));
    }
    let mut latency_us = Histogram::<u64>::new(3)?;
    for t in tasks {
        if let Some(us) = t.await? {
            latency_us.record(us)?;
        }
    }
    Ok(Phase {
        server: "ordergraph",
        what,
        round: 1,
        requests: latency_us.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed: Duration::from_secs(cfg.secs),
        latency_us,
    })
}

/// ordergraph alone on SQLite: the same catalog, created the same way, then the list
/// page, a single product and the searches.
async fn bench_sqlite(cfg: &Config) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.sqlite").display()
    );
    let og = Server::ordergraph(&url, dir.path(), &cfg.clients.to_string()).await?;
    let http = http_client(cfg)?;
    let admin = admin_token()?;
    eprintln!(
        "== SQLite: creating {} products through ordergraph",
        cfg.products
    );
    let started = Instant::now();
    let ids = Arc::new(seed(&http, &og.url, &admin, cfg).await?);
    let seeded = started.elapsed();
    let count = post(
        &http,
        &og.url,
        "{ products(first: 0) { totalCount } }",
        json!({}),
    )
    .await?;
    if count["data"]["products"]["totalCount"] != json!(cfg.products) {
        bail!("the SQLite catalog does not hold every product: {count}");
    }
    let mut phases = Vec::new();
    for (what, query, ask) in [
        ("list page", OG_LIST, Ask::Same),
        ("single product", OG_ONE, Ask::ById),
    ] {
        eprintln!("== SQLite: ordergraph, {what}");
        phases.push(load(&http, &og.url, query, ask, &ids, cfg, "ordergraph", what, 1).await?);
    }
    phases.extend(searches(&http, &og.url, &ids, cfg).await?);
    let mem = og.memory();
    let mut out = format!(
        "#### ordergraph on SQLite\n\n\
         The same {} products, created in {:.1} s, {} clients, {} s per phase. \
         Requests/s, p50 / p99 ms, errors.\n\n| query | ordergraph (SQLite) |\n|---|---|\n",
        cfg.products,
        seeded.as_secs_f64(),
        cfg.clients,
        cfg.secs
    );
    for p in &phases {
        out.push_str(&format!("| {} | {} |\n", p.what, p.cell()));
    }
    out.push_str(&format!(
        "\nMemory after the run (resident / peak, MiB): {:.0} / {:.0}.\n",
        mem.0, mem.1
    ));
    Ok(out)
}

/// `clients` tasks send `query` back to back for `secs` seconds after a one-second warm-up.
#[allow(clippy::too_many_arguments)]
async fn load(
    http: &reqwest::Client,
    url: &str,
    query: &'static str,
    ask: Ask,
    ids: &Arc<Vec<String>>,
    cfg: &Config,
    server: &'static str,
    what: &'static str,
    round: usize,
) -> anyhow::Result<Phase> {
    let warm = Instant::now() + Duration::from_secs(1);
    let end = warm + Duration::from_secs(cfg.secs);
    let errors = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..cfg.clients)
        .map(|client| {
            let (http, url, ids, errors) =
                (http.clone(), url.to_owned(), ids.clone(), errors.clone());
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new(3).unwrap();
                let mut seed = client as u64 * 0x9E37_79B9_7F4A_7C15 + 1;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let vars = ask_vars(ask, &ids, seed);
                    let ok = match post(&http, &url, query, vars).await {
                        Ok(v) => v.get("errors").is_none() && !v["data"].is_null(),
                        Err(_) => false,
                    };
                    if now >= warm {
                        if ok {
                            hist.record(now.elapsed().as_micros() as u64).unwrap();
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                hist
            })
        })
        .collect();
    let mut latency_us = Histogram::<u64>::new(3)?;
    for t in tasks {
        latency_us.add(t.await?)?;
    }
    Ok(Phase {
        server,
        what,
        round,
        requests: latency_us.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed: Duration::from_secs(cfg.secs),
        latency_us,
    })
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    vars: Value,
) -> anyhow::Result<Value> {
    Ok(http
        .post(url)
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await?
        .json()
        .await?)
}

/// Creates `cfg.products` products: `seed_clients` clients, each sending batches of
/// `seed_batch` `createProduct` operations per request; returns their ids.
async fn seed(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    cfg: &Config,
) -> anyhow::Result<Vec<String>> {
    let n = cfg.products;
    let batch = cfg.seed_batch.max(1);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let d = done.load(Ordering::Relaxed);
                eprintln!(
                    "   {d} of {n} created, {:.0}/s",
                    d as f64 / started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let tasks: Vec<_> = (0..cfg.seed_clients)
        .map(|_| {
            let (http, url, token, next, done) = (
                http.clone(),
                url.to_owned(),
                token.to_owned(),
                next.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let from = next.fetch_add(batch as u64, Ordering::Relaxed) as usize;
                    if from >= n {
                        return Ok::<_, anyhow::Error>(ids);
                    }
                    let body: Vec<Value> = (from..n.min(from + batch))
                        .map(|i| json!({ "query": CREATE, "variables": { "sku": format!("BR-{i:07}") } }))
                        .collect();
                    let v: Value = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await?
                        .json()
                        .await?;
                    for r in v.as_array().map(Vec::as_slice).unwrap_or_default() {
                        match r["data"]["createProduct"]["product"]["id"].as_str() {
                            Some(id) => ids.push(id.to_owned()),
                            None => bail!("createProduct failed: {r}"),
                        }
                    }
                    if !v.is_array() {
                        bail!("a batch was refused: {v}");
                    }
                    done.fetch_add(body.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(n);
    let mut failed = None;
    for t in tasks {
        match t.await? {
            Ok(found) => ids.extend(found),
            Err(e) => failed = Some(e),
        }
    }
    progress.abort();
    match failed {
        Some(e) => Err(e),
        None => Ok(ids),
    }
}

async fn wait_for_view(db: &PgPool, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM catalog_view")
            .fetch_one(db)
            .await?;
        if count as usize >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the catalog view holds {count} of {n} products 120 s after the last was created"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn table_size_mib(db: &PgPool) -> anyhow::Result<f64> {
    let (bytes,): (i64,) = sqlx::query_as("SELECT pg_total_relation_size('catalog_view')::bigint")
        .fetch_one(db)
        .await?;
    Ok(bytes as f64 / (1024.0 * 1024.0))
}

/// A server process: ordergraph or the peer.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    async fn ordergraph(database_url: &str, dir: &Path, pool: &str) -> anyhow::Result<Self> {
        // BENCH_ORDERGRAPH_BIN: another build of the binary (an earlier commit's, to
        // measure before and after with the same harness in one session).
        let bin = std::env::var("BENCH_ORDERGRAPH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ordergraph").to_owned());
        let mut child = Command::new(&bin)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("ORDERGRAPH_BIND", "127.0.0.1:0")
            .env("ORDERGRAPH_DATA_DIR", dir)
            .env("ORDERGRAPH_JWT_SECRET", SECRET)
            .env("ORDERGRAPH_DB_MAX_CONNECTIONS", pool)
            .env("ORDERGRAPH_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,ordergraph=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the ordergraph binary")?;
        let address = wait_for_line(&mut child, true, |line| {
            line.contains("serving GraphQL").then(|| {
                let v: Value = serde_json::from_str(line).unwrap_or_default();
                v["fields"]["address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .await?;
        Ok(Self {
            child,
            url: format!("http://{address}/graphql"),
        })
    }

    async fn postgraphile(database_url: &str, pool: &str) -> anyhow::Result<Self> {
        let peer = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peer");
        let node = peer.join("node_modules/.bin/node");
        if !node.exists() {
            eprintln!("== installing PostGraphile 5 and Node.js 22 (npm ci in benches/peer)");
            let status = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&peer)
                .status()
                .context("running npm (Node.js and npm are needed for the peer)")?;
            if !status.success() {
                bail!("npm ci in {} failed", peer.display());
            }
        }
        let mut child = Command::new(&node)
            .arg("server.mjs")
            .current_dir(&peer)
            .env("DATABASE_URL", database_url)
            .env("PORT", "0")
            .env("PEER_POOL", pool)
            .env("GRAPHILE_ENV", "production")
            .stdout(Stdio::piped())
            // Its errors (one stack trace each) go to a file; the phases count them.
            .stderr(std::fs::File::create(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-reads-peer.log"),
            )?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", node.display()))?;
        let port = wait_for_line(&mut child, false, |line| {
            line.strip_prefix("listening on ").map(str::to_owned)
        })
        .await?;
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}/graphql"),
        })
    }

    /// (resident now, peak resident) in MiB.
    fn memory(&self) -> (f64, f64) {
        let Some(pid) = self.child.id() else {
            return (0.0, 0.0);
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// Reads the child's stderr (or stdout) until `found` recognises a line, within 60 s; keeps
/// draining the pipe afterwards so the child never blocks on it.
async fn wait_for_line(
    child: &mut Child,
    stderr: bool,
    found: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if stderr {
        Box::new(child.stderr.take().context("no stderr pipe")?)
    } else {
        Box::new(child.stdout.take().context("no stdout pipe")?)
    };
    let mut lines = BufReader::new(pipe).lines();
    let value = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(v) = found(&line) {
                return Ok(v);
            }
        }
        bail!("the server exited before it was ready")
    })
    .await
    .context("the server was not ready within 60 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(value)
}

/// `url` with `sslmode=disable`.
fn without_tls(url: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(url).context("BENCH_DATABASE_URL is not a URL")?;
    url.query_pairs_mut().append_pair("sslmode", "disable");
    Ok(url.to_string())
}

fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(admin_url).context("BENCH_DATABASE_URL is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

fn report(
    cfg: &Config,
    phases: &[Phase],
    searches: &[Phase],
    og_mem: (f64, f64),
    peer_mem: (f64, f64),
    table_mib: f64,
    seeded: Duration,
) -> String {
    let mut out = format!(
        "### Reads: ordergraph beside PostGraphile 5 on the same `catalog_view`\n\n\
         {} products ({table_mib:.1} MiB with indexes; created through the API in {:.1} s, \
         {:.0}/s), {} clients, {} s per phase after 1 s of warm-up, {} rounds (the order of \
         the two servers alternates), a pool of {} connections each. Requests/s, p50 / p99 \
         ms, errors.\n\n\
         | query | round | ordergraph | PostGraphile 5 | ratio |\n|---|---:|---|---|---:|\n",
        cfg.products,
        seeded.as_secs_f64(),
        cfg.products as f64 / seeded.as_secs_f64(),
        cfg.clients,
        cfg.secs,
        cfg.rounds,
        cfg.clients,
    );
    for what in PAIRED {
        for round in 1..=cfg.rounds {
            let find = |server: &str| {
                phases
                    .iter()
                    .find(|p| p.what == what && p.round == round && p.server == server)
            };
            if let (Some(a), Some(b)) = (find("ordergraph"), find("PostGraphile 5")) {
                out.push_str(&format!(
                    "| {what} | {round} | {} | {} | {:.2}× |\n",
                    a.cell(),
                    b.cell(),
                    a.rate() / b.rate()
                ));
            }
        }
    }
    out.push('\n');
    for s in searches {
        out.push_str(&format!(
            "ordergraph `{}` (first 20): {}.\n",
            s.what,
            s.cell()
        ));
    }
    out.push_str(&format!(
        "\nMemory after the run (resident / peak, MiB): ordergraph {:.0} / {:.0}, \
         PostGraphile 5 (Node.js 22) {:.0} / {:.0}.\n",
        og_mem.0, og_mem.1, peer_mem.0, peer_mem.1
    ));
    out
}
