//! Rebuild benchmark: how fast every view is rebuilt from a log of 1M generated events
//! (`ordergraph projections rebuild`'s code path: the relay's projection code folding
//! pages of `rebuild::PAGE` (20 000) events into a scratch copy, then the swap), on SQLite and on
//! PostgreSQL, beside the baseline from the same run: a bare `SELECT` scan of the events
//! table in the same pages, nothing folded. Every view is rebuilt twice: one after the
//! other (a line each), then all at once from one reading of the log, as `ordergraph
//! projections rebuild` does, from empty live views both times.
//!
//! The log is a shop's: products created, restocked and reviewed, items added to carts,
//! and orders placed, reserved, paid and confirmed (five events each, across the order,
//! product and payment streams), so every view has work. It is written straight into
//! the `events` table (this measures replaying, not writing).
//!
//! `cargo bench --bench rebuild` (env: BENCH_EVENTS=1000000,
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test). Results go to stdout and
//! `target/bench-rebuild.md`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use ordergraph::entity::events;
use ordergraph::read::rebuild::{Phase, Replayer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// The allocator the `ordergraph` binary ships with (ADR 0018): the service measured here
/// runs in this process, so it allocates as it does in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const INSERT_BATCH: usize = 1_000;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// Generates the log, in position order.
struct Shop {
    rng: StdRng,
    at: DateTime<Utc>,
    products: Vec<(Uuid, i64, i64, i64)>, // id, version, stock, reviews
    carts: Vec<(Uuid, String, i64)>,      // stream, user, version
    rows: Vec<events::ActiveModel>,
}

impl Shop {
    fn new(products: usize, users: usize) -> Self {
        let mut shop = Self {
            rng: StdRng::seed_from_u64(42),
            at: Utc::now() - chrono::Duration::days(30),
            products: Vec::new(),
            carts: (0..users)
                .map(|u| (Uuid::new_v4(), format!("user-{u}"), 0))
                .collect(),
            rows: Vec::new(),
        };
        for i in 0..products {
            let id = Uuid::now_v7();
            shop.push(
                id,
                "product",
                1,
                "ProductCreated",
                1,
                json!({ "sku": format!("BENCH-{i:06}"), "name": format!("Product {i}"),
                        "description": "", "price": "9.99", "stock": 1_000_000 }),
            );
            shop.products.push((id, 1, 1_000_000, 0));
        }
        shop
    }

    fn push(
        &mut self,
        stream: Uuid,
        stream_type: &str,
        version: i64,
        event_type: &str,
        event_version: i32,
        data: Value,
    ) {
        self.at += chrono::Duration::milliseconds(1);
        self.rows.push(events::ActiveModel {
            stream_id: Set(stream),
            stream_type: Set(stream_type.to_owned()),
            version: Set(version),
            event_type: Set(event_type.to_owned()),
            event_version: Set(event_version),
            data: Set(data),
            metadata: Set(json!({ "correlationId": Uuid::new_v4(), "causationId": "bench" })),
            recorded_at: Set(self.at),
            ..Default::default()
        });
    }

    /// One step of the shop's life: 1 to 5 events.
    fn step(&mut self) {
        let roll = self.rng.random_range(0..100);
        let p = self.rng.random_range(0..self.products.len());
        match roll {
            0..40 => {
                let (id, version, stock, _) = &mut self.products[p];
                *version += 1;
                *stock += 5;
                let (id, version, stock) = (*id, *version, *stock);
                self.push(
                    id,
                    "product",
                    version,
                    "ProductStockUpdated",
                    1,
                    json!({ "delta": 5, "reason": "restock", "stock": stock }),
                );
            }
            40..45 => {
                let (id, version, _, reviews) = &mut self.products[p];
                *version += 1;
                *reviews += 1;
                let (id, version, reviews) = (*id, *version, *reviews);
                self.push(
                    id,
                    "product",
                    version,
                    "ProductReviewed",
                    2,
                    json!({ "user_id": format!("user-{reviews}"), "rating": 4, "comment": "ok",
                            "title": "Fine", "review_count": reviews, "rating_total": reviews * 4 }),
                );
            }
            45..75 => {
                let u = self.rng.random_range(0..self.carts.len());
                let product = self.products[p].0;
                let (stream, user, version) = &mut self.carts[u];
                *version += 1;
                let (stream, user, version) = (*stream, user.clone(), *version);
                self.push(
                    stream,
                    "cart",
                    version,
                    "CartItemAdded",
                    1,
                    json!({ "user_id": user, "product_id": product, "quantity": version, "added": 1 }),
                );
            }
            _ => {
                let order = Uuid::now_v7();
                let user = format!("user-{}", self.rng.random_range(0..self.carts.len()));
                let (product, _, _, _) = self.products[p];
                self.push(
                    order,
                    "order",
                    1,
                    "OrderPlaced",
                    1,
                    json!({ "user_id": user, "payment_token": "tok_visa", "shipping_address": "1 Main",
                            "total": "9.99", "lines": [{ "product_id": product, "sku": "BENCH",
                            "name": "Product", "quantity": 1, "unit_price": "9.99" }] }),
                );
                let (id, version, stock, _) = &mut self.products[p];
                *version += 1;
                *stock -= 1;
                let (id, version, stock) = (*id, *version, *stock);
                self.push(
                    id,
                    "product",
                    version,
                    "ProductStockReserved",
                    1,
                    json!({ "order_id": order, "quantity": 1, "stock": stock }),
                );
                self.push(order, "order", 2, "OrderReserved", 1, json!({}));
                self.push(
                    Uuid::now_v7(),
                    "payment",
                    1,
                    "PaymentCharged",
                    1,
                    json!({ "order_id": order, "amount": "9.99", "charge_id": format!("ch_{}", order.simple()) }),
                );
                self.push(order, "order", 3, "OrderConfirmed", 1, json!({}));
            }
        }
    }
}

/// Writes `count` events of a shop's life into `db`'s log.
async fn fill(db: &DatabaseConnection, count: usize) -> anyhow::Result<usize> {
    let mut shop = Shop::new((count / 100).max(10), (count / 20).max(10));
    let mut written = 0;
    while written < count {
        while shop.rows.len() < INSERT_BATCH * 10 && written + shop.rows.len() < count {
            shop.step();
        }
        let rows = std::mem::take(&mut shop.rows);
        let txn = db.begin().await?;
        for chunk in rows.chunks(INSERT_BATCH) {
            events::Entity::insert_many(chunk.to_vec())
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        written += rows.len();
    }
    Ok(written)
}

struct Line {
    what: String,
    events: u64,
    secs: f64,
    rows: Option<u64>,
    /// Of `secs`, the swap: the tail, the changed keys and the copy into the live view.
    swap_secs: Option<f64>,
}

/// The baseline: every event read in position order, in the replay's pages.
async fn scan(db: &DatabaseConnection) -> anyhow::Result<Line> {
    let started = Instant::now();
    let mut after = 0;
    let mut seen = 0u64;
    loop {
        let page = events::Entity::find()
            .filter(events::Column::Position.gt(after))
            .order_by_asc(events::Column::Position)
            .limit(ordergraph::read::rebuild::PAGE)
            .all(db)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        seen += page.len() as u64;
    }
    Ok(Line {
        what: format!(
            "baseline: bare SELECT scan of `events` (pages of {}, nothing folded)",
            ordergraph::read::rebuild::PAGE
        ),
        events: seen,
        secs: started.elapsed().as_secs_f64(),
        rows: None,
        swap_secs: None,
    })
}

/// Empties every view and sets its checkpoint back to the start, as a fresh log found
/// them.
async fn empty_views(db: &DatabaseConnection) -> anyhow::Result<()> {
    let txn = db.begin().await?;
    for projection in ordergraph::read::all_projections() {
        for table in projection.tables() {
            txn.execute_unprepared(&format!("DELETE FROM \"{}\"", table.name))
                .await?;
        }
        ordergraph::read::checkpoints::store(&txn, projection.name(), 0).await?;
    }
    txn.commit().await?;
    Ok(())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn bench(url: &str, events: usize) -> anyhow::Result<String> {
    // Enough connections for every view's rebuild at once (a page read and a swap each).
    let db = ordergraph::db::connect(url, 10).await?;
    ordergraph::db::migrate(&db).await?;
    let started = Instant::now();
    let written = fill(&db, events).await?;
    let fill_secs = started.elapsed().as_secs_f64();
    let mut lines = vec![scan(&db).await?];
    let replayer = Replayer {
        db: db.clone(),
        log: db.clone(),
        url: url.to_owned(),
        gate: None,
    };
    let mut total = Line {
        what: "every view, one after the other".into(),
        events: 0,
        secs: 0.0,
        rows: Some(0),
        swap_secs: Some(0.0),
    };
    for projection in ordergraph::read::all_projections() {
        let swapping = std::sync::Mutex::new(None);
        let (done, _) = replayer
            .rebuild(
                projection.as_ref(),
                || ordergraph::log::horizon::safe_horizon(&db, 0),
                &|p| {
                    if p.phase == Phase::Swapping {
                        *swapping.lock().unwrap() = Some(Instant::now());
                    }
                },
            )
            .await?;
        let swap_secs = swapping
            .lock()
            .unwrap()
            .map(|at: Instant| at.elapsed().as_secs_f64());
        let report = replayer.verify(projection.as_ref(), &|_| {}).await?;
        assert!(report.is_ok(), "the rebuilt view verifies: {report:?}");
        total.events += done.done;
        total.secs += done.elapsed.as_secs_f64();
        total.rows = Some(total.rows.unwrap_or(0) + done.rows);
        total.swap_secs = Some(total.swap_secs.unwrap_or(0.0) + swap_secs.unwrap_or(0.0));
        lines.push(Line {
            what: format!("rebuild `{}`", projection.name()),
            events: done.done,
            secs: done.elapsed.as_secs_f64(),
            rows: Some(done.rows),
            swap_secs,
        });
    }
    lines.push(total);
    // Every view again, all at once from one reading of the log (what `ordergraph
    // projections rebuild` runs without a view's name), from live views as empty as the
    // pass above found them.
    empty_views(&db).await?;
    let started = Instant::now();
    let all = ordergraph::read::all_projections();
    let done = replayer
        .rebuild_all(
            &all,
            || ordergraph::log::horizon::safe_horizon(&db, 0),
            &|_| {},
        )
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let secs = started.elapsed().as_secs_f64();
    for projection in &all {
        let report = replayer.verify(projection.as_ref(), &|_| {}).await?;
        assert!(report.is_ok(), "the rebuilt view verifies: {report:?}");
    }
    lines.push(Line {
        what: "**every view, all at once** (one reading of the log, `projections rebuild`)".into(),
        events: done.iter().map(|(p, _)| p.done).sum(),
        secs,
        rows: Some(done.iter().map(|(p, _)| p.rows).sum()),
        swap_secs: None,
    });
    let mut out = format!(
        "{written} events generated (written in {fill_secs:.1} s). Peak RSS of the process: {:.0} MiB.\n\n| what | events | seconds | events/s | view rows | of it, swap s |\n|---|---:|---:|---:|---:|---:|\n",
        peak_rss_mib()
    );
    for l in lines {
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {} | {} |\n",
            l.what,
            l.events,
            l.secs,
            l.events as f64 / l.secs.max(1e-9),
            l.rows.map_or_else(|| "–".to_owned(), |r| r.to_string()),
            l.swap_secs
                .map_or_else(|| "–".to_owned(), |s| format!("{s:.2}"))
        ));
    }
    db.close().await?;
    Ok(out)
}

async fn run() -> anyhow::Result<()> {
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut report = format!(
        "# ordergraph rebuild benchmark\n\n- date: {}\n- command: `cargo bench --bench rebuild`\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let dir = tempfile::tempdir()?;
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let section = bench(&sqlite, events).await?;
    println!("## SQLite\n\n{section}");
    report.push_str(&format!("## SQLite\n\n{section}\n"));

    let admin_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match sea_orm::Database::connect(&admin_url).await {
        Ok(admin) => {
            let name = format!("bench_{}", Uuid::new_v4().simple());
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await?;
            let mut url = reqwest::Url::parse(&admin_url)?;
            url.set_path(&format!("/{name}"));
            let result = bench(url.as_str(), events).await;
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await?;
            let section = result?;
            println!("## PostgreSQL\n\n{section}");
            report.push_str(&format!("## PostgreSQL\n\n{section}\n"));
        }
        Err(e) => report.push_str(&format!("## PostgreSQL\n\nskipped: {e}\n")),
    }
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::write(target.join("bench-rebuild.md"), report)?;
    Ok(())
}
