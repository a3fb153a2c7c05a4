//! Read replicas (`READ_DATABASE_URL`, ADR 0016): the views in a database of their own,
//! folded from the event bus; queries and subscriptions served from there; mutations sent
//! to the write database and still reading their own writes; through a broker crash.
//! The write database is PostgreSQL (these tests skip on SQLite).

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use super::broker::Broker;
use super::{BOUND, log_rows};
use crate::helpers::*;
use crate::ws_client::{WsClient, pos};

const VERIFY: &str =
    "mutation ($name: String!) { verifyProjection(name: $name) { ok differences position } }";

fn on_postgres() -> bool {
    std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.trim().is_empty())
}

/// A count of rows of `table` in the database at `url`.
async fn count(url: &str, table: &str) -> i64 {
    let db = sea_orm::Database::connect(url).await.expect("a database");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .expect("counts")
        .expect("a row");
    let n: i64 = row.try_get("", "n").expect("n");
    db.close().await.expect("closes");
    n
}

/// Polls a product on `app` until `accept` says yes.
async fn product_until(app: &TestApp, id: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + BOUND;
    loop {
        let product = app.anonymous().product(id).await;
        if accept(&product) {
            return product;
        }
        assert!(
            Instant::now() < deadline,
            "the read replica shows {product}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_read_replica_serves_views_folded_from_the_bus_and_reads_its_own_writes() {
    if !on_postgres() {
        return; // a read replica's write database is PostgreSQL
    }
    let Some(mut broker) = Broker::start().await else {
        return;
    };
    let writer = spawn_app_with(|s| s.nats_url = Some(broker.url())).await;
    let read_dir = tempfile::tempdir().expect("a directory");
    let read_url = format!(
        "sqlite://{}?mode=rwc",
        read_dir.path().join("read.db").display()
    );
    let reader = writer
        .replica_with(|s| s.read_database_url = Some(read_url.clone()))
        .await;

    // A mutation through the read replica goes to the write database and its payload
    // reads the write back from the read database.
    let created = reader.as_admin().create_product("READ-1", "5.00", 7).await;
    let id = str_of(&created["id"]).to_owned();
    assert_eq!(created["stock"], json!(7), "{created}");
    let again = reader.anonymous().product(&id).await;
    assert_eq!(again["sku"], json!("READ-1"));
    assert_eq!(count(&read_url, "catalog_view").await, 1);
    assert_eq!(
        count(&read_url, "events").await,
        0,
        "the read database holds views, not the log"
    );

    // A subscriber on the read replica hears a change made through the writer.
    let mut ws = watch_product(&reader, &id).await;
    let first = ws.next_data("p", "productUpdated").await;
    assert_eq!(first["stock"], json!(7));
    let resp = writer.as_admin().adjust_stock(&id, 5).await;
    assert!(resp["errors"].is_null(), "{resp}");
    let changed = ws
        .next_until("p", "productUpdated", |p| p["stock"] == json!(12))
        .await;
    assert!(pos(&changed["position"]) > pos(&first["position"]));

    // The broker dies and comes back while writes go on: the read replica catches up.
    broker.kill9().await;
    for _ in 0..5 {
        let resp = writer.as_admin().adjust_stock(&id, 1).await;
        assert!(resp["errors"].is_null(), "writes need no broker: {resp}");
    }
    broker.restart().await;
    product_until(&reader, &id, |p| p["stock"] == json!(17)).await;
    ws.next_until("p", "productUpdated", |p| p["stock"] == json!(17))
        .await;

    // Mutations through the read replica read their own writes from the read database
    // (the figures are printed: the publisher and the bus are on the way).
    let mut took = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let resp = reader.as_admin().adjust_stock(&id, 1).await;
        took.push(started.elapsed());
        assert_eq!(
            data(&resp)["adjustStock"]["product"]["stock"],
            json!(17 + took.len() as i64),
            "{resp}"
        );
    }
    took.sort();
    println!(
        "adjustStock through a read replica: p50 {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );

    // The events feed on the read replica: every event of the log, once, in order.
    let admin = token("admin", ordergraph::auth::Role::Admin);
    let mut feed = WsClient::connect(&reader, Some(&admin)).await;
    feed.subscribe(
        "e",
        "subscription { events(after: \"0\") { position } }",
        json!({}),
    )
    .await;
    let log: Vec<i64> = log_rows(writer.database_url())
        .await
        .iter()
        .map(|r| r.position)
        .collect();
    let mut seen = Vec::new();
    while seen.len() < log.len() {
        seen.push(pos(&feed.next_data("e", "events").await["position"]));
    }
    assert_eq!(seen, log);

    // Each view of the read database equals a replay of the write side's log.
    for name in ["catalog", "cart", "orders", "dashboard"] {
        let resp = reader.as_admin().gql(VERIFY, json!({ "name": name })).await;
        assert_eq!(
            data(&resp)["verifyProjection"]["ok"],
            json!(true),
            "{name}: {resp}"
        );
    }

    // A rebuild on the read replica replays the write side's log into the read database,
    // and the command line verifies the read database the same way.
    let done = crate::rebuild::rebuild(&reader, "catalog").await;
    assert_eq!(done["phase"], json!("DONE"), "{done}");
    product_until(&reader, &id, |p| p["stock"] == json!(27)).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordergraph"))
        .args(["projections", "verify"])
        .env("DATABASE_URL", writer.database_url())
        .env("READ_DATABASE_URL", &read_url)
        .env("ORDERGRAPH_JWT_SECRET", JWT_SECRET)
        .output()
        .await
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(text.matches(": ok,").count(), 4, "{text}");
}

/// `ordergraph serve` with `env`: it must refuse to start, saying `why`.
async fn refused(env: &[(&str, &str)], why: &str) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordergraph"));
    command
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env_remove("READ_DATABASE_URL")
        .env_remove("ORDERGRAPH_NATS_URL")
        .env("ORDERGRAPH_BIND", "127.0.0.1:0")
        .env("ORDERGRAPH_JWT_SECRET", JWT_SECRET);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(BOUND, command.output())
        .await
        .expect("it ends by itself")
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started with {env:?}");
    assert!(text.contains(why), "{env:?}: {text}");
}

#[tokio::test]
async fn a_read_replica_is_refused_without_a_broker_on_sqlite_or_on_the_write_database() {
    let dir = tempfile::tempdir().expect("a directory");
    let read = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
    let write = "postgres://postgres@127.0.0.1:1/none";
    refused(
        &[("DATABASE_URL", write), ("READ_DATABASE_URL", &read)],
        "set ORDERGRAPH_NATS_URL too",
    )
    .await;
    let nats = ("ORDERGRAPH_NATS_URL", "nats://127.0.0.1:1");
    refused(
        &[("DATABASE_URL", write), ("READ_DATABASE_URL", write), nats],
        "a database of its own",
    )
    .await;
    let sqlite_write = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
    refused(
        &[
            ("DATABASE_URL", &sqlite_write),
            ("READ_DATABASE_URL", &read),
            nats,
        ],
        "must then be PostgreSQL",
    )
    .await;
}

#[tokio::test]
async fn a_read_replica_catches_up_after_its_read_database_crashes_and_restarts() {
    if !on_postgres() {
        return; // a read replica's write database is PostgreSQL
    }
    let Some(broker) = Broker::start().await else {
        return;
    };
    let Some(read_server) = crate::private_pg::PrivatePostgres::start() else {
        eprintln!("skipped: no PostgreSQL binaries to run a private server");
        return;
    };
    let read_url = read_server.database("reads");
    let writer = spawn_app_with(|s| s.nats_url = Some(broker.url())).await;
    let reader = writer
        .replica_with(|s| s.read_database_url = Some(read_url.clone()))
        .await;
    let created = writer
        .as_admin()
        .create_product("RESTART-1", "1.00", 0)
        .await;
    let id = str_of(&created["id"]).to_owned();
    product_until(&reader, &id, |p| p["stock"] == json!(0)).await;
    let mut ws = watch_product(&reader, &id).await;
    assert_eq!(ws.next_data("p", "productUpdated").await["stock"], json!(0));

    // Writes go on through the writer while the read database crashes and comes back.
    for _ in 0..5 {
        let resp = writer.as_admin().adjust_stock(&id, 1).await;
        assert!(resp["errors"].is_null(), "{resp}");
    }
    let server = std::sync::Arc::new(read_server);
    let restarting = {
        let server = server.clone();
        tokio::task::spawn_blocking(move || server.crash_and_restart(Duration::from_secs(2)))
    };
    for _ in 0..10 {
        let resp = writer.as_admin().adjust_stock(&id, 1).await;
        assert!(
            resp["errors"].is_null(),
            "writes need no read database: {resp}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    restarting.await.expect("the read database restarted");
    for _ in 0..5 {
        let resp = writer.as_admin().adjust_stock(&id, 1).await;
        assert!(resp["errors"].is_null(), "{resp}");
    }

    // The read replica folds on from its checkpoints: every write shows, the subscriber
    // ends at the last stock, the views equal a replay of the log, and mutations through
    // it read their own writes again.
    product_until(&reader, &id, |p| p["stock"] == json!(20)).await;
    ws.next_until("p", "productUpdated", |p| p["stock"] == json!(20))
        .await;
    for name in ["catalog", "cart", "orders", "dashboard"] {
        let resp = reader.as_admin().gql(VERIFY, json!({ "name": name })).await;
        assert_eq!(
            data(&resp)["verifyProjection"]["ok"],
            json!(true),
            "{name}: {resp}"
        );
    }
    let resp = reader.as_admin().adjust_stock(&id, 1).await;
    assert_eq!(
        data(&resp)["adjustStock"]["product"]["stock"],
        json!(21),
        "{resp}"
    );
}

/// A `productUpdated` subscriber of product `id` on `app`, anonymous (as id "p").
async fn watch_product(app: &TestApp, id: &str) -> WsClient {
    let mut ws = WsClient::connect(app, None).await;
    ws.subscribe(
        "p",
        "subscription ($id: UUID!) { productUpdated(ids: [$id]) { stock position } }",
        json!({ "id": id }),
    )
    .await;
    ws
}
