//! Event bus benchmark (issue 16, ADR 0016): real server processes (the release binary),
//! one PostgreSQL server (fresh databases per part), a private `nats-server` (JetStream,
//! file storage) — each figure beside its baseline measured in the same run:
//!
//! 1. **Publish rate**: `BENCH_EVENTS` events already in the log (written through the API
//!    by a replica without a broker), then a replica with the broker and only the
//!    `publisher` role, on an empty stream: events published per second until the stream
//!    reaches the log's head. Beside it, a **bare JetStream publish** of the same messages
//!    (read from the log beforehand, the same encoding, message ids and expected
//!    sequences, 256 in flight) from this process.
//! 2. **Commit → subscriber**: a background `adjustStock` load through a writer replica at
//!    50 % of the peak write rate (measured first, `BENCH_CLIENTS` clients), and meanwhile
//!    a probe product changed one at a time: from the mutation's send to the
//!    `productUpdated` frame on a subscriber of the writer (views in the write database:
//!    the baseline) and on a subscriber of a read replica (views in a database of its
//!    own, fed from the stream).
//! 3. **Reads under writes**: `product(id)` queries per second (`BENCH_CLIENTS` clients)
//!    on the writer and on the read replica, idle and while `BENCH_CLIENTS` clients write
//!    through the writer.
//!
//! `cargo bench --bench bus` (env: BENCH_DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/test; BENCH_EVENTS=20000; BENCH_SECS=5;
//! BENCH_CLIENTS=16; BENCH_PROBES=300). Needs `nats-server` on the PATH. Results go to
//! stdout and `target/bench-bus.md`.
#![allow(clippy::unwrap_used)]

/// A second PostgreSQL server, for the read database of the split layout (the tests' own).
#[path = "../tests/api/private_pg.rs"]
#[allow(dead_code)] // the crash and restart are the tests'
mod private_pg;
#[path = "support/replicas.rs"]
mod support;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage, stream};
use hdrhistogram::Histogram;
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::json;
use tokio::process::{Child, Command};

use support::*;

const ADJUST: &str =
    "mutation($id: UUID!) { adjustStock(input: {productId: $id, delta: 1}) { position } }";
const PRODUCT: &str = "query($id: UUID!) { product(id: $id) { id stock price name } }";
const PRODUCTS: usize = 32;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// A private broker: `nats-server -js` on a free port with its own store.
struct Broker {
    url: String,
    child: Child,
    _store: tempfile::TempDir,
}

impl Broker {
    async fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = tempfile::tempdir().unwrap();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server is installed");
        let url = format!("nats://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if let Ok(js) = Self::connect(&url).await {
                use async_nats::jetstream::context::GetStreamErrorKind;
                match js.get_stream("PROBE").await {
                    Ok(_) => break,
                    Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(_)) => break,
                    Err(_) => {}
                }
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no broker");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Broker {
            url,
            child,
            _store: store,
        }
    }

    async fn connect(url: &str) -> anyhow::Result<jetstream::Context> {
        Ok(jetstream::new(async_nats::connect(url).await?))
    }

    async fn last_sequence(&self, stream: &str) -> u64 {
        let js = Self::connect(&self.url).await.unwrap();
        match js.get_stream(stream).await {
            Ok(mut s) => s.info().await.map(|i| i.state.last_sequence).unwrap_or(0),
            Err(_) => 0,
        }
    }
}

/// `query` with `vars(i)` at `clients` clients against `url` until `stop`: requests/s.
async fn load(
    url: &str,
    query: &'static str,
    products: &[String],
    clients: usize,
    stop: Arc<AtomicBool>,
) -> f64 {
    let token = admin_token();
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (url, token, products) = (url.to_owned(), token.clone(), products.to_vec());
            let (stop, done) = (stop.clone(), done.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    gql(
                        &http,
                        &url,
                        &token,
                        query,
                        json!({ "id": products[i % products.len()] }),
                    )
                    .await;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += clients;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Runs `load` for `secs`.
async fn load_for(
    url: &str,
    query: &'static str,
    products: &[String],
    clients: usize,
    secs: u64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        s.store(true, Ordering::Relaxed);
    });
    load(url, query, products, clients, stop).await
}

/// Part 1: the publisher's rate on a filled log, beside a bare publish of the same.
async fn publish_rate(admin_url: &str, events: usize, clients: usize) -> (u64, f64, f64) {
    let (db, name) = fresh_database(admin_url).await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    // Fill the log through the API, with no broker.
    let filler = Replica::start(&db, dir.path(), "filler", &[]).await;
    let products = products(&http, &filler, PRODUCTS).await;
    let token = admin_token();
    let left = Arc::new(AtomicU64::new(events as u64));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (url, token, products, left) = (
                filler.url.clone(),
                token.clone(),
                products.clone(),
                left.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut i = c;
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    gql(
                        &http,
                        &url,
                        &token,
                        ADJUST,
                        json!({ "id": products[i % products.len()] }),
                    )
                    .await;
                    i += clients;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    drop(filler);
    let conn = sea_orm::Database::connect(&db).await.unwrap();
    let rows = ordergraph::entity::events::Entity::find()
        .order_by_asc(ordergraph::entity::events::Column::Position)
        .all(&conn)
        .await
        .unwrap();
    let head = rows.last().unwrap().position;

    let broker = Broker::start().await;
    // Baseline: the same messages, published bare from here.
    let js = Broker::connect(&broker.url).await.unwrap();
    js.create_stream(stream::Config {
        name: "BASELINE".into(),
        subjects: vec!["baseline.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut messages = Vec::new();
    let mut next = rows.iter().peekable();
    for position in 1..=head {
        messages.push(match next.next_if(|e| e.position == position) {
            Some(e) => ordergraph::broker::wire::event("baseline", e),
            None => ordergraph::broker::wire::gap("baseline", position),
        });
    }
    let started = Instant::now();
    let mut in_flight: VecDeque<PublishAckFuture> = VecDeque::new();
    for m in messages {
        let publish = PublishMessage::build()
            .payload(m.payload)
            .headers(m.headers)
            .message_id(m.position.to_string())
            .expected_last_sequence(u64::try_from(m.position - 1).unwrap());
        in_flight.push_back(js.send_publish(m.subject, publish).await.unwrap());
        if in_flight.len() >= 256 {
            in_flight.pop_front().unwrap().await.unwrap();
        }
    }
    while let Some(ack) = in_flight.pop_front() {
        ack.await.unwrap();
    }
    let bare = head as f64 / started.elapsed().as_secs_f64();

    // The service's publisher, alone on the filled log.
    let env = [
        ("ORDERGRAPH_NATS_URL", broker.url.clone()),
        ("ORDERGRAPH_ROLES", "api,publisher".to_owned()),
    ];
    let _publisher = Replica::start(&db, dir.path(), "publisher", &env).await;
    let mut first: Option<(Instant, u64)> = None;
    let rate = loop {
        let at = broker.last_sequence("ORDERGRAPH_EVENTS").await;
        let now = Instant::now();
        if first.is_none() && at > 0 {
            first = Some((now, at));
        }
        if at >= u64::try_from(head).unwrap() {
            let (t0, s0) = first.unwrap();
            break (at - s0) as f64 / (now - t0).as_secs_f64().max(1e-6);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    drop(conn);
    drop_database(admin_url, &name).await;
    (u64::try_from(head).unwrap(), rate, bare)
}

struct Split {
    peak: f64,
    rate: f64,
    near: Histogram<u64>,
    far: Histogram<u64>,
    reads: [f64; 4],
}

/// Where parts 2 and 3 run.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// Every process on every CPU, both databases on the one PostgreSQL server.
    Shared,
    /// The write side (the writer, the PostgreSQL server of the write database, the broker
    /// and the write load) on CPU 0; the read side (the read replica, a PostgreSQL server
    /// of its own for the read database, the read load) on CPU 1.
    Split,
}

impl Layout {
    fn write_cpu(self) -> Option<String> {
        (self == Layout::Split).then(|| "0".to_owned())
    }
    fn read_cpu(self) -> Option<String> {
        (self == Layout::Split).then(|| "1".to_owned())
    }
}

/// The main process of the PostgreSQL server behind `admin_url`.
async fn postmaster(admin_url: &str) -> u32 {
    use sea_orm::ConnectionTrait;
    let admin = sea_orm::Database::connect(admin_url).await.unwrap();
    let row = admin
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SHOW data_directory",
        ))
        .await
        .unwrap()
        .unwrap();
    let dir: String = row.try_get("", "data_directory").unwrap();
    let pidfile = std::fs::read_to_string(Path::new(&dir).join("postmaster.pid")).unwrap();
    pidfile.lines().next().unwrap().trim().parse().unwrap()
}

/// Parts 2 and 3: a writer and a read replica on a database of its own, laid out as
/// `layout` says.
async fn split(admin_url: &str, clients: usize, secs: u64, probes: usize, layout: Layout) -> Split {
    let (write_db, write_name) = fresh_database(admin_url).await;
    let (read_server, read_db, read_name) = match layout {
        Layout::Shared => {
            let (url, name) = fresh_database(admin_url).await;
            (None, url, Some(name))
        }
        Layout::Split => {
            let server = private_pg::PrivatePostgres::start()
                .expect("PostgreSQL's binaries and runuser, for a second server");
            let url = format!("{}?sslmode=disable", server.database("reads"));
            pin(server.pid(), "1", true);
            (Some(server), url, None)
        }
    };
    let write_server = postmaster(admin_url).await;
    let all_cpus = format!(
        "0-{}",
        std::thread::available_parallelism().unwrap().get() - 1
    );
    if layout == Layout::Split {
        pin(write_server, "0", true);
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start().await;
    if let Some(cpu) = layout.write_cpu() {
        pin(broker.child.id().unwrap(), &cpu, false);
    }
    let http = reqwest::Client::new();
    let writer = Replica::start_on(
        layout.write_cpu().as_deref(),
        &write_db,
        dir.path(),
        "writer",
        &[("ORDERGRAPH_NATS_URL", broker.url.clone())],
    )
    .await;
    let reader = Replica::start_on(
        layout.read_cpu().as_deref(),
        &write_db,
        dir.path(),
        "reader",
        &[
            ("ORDERGRAPH_NATS_URL", broker.url.clone()),
            ("READ_DATABASE_URL", read_db.clone()),
        ],
    )
    .await;
    let products = products(&http, &writer, PRODUCTS).await;
    let token = admin_token();
    // Wait until the read replica shows every product.
    for p in &products {
        loop {
            let d = gql(&http, &reader.url, &token, PRODUCT, json!({ "id": p })).await;
            if d["product"].is_object() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // Each load runs on its side's CPU.
    let timed = |cpu: Option<String>, url: &str, query: &'static str, products: &[String]| {
        let (url, products) = (url.to_owned(), products.to_vec());
        on_cpus(cpu, move || async move {
            load_for(&url, query, &products, clients, secs).await
        })
    };

    // Part 3 first, idle: reads on each.
    let idle_writer = timed(layout.write_cpu(), &writer.url, PRODUCT, &products).await;
    let idle_reader = timed(layout.read_cpu(), &reader.url, PRODUCT, &products).await;

    // The peak write rate, then part 2 at half of it.
    let peak = timed(layout.write_cpu(), &writer.url, ADJUST, &products[1..]).await;
    let rate = peak / 2.0;
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (url, token, products, stop) = (
            writer.url.clone(),
            token.clone(),
            products[1..].to_vec(),
            stop.clone(),
        );
        tokio::spawn(on_cpus(layout.write_cpu(), move || async move {
            let http = reqwest::Client::new();
            let every = Duration::from_secs_f64(1.0 / rate);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let (http, url, token, id) = (
                    http.clone(),
                    url.clone(),
                    token.clone(),
                    products[i % products.len()].clone(),
                );
                tokio::spawn(async move {
                    gql(&http, &url, &token, ADJUST, json!({ "id": id })).await;
                });
                i += 1;
            }
        }))
    };
    let probe = products[0].clone();
    let mut at_writer = watch(&writer, &probe).await;
    let mut at_reader = watch(&reader, &probe).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut near, mut far) = (histogram(), histogram());
    for _ in 0..probes {
        let t = Instant::now();
        gql(&http, &writer.url, &token, ADJUST, json!({ "id": probe })).await;
        let a = at_writer.recv().await.unwrap();
        let b = at_reader.recv().await.unwrap();
        near.record((a - t).as_micros() as u64).unwrap();
        far.record((b - t).as_micros() as u64).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    background.await.unwrap();

    // Part 3 under a write load through the writer.
    let mut busy = [0.0; 2];
    let sides = [
        (&writer.url, layout.write_cpu()),
        (&reader.url, layout.read_cpu()),
    ];
    for (i, (url, cpu)) in sides.into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = {
            let (url, products, stop) = (writer.url.clone(), products.clone(), stop.clone());
            tokio::spawn(on_cpus(layout.write_cpu(), move || async move {
                load(&url, ADJUST, &products, clients, stop).await
            }))
        };
        busy[i] = timed(cpu, url, PRODUCT, &products).await;
        stop.store(true, Ordering::Relaxed);
        writes.await.unwrap();
    }
    drop(writer);
    drop(reader);
    drop(read_server);
    if layout == Layout::Split {
        pin(write_server, &all_cpus, true);
    }
    drop_database(admin_url, &write_name).await;
    if let Some(name) = read_name {
        drop_database(admin_url, &name).await;
    }
    Split {
        peak,
        rate,
        near,
        far,
        reads: [idle_writer, idle_reader, busy[0], busy[1]],
    }
}

async fn run() -> anyhow::Result<()> {
    let admin_url: String = env_or(
        "BENCH_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test".to_owned(),
    );
    let events: usize = env_or("BENCH_EVENTS", 20_000);
    let secs: u64 = env_or("BENCH_SECS", 5);
    let clients: usize = env_or("BENCH_CLIENTS", 16);
    let probes: usize = env_or("BENCH_PROBES", 300);
    let mut report = format!(
        "# ordergraph event bus benchmark\n\n- date: {}\n- command: `cargo bench --bench bus` ({events} events, {clients} clients, {secs} s per load phase, {probes} probes), release binary, one PostgreSQL server, a private nats-server (JetStream, file storage)\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let (head, rate, bare) = publish_rate(&admin_url, events, clients).await;
    report.push_str(&format!(
        "## Publish rate ({head} positions)\n\n| publisher | events/s | ratio |\n|---|---:|---:|\n| bare JetStream publish of the same messages, 256 in flight (baseline) | {bare:.0} | 1.00 |\n| ordergraph's publisher (log read, safe horizon, publish, acks) | {rate:.0} | {:.2} |\n\n",
        rate / bare
    ));
    eprintln!("{report}");
    for layout in [Layout::Shared, Layout::Split] {
        let s = split(&admin_url, clients, secs, probes, layout).await;
        let title = match layout {
            Layout::Shared => {
                "every process on both CPUs; the read database on the write database's PostgreSQL server"
            }
            Layout::Split => {
                "the write side (writer, its PostgreSQL server, the broker, the write load) on CPU 0; the read side (read replica, a PostgreSQL server of its own, the read load) on CPU 1"
            }
        };
        report.push_str(&format!(
            "## Layout: {title}\n\n### Commit → subscriber at 50 % of the peak write rate\n\nPeak `adjustStock` through the writer: {:.0}/s; background load {:.0}/s; a probe product changed one at a time, from the mutation's send to the `productUpdated` frame.\n\n| subscriber | n | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n| on the writer, views in the write database (baseline) | {} | {:.2} | {:.2} | {:.2} |\n| on a read replica, views in its own database fed from the stream | {} | {:.2} | {:.2} | {:.2} |\n\n",
            s.peak,
            s.rate,
            s.near.len(),
            ms(s.near.value_at_quantile(0.5)),
            ms(s.near.value_at_quantile(0.99)),
            ms(s.near.max()),
            s.far.len(),
            ms(s.far.value_at_quantile(0.5)),
            ms(s.far.value_at_quantile(0.99)),
            ms(s.far.max()),
        ));
        report.push_str(&format!(
            "### Reads under writes (`product(id)`, {clients} clients)\n\n| served by | idle, queries/s | while {clients} clients write, queries/s | kept |\n|---|---:|---:|---:|\n| the writer (views in the write database, baseline) | {:.0} | {:.0} | {:.0} % |\n| a read replica (views in its own database) | {:.0} | {:.0} | {:.0} % |\n\n",
            s.reads[0],
            s.reads[2],
            100.0 * s.reads[2] / s.reads[0],
            s.reads[1],
            s.reads[3],
            100.0 * s.reads[3] / s.reads[1],
        ));
        eprintln!("{report}");
    }
    println!("{report}");
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::write(target.join("bench-bus.md"), report)?;
    Ok(())
}
