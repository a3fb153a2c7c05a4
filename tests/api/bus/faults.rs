//! The bus under faults (issue 16): three writer replicas on the write database, two read
//! replicas on a read database of their own fed from the broker, a mixed load through all
//! five (clients retry on another replica with the same idempotency key), and meanwhile:
//! the broker `kill -9`ed and restarted, the publisher's replica `kill -9`ed (and replaced),
//! every connection to the read database terminated, a third read replica started from
//! an empty database of its own, and the example consumer (`examples/sales-consumer`)
//! crashed and started again.
//!
//! Afterwards the checker: the stream is the log; every view of each read database equals
//! a replay of the write side's log (`verifyProjection` on a read replica); every `events`
//! subscriber on a read replica saw every position once, in order; every `productUpdated`
//! subscriber on a read replica ended at the final stock; every order confirmed, none
//! charged twice; the example consumer's table equals the units sold in the log.

use std::time::Duration;

use ordergraph::auth::Role;
use sea_orm::ConnectionTrait;
use serde_json::json;

use super::assert_stream_is_the_log;
use super::broker::Broker;
use crate::cluster::chaos::{Client, Load, Pool, Subscribers, load_products, views_verify};
use crate::cluster::charged_twice;
use crate::cluster::harness::{CLUSTER, Cluster, holders};
use crate::helpers::*;

const WRITERS: usize = 4;
const BUYERS: usize = 2;
/// How long the load runs between two faults.
const BETWEEN: Duration = Duration::from_millis(1_500);

/// Reads `query` through `client` until `accept` says yes.
async fn until(
    client: &mut Client,
    what: &str,
    query: &str,
    variables: serde_json::Value,
    accept: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = client.send(query, variables.clone()).await;
        if accept(&answer) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: last answer {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_read_side_loses_nothing_through_broker_publisher_and_read_database_faults() {
    let Some(mut cluster) = Cluster::new().await else {
        return;
    };
    let Some(mut broker) = Broker::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("a directory");
    let (read_url, _read_db) = fresh_database_url(dir.path()).await;
    let nats = broker.url();
    let writer_env = [
        ("ORDERGRAPH_NATS_URL", nats.as_str()),
        ("ORDERGRAPH_LEASE_MS", "1500"),
        ("ORDERGRAPH_DB_MAX_CONNECTIONS", "6"),
    ];
    let reader_env = [
        ("ORDERGRAPH_NATS_URL", nats.as_str()),
        ("READ_DATABASE_URL", read_url.as_str()),
        ("ORDERGRAPH_DB_MAX_CONNECTIONS", "4"),
    ];
    cluster.add(3, &writer_env).await;
    cluster.add(2, &reader_env).await;
    let (everyone, writers_only, readers) = (Pool::default(), Pool::default(), Pool::default());
    for (i, replica) in cluster.replicas.iter().enumerate() {
        everyone.add(&replica.address);
        if i < 3 {
            writers_only.add(&replica.address);
        } else {
            readers.add(&replica.address);
        }
    }
    let mut admin = Client::new(&everyone, "admin", Role::Admin, 0);
    let mut sales = super::consumer::Consumer::start(&nats);

    // Two products written to, one bought; subscribers on the read replicas only (two
    // `events`, two `productUpdated`); the load, through all five.
    let (written, bought) = load_products(&mut admin, "BUS").await;
    let subscribers = Subscribers::start(&readers, 2, &written);
    let load = Load::start(&everyone, (&written, WRITERS), (&bought, BUYERS), "bus");

    // The faults.
    tokio::time::sleep(BETWEEN).await;
    broker.kill9().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.restart().await;
    println!("fault: broker kill -9, restarted 1 s later");

    tokio::time::sleep(BETWEEN).await;
    // The write side's cluster (a read replica answers with its read database's).
    let seen = Client::new(&writers_only, "admin", Role::Admin, 0)
        .send(CLUSTER, json!({}))
        .await;
    let publisher = holders(&seen["data"]["cluster"])
        .into_iter()
        .find(|(unit, _)| unit == "publisher")
        .and_then(|(_, holder)| holder);
    if let Some(holder) = publisher {
        let victim = cluster.by_node(&holder);
        everyone.remove(&cluster.replicas[victim].address);
        writers_only.remove(&cluster.replicas[victim].address);
        cluster.replicas[victim].kill9().await;
        cluster.add(1, &writer_env).await;
        let fresh = &cluster.replicas.last().expect("a new writer").address;
        everyone.add(fresh);
        writers_only.add(fresh);
        println!("fault: kill -9 of the publisher's replica {holder}, replaced");
    } else {
        panic!("nobody held the publisher: {seen}");
    }

    tokio::time::sleep(BETWEEN).await;
    sales.crash().await;
    println!("fault: the example consumer crashed");
    let read_db = sea_orm::Database::connect(&read_url)
        .await
        .expect("the read database");
    let name = read_url.rsplit('/').next().expect("a database name");
    read_db
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .await
        .expect("the read database's connections are terminated");
    read_db.close().await.expect("closes");
    println!("fault: every connection to the read database terminated");

    tokio::time::sleep(BETWEEN).await;
    let late_dir = tempfile::tempdir().expect("a directory");
    let late_url = format!(
        "sqlite://{}?mode=rwc",
        late_dir.path().join("late.db").display()
    );
    let late_env = [
        ("ORDERGRAPH_NATS_URL", nats.as_str()),
        ("READ_DATABASE_URL", late_url.as_str()),
        ("ORDERGRAPH_DB_MAX_CONNECTIONS", "4"),
    ];
    cluster.add(1, &late_env).await;
    let late = cluster.replicas.len() - 1;
    sales.resume();
    println!("fault: a read replica started from an empty database under load");

    tokio::time::sleep(BETWEEN).await;

    // The checker.
    let done = load.finish().await;
    let (expected, orders) = (&done.expected, &done.orders);

    // Every order confirms, none twice charged.
    let mut writer_client = Client::new(&writers_only, "admin", Role::Admin, 0);
    for order in orders {
        until(
            &mut writer_client,
            &format!("order {order} is CONFIRMED"),
            "query($id: UUID!) { order(id: $id) { status } }",
            json!({ "id": order }),
            |a| a["data"]["order"]["status"] == "CONFIRMED",
        )
        .await;
    }
    assert_eq!(
        charged_twice(&cluster).await,
        0,
        "an order was charged twice"
    );

    // The stream is the log.
    assert_stream_is_the_log(&broker, &cluster.database_url).await;

    // Each read replica — the two on the shared read database and the late one on its
    // own — shows every acknowledged write, and every view of its database equals a
    // replay of the write side's log.
    let late_pool = Pool::default();
    late_pool.add(&cluster.replicas[late].address);
    for (what, pool) in [
        ("the read database", &readers),
        ("the late read replica", &late_pool),
    ] {
        let mut client = Client::new(pool, "admin", Role::Admin, 0);
        for (product, count) in expected {
            until(
                &mut client,
                &format!("{what} shows every write to {product}"),
                "query($id: UUID!) { product(id: $id) { stock } }",
                json!({ "id": product }),
                |a| a["data"]["product"]["stock"].as_i64() == Some(*count),
            )
            .await;
        }
        for order in orders {
            until(
                &mut client,
                &format!("{what} shows order {order} CONFIRMED"),
                "query($id: UUID!) { order(id: $id) { status } }",
                json!({ "id": order }),
                |a| a["data"]["order"]["status"] == "CONFIRMED",
            )
            .await;
        }
        views_verify(&mut client, what).await;
    }

    // Every `events` subscriber on a read replica saw every position, once, in order.
    let log = super::log_rows(&cluster.database_url).await;
    let positions: Vec<i64> = log.iter().map(|r| r.position).collect();
    sales.reaches(&super::consumer::units_sold(&log)).await;
    subscribers
        .check(&positions, expected, Duration::from_secs(60), &cluster)
        .await;
}
