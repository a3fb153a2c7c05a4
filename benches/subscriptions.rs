//! Subscriptions benchmark: with N open subscriptions on one server (N = 1 000 and
//! 10 000), the commit → subscriber latency (p50, p99, max) under a steady `adjustStock`
//! load, and the server's resident memory per idle subscription, beside a baseline from
//! the same run: the same changes pushed from the change bus through a bare axum
//! WebSocket, without GraphQL.
//!
//! The server runs in a child process (this binary again, `SUBS_BENCH_ROLE=graphql`,
//! `=distinct`, `=distinct-awake`, `=unshared` or `=echo`), so its `VmRSS` in `/proc/<pid>/status` is the server's alone. Both roles run
//! the whole service (`Application::build` on SQLite, a fresh database each time). The
//! echo role also serves `/echo` on a second port straight from `Application::change_bus`,
//! shaped like the GraphQL side: one task per connection, a `StreamMap` of one stream per
//! subscription, each with its own bus receiver, filtered by product. A client sends
//! `{"watch": "<product id>", "id": "<n>"}`; the server subscribes to the bus, answers
//! `{"watching": "<n>"}`, then pushes `{"id", "key", "position"}` for every catalog change
//! of that product (the id, as in graphql-transport-ws, lets the client check that every
//! subscription got each change exactly once). It reads no database: the baseline is the
//! bare fan-out. `unshared` is the GraphQL server with `ORDERGRAPH_SHARE_SUBSCRIPTIONS=false`:
//! an execution per subscription, where `graphql` shares one between the identical
//! subscriptions of each product (ADR 0024). `distinct` gives each subscription an
//! operation name of its own, so none is shared, as when each customer watches an order
//! of their own; its executions sleep between changes (ADR 0029), and `distinct-awake`
//! is the same with `ORDERGRAPH_SLEEPING_SUBSCRIPTIONS=false`, `distinct-eager` with
//! `ORDERGRAPH_SUBSCRIPTION_SLEEP_AFTER_MS=0` (each change starts an execution).
//!
//! The parent creates 10 products, reads the server's RSS, opens N subscriptions over
//! N/100 WebSockets (subscription i watches product i mod 10), waits for every
//! subscription's first message (GraphQL: the product's current state; echo: the
//! `watching` answer), idles 2 s and reads the RSS again. Then it sends `adjustStock(+1)`
//! over HTTP at a fixed rate, round-robin over the products (open loop: each on its own
//! task at its scheduled instant), and measures from the instant just before sending a
//! mutation to each subscriber's receipt of its position (one clock, this process; the
//! position is known from the HTTP response, receipts are joined to it afterwards). Each
//! mutation should reach N/10 subscribers; missing, duplicate and misdelivered receipts
//! are counted, and so are positions no subscriber received at all (the GraphQL hub skips
//! a change whose row has already moved on) and subscriptions not left at their
//! product's last position.
//!
//! `cargo bench --bench subscriptions` (env: BENCH_SUBS=1000,10000, BENCH_RATE=50
//! mutations/s, BENCH_SECS=10 measured after BENCH_WARMUP_SECS=2,
//! BENCH_SERVERS=echo,graphql,distinct,distinct-awake; also `unshared`). Results go to stdout and `target/bench-subscriptions.md`.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use futures_util::{SinkExt, Stream, StreamExt};
use hdrhistogram::Histogram;
use ordergraph::auth::{Role, mint_token};
use ordergraph::config::Settings;
use ordergraph::read::bus::{Change, ChangeBus};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The allocator the `ordergraph` binary ships with (ADR 0018): the service measured here
/// runs in this process, so it allocates as it does in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ADJUST: &str =
    "mutation($id: UUID!) { adjustStock(input: {productId: $id, delta: 1}) { position } }";
const CREATE: &str = "mutation($sku: String!) { createProduct(input: {sku: $sku, name: \"Bench\", price: \"1.00\", initialStock: 1000000}) { product { id } } }";
const SUBSCRIBE: &str =
    "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { id stock position } }";
const SECRET: &str = "subscriptions-bench-secret-not-for-production";
/// Products the subscriptions and the mutations spread over.
const PRODUCTS: usize = 10;
/// Subscriptions per WebSocket connection (the server's default cap).
const PER_CONNECTION: usize = 100;
/// Set in the child process: `graphql` or `echo`.
const ROLE_ENV: &str = "SUBS_BENCH_ROLE";
/// The child's data directory (the parent owns it and removes it).
const DIR_ENV: &str = "SUBS_BENCH_DIR";
/// How long setup steps (start, open subscriptions, late deliveries) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After the load, deliveries are waited for until none arrived for this long.
const QUIET: Duration = Duration::from_secs(2);

fn main() -> anyhow::Result<()> {
    let role = std::env::var(ROLE_ENV).ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match role {
        Some(role) => runtime.block_on(serve(&role)),
        None => runtime.block_on(run()),
    }
}

// ---------------------------------------------------------------------------------------
// Server side (the child process)
// ---------------------------------------------------------------------------------------

/// The child: the real service, plus the bare echo endpoint in role `echo`. Prints its
/// ports, then serves until stdin closes.
async fn serve(role: &str) -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::var(DIR_ENV)?);
    let settings = Settings {
        bind: "127.0.0.1:0".parse()?,
        database_url: Some(format!(
            "sqlite://{}?mode=rwc",
            dir.join("bench.db").display()
        )),
        data_dir: dir.clone(),
        jwt_secret: Some(SecretString::from(SECRET.to_owned())),
        max_subscriptions_per_connection: PER_CONNECTION,
        max_connections_per_user: 100_000,
        share_subscriptions: role != "unshared",
        sleeping_subscriptions: role != "distinct-awake",
        subscription_sleep_after_ms: if role == "distinct-eager" { 0 } else { 2_000 },
        ..Settings::default()
    };
    let app = ordergraph::Application::build(settings).await?;
    println!("PORT {}", app.port());
    if role == "echo" {
        println!("ECHO {}", echo_serve(app.change_bus()).await?);
    }
    println!("READY");
    app.run_until_stopped(async {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    })
    .await
}

/// One echo subscription's outgoing messages.
type Pushes = Pin<Box<dyn Stream<Item = String> + Send>>;

async fn echo_serve(bus: Arc<dyn ChangeBus>) -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let router = axum::Router::new()
        .route("/echo", axum::routing::get(echo_upgrade))
        .with_state(bus);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(port)
}

async fn echo_upgrade(
    State(bus): State<Arc<dyn ChangeBus>>,
    ws: WebSocketUpgrade,
) -> axum::response::Response {
    ws.on_upgrade(move |socket| echo_connection(socket, bus))
}

/// One task per connection. `{"watch": "<product id>", "id": "<n>"}` opens subscription
/// `n` with its own bus receiver; every catalog change of that product is then pushed as
/// `{"id", "key", "position"}`.
async fn echo_connection(mut socket: WebSocket, bus: Arc<dyn ChangeBus>) {
    let mut subscriptions: StreamMap<String, Pushes> = StreamMap::new();
    loop {
        tokio::select! {
            message = socket.recv() => {
                let text = match message {
                    Some(Ok(WsMessage::Text(text))) => text,
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Binary(_))) => continue,
                    _ => return,
                };
                let Ok(request) = serde_json::from_str::<Value>(text.as_str()) else {
                    return;
                };
                let (Some(id), Some(key)) = (request["id"].as_str(), request["watch"].as_str())
                else {
                    return;
                };
                let reply = if subscriptions.len() >= PER_CONNECTION {
                    json!({ "id": id, "error": "too many subscriptions" })
                } else {
                    subscriptions.insert(
                        id.to_owned(),
                        echo_pushes(bus.subscribe(), id.to_owned(), key.to_owned()),
                    );
                    json!({ "watching": id })
                };
                if socket.send(WsMessage::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
            Some((_, push)) = subscriptions.next(), if !subscriptions.is_empty() => {
                if socket.send(WsMessage::Text(push.into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn echo_pushes(
    changes: tokio::sync::broadcast::Receiver<Change>,
    id: String,
    key: String,
) -> Pushes {
    Box::pin(BroadcastStream::new(changes).filter_map(move |change| {
        let push = match change {
            Ok(change) if change.projection == "catalog" && change.key == key => Some(
                json!({ "id": id, "key": change.key, "position": change.position }).to_string(),
            ),
            Ok(_) => None,
            // Reported, so that the client counts it; a real server would re-read.
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                Some(json!({ "id": id, "lagged": missed }).to_string())
            }
        };
        std::future::ready(push)
    }))
}

// ---------------------------------------------------------------------------------------
// Client side (the parent process)
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Echo,
    Graphql,
    /// GraphQL with `ORDERGRAPH_SHARE_SUBSCRIPTIONS=false`: an execution per subscription.
    Unshared,
    /// GraphQL, each subscription a distinct operation (its own operation name), as ten
    /// thousand customers each watching their own order would be: nothing to share.
    Distinct,
    /// The same with `ORDERGRAPH_SLEEPING_SUBSCRIPTIONS=false`: every execution awake for
    /// its subscription's whole life.
    DistinctAwake,
    /// The same with `ORDERGRAPH_SUBSCRIPTION_SLEEP_AFTER_MS=0`: asleep after every
    /// message, so each change wakes (starts) an execution.
    DistinctEager,
}

impl Server {
    fn role(self) -> &'static str {
        match self {
            Server::Echo => "echo",
            Server::Graphql => "graphql",
            Server::Unshared => "unshared",
            Server::Distinct => "distinct",
            Server::DistinctAwake => "distinct-awake",
            Server::DistinctEager => "distinct-eager",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Server::Echo => "bare axum echo (baseline)",
            Server::Graphql => "GraphQL `productUpdated`",
            Server::Unshared => "GraphQL `productUpdated`, unshared",
            Server::Distinct => "GraphQL `productUpdated`, distinct operations",
            Server::DistinctAwake => "GraphQL `productUpdated`, distinct operations, never asleep",
            Server::DistinctEager => {
                "GraphQL `productUpdated`, distinct operations, asleep after every message"
            }
        }
    }
}

/// The running child process.
struct Child {
    process: tokio::process::Child,
    pid: u32,
    graphql_port: u16,
    echo_port: Option<u16>,
}

async fn spawn_server(server: Server, dir: &Path) -> anyhow::Result<Child> {
    let mut process = tokio::process::Command::new(std::env::current_exe()?)
        .env(ROLE_ENV, server.role())
        .env(DIR_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let pid = process
        .id()
        .ok_or_else(|| anyhow::anyhow!("no child pid"))?;
    let stdout = process
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no child stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut graphql_port, mut echo_port) = (None, None);
    loop {
        let line = tokio::time::timeout(SETUP_TIMEOUT, lines.next_line())
            .await??
            .ok_or_else(|| anyhow::anyhow!("the server exited before it was ready"))?;
        match line.split_once(' ') {
            Some(("PORT", port)) => graphql_port = Some(port.parse()?),
            Some(("ECHO", port)) => echo_port = Some(port.parse()?),
            _ if line == "READY" => break,
            _ => eprintln!("server: {line}"),
        }
    }
    Ok(Child {
        process,
        pid,
        graphql_port: graphql_port.ok_or_else(|| anyhow::anyhow!("no PORT line"))?,
        echo_port,
    })
}

impl Child {
    /// Closes stdin (the child drains and exits); kills it if it takes too long.
    async fn stop(mut self) {
        drop(self.process.stdin.take());
        if tokio::time::timeout(DRAIN_TIMEOUT, self.process.wait())
            .await
            .is_err()
        {
            eprintln!("the server did not stop in time: killed");
            let _ = self.process.kill().await;
        }
    }
}

/// A field of `/proc/<pid>/status`, in kB.
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process, in clock ticks (USER_HZ, 100 on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after "pid (comm) ": state is field 3, utime 14, stime 15.
            let rest = s.rsplit_once(") ")?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

const USER_HZ: f64 = 100.0;

/// Busy CPU time of the whole machine (all but idle and iowait), in clock ticks.
fn machine_busy_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?;
            let ticks: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|t| t.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest time is in user).
            Some(ticks.iter().take(8).sum::<u64>() - ticks.get(3)? - ticks.get(4)?)
        })
        .unwrap_or(0)
}

async fn gql(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    vars: Value,
) -> anyhow::Result<Value> {
    let resp: Value = http
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await?
        .json()
        .await?;
    if let Some(errors) = resp.get("errors") {
        anyhow::bail!("GraphQL error: {errors}");
    }
    Ok(resp["data"].clone())
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A message from the server, as the client sorts it.
enum Incoming {
    /// graphql-transport-ws `connection_ack`.
    Ack,
    /// graphql-transport-ws `ping`: answer `pong`.
    Ping,
    /// Echo: subscription `n` is registered.
    Watching(u32),
    /// Subscription `n` received the product at this position.
    Next(u32, i64),
    /// Anything else (an error, a completion, a lag report): a problem.
    Other,
}

fn classify(server: Server, text: &str) -> Incoming {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Incoming::Other;
    };
    let id = |v: &Value| v["id"].as_str().and_then(|id| id.parse::<u32>().ok());
    match server {
        Server::Graphql
        | Server::Unshared
        | Server::Distinct
        | Server::DistinctAwake
        | Server::DistinctEager => match v["type"].as_str() {
            Some("connection_ack") => Incoming::Ack,
            Some("ping") => Incoming::Ping,
            Some("next") if v["payload"]["errors"].is_null() => {
                let position = v["payload"]["data"]["productUpdated"]["position"]
                    .as_str()
                    .and_then(|p| p.parse::<i64>().ok());
                match (id(&v), position) {
                    (Some(id), Some(position)) => Incoming::Next(id, position),
                    _ => Incoming::Other,
                }
            }
            _ => Incoming::Other,
        },
        Server::Echo => {
            if let Some(id) = v["watching"].as_str().and_then(|id| id.parse().ok()) {
                return Incoming::Watching(id);
            }
            match (id(&v), v["position"].as_i64()) {
                (Some(id), Some(position)) => Incoming::Next(id, position),
                _ => Incoming::Other,
            }
        }
    }
}

async fn send_json(socket: &mut Socket, message: Value) -> anyhow::Result<()> {
    socket
        .send(Message::Text(message.to_string().into()))
        .await?;
    Ok(())
}

/// The next text message, or an error when the socket ends.
async fn next_text(socket: &mut Socket) -> anyhow::Result<String> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => anyhow::bail!("closed: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("the socket ended"),
        }
    }
}

/// What one connection saw once all its subscriptions were open.
#[derive(Default)]
struct Seen {
    /// (subscription, position, instant of receipt).
    receipts: Vec<(u32, i64, Instant)>,
    problems: u64,
    first_problem: Option<String>,
}

impl Seen {
    fn problem(&mut self, what: String) {
        self.problems += 1;
        self.first_problem.get_or_insert(what);
    }
}

/// Opens subscriptions `first..first + count` on one socket (subscription i watches
/// product i mod PRODUCTS) and waits for each one's first message.
async fn open(
    server: Server,
    url: &str,
    first: u32,
    count: u32,
    products: &[String],
) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    if server != Server::Echo {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    if server != Server::Echo {
        send_json(
            &mut socket,
            json!({ "type": "connection_init", "payload": {} }),
        )
        .await?;
        loop {
            let text = next_text(&mut socket).await?;
            match classify(server, &text) {
                Incoming::Ack => break,
                Incoming::Ping => send_json(&mut socket, json!({ "type": "pong" })).await?,
                _ => anyhow::bail!("expected connection_ack, got {text}"),
            }
        }
    }
    for i in first..first + count {
        let product = &products[i as usize % products.len()];
        let message = match server {
            Server::Graphql | Server::Unshared => json!({
                "type": "subscribe",
                "id": i.to_string(),
                "payload": { "query": SUBSCRIBE, "variables": { "ids": [product] } },
            }),
            Server::Distinct | Server::DistinctAwake | Server::DistinctEager => json!({
                "type": "subscribe",
                "id": i.to_string(),
                "payload": {
                    "query": SUBSCRIBE.replacen("subscription(", &format!("subscription S{i}("), 1),
                    "variables": { "ids": [product] },
                },
            }),
            Server::Echo => json!({ "watch": product, "id": i.to_string() }),
        };
        socket
            .feed(Message::Text(message.to_string().into()))
            .await?;
    }
    socket.flush().await?;
    let mut opened = vec![false; count as usize];
    let mut waiting = count;
    while waiting > 0 {
        let text = next_text(&mut socket).await?;
        let sub = match classify(server, &text) {
            Incoming::Ping => {
                send_json(&mut socket, json!({ "type": "pong" })).await?;
                continue;
            }
            Incoming::Next(sub, _) if server != Server::Echo => sub,
            Incoming::Watching(sub) if server == Server::Echo => sub,
            _ => anyhow::bail!("while opening subscriptions: {text}"),
        };
        let slot = sub
            .checked_sub(first)
            .and_then(|s| opened.get_mut(s as usize))
            .ok_or_else(|| anyhow::anyhow!("unknown subscription {sub}"))?;
        if !*slot {
            *slot = true;
            waiting -= 1;
        }
    }
    Ok(socket)
}

/// One client connection: opens its subscriptions, reports ready, then records every
/// delivery until `stop`.
async fn client_connection(
    server: Server,
    url: String,
    (first, count): (u32, u32),
    products: Arc<Vec<String>>,
    ready: mpsc::Sender<anyhow::Result<()>>,
    mut stop: watch::Receiver<bool>,
    received: Arc<AtomicU64>,
) -> Seen {
    let mut socket = match open(server, &url, first, count, &products).await {
        Ok(socket) => socket,
        Err(e) => {
            let _ = ready.send(Err(e)).await;
            return Seen::default();
        }
    };
    let _ = ready.send(Ok(())).await;
    drop(ready);
    let mut seen = Seen {
        receipts: Vec::with_capacity(4096),
        ..Seen::default()
    };
    loop {
        let frame = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            frame = socket.next() => frame,
        };
        let at = Instant::now();
        match frame {
            Some(Ok(Message::Text(text))) => match classify(server, text.as_str()) {
                Incoming::Next(sub, position) => {
                    seen.receipts.push((sub, position, at));
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Incoming::Ping => {
                    if send_json(&mut socket, json!({ "type": "pong" }))
                        .await
                        .is_err()
                    {
                        seen.problem("the socket failed".into());
                        break;
                    }
                }
                _ => seen.problem(text.as_str().to_owned()),
            },
            Some(Ok(Message::Close(frame))) => {
                seen.problem(format!("closed by the server: {frame:?}"));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                seen.problem(format!("socket error: {e}"));
                break;
            }
            None => {
                seen.problem("the socket ended".into());
                break;
            }
        }
    }
    let _ = socket.close(None).await;
    seen
}

/// One mutation of the steady load.
struct Mutation {
    product: usize,
    t0: Instant,
    measured: bool,
    /// The event's position, or the error.
    position: Result<i64, String>,
    latency_us: u64,
}

/// CPU use over the measured window, in % of one core (the machine has 2).
struct Cpu {
    server: f64,
    client: f64,
    /// Everything else on the machine.
    other: f64,
}

/// Sends `adjustStock(+1)` at `rate` per second, round-robin over the products, each on
/// its own task at its scheduled instant (open loop: a slow response does not delay the
/// next send).
async fn drive(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    products: &[String],
    knobs: &Knobs,
    server_pid: u32,
) -> (Vec<Mutation>, Cpu) {
    let Knobs { rate, warmup, secs } = *knobs;
    let warm = (warmup * rate).round() as usize;
    let total = warm + (secs * rate).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let me = std::process::id();
    let mut handles = Vec::with_capacity(total);
    let snapshot = || {
        (
            Instant::now(),
            cpu_ticks(server_pid),
            cpu_ticks(me),
            machine_busy_ticks(),
        )
    };
    let mut window = snapshot();
    for k in 0..total {
        tokio::time::sleep_until(start + interval.mul_f64(k as f64)).await;
        if k == warm {
            window = snapshot();
        }
        let (http, url, token) = (http.clone(), url.to_owned(), token.to_owned());
        let product = k % products.len();
        let id = products[product].clone();
        handles.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let result = gql(&http, &url, &token, ADJUST, json!({ "id": id })).await;
            let latency_us = t0.elapsed().as_micros() as u64;
            let position = result.map_err(|e| e.to_string()).and_then(|d| {
                d["adjustStock"]["position"]
                    .as_str()
                    .and_then(|p| p.parse::<i64>().ok())
                    .ok_or_else(|| format!("no position in {d}"))
            });
            Mutation {
                product,
                t0,
                measured: k >= warm,
                position,
                latency_us,
            }
        }));
    }
    // The window ends with the last scheduled send.
    tokio::time::sleep_until(start + interval.mul_f64(total as f64)).await;
    let end = snapshot();
    let wall = end.0.duration_since(window.0).as_secs_f64();
    let percent = |ticks: u64| ticks as f64 / USER_HZ / wall * 100.0;
    let (server, client) = (end.1 - window.1, end.2 - window.2);
    let cpu = Cpu {
        server: percent(server),
        client: percent(client),
        other: percent((end.3 - window.3).saturating_sub(server + client)),
    };
    let mut mutations = Vec::with_capacity(total);
    for handle in handles {
        mutations.push(handle.await.unwrap());
    }
    (mutations, cpu)
}

/// Subscriptions among `0..n` that watch `product`.
fn watchers(n: usize, product: usize) -> u64 {
    (n / PRODUCTS + usize::from(product < n % PRODUCTS)) as u64
}

struct Row {
    subscriptions: usize,
    server: Server,
    rss_before_kb: u64,
    rss_after_kb: u64,
    rss_loaded_kb: u64,
    open_secs: f64,
    latency: Histogram<u64>,
    delivered: u64,
    expected: u64,
    duplicates: u64,
    misdelivered: u64,
    /// Measured positions no subscriber received, and those only some received.
    positions_unseen: u64,
    positions_partial: u64,
    /// Subscriptions whose last receipt is not their product's last position.
    stale_at_end: u64,
    /// `ordergraph_subscriptions_lagged` from `/metrics` at the end (GraphQL only).
    lagged: Option<u64>,
    problems: u64,
    first_problem: Option<String>,
    mutations: u64,
    mutation_errors: u64,
    mutation_latency: Histogram<u64>,
    cpu: Cpu,
}

#[derive(Clone, Copy)]
struct Knobs {
    rate: f64,
    warmup: f64,
    secs: f64,
}

async fn bench(server: Server, n: usize, knobs: &Knobs) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let child = spawn_server(server, dir.path()).await?;
    let pid = child.pid;
    let url = format!("http://127.0.0.1:{}/graphql", child.graphql_port);
    let ws_url = match (server, child.echo_port) {
        (
            Server::Graphql
            | Server::Unshared
            | Server::Distinct
            | Server::DistinctAwake
            | Server::DistinctEager,
            _,
        ) => {
            format!("ws://127.0.0.1:{}/graphql", child.graphql_port)
        }
        (Server::Echo, Some(port)) => format!("ws://127.0.0.1:{port}/echo"),
        (Server::Echo, None) => anyhow::bail!("the echo server printed no ECHO port"),
    };
    let http = reqwest::Client::new();
    let admin = mint_token(SECRET, "admin", Role::Admin, Duration::from_secs(3600))?;
    let mut products = Vec::with_capacity(PRODUCTS);
    for i in 0..PRODUCTS {
        let d = gql(
            &http,
            &url,
            &admin,
            CREATE,
            json!({ "sku": format!("SUBS-{i}") }),
        )
        .await?;
        products.push(
            d["createProduct"]["product"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let products = Arc::new(products);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kb = proc_status_kb(pid, "VmRSS:");

    let connections = n.div_ceil(PER_CONNECTION);
    let (ready_tx, mut ready_rx) = mpsc::channel(connections);
    let (stop_tx, stop_rx) = watch::channel(false);
    let received = Arc::new(AtomicU64::new(0));
    let opening = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let first = c * PER_CONNECTION;
            let count = PER_CONNECTION.min(n - first);
            tokio::spawn(client_connection(
                server,
                ws_url.clone(),
                (first as u32, count as u32),
                products.clone(),
                ready_tx.clone(),
                stop_rx.clone(),
                received.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    for _ in 0..connections {
        match tokio::time::timeout(SETUP_TIMEOUT, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => anyhow::bail!("{} opening subscriptions: {e}", server.role()),
            Ok(None) => anyhow::bail!("a connection task ended early"),
            Err(_) => anyhow::bail!("opening {n} subscriptions took over {SETUP_TIMEOUT:?}"),
        }
    }
    let open_secs = opening.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_kb = proc_status_kb(pid, "VmRSS:");
    eprintln!(
        "{} n={n}: opened in {open_secs:.2} s, RSS {} → {} kB",
        server.role(),
        rss_before_kb,
        rss_after_kb
    );

    let (mutations, cpu) = drive(&http, &url, &admin, &products, knobs, pid).await;
    // Late deliveries: wait until every expected one arrived, nothing arrived for
    // QUIET, or DRAIN_TIMEOUT.
    let expected_all: u64 = mutations
        .iter()
        .filter(|m| m.position.is_ok())
        .map(|m| watchers(n, m.product))
        .sum();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let (mut last_count, mut last_change) = (received.load(Ordering::Relaxed), Instant::now());
    loop {
        let count = received.load(Ordering::Relaxed);
        if count != last_count {
            (last_count, last_change) = (count, Instant::now());
        }
        if count >= expected_all || last_change.elapsed() > QUIET || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_loaded_kb = proc_status_kb(pid, "VmRSS:");
    let lagged = match server {
        Server::Graphql
        | Server::Unshared
        | Server::Distinct
        | Server::DistinctAwake
        | Server::DistinctEager => Some(lagged_metric(&http, child.graphql_port).await?),
        Server::Echo => None,
    };
    let _ = stop_tx.send(true);
    let mut seen = Vec::with_capacity(connections);
    for task in tasks {
        seen.push(task.await?);
    }
    child.stop().await;

    // Join receipts to mutations by position.
    let mut mutation_latency = histogram();
    let mut mutation_errors = 0;
    let mut first_problem = None;
    let mut by_position: HashMap<i64, (usize, Instant)> = HashMap::new();
    let mut expected = 0;
    let mut measured = 0;
    for m in mutations.iter().filter(|m| m.measured) {
        measured += 1;
        match &m.position {
            Ok(position) => {
                mutation_latency.record(m.latency_us.max(1)).unwrap();
                by_position.insert(*position, (m.product, m.t0));
                expected += watchers(n, m.product);
            }
            Err(e) => {
                mutation_errors += 1;
                first_problem.get_or_insert_with(|| format!("adjustStock: {e}"));
            }
        }
    }
    let mut latency = histogram();
    let (mut delivered, mut duplicates, mut misdelivered, mut problems) = (0, 0, 0, 0);
    let mut unique: HashSet<(u32, i64)> = HashSet::new();
    let mut receivers: HashMap<i64, u64> = HashMap::new();
    let mut last_seen = vec![0i64; n];
    let mut last_written = [0i64; PRODUCTS];
    for m in &mutations {
        if let Ok(position) = m.position {
            last_written[m.product] = last_written[m.product].max(position);
        }
    }
    for s in &seen {
        problems += s.problems;
        if let Some(p) = &s.first_problem {
            first_problem.get_or_insert_with(|| p.clone());
        }
        for &(sub, position, at) in &s.receipts {
            if let Some(last) = last_seen.get_mut(sub as usize) {
                *last = (*last).max(position);
            }
            let Some(&(product, t0)) = by_position.get(&position) else {
                continue;
            };
            if sub as usize % PRODUCTS != product {
                misdelivered += 1;
            } else if !unique.insert((sub, position)) {
                duplicates += 1;
            } else {
                delivered += 1;
                *receivers.entry(position).or_default() += 1;
                latency
                    .record((at.saturating_duration_since(t0).as_micros() as u64).max(1))
                    .unwrap();
            }
        }
    }
    let (mut positions_unseen, mut positions_partial) = (0, 0);
    for (position, (product, _)) in &by_position {
        match receivers.get(position).copied().unwrap_or(0) {
            0 => positions_unseen += 1,
            c if c < watchers(n, *product) => positions_partial += 1,
            _ => {}
        }
    }
    let stale_at_end = last_seen
        .iter()
        .enumerate()
        .filter(|(sub, last)| **last != last_written[sub % PRODUCTS])
        .count() as u64;
    Ok(Row {
        subscriptions: n,
        server,
        rss_before_kb,
        rss_after_kb,
        rss_loaded_kb,
        open_secs,
        latency,
        delivered,
        expected,
        duplicates,
        misdelivered,
        positions_unseen,
        positions_partial,
        stale_at_end,
        lagged,
        problems,
        first_problem,
        mutations: measured,
        mutation_errors,
        mutation_latency,
        cpu,
    })
}

/// The sum of `ordergraph_subscriptions_lagged` over its labels.
async fn lagged_metric(http: &reqwest::Client, port: u16) -> anyhow::Result<u64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("ordergraph_subscriptions_lagged"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| subscriptions | server | RSS before | RSS after | per subscription | p50 | p99 | max | deliveries | adjustStock p50 / p99 | CPU server / client / other |\n|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n",
    );
    for r in rows {
        let per_sub_kib = (r.rss_after_kb as f64 - r.rss_before_kb as f64) / r.subscriptions as f64;
        let missing = r.expected.saturating_sub(r.delivered);
        out.push_str(&format!(
            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.2} KiB | {:.2} ms | {:.2} ms | {:.2} ms | {} of {} ({} missing) | {:.2} / {:.2} ms | {:.0} / {:.0} / {:.0} % |\n",
            r.subscriptions,
            r.server.label(),
            mib(r.rss_before_kb),
            mib(r.rss_after_kb),
            per_sub_kib,
            ms(r.latency.value_at_quantile(0.5)),
            ms(r.latency.value_at_quantile(0.99)),
            ms(r.latency.max()),
            r.delivered,
            r.expected,
            missing,
            ms(r.mutation_latency.value_at_quantile(0.5)),
            ms(r.mutation_latency.value_at_quantile(0.99)),
            r.cpu.server,
            r.cpu.client,
            r.cpu.other,
        ));
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "- {} subscriptions, {}: opened in {:.2} s; {} measured mutations ({} failed); RSS after the load {:.1} MiB; positions no subscriber received {}, received by only some {}; subscriptions not at their product's last position at the end {}; lagged (server metric) {}; duplicates {}, misdelivered {}, other messages {}{}\n",
            r.subscriptions,
            r.server.role(),
            r.open_secs,
            r.mutations,
            r.mutation_errors,
            mib(r.rss_loaded_kb),
            r.positions_unseen,
            r.positions_partial,
            r.stale_at_end,
            r.lagged.map_or("n/a".to_owned(), |l| l.to_string()),
            r.duplicates,
            r.misdelivered,
            r.problems,
            r.first_problem
                .as_ref()
                .map(|p| format!(" (first: `{}`)", p.chars().take(300).collect::<String>()))
                .unwrap_or_default(),
        ));
    }
    out
}

fn env_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn run() -> anyhow::Result<()> {
    let subs: Vec<usize> = env_list("BENCH_SUBS", "1000,10000");
    let servers: Vec<Server> =
        env_list::<String>("BENCH_SERVERS", "echo,graphql,distinct,distinct-awake")
            .iter()
            .filter_map(|s| match s.as_str() {
                "echo" => Some(Server::Echo),
                "graphql" => Some(Server::Graphql),
                "unshared" => Some(Server::Unshared),
                "distinct" => Some(Server::Distinct),
                "distinct-awake" => Some(Server::DistinctAwake),
                "distinct-eager" => Some(Server::DistinctEager),
                _ => None,
            })
            .collect();
    let knobs = Knobs {
        rate: env_f64("BENCH_RATE", 50.0),
        warmup: env_f64("BENCH_WARMUP_SECS", 2.0),
        secs: env_f64("BENCH_SECS", 10.0),
    };
    let mut rows = Vec::new();
    for &n in &subs {
        for &server in &servers {
            let row = bench(server, n, &knobs).await?;
            eprintln!(
                "{} n={n}: p50 {:.2} p99 {:.2} max {:.2} ms, {} of {} delivered",
                server.role(),
                ms(row.latency.value_at_quantile(0.5)),
                ms(row.latency.value_at_quantile(0.99)),
                ms(row.latency.max()),
                row.delivered,
                row.expected
            );
            rows.push(row);
        }
    }
    let report = format!(
        "# ordergraph subscriptions benchmark\n\n- date: {}\n- command: `cargo bench --bench subscriptions` (subscriptions {subs:?}, {} adjustStock/s over {PRODUCTS} products, {} s measured after {} s warm-up, {PER_CONNECTION} subscriptions per WebSocket)\n- latency: from just before sending `adjustStock` to a subscriber's receipt of its position; memory: the server process's VmRSS before and 2 s after opening the subscriptions\n\n{}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        knobs.rate,
        knobs.secs,
        knobs.warmup,
        table(&rows)
    );
    println!("{report}");
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::write(target.join("bench-subscriptions.md"), report)?;
    Ok(())
}
