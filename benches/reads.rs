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
//! - **search** (ordergraph only: PostGraphile has no text search without a plugin):
//!   `products(first: 20, search:)` for a SKU fragment.
//!
//! `cargo bench --bench reads` (env: BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test,
//! BENCH_PRODUCTS=2000, BENCH_CLIENTS=32, BENCH_SECS=10, BENCH_ROUNDS=2). Results go to stdout
//! and `target/bench-reads.md`.
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
const OG_ONE: &str = "query($id: UUID!) { product(id: $id) { id sku name price stock } }";
const PEER_ONE: &str =
    "query($id: UUID!) { catalogViewByRowId(rowId: $id) { rowId sku name priceCents stock } }";
const OG_SEARCH: &str =
    "query($q: String!) { products(first: 20, search: $q) { edges { node { id sku name } } } }";

struct Config {
    pg_url: String,
    products: usize,
    clients: usize,
    secs: u64,
    rounds: usize,
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
    let report = result?;
    println!("{report}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-reads.md");
    std::fs::write(&out, &report)?;
    eprintln!("written to {}", out.display());
    Ok(())
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
}

async fn bench(cfg: &Config, url: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let pool = cfg.clients.to_string();
    let og = Server::ordergraph(url, dir.path(), &pool).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.clients)
        .build()?;
    let admin = ordergraph::auth::mint_token(
        SECRET,
        "bench-admin",
        ordergraph::auth::Role::Admin,
        Duration::from_secs(24 * 3600),
    )?;

    eprintln!("== creating {} products through ordergraph", cfg.products);
    let ids = seed(&http, &og.url, &admin, cfg.products).await?;
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    wait_for_view(&db, cfg.products).await?;
    let table_mib = table_size_mib(&db).await?;

    let peer = Server::postgraphile(url, &pool).await?;
    let ids = Arc::new(ids);
    let targets: [(&'static str, &Server, &'static str, &'static str); 2] = [
        ("ordergraph", &og, OG_LIST, OG_ONE),
        ("PostGraphile 5", &peer, PEER_LIST, PEER_ONE),
    ];
    // Both answer the same first page (the same SKUs in the same order) before any timing.
    let first = |v: &Value, list: &str| -> Vec<String> {
        let nodes: Vec<&Value> = if list == OG_LIST {
            v["data"]["products"]["edges"]
                .as_array()
                .map(|e| e.iter().map(|e| &e["node"]).collect())
                .unwrap_or_default()
        } else {
            v["data"]["allCatalogViews"]["nodes"]
                .as_array()
                .map(|n| n.iter().collect())
                .unwrap_or_default()
        };
        nodes
            .iter()
            .map(|n| n["sku"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let a = post(&http, &og.url, OG_LIST, json!({})).await?;
    let b = post(&http, &peer.url, PEER_LIST, json!({})).await?;
    if first(&a, OG_LIST) != first(&b, PEER_LIST) || first(&a, OG_LIST).len() != 20 {
        bail!("the two servers do not answer the same first page:\n{a}\n{b}");
    }

    let mut phases = Vec::new();
    for round in 1..=cfg.rounds {
        for (what, pick) in [("list page", 0), ("single product", 1)] {
            // Alternate who goes first from one round to the next.
            let order: Vec<usize> = if round % 2 == 1 {
                vec![0, 1]
            } else {
                vec![1, 0]
            };
            for i in order {
                let (server, target, list, one) = targets[i];
                let query = if pick == 0 { list } else { one };
                eprintln!("== round {round}: {server}, {what}");
                let phase = load(
                    &http,
                    &target.url,
                    query,
                    pick == 1,
                    ids.clone(),
                    cfg,
                    server,
                    what,
                    round,
                )
                .await?;
                phases.push(phase);
            }
        }
    }
    eprintln!("== ordergraph, search");
    let search = load(
        &http,
        &og.url,
        OG_SEARCH,
        false,
        ids.clone(),
        cfg,
        "ordergraph",
        "search",
        1,
    )
    .await?;

    let og_mem = og.memory();
    let peer_mem = peer.memory();
    Ok(report(cfg, &phases, &search, og_mem, peer_mem, table_mib))
}

/// `clients` tasks send `query` back to back for `secs` seconds after a one-second warm-up.
#[allow(clippy::too_many_arguments)]
async fn load(
    http: &reqwest::Client,
    url: &str,
    query: &'static str,
    by_id: bool,
    ids: Arc<Vec<String>>,
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
                let mut n: u64 = 0;
                let mut seed = client as u64 * 0x9E37_79B9_7F4A_7C15 + 1;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    let vars = if by_id {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        json!({ "id": ids[(seed % ids.len() as u64) as usize] })
                    } else if query == OG_SEARCH {
                        json!({ "q": format!("{:04}", n % 2000) })
                    } else {
                        json!({})
                    };
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
                    n += 1;
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

/// Creates `n` products, 32 at a time; returns their ids.
async fn seed(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (http, url, token, next) =
                (http.clone(), url.to_owned(), token.to_owned(), next.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= n {
                        return Ok::<_, anyhow::Error>(ids);
                    }
                    let v: Value = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({ "query": CREATE, "variables": { "sku": format!("BR-{i:07}") } }))
                        .send()
                        .await?
                        .json()
                        .await?;
                    match v["data"]["createProduct"]["product"]["id"].as_str() {
                        Some(id) => ids.push(id.to_owned()),
                        None => bail!("createProduct failed: {v}"),
                    }
                }
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.extend(t.await??);
    }
    Ok(ids)
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
            bail!("the catalog view holds {count} of {n} products after 120 s");
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_ordergraph"))
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
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
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

fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(admin_url).context("BENCH_DATABASE_URL is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

fn report(
    cfg: &Config,
    phases: &[Phase],
    search: &Phase,
    og_mem: (f64, f64),
    peer_mem: (f64, f64),
    table_mib: f64,
) -> String {
    let mut out = format!(
        "### Reads: ordergraph beside PostGraphile 5 on the same `catalog_view`\n\n\
         {} products ({table_mib:.1} MiB with indexes), {} clients, {} s per phase after 1 s of \
         warm-up, {} rounds (the order of the two servers alternates), a pool of {} \
         connections each. Requests/s, p50 / p99 ms, errors.\n\n\
         | query | round | ordergraph | PostGraphile 5 | ratio |\n|---|---:|---|---|---:|\n",
        cfg.products, cfg.clients, cfg.secs, cfg.rounds, cfg.clients,
    );
    let cell = |p: &Phase| {
        format!(
            "{:.0} / {:.2} / {:.2} / {}",
            p.rate(),
            p.ms(0.5),
            p.ms(0.99),
            p.errors
        )
    };
    for what in ["list page", "single product"] {
        for round in 1..=cfg.rounds {
            let find = |server: &str| {
                phases
                    .iter()
                    .find(|p| p.what == what && p.round == round && p.server == server)
            };
            if let (Some(a), Some(b)) = (find("ordergraph"), find("PostGraphile 5")) {
                out.push_str(&format!(
                    "| {what} | {round} | {} | {} | {:.2}× |\n",
                    cell(a),
                    cell(b),
                    a.rate() / b.rate()
                ));
            }
        }
    }
    out.push_str(&format!(
        "\nordergraph `search` (a SKU fragment, first 20): {}.\n\n\
         Memory after the run (resident / peak, MiB): ordergraph {:.0} / {:.0}, \
         PostGraphile 5 (Node.js 22) {:.0} / {:.0}.\n",
        cell(search),
        og_mem.0,
        og_mem.1,
        peer_mem.0,
        peer_mem.1
    ));
    out
}
