//! PostgreSQL crashes under load (`pg_ctl stop -m immediate`: every connection cut, no
//! checkpoint; crash recovery on the next start) and comes back two seconds later, with
//! three replicas serving a mixed load and subscribers on each. The database is on a
//! server of the test's own (`crate::private_pg`), so that the rest of the suite keeps
//! its server.
//!
//! What a client may see meanwhile: answers `UNAVAILABLE` (the request may or may not have
//! taken effect) that it sends again with the same idempotency key, or no answer at all.
//! What it must never see: a write acknowledged and then lost, a write done twice, a view
//! or an order that stays stuck, a subscriber that misses or repeats a change, a replica
//! that stays down or unready.

use std::sync::Arc;
use std::time::Duration;

use ordergraph::auth::Role;
use serde_json::json;

use super::chaos::{Client, Load, Pool, Subscribers, load_products, lost_nothing};
use super::harness::{Cluster, on_postgres};
use super::within;
use crate::private_pg::PrivatePostgres;

/// How long the load runs before the crash, and after the server is back.
const BEFORE: Duration = Duration::from_millis(1_500);
const AFTER: Duration = Duration::from_secs(3);
/// How long the server stays down.
const DOWN: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_postgres_crash_under_load_loses_no_acknowledged_write_and_every_replica_recovers() {
    // Only with the PostgreSQL suite (clusters are PostgreSQL's); the server is private.
    if !on_postgres() {
        return;
    }
    let Some(server) = PrivatePostgres::start().map(Arc::new) else {
        return;
    };
    let mut cluster = Cluster::on(server.database("shop")).await;
    cluster
        .add(
            3,
            &[
                ("ORDERGRAPH_LEASE_MS", "1500"),
                ("ORDERGRAPH_DB_MAX_CONNECTIONS", "8"),
            ],
        )
        .await;
    let pool = Pool::default();
    for replica in &cluster.replicas {
        pool.add(&replica.address);
    }
    let mut admin = Client::new(&pool, "admin", Role::Admin, 0);
    let (written, bought) = load_products(&mut admin, "PGRESTART").await;
    let subscribers = Subscribers::start(&pool, 3, &written);
    let load = Load::start(&pool, (&written, 4), (&bought, 2), "pgrestart");

    tokio::time::sleep(BEFORE).await;
    let crashing = server.clone();
    tokio::task::spawn_blocking(move || crashing.crash_and_restart(DOWN))
        .await
        .expect("the server restarts");
    println!("PostgreSQL crashed and started again {DOWN:?} later");
    tokio::time::sleep(AFTER).await;
    let done = load.finish().await;

    // The crash reached every replica (its lease is a connection), and each is still up
    // and ready again. (Requests in flight at the crash answer UNAVAILABLE and are sent
    // again; the count is printed above. Requests that find no connection wait for one:
    // with the server back within the pool's acquire timeout, there may be none.)
    for replica in &mut cluster.replicas {
        assert_eq!(replica.exited(), None, "{} is still running", replica.node);
        assert!(
            replica.log_text().contains("cluster lease lost"),
            "{} lost its lease with the crash",
            replica.node
        );
    }
    for replica in &cluster.replicas {
        within(
            &format!("{} is ready again", replica.node),
            Duration::from_secs(30),
            || async { (replica.http_status("/readyz").await == 200).then_some(()) },
        )
        .await;
    }

    // Every acknowledged write is there once, every order confirmed and charged once,
    // every view equals a replay of the log, every subscriber saw every change once.
    lost_nothing(&cluster, &pool, &done, subscribers).await;
}

#[tokio::test]
async fn a_write_while_postgres_is_down_answers_unavailable_and_its_retry_takes_effect_once() {
    if !on_postgres() {
        return;
    }
    let Some(server) = PrivatePostgres::start() else {
        return;
    };
    let url = server.database("shop");
    let app = crate::helpers::spawn_app_with(|s| s.database_url = Some(url)).await;
    let admin = app.as_admin();
    let product = admin.create_product("DOWN-1", "1.00", 10).await;
    let adjust = json!({ "input": {
        "productId": product["id"], "delta": 5, "idempotencyKey": "while-down",
    }});

    server.crash();
    let answer = admin
        .gql(crate::helpers::ADJUST_STOCK, adjust.clone())
        .await;
    assert_eq!(
        crate::helpers::error_code(&answer).as_deref(),
        Some("UNAVAILABLE"),
        "{answer}"
    );
    assert!(
        answer["errors"][0]["extensions"]["errorId"].is_string(),
        "the answer names the log line: {answer}"
    );

    server.start_again();
    // The same request again, until the server is back: the write takes effect once.
    let again = within("the database is back", Duration::from_secs(30), || async {
        let answer = admin
            .gql(crate::helpers::ADJUST_STOCK, adjust.clone())
            .await;
        (crate::helpers::error_code(&answer).as_deref() != Some("UNAVAILABLE")).then_some(answer)
    })
    .await;
    assert_eq!(
        crate::helpers::data(&again)["adjustStock"]["product"]["stock"],
        15,
        "{again}"
    );
    let replay = admin.gql(crate::helpers::ADJUST_STOCK, adjust).await;
    assert_eq!(
        crate::helpers::data(&replay)["adjustStock"]["product"]["stock"],
        15,
        "the same key again changes nothing: {replay}"
    );
    assert_eq!(
        admin.product(crate::helpers::str_of(&product["id"])).await["stock"],
        15
    );
}
