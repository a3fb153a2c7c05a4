//! The example consumer (`examples/sales-consumer`): another service keeping units sold
//! per product per day from the stream, exactly once, through its own crash and restart
//! and a broker crash. Its table is checked against the log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinHandle;

use super::broker::{Broker, STREAM};
use super::{BOUND, Row, log_rows};
use crate::helpers::*;

/// The example consumer running in this process (it is a library too), on its own
/// SQLite database.
pub(super) struct Consumer {
    pub config: sales_consumer::Config,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Consumer {
    pub fn start(nats_url: &str) -> Consumer {
        let dir = tempfile::tempdir().expect("a directory");
        let config = sales_consumer::Config {
            nats_url: nats_url.to_owned(),
            stream: STREAM.to_owned(),
            subject_prefix: "ordergraph".to_owned(),
            database_url: format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("sales.db").display()
            ),
        };
        let mut consumer = Consumer {
            config,
            task: None,
            _dir: dir,
        };
        consumer.resume();
        consumer
    }

    /// Starts it (again) from what its database says.
    pub fn resume(&mut self) {
        let config = self.config.clone();
        self.task = Some(tokio::spawn(async move {
            sales_consumer::run(&config, std::future::pending()).await
        }));
    }

    /// A crash: the task is dropped wherever it is, a transaction in flight with it.
    pub async fn crash(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Waits until its table is `expected` (the units of the log's confirmed orders).
    pub async fn reaches(&self, expected: &BTreeMap<(String, String), i64>) {
        let pool = sales_consumer::open(&self.config.database_url)
            .await
            .expect("its database");
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(task) = &self.task {
                assert!(!task.is_finished(), "the consumer stopped");
            }
            let table: BTreeMap<(String, String), i64> = sales_consumer::units_sold(&pool)
                .await
                .expect("its table")
                .into_iter()
                .map(|s| ((s.product_id, s.day), s.units))
                .collect();
            if &table == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the consumer's table {table:?} is not the log's {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Units of confirmed orders per product per UTC day of confirmation, from the log.
pub(super) fn units_sold(log: &[Row]) -> BTreeMap<(String, String), i64> {
    let mut lines: BTreeMap<&str, Vec<(String, i64)>> = BTreeMap::new();
    let mut sold = BTreeMap::new();
    for row in log.iter().filter(|r| r.stream_type == "order") {
        match row.event_type.as_str() {
            "OrderPlaced" => {
                let placed = row.data["lines"].as_array().expect("lines");
                lines.insert(
                    &row.stream_id,
                    placed
                        .iter()
                        .map(|l| {
                            (
                                l["product_id"].as_str().expect("a product").to_owned(),
                                l["quantity"].as_i64().expect("a quantity"),
                            )
                        })
                        .collect(),
                );
            }
            "OrderConfirmed" => {
                let day = row.recorded_at.format("%Y-%m-%d").to_string();
                for (product, quantity) in lines.remove(row.stream_id.as_str()).unwrap_or_default()
                {
                    *sold.entry((product, day.clone())).or_default() += quantity;
                }
            }
            "OrderRejected" | "OrderCancelled" => {
                lines.remove(row.stream_id.as_str());
            }
            _ => {}
        }
    }
    sold
}

/// `user` buys `quantity` of `product`, paying with `card`; the order id.
async fn buy_with(app: &TestApp, user: &str, product: &str, quantity: i64, card: &str) -> String {
    let caller = app.as_user(user);
    let added = caller.add_to_cart(product, quantity).await;
    assert!(added["errors"].is_null(), "{added}");
    let placed = caller
        .gql(
            CHECKOUT,
            json!({ "input": { "paymentToken": card, "shippingAddress": ADDRESS } }),
        )
        .await;
    str_of(&data(&placed)["checkout"]["order"]["id"]).to_owned()
}

async fn buy(app: &TestApp, user: &str, product: &str, quantity: i64) -> String {
    buy_with(app, user, product, quantity, "tok_visa").await
}

/// Waits until every order of `ids` has left PENDING/RESERVED.
async fn settled(app: &TestApp, ids: &[String]) {
    let deadline = Instant::now() + BOUND;
    for id in ids {
        loop {
            let resp = app
                .as_admin()
                .gql(
                    "query($id: UUID!) { order(id: $id) { status } }",
                    json!({ "id": id }),
                )
                .await;
            let status = data(&resp)["order"]["status"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if status == "CONFIRMED" || status == "REJECTED" {
                break;
            }
            assert!(Instant::now() < deadline, "order {id} stays {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn the_example_consumer_counts_units_sold_exactly_once_through_its_crash_and_the_brokers() {
    let Some(mut broker) = Broker::start().await else {
        return;
    };
    let app = spawn_app_with(|s| s.nats_url = Some(broker.url())).await;
    let admin = app.as_admin();
    let mug = str_of(&admin.create_product("SOLD-MUG", "9.90", 100).await["id"]).to_owned();
    let tea = str_of(&admin.create_product("SOLD-TEA", "4.50", 20).await["id"]).to_owned();
    let mut consumer = Consumer::start(&broker.url());

    let mut orders = vec![
        buy(&app, "ann", &mug, 2).await,
        buy(&app, "bob", &tea, 2).await,
        // Declined by the payment provider: rejected, so not sold.
        buy_with(&app, "cid", &mug, 5, "tok_decline").await,
    ];
    settled(&app, &orders).await;
    consumer
        .reaches(&units_sold(&log_rows(app.database_url()).await))
        .await;

    // The consumer crashes; orders go on; the broker dies and comes back; the consumer
    // starts again from its stored position.
    consumer.crash().await;
    orders.push(buy(&app, "dee", &mug, 3).await);
    broker.kill9().await;
    orders.push(buy(&app, "eve", &mug, 1).await);
    broker.restart().await;
    consumer.resume();
    orders.push(buy(&app, "fay", &mug, 4).await);
    settled(&app, &orders).await;
    let expected = units_sold(&log_rows(app.database_url()).await);
    assert_eq!(
        expected.values().sum::<i64>(),
        2 + 2 + 3 + 1 + 4,
        "the rejected order sold nothing: {expected:?}"
    );
    consumer.reaches(&expected).await;
}
