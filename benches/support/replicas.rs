//! What the process benchmarks share (`benches/cluster.rs`, `benches/bus.rs`; and
//! `benches/temporal.rs` takes its GraphQL client): real server processes of the release
//! binary on fresh PostgreSQL databases, a GraphQL client, a `productUpdated` watcher and
//! the histogram helpers. Included by each with `#[path]`
//! (a file of its own directly in `benches/` would be taken for a benchmark).
#![allow(dead_code)]

use std::path::Path;
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

pub const SECRET: &str = "bench-secret-not-for-production";
pub const CREATE: &str = "mutation($sku: String!) { createProduct(input: {sku: $sku, name: \"Bench\", price: \"4.20\", initialStock: 1000000}) { product { id } } }";
pub const WATCH: &str = "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { stock } }";
const CLUSTER: &str = "{ cluster { units { name holder } } }";

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn admin_token() -> String {
    mint_token(
        SECRET,
        "bench-admin",
        Role::Admin,
        Duration::from_secs(7200),
    )
    .unwrap()
}

/// Pins process `pid` (all its threads) and, with `children`, every process it has
/// started so far to the CPUs of `cpus` (a `taskset` list); what it starts later inherits
/// the pinning.
pub fn pin(pid: u32, cpus: &str, children: bool) {
    let mut pids = vec![pid.to_string()];
    if children {
        let out = std::process::Command::new("pgrep")
            .args(["-P", &pid.to_string()])
            .output()
            .unwrap();
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
    }
    for pid in pids {
        let out = std::process::Command::new("taskset")
            .args(["-a", "-pc", cpus, &pid])
            .output()
            .unwrap();
        // A child may have ended meanwhile.
        if !out.status.success() {
            eprintln!(
                "taskset {cpus} {pid}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Pins the calling thread to the CPUs of `cpus`.
pub fn pin_this_thread(cpus: &str) {
    let me = std::fs::read_link("/proc/thread-self").unwrap();
    let tid = me.file_name().unwrap().to_string_lossy().into_owned();
    let status = std::process::Command::new("taskset")
        .args(["-pc", cpus, &tid])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "taskset {cpus} {tid}");
}

/// Runs `work` to its end on a thread of its own (a single-threaded runtime), pinned to
/// `cpus` when given: a load generator kept on one side of the machine.
pub async fn on_cpus<T, F>(cpus: Option<String>, work: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    let thread = std::thread::spawn(move || {
        if let Some(cpus) = &cpus {
            pin_this_thread(cpus);
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work())
    });
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap()
}

/// One server process.
pub struct Replica {
    pub node: String,
    pub url: String,
    pub child: Child,
}

impl Replica {
    pub async fn start(db: &str, dir: &Path, node: &str, env: &[(&str, String)]) -> Replica {
        Self::start_on(None, db, dir, node, env).await
    }

    /// [`Replica::start`] on the CPUs of `cpus` only (a `taskset` list, e.g. `"0"`).
    pub async fn start_on(
        cpus: Option<&str>,
        db: &str,
        dir: &Path,
        node: &str,
        env: &[(&str, String)],
    ) -> Replica {
        let data = dir.join(node);
        std::fs::create_dir_all(&data).unwrap();
        let log = dir.join(format!("{node}.log"));
        let out = std::fs::File::create(&log).unwrap();
        // BENCH_ORDERGRAPH_BIN: another build of the binary (an earlier commit's, to
        // measure a change against it in the same hour), as in benches/reads.rs.
        let bin = std::env::var("BENCH_ORDERGRAPH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ordergraph").to_owned());
        let mut command = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus, &bin]);
                c
            }
            None => Command::new(&bin),
        };
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

    pub async fn kill9(&mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
    }
}

pub async fn gql(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    vars: Value,
) -> Value {
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
pub async fn fresh_database(admin_url: &str) -> (String, String) {
    let admin = sea_orm::Database::connect(admin_url).await.unwrap();
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let mut url = reqwest::Url::parse(admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    // Plain TCP, as in benches/reads.rs: sqlx's default (`sslmode=prefer`) takes TLS where
    // the server offers it (Debian's does, with its snake-oil certificate), and then every
    // statement of every replica pays for encryption on both ends: on this 2-core machine
    // one replica's `adjustStock` rate was about a fifth lower with it.
    if !url.query_pairs().any(|(k, _)| k == "sslmode") {
        url.query_pairs_mut().append_pair("sslmode", "disable");
    }
    (url.to_string(), name)
}

pub async fn drop_database(admin_url: &str, name: &str) {
    let admin = sea_orm::Database::connect(admin_url).await.unwrap();
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}

/// The holder of `unit`, once every unit is held (as `replica` sees the cluster).
pub async fn holder_of(http: &reqwest::Client, replica: &Replica, unit: &str) -> String {
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

pub async fn products(http: &reqwest::Client, replica: &Replica, n: usize) -> Vec<String> {
    let token = admin_token();
    let mut out = Vec::new();
    for i in 0..n {
        let d = gql(
            http,
            &replica.url,
            &token,
            CREATE,
            json!({ "sku": format!("BENCH-{i}-{}", uuid::Uuid::new_v4().simple()) }),
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

/// A `productUpdated` subscriber on `replica`: the instant of each frame after the first.
pub async fn watch(
    replica: &Replica,
    product: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<Instant> {
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
