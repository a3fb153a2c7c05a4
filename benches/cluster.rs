//! Cluster benchmark (issue 13, ADR 0012 and 0013): real server processes (the release
//! binary) on one PostgreSQL database, each figure beside its baseline in the same run:
//!
//! 1. **Failover**: from `kill -9` of the replica folding the catalog to a stock change
//!    made through a survivor being read back (the views advance again), over
//!    `BENCH_KILLS` kills (a replacement replica is started after each); the same for
//!    `SIGSTOP` (bounded by the lease).
//! 2. **Change delivery**: a stock change made through a third replica, to a
//!    `productUpdated` subscriber on the replica folding the catalog and to one on a
//!    replica that does not: p50/p99 of each, from the mutation's send.
//! 3. **Checkouts**: orders confirmed per second at 32 clients, K = 8 saga partitions over
//!    3 replicas beside one replica with one saga task (K = 1, as before the cluster), and
//!    beside `adjustStock`'s rate in the same setting.
//! 4. **Mutations**: `adjustStock` per second at 32 clients spread over 3 replicas beside
//!    the same on 1 replica.
//!
//! `cargo bench --bench cluster` (env: BENCH_DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/test, on which a database per part is created and
//! dropped; BENCH_SECS=5; BENCH_KILLS=10; BENCH_CLIENTS=32; BENCH_PARTS, a list of
//! `failover`, `delivery`, `throughput`, default all; BENCH_ROUNDS and BENCH_POOL for the
//! throughput part; BENCH_ORDERGRAPH_BIN, another build of the server to run;
//! BENCH_PHASES, to print when each load phase starts and ends, for a profile;
//! BENCH_VIEWS_TOGETHER, to start every replica but the first with `ORDERGRAPH_ROLES=api,
//! saga,publisher`, so that the first holds every view's projector; BENCH_OTHERS_ROLES,
//! the same with any `ORDERGRAPH_ROLES`, e.g. `api` for a first replica holding every
//! unit; BENCH_WRITE_TO_FIRST, to send every client of the throughput part to the first
//! replica, the others only listening). Results go to stdout and `target/bench-cluster.md`.
#![allow(clippy::unwrap_used)]

#[path = "support/replicas.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ordergraph::auth::{Role, mint_token};
use serde_json::json;

use support::*;

const ADJUST: &str =
    "mutation($id: UUID!) { adjustStock(input: {productId: $id, delta: 1}) { position } }";
const ADD: &str =
    "mutation($id: UUID!) { addToCart(input: {productId: $id, quantity: 1}) { position } }";
const CHECKOUT: &str = "mutation { checkout(input: {paymentToken: \"tok_visa\", shippingAddress: \"1 Bench Road\"}) { order { id } } }";
const ORDER: &str = "query($id: UUID!) { order(id: $id) { status } }";
const PRODUCTS: usize = 64;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// Part 1: failover after `kill -9` (or `SIGSTOP`) of the catalog's projector's holder.
async fn failover(admin_url: &str, kills: usize, freeze: bool) -> Histogram<u64> {
    let (db, name) = fresh_database(admin_url).await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut replicas = Vec::new();
    for i in 0..3 {
        replicas.push(Replica::start(&db, dir.path(), &format!("r{i}"), &[]).await);
    }
    let product = products(&http, &replicas[0], 1).await.remove(0);
    let token = admin_token();
    let mut h = histogram();
    let mut next = 3;
    for _ in 0..kills {
        let alive: Vec<usize> = (0..replicas.len())
            .filter(|&i| replicas[i].child.id().is_some())
            .collect();
        let holder = holder_of(&http, &replicas[alive[0]], "projector:catalog").await;
        let victim = replicas.iter().position(|r| r.node == holder).unwrap();
        let survivor = *alive.iter().find(|&&i| i != victim).unwrap();
        let t = Instant::now();
        if freeze {
            replicas[victim].signal("-STOP");
        } else {
            replicas[victim].kill9().await;
        }
        gql(
            &http,
            &replicas[survivor].url,
            &token,
            ADJUST,
            json!({ "id": product }),
        )
        .await;
        h.record(t.elapsed().as_micros() as u64).unwrap();
        if freeze {
            replicas[victim].signal("-CONT");
        } else {
            replicas.push(Replica::start(&db, dir.path(), &format!("r{next}"), &[]).await);
            next += 1;
        }
        // Let the cluster settle (every unit held, shares balanced) before the next fault.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    drop(replicas);
    drop_database(admin_url, &name).await;
    h
}

/// Part 2: change delivery to a subscriber on the folding replica and on another one.
async fn delivery(admin_url: &str, rounds: usize) -> (Histogram<u64>, Histogram<u64>) {
    let (db, name) = fresh_database(admin_url).await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut replicas = Vec::new();
    for i in 0..3 {
        replicas.push(Replica::start(&db, dir.path(), &format!("r{i}"), &[]).await);
    }
    let product = products(&http, &replicas[0], 1).await.remove(0);
    let holder = holder_of(&http, &replicas[0], "projector:catalog").await;
    let folding = replicas.iter().position(|r| r.node == holder).unwrap();
    let other = (folding + 1) % 3;
    let writer = (folding + 2) % 3;
    let mut at_folding = watch(&replicas[folding], &product).await;
    let mut at_other = watch(&replicas[other], &product).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = admin_token();
    let (mut near, mut far) = (histogram(), histogram());
    for _ in 0..rounds {
        let t = Instant::now();
        gql(
            &http,
            &replicas[writer].url,
            &token,
            ADJUST,
            json!({ "id": product }),
        )
        .await;
        let a = at_folding.recv().await.unwrap();
        let b = at_other.recv().await.unwrap();
        near.record((a - t).as_micros() as u64).unwrap();
        far.record((b - t).as_micros() as u64).unwrap();
    }
    drop(replicas);
    drop_database(admin_url, &name).await;
    (near, far)
}

/// The replica client `c` of the throughput part talks to: round-robin over `n`, or
/// the first with `BENCH_WRITE_TO_FIRST`.
fn client_replica(c: usize, n: usize) -> usize {
    if std::env::var_os("BENCH_WRITE_TO_FIRST").is_some() {
        0
    } else {
        c % n
    }
}

/// `adjustStock` at `clients` clients spread over `replicas` for `secs`: ops/s.
async fn adjust_load(replicas: &[Replica], products: &[String], clients: usize, secs: u64) -> f64 {
    let token = admin_token();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let url = replicas[client_replica(c, replicas.len())].url.clone();
            let (token, products) = (token.clone(), products.to_vec());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut n, mut i) = (0u64, c);
                while Instant::now() < deadline {
                    gql(
                        &http,
                        &url,
                        &token,
                        ADJUST,
                        json!({ "id": products[i % products.len()] }),
                    )
                    .await;
                    n += 1;
                    i += clients;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Checkouts at `clients` clients over `replicas` for `secs`, each client polling its
/// order until CONFIRMED: orders confirmed per second.
async fn checkout_load(
    replicas: &[Replica],
    products: &[String],
    clients: usize,
    secs: u64,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let url = replicas[client_replica(c, replicas.len())].url.clone();
            let products = products.to_vec();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let me = mint_token(
                    SECRET,
                    &format!("shopper-{c}"),
                    Role::Customer,
                    Duration::from_secs(3600),
                )
                .unwrap();
                let (mut n, mut i) = (0u64, c);
                while Instant::now() < deadline {
                    gql(
                        &http,
                        &url,
                        &me,
                        ADD,
                        json!({ "id": products[i % products.len()] }),
                    )
                    .await;
                    i += clients;
                    let placed = gql(&http, &url, &me, CHECKOUT, json!({})).await;
                    let id = placed["checkout"]["order"]["id"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    let mut pause = Duration::from_millis(1);
                    loop {
                        let o = gql(&http, &url, &me, ORDER, json!({ "id": id })).await;
                        if o["order"]["status"] == "CONFIRMED" {
                            break;
                        }
                        assert_ne!(o["order"]["status"], "REJECTED");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(8));
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// With `BENCH_PHASES` set, says on stderr when a load phase starts or ends, in seconds
/// of the wall clock: a system-wide profile (`perf record -k CLOCK_REALTIME`) is then cut
/// into phases with `perf report --time`.
fn phase(what: &str, edge: &str) {
    if std::env::var_os("BENCH_PHASES").is_some() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!("PHASE {what} {edge} {:.6}", now.as_secs_f64());
    }
}

/// Parts 3 and 4 on `n` replicas with `k` saga partitions: (adjustStock/s, confirmed/s).
async fn throughput(
    admin_url: &str,
    n: usize,
    k: u16,
    pool: u32,
    clients: usize,
    secs: u64,
) -> (f64, f64) {
    let (db, name) = fresh_database(admin_url).await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let env = [
        ("ORDERGRAPH_SAGA_PARTITIONS", k.to_string()),
        ("ORDERGRAPH_DB_MAX_CONNECTIONS", pool.to_string()),
    ];
    // The roles of every replica but the first. All the views on the first:
    // they share its reads of the log, as on one.
    let others_roles = std::env::var("BENCH_OTHERS_ROLES").ok().or_else(|| {
        std::env::var_os("BENCH_VIEWS_TOGETHER").map(|_| "api,saga,publisher".to_owned())
    });
    let mut replicas = Vec::new();
    for i in 0..n {
        let mut env = env.to_vec();
        if let Some(roles) = others_roles.as_ref().filter(|_| i > 0) {
            env.push(("ORDERGRAPH_ROLES", roles.clone()));
        }
        replicas.push(Replica::start(&db, dir.path(), &format!("r{i}"), &env).await);
    }
    holder_of(&http, &replicas[0], "projector:catalog").await;
    let products = products(&http, &replicas[0], PRODUCTS).await;
    phase(&format!("adjust {n} pool {pool}"), "start");
    let adjust = adjust_load(&replicas, &products, clients, secs).await;
    phase(&format!("adjust {n} pool {pool}"), "end");
    phase(&format!("checkout {n} pool {pool}"), "start");
    let confirmed = checkout_load(&replicas, &products, clients, secs).await;
    phase(&format!("checkout {n} pool {pool}"), "end");
    drop(replicas);
    drop_database(admin_url, &name).await;
    (adjust, confirmed)
}

/// The throughput part, `BENCH_ROUNDS` rounds (default 3; a single run spreads by about
/// ±0.1 in its ratios), each running in turn: one replica with the default pool of 16
/// connections and one saga task; three replicas with K = 8 saga partitions and the
/// default pool each (48 connections in all); the same with the pools split
/// (`BENCH_POOL`, default 5 each: about the one replica's 16 in all, as README advises).
async fn throughput_rounds(admin_url: &str, clients: usize, secs: u64) -> String {
    const DEFAULT_POOL: u32 = 16;
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let split: u32 = env_or("BENCH_POOL", DEFAULT_POOL / 3);
    let mut rows = String::new();
    let mut ratios: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    let mut printed = 0;
    for round in 1..=rounds {
        let one = throughput(admin_url, 1, 1, DEFAULT_POOL, clients, secs).await;
        rows.push_str(&format!(
            "| {round} | 1 replica, pool {DEFAULT_POOL}, 1 saga task (baseline) | {:.0} | {:.1} | {:.1} % | | |\n",
            one.0,
            one.1,
            100.0 * one.1 / one.0
        ));
        for (i, pool) in [DEFAULT_POOL, split].into_iter().enumerate() {
            let three = throughput(admin_url, 3, 8, pool, clients, secs).await;
            let ratio = (three.0 / one.0, three.1 / one.1);
            ratios[i].push(ratio);
            rows.push_str(&format!(
                "| {round} | 3 replicas, pool {pool} each, K = 8 | {:.0} | {:.1} | {:.1} % | {:.2}× | {:.2}× |\n",
                three.0,
                three.1,
                100.0 * three.1 / three.0,
                ratio.0,
                ratio.1
            ));
        }
        eprint!("{}", &rows[printed..]);
        printed = rows.len();
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let half = v.len() / 2;
        if v.len().is_multiple_of(2) {
            (v[half - 1] + v[half]) / 2.0
        } else {
            v[half]
        }
    };
    let summary: Vec<String> = [DEFAULT_POOL, split]
        .iter()
        .zip(ratios)
        .map(|(pool, r)| {
            let writes = median(r.iter().map(|x| x.0).collect());
            let orders = median(r.iter().map(|x| x.1).collect());
            format!("- 3 replicas, pool {pool} each: median 3 ÷ 1 **{writes:.2}×** adjustStock, **{orders:.2}×** confirmed orders\n")
        })
        .collect();
    format!(
        "## Throughput ({clients} clients, {rounds} rounds)\n\n| round | setting | adjustStock/s | checkouts confirmed/s | confirmed ÷ adjustStock | 3 ÷ 1 adjustStock | 3 ÷ 1 confirmed |\n|---|---|---:|---:|---:|---:|---:|\n{rows}\n{}\n",
        summary.concat()
    )
}

async fn run() -> anyhow::Result<()> {
    let admin_url: String = env_or(
        "BENCH_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test".to_owned(),
    );
    let secs: u64 = env_or("BENCH_SECS", 5);
    let kills: usize = env_or("BENCH_KILLS", 10);
    let clients: usize = env_or("BENCH_CLIENTS", 32);
    let parts: String = env_or("BENCH_PARTS", "failover,delivery,throughput".to_owned());
    let mut report = format!(
        "# ordergraph cluster benchmark\n\n- date: {}\n- command: `cargo bench --bench cluster` ({kills} faults per kind, {clients} clients, {secs} s per load phase), release binary, one PostgreSQL; a fresh database per part\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );

    if parts.contains("failover") {
        let killed = failover(&admin_url, kills, false).await;
        let frozen = failover(&admin_url, kills, true).await;
        report.push_str(&format!(
        "## Failover (3 replicas; lease 3 s)\n\nFrom the fault on the replica folding the catalog to a stock change through a survivor read back.\n\n| fault | n | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n| kill -9 | {} | {:.0} | {:.0} | {:.0} |\n| SIGSTOP | {} | {:.0} | {:.0} | {:.0} |\n\n",
        killed.len(),
        ms(killed.value_at_quantile(0.5)),
        ms(killed.value_at_quantile(0.99)),
        ms(killed.max()),
        frozen.len(),
        ms(frozen.value_at_quantile(0.5)),
        ms(frozen.value_at_quantile(0.99)),
        ms(frozen.max()),
    ));
        eprintln!("{report}");
    }

    if parts.contains("delivery") {
        let (near, far) = delivery(&admin_url, 300).await;
        report.push_str(&format!(
        "## Change delivery (3 replicas)\n\nA stock change through a third replica, from the mutation's send to the `productUpdated` frame.\n\n| subscriber | n | p50 ms | p99 ms |\n|---|---:|---:|---:|\n| on the replica folding the catalog (baseline) | {} | {:.2} | {:.2} |\n| on another replica | {} | {:.2} | {:.2} |\n\n",
        near.len(),
        ms(near.value_at_quantile(0.5)),
        ms(near.value_at_quantile(0.99)),
        far.len(),
        ms(far.value_at_quantile(0.5)),
        ms(far.value_at_quantile(0.99)),
    ));
        eprintln!("{report}");
    }

    if parts.contains("throughput") {
        report.push_str(&throughput_rounds(&admin_url, clients, secs).await);
    }
    println!("{report}");
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::write(target.join("bench-cluster.md"), report)?;
    Ok(())
}
