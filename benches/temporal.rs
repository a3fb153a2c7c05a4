//! Temporal query benchmark: `productAsOf` latency on a product whose stream has 10 000
//! events, with snapshots (every 100 events, the default: the latest snapshot plus at
//! most 99 events are folded) and, as the baseline in the same run, without them (every
//! snapshot deleted: all 10 000 events are read and folded), on SQLite and on PostgreSQL.
//!
//! `cargo bench --bench temporal` (env: BENCH_EVENTS=10000, BENCH_QUERIES=200,
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test). Results go to stdout and
//! `target/bench-temporal.md`.
#![allow(clippy::unwrap_used)]

/// The GraphQL client of the process benchmarks (`gql`), shared rather than copied.
#[path = "support/replicas.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ordergraph::auth::{Role, mint_token};
use ordergraph::config::Settings;
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::oneshot;

use support::gql;

/// The allocator the `ordergraph` binary ships with (ADR 0018): the service measured here
/// runs in this process, so it allocates as it does in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "temporal-bench-secret-not-for-production";
const CREATE: &str = "mutation { createProduct(input: {sku: \"TEMPORAL-1\", name: \"Bench\", price: \"1.00\", initialStock: 1000000}) { product { id } } }";
const ADJUST: &str =
    "mutation($id: UUID!) { adjustStock(input: {productId: $id, delta: -1}) { position } }";
const AS_OF: &str =
    "query($id: UUID!, $at: DateTime!) { productAsOf(id: $id, at: $at) { stock version } }";

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

struct Measured {
    fill_secs: f64,
    with: Histogram<u64>,
    without: Histogram<u64>,
}

async fn bench(
    database_url: &str,
    data_dir: &Path,
    events: usize,
    queries: usize,
) -> anyhow::Result<Measured> {
    let settings = Settings {
        bind: "127.0.0.1:0".parse()?,
        database_url: Some(database_url.to_owned()),
        data_dir: data_dir.to_path_buf(),
        jwt_secret: Some(SecretString::from(SECRET.to_owned())),
        snapshot_every: 100,
        ..Settings::default()
    };
    let app = ordergraph::Application::build(settings).await?;
    let url = format!("http://{}/graphql", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let admin = mint_token(SECRET, "admin", Role::Admin, Duration::from_secs(3600))?;
    let http = reqwest::Client::new();
    let id = gql(&http, &url, &admin, CREATE, json!({})).await["createProduct"]["product"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The stream: `events` - 1 stock adjustments after its creation, 8 writers.
    let fill = Instant::now();
    let per = (events - 1).div_ceil(8);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (http, url, admin, id) = (http.clone(), url.clone(), admin.clone(), id.clone());
            let n = per.min((events - 1).saturating_sub(w * per));
            tokio::spawn(async move {
                for _ in 0..n {
                    gql(&http, &url, &admin, ADJUST, json!({ "id": id })).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await?;
    }
    let fill_secs = fill.elapsed().as_secs_f64();

    let at = chrono::Utc::now().to_rfc3339();
    let measure = |expect_version: i64| {
        let (http, url, admin, id, at) = (
            http.clone(),
            url.clone(),
            admin.clone(),
            id.clone(),
            at.clone(),
        );
        async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            // Warm-up.
            gql(&http, &url, &admin, AS_OF, json!({ "id": id, "at": at })).await;
            for _ in 0..queries {
                let t = Instant::now();
                let data = gql(&http, &url, &admin, AS_OF, json!({ "id": id, "at": at })).await;
                h.record(t.elapsed().as_micros() as u64).unwrap();
                assert_eq!(data["productAsOf"]["version"], expect_version);
            }
            h
        }
    };
    let with = measure(events as i64).await;
    let db = sea_orm::Database::connect(database_url).await?;
    db.execute_unprepared("DELETE FROM snapshots").await?;
    let without = measure(events as i64).await;

    let _ = stop.send(());
    handle.await??;
    Ok(Measured {
        fill_secs,
        with,
        without,
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn section(backend: &str, m: &Measured, events: usize, queries: usize) -> String {
    let row = |label: &str, h: &Histogram<u64>| {
        format!(
            "| {label} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |\n",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            h.mean() / 1000.0,
            ms(h.max()),
        )
    };
    format!(
        "## {backend}\n\n{events} events in the stream (written in {:.1} s over HTTP), {queries} sequential `productAsOf` queries at the latest moment each.\n\n| productAsOf | p50 | p99 | mean | max |\n|---|---:|---:|---:|---:|\n{}{}\nspeed-up at p50: {:.1}×\n\n",
        m.fill_secs,
        row("with snapshots (every 100 events)", &m.with),
        row("without snapshots (baseline: the whole stream)", &m.without),
        m.without.value_at_quantile(0.5) as f64 / m.with.value_at_quantile(0.5).max(1) as f64,
    )
}

async fn run() -> anyhow::Result<()> {
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let queries: usize = std::env::var("BENCH_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut report = format!(
        "# ordergraph temporal query benchmark\n\n- date: {}\n- command: `cargo bench --bench temporal`\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let dir = tempfile::tempdir()?;
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let m = bench(&sqlite, dir.path(), events, queries).await?;
    report.push_str(&section("SQLite", &m, events, queries));

    let admin_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match sea_orm::Database::connect(&admin_url).await {
        Ok(admin) => {
            let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await?;
            let mut url = reqwest::Url::parse(&admin_url)?;
            url.set_path(&format!("/{name}"));
            let pg_dir = tempfile::tempdir()?;
            let result = bench(url.as_str(), pg_dir.path(), events, queries).await;
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await?;
            report.push_str(&section("PostgreSQL", &result?, events, queries));
        }
        Err(e) => report.push_str(&format!("## PostgreSQL\n\nskipped: {e}\n")),
    }
    println!("{report}");
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::write(target.join("bench-temporal.md"), report)?;
    Ok(())
}
