//! What the log makes possible, as a client sees it: the audit trail of a stream
//! (`history`), the state at a past moment (`productAsOf`, `cartAsOf`, `orderAsOf`, from
//! snapshots or not), a product after each of its events (`productTimeline`), the
//! projections' status, and an event type's version change.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::helpers::*;

const HISTORY: &str = "query($id: UUID!, $first: Int, $after: String) {
  history(streamId: $id, first: $first, after: $after) {
    edges { cursor node { position streamId streamType version type eventVersion data metadata recordedAt } }
    pageInfo { hasNextPage endCursor }
  }
}";
const PRODUCT_AS_OF: &str = "query($id: UUID!, $at: DateTime!) {
  productAsOf(id: $id, at: $at) { id sku name price stock status version at position }
}";
const CART_AS_OF: &str = "query($user: String, $at: DateTime!) {
  cartAsOf(userId: $user, at: $at) { userId items { productId quantity } itemCount version position }
}";
const ORDER_AS_OF: &str = "query($id: UUID!, $at: DateTime!) {
  orderAsOf(id: $id, at: $at) { id userId status total lines { sku quantity } version position }
}";
const PRODUCT_TIMELINE: &str = "query($id: UUID!, $last: Int!) {
  productTimeline(id: $id, last: $last) { version eventType recordedAt position price stock status }
}";
const PROJECTIONS: &str = "query {
  projections { name position head lag lagMillis status error failedPosition updatedAt }
}";

/// The stream of alice's cart (its id is derived from the user id).
fn alice_cart_stream() -> uuid::Uuid {
    let alice = ordergraph::domain::values::UserId::parse("alice").expect("a valid user id");
    ordergraph::write::cart::cart_stream_id(&alice)
}

fn edges(resp: &Value) -> Vec<Value> {
    data(resp)["history"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The events of a stream as the admin sees them.
async fn events_of(app: &TestApp, id: &str) -> Vec<Value> {
    let resp = app
        .as_admin()
        .gql(HISTORY, json!({ "id": id, "first": 100 }))
        .await;
    edges(&resp)
        .into_iter()
        .map(|e| e["node"].clone())
        .collect()
}

#[tokio::test]
async fn history_lists_a_streams_events_oldest_first_with_cursors_and_metadata() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("HIST-1", "2.00", 5).await;
    let id = str_of(&product["id"]).to_owned();
    admin.adjust_stock(&id, 3).await;
    admin
        .gql(
            ADJUST_STOCK,
            json!({ "input": { "productId": id, "delta": -1, "reason": "damaged", "idempotencyKey": "adj-1" } }),
        )
        .await;

    let all = events_of(&app, &id).await;
    let types: Vec<&str> = all.iter().map(|e| str_of(&e["type"])).collect();
    assert_eq!(
        types,
        [
            "ProductCreated",
            "ProductStockUpdated",
            "ProductStockUpdated"
        ]
    );
    assert_eq!(all[0]["version"], 1);
    assert_eq!(all[2]["version"], 3);
    assert_eq!(all[0]["streamType"], "product");
    assert_eq!(all[0]["eventVersion"], 1);
    assert_eq!(all[2]["data"]["reason"], "damaged");
    assert_eq!(all[2]["data"]["stock"], 7);
    assert_eq!(all[2]["metadata"]["userId"], "admin");
    assert_eq!(all[2]["metadata"]["idempotencyKey"], "adj-1");
    assert!(all[2]["metadata"]["correlationId"].is_string());
    assert!(str_of(&all[2]["metadata"]["causationId"]).starts_with("command:"));
    assert!(position(&all[0]["position"]) < position(&all[1]["position"]));

    // Pages of two.
    let first = admin.gql(HISTORY, json!({ "id": id, "first": 2 })).await;
    assert_eq!(edges(&first).len(), 2);
    assert_eq!(data(&first)["history"]["pageInfo"]["hasNextPage"], true);
    let cursor = data(&first)["history"]["pageInfo"]["endCursor"].clone();
    let rest = admin
        .gql(HISTORY, json!({ "id": id, "first": 2, "after": cursor }))
        .await;
    assert_eq!(edges(&rest).len(), 1);
    assert_eq!(edges(&rest)[0]["node"]["version"], 3);
    assert_eq!(data(&rest)["history"]["pageInfo"]["hasNextPage"], false);

    let bad = admin
        .gql(HISTORY, json!({ "id": id, "after": "nonsense" }))
        .await;
    assert_error(&bad, "BAD_USER_INPUT");
    let anonymous = app.gql(HISTORY, json!({ "id": id })).await;
    assert_error(&anonymous, "UNAUTHENTICATED");
}

#[tokio::test]
async fn customers_read_the_history_of_their_own_cart_and_orders_only() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("HIST-2", "2.00", 5).await;
    let pid = str_of(&product["id"]).to_owned();
    let alice = app.as_user("alice");
    let order = alice.order_one(&pid, 1, "tok_visa").await;
    wait_for_order_status(&alice, &order, &["CONFIRMED"]).await;

    let mine = alice.gql(HISTORY, json!({ "id": order })).await;
    let types: Vec<String> = edges(&mine)
        .iter()
        .map(|e| str_of(&e["node"]["type"]).to_owned())
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("OrderPlaced"));
    assert_eq!(types.last().map(String::as_str), Some("OrderConfirmed"));

    let cart_stream = alice_cart_stream().to_string();
    let own_cart = alice.gql(HISTORY, json!({ "id": cart_stream })).await;
    assert!(!edges(&own_cart).is_empty());

    // Bob sees nothing of alice's: neither her order, nor her cart, nor a product stream.
    let bob = app.as_user("bob");
    for stream in [&order, &cart_stream, &pid] {
        let resp = bob.gql(HISTORY, json!({ "id": stream })).await;
        assert!(edges(&resp).is_empty(), "bob reads nothing of {stream}");
    }
}

#[tokio::test]
async fn product_as_of_replays_the_stream_up_to_a_moment() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("ASOF-1", "2.00", 5).await;
    let id = str_of(&product["id"]).to_owned();
    admin.adjust_stock(&id, 3).await;
    admin
        .gql(
            UPDATE_PRODUCT,
            json!({ "input": { "id": id, "price": "3.50" } }),
        )
        .await;
    admin.discontinue(&id).await;
    let events = events_of(&app, &id).await;
    assert_eq!(events.len(), 4);

    let at = |i: usize| events[i]["recordedAt"].clone();
    let resp = admin
        .gql(PRODUCT_AS_OF, json!({ "id": id, "at": at(1) }))
        .await;
    let then = &data(&resp)["productAsOf"];
    assert_eq!(then["stock"], 8);
    assert_eq!(then["price"], "2.00");
    assert_eq!(then["status"], "ACTIVE");
    assert_eq!(then["version"], 2);
    assert_eq!(then["position"], events[1]["position"]);
    assert_eq!(then["sku"], "ASOF-1");

    let resp = admin
        .gql(PRODUCT_AS_OF, json!({ "id": id, "at": at(3) }))
        .await;
    let now = &data(&resp)["productAsOf"];
    assert_eq!(now["price"], "3.50");
    assert_eq!(now["status"], "DISCONTINUED");
    assert_eq!(now["version"], 4);

    let resp = admin
        .gql(
            PRODUCT_AS_OF,
            json!({ "id": id, "at": "2000-01-01T00:00:00Z" }),
        )
        .await;
    assert!(
        data(&resp)["productAsOf"].is_null(),
        "null before it existed"
    );

    let resp = app
        .as_user("alice")
        .gql(PRODUCT_AS_OF, json!({ "id": id, "at": at(1) }))
        .await;
    assert_error(&resp, "FORBIDDEN");
    let resp = admin
        .gql(PRODUCT_AS_OF, json!({ "id": id, "at": "yesterday" }))
        .await;
    assert_error(&resp, "BAD_USER_INPUT");
}

#[tokio::test]
async fn cart_and_order_as_of_replay_their_streams_and_respect_ownership() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("ASOF-2", "2.00", 5).await;
    let pid = str_of(&product["id"]).to_owned();
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(&pid, 2).await);
    let order = alice.checkout("tok_visa", ADDRESS).await;
    wait_for_order_status(&alice, &order, &["CONFIRMED"]).await;
    let order_events = events_of(&app, &order).await;
    let placed_at = order_events[0]["recordedAt"].clone();

    // Just after the order was placed, the cart had been cleared.
    let resp = alice.gql(CART_AS_OF, json!({ "at": placed_at })).await;
    let cart = &data(&resp)["cartAsOf"];
    assert_eq!(cart["userId"], "alice");
    assert_eq!(cart["itemCount"], 0);

    let resp = alice
        .gql(ORDER_AS_OF, json!({ "id": order, "at": placed_at }))
        .await;
    let then = &data(&resp)["orderAsOf"];
    assert_eq!(then["status"], "PENDING");
    assert_eq!(then["total"], "4.00");
    assert_eq!(then["lines"], json!([{ "sku": "ASOF-2", "quantity": 2 }]));
    let last = order_events
        .last()
        .map(|e| e["recordedAt"].clone())
        .unwrap_or_default();
    let resp = admin
        .gql(ORDER_AS_OF, json!({ "id": order, "at": last }))
        .await;
    assert_eq!(data(&resp)["orderAsOf"]["status"], "CONFIRMED");

    // Bob may not look at alice's past.
    let bob = app.as_user("bob");
    let resp = bob
        .gql(ORDER_AS_OF, json!({ "id": order, "at": last }))
        .await;
    assert!(data(&resp)["orderAsOf"].is_null());
    let resp = bob
        .gql(CART_AS_OF, json!({ "user": "alice", "at": last }))
        .await;
    assert_error(&resp, "FORBIDDEN");
    let resp = admin
        .gql(CART_AS_OF, json!({ "user": "alice", "at": last }))
        .await;
    assert_eq!(data(&resp)["cartAsOf"]["userId"], "alice");
    let resp = bob.gql(CART_AS_OF, json!({ "at": last })).await;
    assert!(data(&resp)["cartAsOf"].is_null(), "bob never had a cart");
}

/// Snapshots are an optimisation only: with one every 3 events, or with every snapshot
/// deleted behind the service's back, every result is the same.
#[tokio::test]
async fn snapshots_change_no_result() {
    let app = spawn_app_with(|s| s.snapshot_every = 3).await;
    let admin = app.as_admin();
    let product = admin.create_product("SNAP-1", "2.00", 100).await;
    let id = str_of(&product["id"]).to_owned();
    for _ in 0..10 {
        data(&admin.adjust_stock(&id, -1).await);
    }
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    let count = |db: sea_orm::DatabaseConnection| async move {
        db.query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM snapshots",
        ))
        .await
        .expect("a query")
        .map(|r| r.try_get::<i64>("", "n").expect("a count"))
        .unwrap_or(0)
    };
    assert_eq!(count(db.clone()).await, 3, "versions 3, 6 and 9");

    let events = events_of(&app, &id).await;
    let at = events[7]["recordedAt"].clone();
    let before = admin
        .gql(PRODUCT_AS_OF, json!({ "id": id, "at": at }))
        .await;
    assert_eq!(data(&before)["productAsOf"]["stock"], 93);
    let latest = events[10]["recordedAt"].clone();
    let now_before = admin
        .gql(PRODUCT_AS_OF, json!({ "id": id, "at": latest }))
        .await;

    db.execute_unprepared("DELETE FROM snapshots")
        .await
        .expect("snapshots can be deleted");
    let after = admin
        .gql(PRODUCT_AS_OF, json!({ "id": id, "at": at }))
        .await;
    assert_eq!(after, before);
    let now_after = admin
        .gql(PRODUCT_AS_OF, json!({ "id": id, "at": latest }))
        .await;
    assert_eq!(now_after, now_before);
    // Commands load the stream without snapshots just as well.
    let resp = admin.adjust_stock(&id, -1).await;
    assert_eq!(data(&resp)["adjustStock"]["product"]["stock"], 89);
    assert_eq!(data(&resp)["adjustStock"]["product"]["version"], 12);
    assert_eq!(count(db).await, 1, "version 12 snapshotted again");
}

/// A command loads its stream from the latest snapshot with the events after it, in one
/// read; a snapshot that does not read as the aggregate (its state hand-edited, say) is
/// ignored, and the command folds the whole stream instead, to the same decision.
#[tokio::test]
async fn a_command_folds_past_a_snapshot_that_does_not_read() {
    // Arrange: snapshots at versions 3 and 6, and the latest one's state broken.
    let app = spawn_app_with(|s| s.snapshot_every = 3).await;
    let admin = app.as_admin();
    let product = admin.create_product("SNAP-BAD", "2.00", 100).await;
    let id = str_of(&product["id"]).to_owned();
    for _ in 0..6 {
        data(&admin.adjust_stock(&id, -1).await);
    }
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    let broken = db
        .execute_unprepared(
            "UPDATE snapshots SET state = '{\"not\": \"a product\"}' \
             WHERE version = (SELECT MAX(version) FROM snapshots)",
        )
        .await
        .expect("a snapshot can be edited");
    assert_eq!(broken.rows_affected(), 1);

    // Act: commands after it, from the whole stream.
    let first = admin.adjust_stock(&id, -1).await;
    let second = admin.adjust_stock(&id, -2).await;

    // Assert
    assert_eq!(data(&first)["adjustStock"]["product"]["stock"], 93);
    assert_eq!(data(&first)["adjustStock"]["product"]["version"], 8);
    assert_eq!(data(&second)["adjustStock"]["product"]["stock"], 91);
    assert_eq!(data(&second)["adjustStock"]["product"]["version"], 9);
    // And from a good snapshot taken after it (version 9), the events after that one.
    let third = admin.adjust_stock(&id, 5).await;
    assert_eq!(data(&third)["adjustStock"]["product"]["stock"], 96);
    assert_eq!(data(&third)["adjustStock"]["product"]["version"], 10);
}

#[tokio::test]
async fn a_review_title_is_the_new_version_of_the_review_event() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("REV-T", "2.00", 5).await;
    let id = str_of(&product["id"]).to_owned();
    let resp = app
        .as_user("alice")
        .gql(
            REVIEW_PRODUCT,
            json!({ "input": { "productId": id, "rating": 5, "title": "Great mug", "comment": "holds coffee" } }),
        )
        .await;
    data(&resp);
    let events = events_of(&app, &id).await;
    let review = &events[1];
    assert_eq!(review["type"], "ProductReviewed");
    assert_eq!(review["eventVersion"], 2);
    assert_eq!(review["data"]["title"], "Great mug");
    let long = "x".repeat(121);
    let resp = app
        .as_user("bob")
        .gql(
            REVIEW_PRODUCT,
            json!({ "input": { "productId": id, "rating": 5, "title": long } }),
        )
        .await;
    assert_error(&resp, "BAD_USER_INPUT");
}

#[tokio::test]
async fn projections_report_checkpoint_head_and_lag_to_admins() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("PROJ-1", "2.00", 5).await;
    let id = str_of(&product["id"]).to_owned();
    let resp = admin.adjust_stock(&id, 1).await;
    let written = position(&data(&resp)["adjustStock"]["position"]);

    let report = wait_until("every projection reaches the head", || async {
        let resp = admin.gql(PROJECTIONS, json!({})).await;
        let list = data(&resp)["projections"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.iter()
            .all(|p| position(&p["position"]) >= written && p["lag"] == 0)
            .then_some(list)
    })
    .await;
    let names: Vec<&str> = report.iter().map(|p| str_of(&p["name"])).collect();
    assert_eq!(names, ["cart", "catalog", "dashboard", "orders"]);
    for p in &report {
        assert_eq!(p["status"], "RUNNING");
        assert!(p["error"].is_null());
        assert_eq!(p["lagMillis"], 0);
        assert!(position(&p["head"]) >= written);
    }
    let resp = app.as_user("alice").gql(PROJECTIONS, json!({})).await;
    assert_error(&resp, "FORBIDDEN");
}

/// An event a projection cannot fold stops that projection at the event (the others go
/// on), shows it failed in `projections` and `/readyz`, and after the event is fixed and
/// the service restarted, the projection resumes from that very event.
#[tokio::test]
async fn a_failing_projection_stops_at_its_event_and_resumes_after_a_fix() {
    use ordergraph::entity::events;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};

    let mut app = spawn_app_with(|s| s.relay_poll_ms = 50).await;
    let admin = app.as_admin();
    let product = admin.create_product("FAIL-1", "2.00", 10).await;
    let pid = str_of(&product["id"]).to_owned();
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(&pid, 1).await);
    assert_eq!(events_of(&app, &pid).await.len(), 1);
    let cart_stream = alice_cart_stream();

    // Behind the service's back: an event its cart projection cannot read.
    let (db, bad) = insert_undecodable_cart_event(&app, cart_stream).await;

    let failed = wait_until("the cart projection reports its failure", || async {
        let resp = admin.gql(PROJECTIONS, json!({})).await;
        let list = data(&resp)["projections"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.into_iter()
            .find(|p| p["name"] == "cart" && p["status"] == "FAILED")
    })
    .await;
    assert_eq!(position(&failed["failedPosition"]), bad.position as u64);
    assert!(
        str_of(&failed["error"]).contains("CartItemAdded"),
        "{failed}"
    );
    assert_eq!(position(&failed["position"]), bad.position as u64 - 1);

    // The other views go on.
    let resp = admin.adjust_stock(&pid, 5).await;
    assert_eq!(data(&resp)["adjustStock"]["product"]["stock"], 15);
    let response = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz answers");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["failedProjections"][0]["name"], "cart");
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains(r#"ordergraph_projection_failed{projection="cart"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"ordergraph_projection_failed{projection="catalog"} 0"#),
        "{metrics}"
    );
    // The operator's view from outside the server.
    let (ok, table) = projections_status(&app).await;
    assert!(!ok, "exit code 1 while a projection has failed:\n{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("cart"))
        .unwrap_or_default();
    assert!(line.contains("failed"), "{table}");
    assert!(
        line.contains(&format!("at position {}", bad.position)),
        "{table}"
    );
    // A view that no event after its checkpoint concerns is not behind, even though its
    // stored checkpoint stayed where it was.
    let orders = table
        .lines()
        .find(|l| l.starts_with("orders"))
        .unwrap_or_default();
    assert_eq!(
        orders.split_whitespace().nth(3),
        Some("0"),
        "the orders view has nothing to fold:\n{table}"
    );

    // Fix the event, restart: the projection folds it and carries on.
    let mut fixed: events::ActiveModel = events::Entity::find_by_id(bad.position)
        .one(&db)
        .await
        .expect("a query")
        .expect("the event")
        .into();
    fixed.data = Set(json!({ "user_id": "alice", "product_id": pid, "quantity": 3, "added": 2 }));
    fixed.update(&db).await.expect("the event is fixed");
    app.restart().await;
    let alice = app.as_user("alice");
    wait_until("the fixed event is in the cart view", || async {
        (alice.cart().await["itemCount"] == 3).then_some(())
    })
    .await;
    let admin = app.as_admin();
    let resp = admin.gql(PROJECTIONS, json!({})).await;
    for p in data(&resp)["projections"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        assert_eq!(p["status"], "RUNNING", "{p}");
    }
    let (ok, table) = projections_status(&app).await;
    assert!(ok, "healthy again:\n{table}");
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains(r#"ordergraph_projection_failed{projection="cart"} 0"#),
        "{metrics}"
    );
}

/// The Prometheus text of `/metrics`.
pub(crate) async fn metrics_text(app: &TestApp) -> String {
    app.http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a body")
}

/// `ordergraph projections status` on the test's database: (exit code 0, its output).
/// Awaited, not blocking: the server under test runs on this test's runtime.
async fn projections_status(app: &TestApp) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordergraph"))
        .args(["projections", "status"])
        .env("DATABASE_URL", app.database_url())
        .output()
        .await
        .expect("the CLI runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn timeline(resp: &Value) -> Vec<Value> {
    data(resp)["productTimeline"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("a list: {resp}"))
}

#[tokio::test]
async fn product_timeline_is_the_product_after_each_of_its_last_events() {
    // Arrange: five events.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("LINE-1", "2.00", 5).await;
    let id = str_of(&product["id"]).to_owned();
    admin.adjust_stock(&id, 3).await;
    admin
        .gql(
            UPDATE_PRODUCT,
            json!({ "input": { "id": id, "price": "3.50" } }),
        )
        .await;
    admin.adjust_stock(&id, -2).await;
    admin.discontinue(&id).await;
    let events = events_of(&app, &id).await;

    // Act
    let all = timeline(
        &admin
            .gql(PRODUCT_TIMELINE, json!({ "id": id, "last": 50 }))
            .await,
    );

    // Assert: one point per event, oldest first, each the state right after it.
    let shape: Vec<(i64, &str, &str, &str)> = all
        .iter()
        .map(|c| {
            (
                c["stock"].as_i64().expect("stock"),
                str_of(&c["price"]),
                str_of(&c["status"]),
                str_of(&c["eventType"]),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (5, "2.00", "ACTIVE", "ProductCreated"),
            (8, "2.00", "ACTIVE", "ProductStockUpdated"),
            (8, "3.50", "ACTIVE", "ProductUpdated"),
            (6, "3.50", "ACTIVE", "ProductStockUpdated"),
            (6, "3.50", "DISCONTINUED", "ProductDiscontinued"),
        ],
        "{all:#?}"
    );
    for (point, event) in all.iter().zip(&events) {
        assert_eq!(point["version"], event["version"]);
        assert_eq!(point["position"], event["position"]);
        assert_eq!(point["recordedAt"], event["recordedAt"]);
        assert_eq!(point["eventType"], event["type"]);
        // What the temporal query answers at that moment.
        let then = admin
            .gql(
                PRODUCT_AS_OF,
                json!({ "id": id, "at": event["recordedAt"] }),
            )
            .await;
        assert_eq!(data(&then)["productAsOf"]["stock"], point["stock"]);
        assert_eq!(data(&then)["productAsOf"]["price"], point["price"]);
    }

    // The last two only; none.
    let tail = timeline(
        &admin
            .gql(PRODUCT_TIMELINE, json!({ "id": id, "last": 2 }))
            .await,
    );
    assert_eq!(tail, all[3..].to_vec());
    let none = timeline(
        &admin
            .gql(PRODUCT_TIMELINE, json!({ "id": id, "last": 0 }))
            .await,
    );
    assert!(none.is_empty());
}

/// A window that starts after a snapshot is replayed from it, with the same answer as a
/// replay from the first event.
#[tokio::test]
async fn product_timeline_gives_the_same_answer_from_a_snapshot_or_from_the_first_event() {
    // Arrange: 11 events, snapshots at versions 3, 6 and 9.
    let app = spawn_app_with(|s| s.snapshot_every = 3).await;
    let admin = app.as_admin();
    let product = admin.create_product("LINE-SNAP", "2.00", 100).await;
    let id = str_of(&product["id"]).to_owned();
    for _ in 0..10 {
        data(&admin.adjust_stock(&id, -1).await);
    }

    // Act: the last 4 (versions 8 to 11, from the snapshot at 6), then with no snapshot.
    let from_snapshot = admin
        .gql(PRODUCT_TIMELINE, json!({ "id": id, "last": 4 }))
        .await;
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    db.execute_unprepared("DELETE FROM snapshots")
        .await
        .expect("snapshots can be deleted");
    let from_the_start = admin
        .gql(PRODUCT_TIMELINE, json!({ "id": id, "last": 4 }))
        .await;

    // Assert
    assert_eq!(from_snapshot, from_the_start);
    let stock: Vec<i64> = timeline(&from_snapshot)
        .iter()
        .map(|c| c["stock"].as_i64().expect("stock"))
        .collect();
    assert_eq!(stock, [93, 92, 91, 90]);
}

#[tokio::test]
async fn product_timeline_refuses_bad_input_and_callers_who_are_not_admins() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("LINE-BAD", "2.00", 1).await;
    let id = str_of(&product["id"]).to_owned();
    let order_like = uuid::Uuid::new_v4().to_string();

    for (what, caller, vars, code) in [
        (
            "more than 100",
            app.as_admin(),
            json!({ "id": id, "last": 101 }),
            "BAD_USER_INPUT",
        ),
        (
            "a negative count",
            app.as_admin(),
            json!({ "id": id, "last": -1 }),
            "BAD_USER_INPUT",
        ),
        (
            "a malformed id",
            app.as_admin(),
            json!({ "id": "nope", "last": 5 }),
            "BAD_USER_INPUT",
        ),
        (
            "a customer",
            app.as_user("bob"),
            json!({ "id": id, "last": 5 }),
            "FORBIDDEN",
        ),
        (
            "an anonymous caller",
            app.anonymous(),
            json!({ "id": id, "last": 5 }),
            "UNAUTHENTICATED",
        ),
    ] {
        let resp = caller.gql(PRODUCT_TIMELINE, vars).await;
        assert_eq!(error_code(&resp).as_deref(), Some(code), "{what}: {resp}");
    }

    // An unknown id, or the id of a stream of another kind, has no timeline.
    let cart = alice_cart_stream().to_string();
    app.as_user("alice").add_to_cart(&id, 1).await;
    for unknown in [order_like, cart] {
        let resp = admin
            .gql(PRODUCT_TIMELINE, json!({ "id": unknown, "last": 5 }))
            .await;
        assert!(timeline(&resp).is_empty(), "{resp}");
    }
}
