//! Checkout benchmark: orders per second end to end (the `checkout` mutation until the
//! order is seen CONFIRMED in the order details view: reservation, payment and
//! confirmation by the saga included) and p50/p99 time-to-confirmed, on SQLite and on
//! PostgreSQL, beside the single-mutation baseline (`adjustStock`) measured in the same
//! run at the same concurrency.
//!
//! `cargo bench --bench checkout` (env: BENCH_CLIENTS=1,8,32, BENCH_SECS=5,
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test). Results go to stdout and
//! `target/bench-checkout.md`. A shopper learns of the confirmation from an `orderUpdated`
//! subscription (`BENCH_WAIT=poll`: polling `order(id)`, the harness before 2026-11-27). Last, an open loop at `BENCH_OPEN_SHARE` (default 0.5) of
//! the peak confirmed rate measures time from `checkout` to CONFIRMED when the saga is
//! not saturated.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ordergraph::auth::{Role, mint_token};
use ordergraph::config::Settings;
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The allocator the `ordergraph` binary ships with (ADR 0018): the service measured here
/// runs in this process, so it allocates as it does in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ADJUST: &str =
    "mutation($id: UUID!) { adjustStock(input: {productId: $id, delta: 1}) { position } }";
const ADD: &str =
    "mutation($id: UUID!) { addToCart(input: {productId: $id, quantity: 1}) { position } }";
const CHECKOUT: &str = "mutation { checkout(input: {paymentToken: \"tok_visa\", shippingAddress: \"1 Bench Road\"}) { position order { id status } } }";
const ORDER: &str = "query($id: UUID!) { order(id: $id) { status } }";
const ORDER_UPDATED: &str = "subscription { orderUpdated { id status } }";
const CREATE: &str = "mutation($sku: String!) { createProduct(input: {sku: $sku, name: \"Bench\", price: \"4.20\", initialStock: 1000000}) { product { id } } }";
const SECRET: &str = "checkout-bench-secret-not-for-production";
const PRODUCTS: usize = 64;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

struct Service {
    url: String,
    shutdown: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(database_url: &str, data_dir: &Path) -> anyhow::Result<Service> {
    let settings = Settings {
        bind: "127.0.0.1:0".parse()?,
        database_url: Some(database_url.to_owned()),
        data_dir: data_dir.to_path_buf(),
        jwt_secret: Some(SecretString::from(SECRET.to_owned())),
        ..Settings::default()
    };
    let app = ordergraph::Application::build(settings).await?;
    let url = format!("http://{}/graphql", app.local_addr());
    let (shutdown, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Ok(Service {
        url,
        shutdown,
        handle,
    })
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

/// How a shopper learns that an order is confirmed: `BENCH_WAIT=subscribe` (the default:
/// one `orderUpdated` subscription per shopper, as a client would) or `poll` (`order(id)`
/// every 1 → 8 ms, which at 32 shoppers is thousands of reads a second beside the saga).
fn subscribes() -> bool {
    std::env::var("BENCH_WAIT").map_or(true, |w| w != "poll")
}

/// One shopper's `orderUpdated` subscription over graphql-transport-ws.
struct Watcher {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Watcher {
    async fn open(url: &str, token: &str) -> anyhow::Result<Self> {
        use futures_util::SinkExt as _;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut request = url.replacen("http://", "ws://", 1).into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        let mut watcher = Self { socket };
        let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
        watcher.socket.send(init.to_string().into()).await?;
        anyhow::ensure!(watcher.next().await?["type"] == "connection_ack");
        let subscribe =
            json!({ "type": "subscribe", "id": "o", "payload": { "query": ORDER_UPDATED } });
        watcher.socket.send(subscribe.to_string().into()).await?;
        Ok(watcher)
    }

    /// The next protocol message, answering pings.
    async fn next(&mut self) -> anyhow::Result<Value> {
        use futures_util::{SinkExt as _, StreamExt as _};
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the subscription ended"))??;
            let tokio_tungstenite::tungstenite::Message::Text(text) = frame else {
                continue;
            };
            let msg: Value = serde_json::from_str(&text)?;
            if msg["type"] == "ping" {
                self.socket
                    .send(json!({ "type": "pong" }).to_string().into())
                    .await?;
                continue;
            }
            return Ok(msg);
        }
    }

    /// Waits until order `id` is CONFIRMED (an error if it ends otherwise).
    async fn confirmed(&mut self, id: &str) -> anyhow::Result<()> {
        loop {
            let msg = self.next().await?;
            anyhow::ensure!(msg["type"] == "next", "the subscription sent {msg}");
            let order = &msg["payload"]["data"]["orderUpdated"];
            if order["id"] != id {
                continue;
            }
            match order["status"].as_str() {
                Some("CONFIRMED") => return Ok(()),
                Some(s @ ("REJECTED" | "CANCELLED")) => anyhow::bail!("order {id} ended {s}"),
                _ => {}
            }
        }
    }
}

/// Polls order `id` until CONFIRMED, backing off 1 → 8 ms.
async fn poll_confirmed(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    id: &str,
) -> anyhow::Result<()> {
    let mut pause = Duration::from_millis(1);
    loop {
        let o = gql(http, url, token, ORDER, json!({ "id": id })).await?;
        match o["order"]["status"].as_str() {
            Some("CONFIRMED") => return Ok(()),
            Some(s @ ("REJECTED" | "CANCELLED")) => anyhow::bail!("order {id} ended {s}"),
            _ => {}
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(8));
    }
}

/// Waits for order `id` as `BENCH_WAIT` says.
async fn wait_confirmed(
    watcher: Option<&mut Watcher>,
    http: &reqwest::Client,
    url: &str,
    token: &str,
    id: &str,
) -> anyhow::Result<()> {
    match watcher {
        Some(w) => w.confirmed(id).await,
        None => poll_confirmed(http, url, token, id).await,
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

struct Row {
    clients: usize,
    adjust_ops: f64,
    adjust_p50: f64,
    adjust_p99: f64,
    orders: f64,
    checkout_p50: f64,
    checkout_p99: f64,
    confirmed_p50: f64,
    confirmed_p99: f64,
    errors: u64,
}

async fn adjust_phase(
    service: &Service,
    products: &[String],
    clients: usize,
    secs: u64,
) -> (f64, Histogram<u64>) {
    let admin = mint_token(
        SECRET,
        "bench-admin",
        Role::Admin,
        Duration::from_secs(3600),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (url, admin, products) = (service.url.clone(), admin.clone(), products.to_vec());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut h = histogram();
                let mut i = c;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    gql(
                        &http,
                        &url,
                        &admin,
                        ADJUST,
                        json!({ "id": products[i % products.len()] }),
                    )
                    .await
                    .unwrap();
                    h.record(t.elapsed().as_micros() as u64).unwrap();
                    i += clients;
                }
                h
            })
        })
        .collect();
    let mut all = histogram();
    for t in tasks {
        all.add(t.await.unwrap()).unwrap();
    }
    (all.len() as f64 / started.elapsed().as_secs_f64(), all)
}

/// Each client is its own customer: add one unit to the cart, check out, and poll the
/// order until it is CONFIRMED (backing off 1 ms → 8 ms, so the poll costs little and
/// resolves time-to-confirmed to a few milliseconds).
async fn checkout_phase(
    service: &Service,
    products: &[String],
    clients: usize,
    secs: u64,
    round: usize,
) -> (f64, Histogram<u64>, Histogram<u64>, u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (url, products) = (service.url.clone(), products.to_vec());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let me = mint_token(
                    SECRET,
                    &format!("shopper-{round}-{c}"),
                    Role::Customer,
                    Duration::from_secs(3600),
                )
                .unwrap();
                let (mut checkout_h, mut confirmed_h, mut errors) =
                    (histogram(), histogram(), 0u64);
                let mut watcher = match subscribes() {
                    true => Some(Watcher::open(&url, &me).await.unwrap()),
                    false => None,
                };
                let mut i = c;
                while Instant::now() < deadline {
                    gql(
                        &http,
                        &url,
                        &me,
                        ADD,
                        json!({ "id": products[i % products.len()] }),
                    )
                    .await
                    .unwrap();
                    i += clients;
                    let t = Instant::now();
                    let placed = match gql(&http, &url, &me, CHECKOUT, json!({})).await {
                        Ok(p) => p,
                        Err(e) => {
                            if errors == 0 {
                                eprintln!("checkout failed: {e}");
                            }
                            errors += 1;
                            continue;
                        }
                    };
                    checkout_h.record(t.elapsed().as_micros() as u64).unwrap();
                    let id = placed["checkout"]["order"]["id"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    if let Err(e) = wait_confirmed(watcher.as_mut(), &http, &url, &me, &id).await {
                        if errors == 0 {
                            eprintln!("order failed: {e}");
                        }
                        errors += 1;
                        continue;
                    }
                    confirmed_h.record(t.elapsed().as_micros() as u64).unwrap();
                }
                (checkout_h, confirmed_h, errors)
            })
        })
        .collect();
    let (mut checkout_all, mut confirmed_all, mut errors) = (histogram(), histogram(), 0);
    for t in tasks {
        let (a, b, e) = t.await.unwrap();
        checkout_all.add(a).unwrap();
        confirmed_all.add(b).unwrap();
        errors += e;
    }
    let rate = confirmed_all.len() as f64 / started.elapsed().as_secs_f64();
    (rate, checkout_all, confirmed_all, errors)
}

/// Checkouts at a fixed rate (open loop: each order on its own task at its scheduled
/// instant, a shopper of its own, so a slow answer does not slow the rate): addToCart,
/// checkout, then the order polled until CONFIRMED. What target 3 asks for beside the
/// peak: time from `checkout` to CONFIRMED at half the peak confirmed rate.
async fn open_loop_phase(service: &Service, products: &[String], rate: f64, secs: u64) -> OpenLoop {
    let every = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let count = (rate * secs as f64).round().max(1.0) as usize;
    let http = reqwest::Client::new();
    let started = tokio::time::Instant::now();
    let mut tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Duration>>> =
        Vec::with_capacity(count);
    for k in 0..count {
        tokio::time::sleep_until(started + every * k as u32).await;
        let (url, http, product) = (
            service.url.clone(),
            http.clone(),
            products[k % products.len()].clone(),
        );
        tasks.push(tokio::spawn(async move {
            let me = mint_token(
                SECRET,
                &format!("open-shopper-{k}"),
                Role::Customer,
                Duration::from_secs(3600),
            )
            .unwrap();
            let mut watcher = match subscribes() {
                true => Some(Watcher::open(&url, &me).await?),
                false => None,
            };
            gql(&http, &url, &me, ADD, json!({ "id": product })).await?;
            let t = Instant::now();
            let placed = gql(&http, &url, &me, CHECKOUT, json!({})).await?;
            let id = placed["checkout"]["order"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            wait_confirmed(watcher.as_mut(), &http, &url, &me, &id).await?;
            Ok(t.elapsed())
        }));
    }
    let (mut confirmed, mut errors) = (histogram(), 0u64);
    for t in tasks {
        match t.await.unwrap() {
            Ok(took) => confirmed.record(took.as_micros() as u64).unwrap(),
            Err(e) => {
                if errors == 0 {
                    eprintln!("open loop: {e}");
                }
                errors += 1;
            }
        }
    }
    OpenLoop {
        offered: rate,
        achieved: confirmed.len() as f64 / started.elapsed().as_secs_f64(),
        p50: ms(confirmed.value_at_quantile(0.5)),
        p99: ms(confirmed.value_at_quantile(0.99)),
        errors,
    }
}

struct OpenLoop {
    offered: f64,
    achieved: f64,
    p50: f64,
    p99: f64,
    errors: u64,
}

async fn bench(
    label: &str,
    database_url: &str,
    data_dir: &Path,
    clients: &[usize],
    secs: u64,
) -> anyhow::Result<(Vec<Row>, Option<OpenLoop>, u64)> {
    let service = start(database_url, data_dir).await?;
    let http = reqwest::Client::new();
    let admin = mint_token(
        SECRET,
        "bench-admin",
        Role::Admin,
        Duration::from_secs(3600),
    )?;
    let mut products = Vec::with_capacity(PRODUCTS);
    for i in 0..PRODUCTS {
        let d = gql(
            &http,
            &service.url,
            &admin,
            CREATE,
            json!({ "sku": format!("BENCH-{i}") }),
        )
        .await?;
        products.push(
            d["createProduct"]["product"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut rows = Vec::new();
    for (round, &n) in clients.iter().enumerate() {
        let (adjust_ops, adjust) = adjust_phase(&service, &products, n, secs).await;
        let (orders, checkout, confirmed, errors) =
            checkout_phase(&service, &products, n, secs, round).await;
        let row = Row {
            clients: n,
            adjust_ops,
            adjust_p50: ms(adjust.value_at_quantile(0.5)),
            adjust_p99: ms(adjust.value_at_quantile(0.99)),
            orders,
            checkout_p50: ms(checkout.value_at_quantile(0.5)),
            checkout_p99: ms(checkout.value_at_quantile(0.99)),
            confirmed_p50: ms(confirmed.value_at_quantile(0.5)),
            confirmed_p99: ms(confirmed.value_at_quantile(0.99)),
            errors,
        };
        eprintln!(
            "{label} clients={n}: adjustStock {:.0}/s p50 {:.2} p99 {:.2} | checkouts {:.1}/s, checkout p50 {:.2} p99 {:.2}, to CONFIRMED p50 {:.2} p99 {:.2} ms, errors {}",
            row.adjust_ops,
            row.adjust_p50,
            row.adjust_p99,
            row.orders,
            row.checkout_p50,
            row.checkout_p99,
            row.confirmed_p50,
            row.confirmed_p99,
            row.errors
        );
        rows.push(row);
    }
    let share: f64 = std::env::var("BENCH_OPEN_SHARE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.5);
    let peak = rows.iter().map(|r| r.orders).fold(0.0, f64::max);
    let open = if share > 0.0 && peak > 0.0 {
        let open = open_loop_phase(&service, &products, peak * share, secs).await;
        eprintln!(
            "{label} open loop at {:.1}/s ({share} of the peak {peak:.1}/s): confirmed {:.1}/s, checkout to CONFIRMED p50 {:.2} p99 {:.2} ms, errors {}",
            open.offered, open.achieved, open.p50, open.p99, open.errors
        );
        Some(open)
    } else {
        None
    };
    let _ = service.shutdown.send(());
    service.handle.await??;
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    Ok((rows, open, rss))
}

fn table(label: &str, rows: &[Row], open: Option<&OpenLoop>, rss_kib: u64) -> String {
    let mut out = format!(
        "## {label}\n\nPeak RSS of the bench process: {} MiB.\n\n| clients | adjustStock ops/s (baseline) | adjustStock p50 / p99 ms | checkouts confirmed/s | ratio to baseline | checkout mutation p50 / p99 ms | time to CONFIRMED p50 / p99 ms | errors |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        rss_kib / 1024
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.0} | {:.2} / {:.2} | {:.1} | {:.2}× | {:.2} / {:.2} | {:.2} / {:.2} | {} |\n",
            r.clients, r.adjust_ops, r.adjust_p50, r.adjust_p99, r.orders, r.orders / r.adjust_ops, r.checkout_p50, r.checkout_p99, r.confirmed_p50, r.confirmed_p99, r.errors
        ));
    }
    if let Some(o) = open {
        out.push_str(&format!(
            "\nOpen loop at {:.1} checkouts/s offered (half the peak above): {:.1} confirmed/s, checkout to CONFIRMED p50 {:.2} ms, p99 {:.2} ms, errors {}.\n",
            o.offered, o.achieved, o.p50, o.p99, o.errors
        ));
    }
    out.push('\n');
    out
}

async fn run() -> anyhow::Result<()> {
    let clients: Vec<usize> = std::env::var("BENCH_CLIENTS")
        .unwrap_or_else(|_| "1,8,32".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut report = format!(
        "# ordergraph checkout benchmark\n\n- date: {}\n- command: `cargo bench --bench checkout` (clients {clients:?}, {secs} s per phase)\n- a checkout = addToCart(1 unit) then `checkout` (tok_visa), then waiting until the order is CONFIRMED ({}); the baseline is `adjustStock` (one single-stream mutation with read-your-writes) at the same concurrency, measured just before in the same run\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        if subscribes() {
            "an `orderUpdated` subscription per shopper"
        } else {
            "polling `order(id)` every 1 → 8 ms"
        }
    );
    let dir = tempfile::tempdir()?;
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let (rows, open, rss) = bench("SQLite", &sqlite, dir.path(), &clients, secs).await?;
    report.push_str(&table("SQLite", &rows, open.as_ref(), rss));

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
            let result = bench("PostgreSQL", url.as_str(), pg_dir.path(), &clients, secs).await;
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await?;
            let (rows, open, rss) = result?;
            report.push_str(&table("PostgreSQL", &rows, open.as_ref(), rss));
        }
        Err(e) => report.push_str(&format!("## PostgreSQL\n\nskipped: {e}\n")),
    }
    println!("{report}");
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::write(target.join("bench-checkout.md"), report)?;
    Ok(())
}
