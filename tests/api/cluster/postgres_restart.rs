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

use super::chaos::{
    Client, Load, Pool, Subscribers, load_products, log_positions, settled, views_verify,
};
use super::harness::{Cluster, on_postgres};
use super::{charged_twice, within};
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
    assert!(
        done.unavailable > 0,
        "the crash reached the load: some answer said UNAVAILABLE"
    );

    // Every replica is still up and ready again.
    for replica in &mut cluster.replicas {
        assert_eq!(replica.exited(), None, "{} is still running", replica.node);
    }
    for replica in &cluster.replicas {
        within(
            &format!("{} is ready again", replica.node),
            Duration::from_secs(30),
            || async { (replica.http_status("/readyz").await == 200).then_some(()) },
        )
        .await;
    }

    // Every acknowledged write is there once, every order confirmed and charged once.
    settled(&pool, &done).await;
    assert_eq!(
        charged_twice(&cluster).await,
        0,
        "an order was charged twice"
    );

    // Every view equals a replay of the log; every subscriber saw every change once.
    views_verify(&mut admin, "after the restart").await;
    let log = log_positions(&cluster).await;
    subscribers
        .check(&log, &done.expected, Duration::from_secs(30))
        .await;
}
