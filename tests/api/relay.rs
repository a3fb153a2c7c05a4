//! The relay never skips an event committed late (PostgreSQL only: SQLite has one writer,
//! which commits in position order, so the situation cannot arise there).
//!
//! These tests hold a writing transaction open directly on the test database while other
//! writes commit through the API, then commit it, and check what the views contain.

use std::time::Duration;

use chrono::Utc;
use ordergraph::domain::product::ProductEvent;
use ordergraph::domain::values::{Description, Money, ProductName, Sku};
use ordergraph::write::event_store::{self, EventMetadata};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{data, spawn_app, str_of, wait_until};

fn on_postgres() -> bool {
    std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.trim().is_empty())
}

fn created(sku: &str) -> ProductEvent {
    ProductEvent::Created {
        sku: Sku::parse(sku).expect("a valid SKU"),
        name: ProductName::parse(sku).expect("a valid name"),
        description: Description::parse("").expect("an empty description is valid"),
        price: Money::from_cents(100),
        stock: 1,
    }
}

async fn committed_events(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT COUNT(*) AS n FROM events",
        ))
        .await
        .expect("the events can be counted")
        .expect("COUNT(*) returns a row");
    row.try_get::<i64>("", "n")
        .expect("the count is an integer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_that_commits_late_is_not_skipped_by_the_relay() {
    if !on_postgres() {
        eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
        return;
    }
    // Arrange: a writer that takes the lowest position and holds it.
    let app = spawn_app().await;
    let db = Database::connect(app.database_url()).await.unwrap();
    let late_id = Uuid::now_v7();
    let held = db.begin().await.unwrap();
    let late_positions = event_store::append(
        &held,
        late_id,
        "product",
        0,
        &[created("LATE-1")],
        &EventMetadata::default(),
        Utc::now(),
    )
    .await
    .unwrap();

    // Act: three more products commit through the API while it is open...
    let admin_requests: Vec<_> = (0..3)
        .map(|i| {
            let address = app.address.clone();
            tokio::spawn(async move {
                let query = "mutation($sku: String!) { createProduct(input: {sku: $sku, name: $sku, price: \"1.00\"}) { position product { id } } }";
                reqwest::Client::new()
                    .post(format!("{address}/graphql"))
                    .bearer_auth(crate::helpers::token("admin", ordergraph::auth::Role::Admin))
                    .json(&json!({"query": query, "variables": {"sku": format!("EARLY-{i}")}}))
                    .send()
                    .await
                    .unwrap()
                    .json::<serde_json::Value>()
                    .await
                    .unwrap()
            })
        })
        .collect();
    // ...and are committed (visible in the log) while the first one is still open,
    wait_until("the later writes are committed", || async {
        (committed_events(&db).await == 3).then_some(())
    })
    .await;
    // ...yet the catalog shows none of them: the relay waits for the open transaction
    // rather than publish positions above the one it holds.
    let listed = app.anonymous().products(json!({"first": 10})).await;
    assert_eq!(listed["totalCount"], 0);

    held.commit().await.unwrap();

    // Assert: every mutation returns (read-your-writes) and the view holds all four.
    for request in admin_requests {
        let response = request.await.unwrap();
        let payload = &data(&response)["createProduct"];
        assert!(str_of(&payload["position"]).parse::<i64>().unwrap() > late_positions[0]);
    }
    let late = app.anonymous().product(&late_id.to_string()).await;
    assert_eq!(late["sku"], "LATE-1");
    let listed = app.anonymous().products(json!({"first": 10})).await;
    assert_eq!(listed["totalCount"], 4);
}

/// The subtle case of ADR 0001: writer V takes its xid before writer W, but W draws the
/// lower position. When V commits, V's xid is the last completed one, so a horizon
/// fenced by the snapshot's xmax would treat W as finished and skip W's event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_with_a_newer_xid_but_an_older_position_holds_the_horizon() {
    if !on_postgres() {
        eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
        return;
    }
    let app = spawn_app().await;
    let db = Database::connect(app.database_url()).await.unwrap();
    let metadata = EventMetadata::default();

    // V: takes an xid first.
    let v = db.begin().await.unwrap();
    v.execute_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT pg_current_xact_id()",
    ))
    .await
    .unwrap();
    // W: a newer xid, but the lower position.
    let w = db.begin().await.unwrap();
    let w_id = Uuid::now_v7();
    let w_pos = event_store::append(
        &w,
        w_id,
        "product",
        0,
        &[created("W-1")],
        &metadata,
        Utc::now(),
    )
    .await
    .unwrap()[0];
    // V: the higher position, committed first.
    let v_id = Uuid::now_v7();
    let v_pos = event_store::append(
        &v,
        v_id,
        "product",
        0,
        &[created("V-1")],
        &metadata,
        Utc::now(),
    )
    .await
    .unwrap()[0];
    assert!(w_pos < v_pos);
    v.commit().await.unwrap();

    // While W is open, no horizon at or beyond W's position may be published. A correct
    // relay blocks here (the bound only ends the wait); a skipping one answers at once.
    let early = tokio::time::timeout(
        Duration::from_millis(500),
        ordergraph::read::relay::safe_horizon(&db, 0),
    )
    .await;
    if let Ok(horizon) = early {
        let horizon = horizon.unwrap();
        assert!(
            horizon < w_pos,
            "horizon {horizon} published while position {w_pos} is still in flight"
        );
    }

    w.commit().await.unwrap();
    let horizon = ordergraph::read::relay::safe_horizon(&db, 0).await.unwrap();
    assert!(horizon >= v_pos);
    for (id, sku) in [(w_id, "W-1"), (v_id, "V-1")] {
        let found = wait_until("both products reach the catalog view", || async {
            let r = app.anonymous().product(&id.to_string()).await;
            (!r.is_null()).then_some(r)
        })
        .await;
        assert_eq!(found["sku"], sku);
    }
}

/// When the view cannot catch up within the configured wait, the mutation answers
/// CONSISTENCY_TIMEOUT with its position: the write itself is committed, and retrying with
/// the same idempotency key returns that same position once the view has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_view_that_cannot_catch_up_in_time_is_a_consistency_timeout_not_a_lost_write() {
    if !on_postgres() {
        eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
        return;
    }
    // Arrange: a short wait, and a held writer below everything that follows.
    let app = crate::helpers::spawn_app_with(|s| s.consistency_wait_ms = 300).await;
    let db = Database::connect(app.database_url()).await.unwrap();
    let held = db.begin().await.unwrap();
    event_store::append(
        &held,
        Uuid::now_v7(),
        "product",
        0,
        &[created("HELD-1")],
        &EventMetadata::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    let create = "mutation { createProduct(input: {sku: \"TIMED-1\", name: \"Timed\", price: \"2.00\", idempotencyKey: \"timed-1\"}) { position product { sku } } }";

    // Act
    let first = app.as_admin().gql(create, json!({})).await;

    // Assert: a clear error that carries the committed position...
    assert_eq!(
        crate::helpers::error_code(&first).as_deref(),
        Some("CONSISTENCY_TIMEOUT")
    );
    let position = first["errors"][0]["extensions"]["position"].clone();
    assert!(position.is_string(), "{first:#}");
    held.commit().await.unwrap();
    // ...and the retry with the same key returns that write, not a second one.
    let retry = app.as_admin().gql(create, json!({})).await;
    assert_eq!(data(&retry)["createProduct"]["position"], position);
    assert_eq!(data(&retry)["createProduct"]["product"]["sku"], "TIMED-1");
    let listed = app
        .anonymous()
        .products(json!({"first": 10, "search": "TIMED"}))
        .await;
    assert_eq!(listed["totalCount"], 1);
}

/// The horizon waits only for writers of this service's own database: a long writing
/// transaction in another database of the same PostgreSQL server (another application,
/// another test) must not hold back this service's views.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writing_transaction_in_another_database_does_not_hold_the_relay() {
    let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
        return;
    };
    if server.trim().is_empty() {
        return;
    }
    // Arrange: a transaction holding an xid open in the server's other database.
    let app = crate::helpers::spawn_app_with(|s| s.consistency_wait_ms = 3_000).await;
    let elsewhere = Database::connect(&server).await.unwrap();
    let open = elsewhere.begin().await.unwrap();
    open.execute_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT pg_current_xact_id()",
    ))
    .await
    .unwrap();

    // Act
    let created = app
        .as_admin()
        .gql(
            "mutation { createProduct(input: {sku: \"FREE-1\", name: \"Free\", price: \"1.00\"}) { position product { sku } } }",
            json!({}),
        )
        .await;

    // Assert: answered with its own write, not CONSISTENCY_TIMEOUT.
    assert_eq!(data(&created)["createProduct"]["product"]["sku"], "FREE-1");
    open.rollback().await.unwrap();
}
