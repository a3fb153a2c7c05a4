//! Hostile-request benchmark: the time and memory of the worst requests the hardening
//! campaign and the fuzz test found, each beside a plain `{ __typename }` measured on
//! the same server binary in the same run.
//!
//! Each case runs on a fresh server process (so its peak memory, the kernel's `VmHWM`,
//! is its own) on a fresh SQLite database with a small catalog, once per repetition;
//! a case that does not answer within `BENCH_CASE_TIMEOUT_SECS` (default 30) is recorded
//! as such and its server killed. Memory "after" is the resident size 2 s after the
//! answer: whether the server gave the memory back.
//!
//! `cargo bench --bench hostile` measures `target/release/ordergraph`;
//! `ORDERGRAPH_BIN=<path>` measures another build (BENCHMARKS.md compares the build
//! before the hardening issue with the one after it). Results go to stdout and
//! `target/bench-hostile.md`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const SECRET: &str = "hostile-bench-secret-not-for-production";

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// A server process.
struct Server {
    child: tokio::process::Child,
    pid: u32,
    url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(bin: &PathBuf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(bin)
            .arg("serve")
            .env("ORDERGRAPH_BIND", "127.0.0.1:0")
            .env("ORDERGRAPH_DATA_DIR", dir.path())
            .env("ORDERGRAPH_JWT_SECRET", SECRET)
            .env("ORDERGRAPH_LOG_FORMAT", "json")
            .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the server logs its address");
            if line.contains("serving GraphQL") {
                let v: Value = serde_json::from_str(&line).unwrap();
                break v["fields"]["address"].as_str().unwrap().to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            pid,
            url: format!("http://{address}/graphql"),
            _dir: dir,
        }
    }

    /// (resident now, peak resident) in MiB.
    fn memory(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
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

/// `levels` fragments, each spreading the previous one twice (with aliased fields when
/// `aliased`).
fn fragment_bomb(levels: usize, aliased: bool) -> String {
    let mut q = format!("query {{ ...F{levels} }}\nfragment F0 on Query {{ __typename }}\n");
    for i in 1..=levels {
        let p = i - 1;
        if aliased {
            q.push_str(&format!(
                "fragment F{i} on Query {{ a: products(first: 1) {{ totalCount }} ...F{p} b: products(first: 1) {{ totalCount }} ...F{p} }}\n"
            ));
        } else {
            q.push_str(&format!("fragment F{i} on Query {{ ...F{p} ...F{p} }}\n"));
        }
    }
    q
}

/// The cases: a name, the request body and how many times it runs (the plain query often,
/// for a stable median; a hostile one once, since it may cost seconds and gigabytes).
fn cases() -> Vec<(&'static str, Vec<u8>, usize)> {
    let body = |q: &str| json!({ "query": q }).to_string().into_bytes();
    let page = "{ products(first: 100) { edges { node { id sku name description price stock inStock averageRating } } } }";
    let batch: Vec<Value> = std::iter::repeat_n(json!({ "query": page }), 2_000).collect();
    let aliases = |n: usize| -> String { (0..n).map(|i| format!(" a{i}: __typename")).collect() };
    vec![
        ("plain `{ __typename }`", body("{ __typename }"), 1_000),
        (
            "fragment bomb, 23 levels (1 KB)",
            body(&fragment_bomb(23, false)),
            1,
        ),
        (
            "fragment bomb, 26 levels (1 KB)",
            body(&fragment_bomb(26, false)),
            1,
        ),
        (
            "aliased fragment bomb, 20 levels (2 KB)",
            body(&fragment_bomb(20, true)),
            1,
        ),
        (
            "batch of 2 000 catalog pages (222 KB)",
            Value::Array(batch).to_string().into_bytes(),
            1,
        ),
        (
            "4 900 aliased fields (68 KB; accepted: within every limit)",
            body(&format!("{{{} }}", aliases(4_900))),
            20,
        ),
        (
            "9 000 aliased fields (131 KB; over the token limit)",
            body(&format!("{{{} }}", aliases(9_000))),
            20,
        ),
    ]
}

struct Outcome {
    millis: Option<f64>,
    response_bytes: usize,
    peak_mib: f64,
    after_mib: f64,
    baseline_mib: f64,
}

/// Runs `request` `repeat` times on a fresh server; the median time (none when any
/// attempt got no answer).
async fn measure(bin: &PathBuf, request: &[u8], repeat: usize, timeout: Duration) -> Outcome {
    let mut server = Server::start(bin).await;
    let http = reqwest::Client::builder().timeout(timeout).build().unwrap();
    // A small catalog, so catalog pages have rows.
    let admin = ordergraph::auth::mint_token(
        SECRET,
        "bench-admin",
        ordergraph::auth::Role::Admin,
        Duration::from_secs(3600),
    )
    .unwrap();
    for i in 0..100 {
        let create = format!(
            "mutation {{ createProduct(input: {{sku: \"H-{i}\", name: \"Product {i}\", description: \"{}\", price: \"9.99\", initialStock: 5}}) {{ position }} }}",
            "d".repeat(200)
        );
        http.post(&server.url)
            .bearer_auth(&admin)
            .json(&json!({ "query": create }))
            .send()
            .await
            .unwrap();
    }
    for _ in 0..50 {
        http.post(&server.url)
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .unwrap();
    }
    let (baseline_mib, _) = server.memory();
    let mut times = Vec::with_capacity(repeat);
    let mut response_bytes = 0;
    for _ in 0..repeat {
        let started = Instant::now();
        let answer = http
            .post(&server.url)
            .header("content-type", "application/json")
            .body(request.to_vec())
            .send()
            .await;
        let Ok(Ok(bytes)) = (match answer {
            Ok(response) => Ok(response.bytes().await),
            Err(e) => Err(e),
        }) else {
            times.clear();
            break;
        };
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        response_bytes = bytes.len();
    }
    times.sort_by(f64::total_cmp);
    let millis = times.get(times.len() / 2).copied();
    let (_, peak_mib) = server.memory();
    if millis.is_some() {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (after_mib, _) = server.memory();
    let _ = server.child.kill().await;
    Outcome {
        millis,
        response_bytes,
        peak_mib,
        after_mib,
        baseline_mib,
    }
}

async fn run() -> anyhow::Result<()> {
    let bin = std::env::var("ORDERGRAPH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/ordergraph")
        });
    anyhow::ensure!(
        bin.exists(),
        "no server binary at {} (cargo build --release, or set ORDERGRAPH_BIN)",
        bin.display()
    );
    let timeout = Duration::from_secs(
        std::env::var("BENCH_CASE_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    );
    let mut report = format!(
        "Hostile requests against `{}` (each on a fresh server; timeout {} s)\n\n| request | answered in (median) | response | memory before | peak | 2 s after |\n|---|---:|---:|---:|---:|---:|\n",
        bin.display(),
        timeout.as_secs()
    );
    for (name, body, repeat) in cases() {
        let o = measure(&bin, &body, repeat, timeout).await;
        let time = match o.millis {
            Some(ms) if ms < 10.0 => format!("{ms:.2} ms"),
            Some(ms) => format!("{ms:.0} ms"),
            None => format!("no answer in {} s", timeout.as_secs()),
        };
        let line = format!(
            "| {name} | {time} | {} | {:.0} MiB | {:.0} MiB | {} |\n",
            human_bytes(o.response_bytes),
            o.baseline_mib,
            o.peak_mib,
            if o.millis.is_some() {
                format!("{:.0} MiB", o.after_mib)
            } else {
                "killed".into()
            },
        );
        print!("{line}");
        report.push_str(&line);
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-hostile.md");
    std::fs::write(&out, &report)?;
    println!("\n{report}\n(written to {})", out.display());
    Ok(())
}

fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}
