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
//! dropped; BENCH_SECS=5; BENCH_KILLS=10; BENCH_CLIENTS=32). Results go to stdout and
//! `target/bench-cluster.md`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use ordergraph::auth::{Role, mint_token};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;

const SECRET: &str = "cluster-bench-secret-not-for-production";
const CREATE: &str = "mutation($sku: String!) { createProduct(input: {sku: $sku, name: \"Bench\", price: \"4.20\", initialStock: 1000000}) { product { id } } }";
const ADJUST: &str =
    "mutation($id: UUID!) { adjustStock(input: {productId: $id, delta: 1}) { position } }";
const ADD: &str =
    "mutation($id: UUID!) { addToCart(input: {productId: $id, quantity: 1}) { position } }";
const CHECKOUT: &str = "mutation { checkout(input: {paymentToken: \"tok_visa\", shippingAddress: \"1 Bench Road\"}) { order { id } } }";
const ORDER: &str = "query($id: UUID!) { order(id: $id) { status } }";
const CLUSTER: &str = "{ cluster { units { name holder } } }";
const WATCH: &str = "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { stock } }";
const PRODUCTS: usize = 64;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn admin_token() -> String {
    mint_token(
        SECRET,
        "bench-admin",
        Role::Admin,
        Duration::from_secs(7200),
    )
    .unwrap()
}

/// One server process.
struct Replica {
    node: String,
    url: String,
    child: Child,
}

impl Replica {
    async fn start(db: &str, dir: &Path, node: &str, env: &[(&str, String)]) -> Replica {
        let data = dir.join(node);
        std::fs::create_dir_all(&data).unwrap();
        let log = dir.join(format!("{node}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordergraph"));
        command
            .arg("serve")
            .env("DATABASE_URL", db)
            .env("ORDERGRAPH_BIND", "127.0.0.1:0")
            .env("ORDERGRAPH_JWT_SECRET", SECRET)
            .env("ORDERGRAPH_NODE_ID", node)
            .env("ORDERGRAPH_DATA_DIR", &data)
            .env("ORDERGRAPH_DB_MAX_CONNECTIONS", "16")
            .env("ORDERGRAPH_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn,ordergraph=info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        let started = Instant::now();
        let url = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(at) = text.find("serving GraphQL on ") {
                let rest = &text[at + "serving GraphQL on ".len()..];
                let end = rest.find("/graphql").unwrap();
                break format!("{}/graphql", &rest[..end]);
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{node} did not start:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Replica {
            node: node.to_owned(),
            url,
            child,
        }
    }

    async fn kill9(&mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
    }
}

async fn gql(http: &reqwest::Client, url: &str, token: &str, query: &str, vars: Value) -> Value {
    let resp: Value = http
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(resp.get("errors").is_none(), "{query}: {resp}");
    resp["data"].clone()
}

/// A fresh database on the bench server (dropped by [`drop_database`]).
async fn fresh_database(admin_url: &str) -> (String, String) {
    let admin = sea_orm::Database::connect(admin_url).await.unwrap();
    let name = format!("bench_cluster_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let mut url = reqwest::Url::parse(admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    (url.to_string(), name)
}

async fn drop_database(admin_url: &str, name: &str) {
    let admin = sea_orm::Database::connect(admin_url).await.unwrap();
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}

/// The holder of `unit`, once every unit is held (as `replica` sees the cluster).
async fn holder_of(http: &reqwest::Client, replica: &Replica, unit: &str) -> String {
    let token = admin_token();
    loop {
        let seen = gql(http, &replica.url, &token, CLUSTER, json!({})).await;
        let units = seen["cluster"]["units"].as_array().unwrap();
        if units.iter().all(|u| u["holder"].is_string()) {
            let u = units.iter().find(|u| u["name"] == unit).unwrap();
            return u["holder"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn products(http: &reqwest::Client, replica: &Replica, n: usize) -> Vec<String> {
    let token = admin_token();
    let mut out = Vec::new();
    for i in 0..n {
        let d = gql(
            http,
            &replica.url,
            &token,
            CREATE,
            json!({ "sku": format!("BENCH-{i}") }),
        )
        .await;
        out.push(
            d["createProduct"]["product"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    out
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

/// A `productUpdated` subscriber on `replica`: the instant of each frame after the first.
async fn watch(replica: &Replica, product: &str) -> tokio::sync::mpsc::UnboundedReceiver<Instant> {
    let url = replica.url.replacen("http://", "ws://", 1);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    for m in [
        json!({ "type": "connection_init" }),
        json!({ "type": "subscribe", "id": "w", "payload": { "query": WATCH, "variables": { "ids": [product] } } }),
    ] {
        socket
            .send(Message::Text(m.to_string().into()))
            .await
            .unwrap();
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut first = true;
        while let Some(Ok(frame)) = socket.next().await {
            let at = Instant::now();
            if let Message::Text(text) = frame {
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                if v["type"] == "next" {
                    if !first && tx.send(at).is_err() {
                        return;
                    }
                    first = false;
                }
            }
        }
    });
    rx
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

/// `adjustStock` at `clients` clients spread over `replicas` for `secs`: ops/s.
async fn adjust_load(replicas: &[Replica], products: &[String], clients: usize, secs: u64) -> f64 {
    let token = admin_token();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let url = replicas[c % replicas.len()].url.clone();
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
            let url = replicas[c % replicas.len()].url.clone();
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

/// Parts 3 and 4 on `n` replicas with `k` saga partitions: (adjustStock/s, confirmed/s).
async fn throughput(admin_url: &str, n: usize, k: u16, clients: usize, secs: u64) -> (f64, f64) {
    let (db, name) = fresh_database(admin_url).await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let env = [("ORDERGRAPH_SAGA_PARTITIONS", k.to_string())];
    let mut replicas = Vec::new();
    for i in 0..n {
        replicas.push(Replica::start(&db, dir.path(), &format!("r{i}"), &env).await);
    }
    holder_of(&http, &replicas[0], "projector:catalog").await;
    let products = products(&http, &replicas[0], PRODUCTS).await;
    let adjust = adjust_load(&replicas, &products, clients, secs).await;
    let confirmed = checkout_load(&replicas, &products, clients, secs).await;
    drop(replicas);
    drop_database(admin_url, &name).await;
    (adjust, confirmed)
}

async fn run() -> anyhow::Result<()> {
    let admin_url: String = env_or(
        "BENCH_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test".to_owned(),
    );
    let secs: u64 = env_or("BENCH_SECS", 5);
    let kills: usize = env_or("BENCH_KILLS", 10);
    let clients: usize = env_or("BENCH_CLIENTS", 32);
    let mut report = format!(
        "# ordergraph cluster benchmark\n\n- date: {}\n- command: `cargo bench --bench cluster` ({kills} faults per kind, {clients} clients, {secs} s per load phase), release binary, one PostgreSQL; a fresh database per part\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );

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

    let (one_adjust, one_confirmed) = throughput(&admin_url, 1, 1, clients, secs).await;
    let (three_adjust, three_confirmed) = throughput(&admin_url, 3, 8, clients, secs).await;
    report.push_str(&format!(
        "## Throughput ({clients} clients)\n\n| setting | adjustStock/s | checkouts confirmed/s | confirmed ÷ adjustStock |\n|---|---:|---:|---:|\n| 1 replica, 1 saga task (baseline) | {one_adjust:.0} | {one_confirmed:.1} | {:.1} % |\n| 3 replicas, K = 8 saga partitions | {three_adjust:.0} | {three_confirmed:.1} | {:.1} % |\n| ratio 3 ÷ 1 | {:.2}× | {:.2}× | |\n\n",
        100.0 * one_confirmed / one_adjust,
        100.0 * three_confirmed / three_adjust,
        three_adjust / one_adjust,
        three_confirmed / one_confirmed,
    ));
    println!("{report}");
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::write(target.join("bench-cluster.md"), report)?;
    Ok(())
}
