//! The event bus (ADR 0016): with `ORDERGRAPH_NATS_URL` set, every position of the log is
//! published to a JetStream stream whose sequence is the log's position — an event with
//! its row in the headers, or a gap marker where a transaction rolled back — through a
//! broker crash, a publisher's crash or freeze, and never past a stream that disagrees
//! with the log. Each test starts its own broker (`nats-server`), so it can kill it.

mod broker;
mod consumer;
mod faults;
mod read_replica;

use std::time::{Duration, Instant};

use ordergraph::auth::Role;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::cluster::harness::{Cluster, holders};
use crate::helpers::*;
use broker::{Broker, STREAM};

/// Generous: the machine running the tests is shared and slow.
const BOUND: Duration = Duration::from_secs(30);

/// One row of the log, as SQL shows it.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    position: i64,
    stream_type: String,
    stream_id: String,
    version: i64,
    event_type: String,
    data: Value,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

async fn log_rows(database_url: &str) -> Vec<Row> {
    let db = sea_orm::Database::connect(database_url)
        .await
        .expect("the test database");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT position, stream_type, stream_id, version, event_type, data, recorded_at FROM events ORDER BY position",
        ))
        .await
        .expect("the log reads");
    let rows = rows
        .iter()
        .map(|r| Row {
            position: r.try_get("", "position").expect("position"),
            stream_type: r.try_get("", "stream_type").expect("stream_type"),
            stream_id: r
                .try_get::<uuid::Uuid>("", "stream_id")
                .expect("stream_id")
                .to_string(),
            version: r.try_get("", "version").expect("version"),
            event_type: r.try_get("", "event_type").expect("event_type"),
            data: r.try_get("", "data").expect("data"),
            recorded_at: r.try_get("", "recorded_at").expect("recorded_at"),
        })
        .collect();
    db.close().await.expect("closes");
    rows
}

/// Waits until the stream has reached the log's head, then checks that it is the log:
/// sequence n is position n, every event at its position with its row, a gap marker at
/// every position the log does not have, nothing else. The number of gap markers.
async fn assert_stream_is_the_log(broker: &Broker, database_url: &str) -> usize {
    let deadline = Instant::now() + BOUND;
    let rows = loop {
        let rows = log_rows(database_url).await;
        let head = rows.last().map_or(0, |r| r.position);
        let published = broker.last_sequence().await;
        if published >= u64::try_from(head).expect("positive") && head > 0 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the stream stopped at {published}; the log's head is {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let messages = broker.messages().await;
    let head = rows.last().map_or(0, |r| r.position);
    assert_eq!(
        messages.len() as i64,
        head,
        "one message per position, from 1 to the head {head}"
    );
    let mut rows = rows.into_iter().peekable();
    let mut gaps = 0;
    for (i, m) in messages.iter().enumerate() {
        let position = i as i64 + 1;
        assert_eq!(m.sequence, position as u64, "sequence {i}+1");
        assert_eq!(m.position.as_deref(), Some(position.to_string().as_str()));
        assert_eq!(
            m.msg_id.as_deref(),
            Some(position.to_string().as_str()),
            "the message id is the position (the broker's deduplication)"
        );
        match rows.next_if(|r| r.position == position) {
            Some(row) => {
                assert!(!m.gap, "an event at {position}, not a gap marker");
                assert_eq!(
                    m.subject,
                    format!("ordergraph.{}.{}", row.stream_type, row.event_type)
                );
                assert_eq!(m.stream_id.as_deref(), Some(row.stream_id.as_str()));
                assert_eq!(m.version.as_deref(), Some(row.version.to_string().as_str()));
                assert_eq!(m.event_type.as_deref(), Some(row.event_type.as_str()));
                assert_eq!(m.payload.as_ref(), Some(&row.data), "the event's data");
                assert!(m.correlation.is_some(), "the correlation id travels along");
            }
            None => {
                assert!(m.gap, "position {position} is not in the log: a gap marker");
                assert_eq!(m.subject, "ordergraph._gap");
                gaps += 1;
            }
        }
    }
    gaps
}

#[tokio::test]
async fn every_position_of_the_log_is_published_in_order_with_its_event() {
    let Some(broker) = Broker::start().await else {
        return;
    };
    let app = spawn_app_with(|s| s.nats_url = Some(broker.url())).await;
    let admin = app.as_admin();
    let mug = admin.create_product("BUS-MUG", "9.90", 10).await;
    let mug_id = str_of(&mug["id"]).to_owned();
    let tea = admin.create_product("BUS-TEA", "4.50", 3).await;
    for delta in [5, -2, 7] {
        let resp = admin.adjust_stock(&mug_id, delta).await;
        assert!(resp["errors"].is_null(), "{resp}");
    }
    let alice = app.as_user("alice");
    let resp = alice.add_to_cart(str_of(&tea["id"]), 2).await;
    assert!(resp["errors"].is_null(), "{resp}");
    let resp = alice.add_to_cart(&mug_id, 1).await;
    assert!(resp["errors"].is_null(), "{resp}");

    let gaps = assert_stream_is_the_log(&broker, app.database_url()).await;
    if !app.database_url().starts_with("postgres") {
        assert_eq!(gaps, 0, "SQLite hands out positions with no hole");
    }

    // The publisher's progress is on /metrics.
    let metrics = app.get_text("/metrics").await;
    let head = broker.last_sequence().await;
    assert!(
        metrics.contains(&format!("ordergraph_bus_published_position {head}")),
        "{metrics}"
    );
    assert!(metrics.contains("ordergraph_bus_diverged 0"), "{metrics}");
}

#[tokio::test]
async fn a_rolled_back_position_is_published_as_a_gap_marker() {
    if !std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
        return; // SQLite hands out no position that a rollback leaves unused.
    }
    let Some(broker) = Broker::start().await else {
        return;
    };
    let app = spawn_app_with(|s| s.nats_url = Some(broker.url())).await;
    let admin = app.as_admin();
    let product = admin.create_product("GAP-1", "1.00", 1).await;
    let id = str_of(&product["id"]).to_owned();
    // A writer that drew positions and rolled back: those positions never hold an event.
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database");
    db.execute_unprepared(
        "BEGIN; SELECT nextval(pg_get_serial_sequence('events', 'position')) FROM generate_series(1, 3); ROLLBACK;",
    )
    .await
    .expect("a rolled-back transaction");
    let resp = admin.adjust_stock(&id, 4).await;
    assert!(resp["errors"].is_null(), "{resp}");
    let gaps = assert_stream_is_the_log(&broker, app.database_url()).await;
    assert!(gaps >= 3, "three rolled-back positions, {gaps} gap markers");
}

#[tokio::test]
async fn the_publisher_goes_on_after_the_broker_is_killed_and_restarted() {
    let Some(mut broker) = Broker::start().await else {
        return;
    };
    let app = spawn_app_with(|s| s.nats_url = Some(broker.url())).await;
    let product = app.as_admin().create_product("CRASH-1", "2.00", 0).await;
    let id = str_of(&product["id"]).to_owned();
    let writes = {
        let (address, id) = (app.address.clone(), id.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let admin = token("admin", Role::Admin);
            for _ in 0..60 {
                let resp: Value = http
                    .post(format!("{address}/graphql"))
                    .bearer_auth(&admin)
                    .json(&json!({ "query": ADJUST_STOCK, "variables": { "input": {
                        "productId": id, "delta": 1, "reason": "bus test" } } }))
                    .send()
                    .await
                    .expect("the service answers: writes need no broker")
                    .json()
                    .await
                    .expect("JSON");
                assert!(resp["errors"].is_null(), "{resp}");
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    // The broker dies in the middle of the writes and comes back a second later.
    let deadline = Instant::now() + BOUND;
    while broker.last_sequence().await < 15 {
        assert!(Instant::now() < deadline, "nothing was published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.kill9().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.restart().await;
    writes.await.expect("every write succeeded");

    assert_stream_is_the_log(&broker, app.database_url()).await;
    let stock = app.as_admin().product(&id).await["stock"].clone();
    assert_eq!(stock, json!(60));
}

#[tokio::test]
async fn a_stream_that_disagrees_with_the_log_stops_publishing_until_it_is_repaired() {
    let Some(broker) = Broker::start().await else {
        return;
    };
    let mut app = spawn_app_with(|s| s.nats_url = Some(broker.url())).await;
    let admin = app.as_admin();
    let product = admin.create_product("DIVERGE-1", "3.00", 1).await;
    let id = str_of(&product["id"]).to_owned();
    assert_stream_is_the_log(&broker, app.database_url()).await;
    let ready = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let body: Value = ready.json().await.expect("JSON");
    assert_eq!(body["publisherDiverged"], json!(false), "{body}");

    // Something else writes into the stream: it is no longer the log.
    let js = broker.jetstream().await.expect("the broker");
    js.publish("ordergraph.product.Intruder", "{}".into())
        .await
        .expect("published")
        .await
        .expect("acknowledged");
    let resp = app.as_admin().adjust_stock(&id, 1).await;
    assert!(resp["errors"].is_null(), "writes go on: {resp}");

    let deadline = Instant::now() + BOUND;
    let body = loop {
        let ready = app
            .http
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        let status = ready.status().as_u16();
        let body: Value = ready.json().await.expect("JSON");
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "still ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["publisherDiverged"], json!(true), "{body}");
    let metrics = app.get_text("/metrics").await;
    assert!(metrics.contains("ordergraph_bus_diverged 1"), "{metrics}");
    let before = broker.last_sequence().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        broker.last_sequence().await,
        before,
        "nothing is published past a mismatch"
    );

    // The repair: delete the stream; the publisher refills it from the log.
    js.delete_stream(STREAM).await.expect("deleted");
    app.restart().await;
    assert_stream_is_the_log(&broker, app.database_url()).await;
    let ready = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
}

/// The replica holding the `publisher` unit, as `cluster` answers through replica `via`.
async fn publisher_holder(cluster: &Cluster, via: usize) -> Option<String> {
    let seen = cluster.replicas[via].cluster().await?;
    holders(&seen)
        .into_iter()
        .find(|(unit, _)| unit == "publisher")
        .and_then(|(_, holder)| holder)
}

/// Waits until the publisher is held by a replica other than `not`.
async fn publisher_moves(cluster: &Cluster, via: usize, not: Option<&str>) -> String {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(holder) = publisher_holder(cluster, via).await
            && Some(holder.as_str()) != not
        {
            return holder;
        }
        assert!(
            Instant::now() < deadline,
            "the publisher was not taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` stock adjustments of +1 through replica `via`, each acknowledged.
async fn adjust(cluster: &Cluster, via: usize, product: &str, n: usize) {
    for _ in 0..n {
        let resp = cluster.replicas[via]
            .admin(
                ADJUST_STOCK,
                json!({ "input": { "productId": product, "delta": 1, "reason": "bus" } }),
            )
            .await;
        assert!(resp["errors"].is_null(), "{resp}");
    }
}

#[tokio::test]
async fn the_publisher_moves_when_its_replica_dies_or_freezes_and_the_frozen_one_publishes_nothing()
{
    let Some(mut cluster) = Cluster::new().await else {
        return;
    };
    let Some(broker) = Broker::start().await else {
        return;
    };
    let url = broker.url();
    cluster
        .add(
            3,
            &[
                ("ORDERGRAPH_NATS_URL", &url),
                ("ORDERGRAPH_LEASE_MS", "1500"),
            ],
        )
        .await;
    let index = |cluster: &Cluster, node: &str| cluster.by_node(node);
    let created = cluster.replicas[0]
        .admin(
            CREATE_PRODUCT,
            json!({ "input": {
                "sku": "BUS-HA", "name": "ha", "description": "ha", "price": "1.00", "initialStock": 0,
            }}),
        )
        .await;
    let product = str_of(&data(&created)["createProduct"]["product"]["id"]).to_owned();
    let first = publisher_moves(&cluster, 0, None).await;
    let dead = index(&cluster, &first);
    let other = (dead + 1) % 3;
    adjust(&cluster, other, &product, 10).await;

    // kill -9 the publisher's replica while writes go on through the others.
    cluster.replicas[dead].kill9().await;
    let killed_at = Instant::now();
    adjust(&cluster, other, &product, 10).await;
    let second = publisher_moves(&cluster, other, Some(&first)).await;
    println!(
        "the publisher moved from {first} to {second} {:?} after kill -9",
        killed_at.elapsed()
    );
    assert_stream_is_the_log(&broker, &cluster.database_url).await;

    // SIGSTOP the new holder: the last replica takes over; the frozen one, woken up,
    // has fenced itself and publishes nothing out of turn.
    let frozen = index(&cluster, &second);
    let last = (0..3)
        .find(|i| *i != dead && *i != frozen)
        .expect("a third replica");
    cluster.replicas[frozen].freeze();
    adjust(&cluster, last, &product, 10).await;
    let third = publisher_moves(&cluster, last, Some(&second)).await;
    assert_eq!(third, cluster.replicas[last].node);
    cluster.replicas[frozen].thaw();
    adjust(&cluster, frozen, &product, 10).await;
    assert_stream_is_the_log(&broker, &cluster.database_url).await;
    let stock = cluster.replicas[last]
        .admin(PRODUCT, json!({ "id": product }))
        .await;
    assert_eq!(data(&stock)["product"]["stock"], json!(40));
}
