//! Rebuild and verify, as an operator sees them: `verifyProjection` and
//! `ordergraph projections verify` find a view row corrupted behind the service's back,
//! `rebuildProjection` (followed with `rebuildProgress`) and `ordergraph projections
//! rebuild` replace the view from the log while queries and writes go on, with no partial
//! view in between; a failed projection runs again after its event is fixed and the view
//! rebuilt.

use std::collections::HashMap;

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use ordergraph::auth::Role;

use crate::helpers::*;
use crate::ws_client::WsClient;

const VERIFY: &str = "mutation($name: String!) {
  verifyProjection(name: $name) {
    name ok position rows differences elapsedMillis
    firstDifferences { table key live replayed }
  }
}";
const REBUILD: &str = "mutation($name: String!) {
  rebuildProjection(name: $name) { name phase eventsDone eventsTotal position error }
}";
const PROGRESS: &str = "subscription($name: String!) {
  rebuildProgress(name: $name) {
    name phase eventsDone eventsTotal eventsPerSecond position elapsedMillis rows error
  }
}";
const PROJECTIONS: &str = "query { projections { name position status error } }";
const VIEWS: [&str; 4] = ["catalog", "cart", "orders", "dashboard"];
/// How long a subscriber that should hear nothing is listened to.
const QUIET: std::time::Duration = std::time::Duration::from_millis(500);

async fn verify(admin: &Caller<'_>, name: &str) -> Value {
    let resp = admin.gql(VERIFY, json!({ "name": name })).await;
    data(&resp)["verifyProjection"].clone()
}

/// Starts a rebuild and follows it with `rebuildProgress` until it ends; the last step.
pub(crate) async fn rebuild(app: &TestApp, name: &str) -> Value {
    let mut ws = WsClient::connect(app, Some(&token("ops", Role::Admin))).await;
    ws.subscribe("p", PROGRESS, json!({ "name": name })).await;
    // The current state first (no rebuild yet, or the last one's end).
    let first = ws.next_data("p", "rebuildProgress").await;
    assert_eq!(first["name"], name);
    let resp = app.as_admin().gql(REBUILD, json!({ "name": name })).await;
    let started = &data(&resp)["rebuildProjection"];
    assert_eq!(started["phase"], "REPLAYING", "{resp}");
    let mut last_done = 0;
    loop {
        let step = ws.next_data("p", "rebuildProgress").await;
        if step["phase"] == "IDLE" || (step == first && first["phase"] != "REPLAYING") {
            continue;
        }
        let done = step["eventsDone"].as_i64().expect("eventsDone");
        assert!(done >= last_done, "progress never goes back: {step}");
        last_done = done;
        match step["phase"].as_str() {
            Some("DONE") => {
                assert!(step["eventsTotal"].as_i64() >= Some(done), "{step}");
                assert_eq!(step["error"], Value::Null);
                // The subscription completes after the end of the rebuild it saw.
                let after = ws.recv().await;
                assert_eq!(after["type"], "complete", "{after}");
                return step;
            }
            Some("FAILED") => panic!("the rebuild of {name} failed: {step}"),
            _ => {}
        }
    }
}

/// `ordergraph projections <args>` on the test's database: (exit code 0, its output).
async fn cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordergraph"))
        .arg("projections")
        .args(args)
        .env("DATABASE_URL", app.database_url())
        .output()
        .await
        .expect("the CLI runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// A shop with something in every view: products, a review, a cart, a confirmed order.
async fn shop(app: &TestApp) -> Vec<String> {
    let admin = app.as_admin();
    let mut ids = Vec::new();
    for (i, stock) in [5, 8, 13].into_iter().enumerate() {
        let product = admin
            .create_product(&format!("RB-{i}"), "2.50", stock)
            .await;
        ids.push(str_of(&product["id"]).to_owned());
    }
    data(&admin.adjust_stock(&ids[0], 7).await);
    let bob = app.as_user("bob");
    data(&bob.review(&ids[1], 4).await);
    data(&bob.add_to_cart(&ids[2], 2).await);
    let alice = app.as_user("alice");
    let order = alice.order_one(&ids[1], 1, "tok_visa").await;
    wait_for_order_status(&alice, &order, &["CONFIRMED"]).await;
    wait_until("the dashboard has the order", || async {
        (status_count(&admin.dashboard().await, "CONFIRMED") == 1).then_some(())
    })
    .await;
    ids
}

/// Behind the service's back: the stock of `shop`'s product RB-0 becomes 999 and every
/// cart line vanishes.
async fn corrupt_catalog_and_cart(app: &TestApp) {
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    db.execute_unprepared("UPDATE catalog_view SET stock = 999 WHERE sku = 'RB-0'")
        .await
        .expect("the row is corrupted");
    db.execute_unprepared("DELETE FROM cart_view_items")
        .await
        .expect("the cart line is removed");
}

fn same_uuid(a: &Value, b: &str) -> bool {
    let norm = |s: &str| s.replace('-', "").to_lowercase();
    a.as_str().is_some_and(|a| norm(a) == norm(b))
}

#[tokio::test]
async fn verify_finds_a_corrupted_row_and_a_rebuild_fixes_it() {
    let app = spawn_app().await;
    let ids = shop(&app).await;
    let admin = app.as_admin();
    for name in VIEWS {
        let report = verify(&admin, name).await;
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["differences"], 0, "{report}");
        assert!(report["rows"].as_i64() > Some(0), "{report}");
    }
    let (ok, out) = cli(&app, &["verify"]).await;
    assert!(ok, "every view verifies:\n{out}");

    // Behind the service's back: one product's stock and a cart line vanish.
    // (The service may go on answering `product` from the copy its last fold kept: a
    // change behind its back shows after the next change or a rebuild, ADR 0023.)
    corrupt_catalog_and_cart(&app).await;

    let report = verify(&admin, "catalog").await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["differences"], 1, "{report}");
    let diff = &report["firstDifferences"][0];
    assert_eq!(diff["table"], "catalog_view");
    assert!(same_uuid(&diff["key"]["id"], &ids[0]), "{diff}");
    assert_eq!(diff["live"]["stock"], 999, "{diff}");
    assert_eq!(diff["replayed"]["stock"], 12, "{diff}");
    let report = verify(&admin, "cart").await;
    assert_eq!(report["ok"], false, "{report}");
    let diff = &report["firstDifferences"][0];
    assert_eq!(diff["table"], "cart_view_items", "{diff}");
    assert_eq!(diff["live"], Value::Null, "{diff}");
    assert_eq!(diff["replayed"]["quantity"], 2, "{diff}");
    for name in ["orders", "dashboard"] {
        assert_eq!(verify(&admin, name).await["ok"], true);
    }
    let (ok, out) = cli(&app, &["verify", "catalog"]).await;
    assert!(!ok, "exit code 1 on a difference:\n{out}");
    assert!(out.contains("DIFFERS") && out.contains("999"), "{out}");

    // The rebuild puts the log's truth back, and says how it went.
    let done = rebuild(&app, "catalog").await;
    assert!(done["eventsDone"].as_i64() >= Some(4), "{done}");
    assert_eq!(done["rows"], 3, "{done}");
    assert_eq!(admin.product(&ids[0]).await["stock"], 12);
    assert_eq!(verify(&admin, "catalog").await["ok"], true);
    let (ok, out) = cli(&app, &["rebuild", "cart"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("cart: rebuilt"), "{out}");
    let cart = app.as_user("bob").cart().await;
    assert_eq!(cart["itemCount"], 2, "{cart}");
    let (ok, out) = cli(&app, &["verify"]).await;
    assert!(ok, "every view verifies again:\n{out}");

    // The views go on from where the rebuild left them.
    data(&admin.adjust_stock(&ids[0], 1).await);
    wait_for_stock(&admin, &ids[0], 13).await;
    assert_eq!(verify(&admin, "catalog").await["ok"], true);
}

#[tokio::test]
async fn the_cli_rebuilds_every_view_at_once_and_each_is_the_log_s_truth_again() {
    let app = spawn_app().await;
    let ids = shop(&app).await;
    let admin = app.as_admin();
    corrupt_catalog_and_cart(&app).await;
    let (ok, out) = cli(&app, &["verify"]).await;
    assert!(!ok && out.contains("DIFFERS"), "{out}");

    let (ok, out) = cli(&app, &["rebuild"]).await;
    assert!(ok, "{out}");
    for name in VIEWS {
        assert!(
            out.contains(&format!("{name}: rebuilt from")),
            "{name}:\n{out}"
        );
    }
    assert_eq!(admin.product(&ids[0]).await["stock"], 12);
    assert_eq!(app.as_user("bob").cart().await["itemCount"], 2);
    let (ok, out) = cli(&app, &["verify"]).await;
    assert!(ok, "every view verifies again:\n{out}");
    // The views go on from where the rebuilds left them.
    data(&admin.adjust_stock(&ids[0], 1).await);
    wait_for_stock(&admin, &ids[0], 13).await;
}

#[tokio::test]
async fn a_rebuild_while_writes_and_reads_go_on_never_shows_a_partial_view() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mut ids = Vec::new();
    for i in 0..12 {
        let product = admin
            .create_product(&format!("LIVE-{i:02}"), "1.00", 10)
            .await;
        ids.push(str_of(&product["id"]).to_owned());
    }
    let stop = tokio::sync::watch::channel(false);
    let writers = async {
        for round in 0..6 {
            for id in &ids {
                let resp = admin.adjust_stock(id, 1).await;
                assert_eq!(error_code(&resp), None, "round {round}: {resp}");
            }
        }
    };
    let reader = async {
        let mut seen: HashMap<String, i64> = HashMap::new();
        let mut reads = 0;
        let mut rx = stop.1.clone();
        loop {
            let page = app.anonymous().products(json!({ "first": 50 })).await;
            let page = &page;
            assert_eq!(page["totalCount"], 12, "a partial view: {page}");
            let edges = page["edges"].as_array().expect("edges");
            assert_eq!(edges.len(), 12, "a partial view: {page}");
            for edge in edges {
                let id = str_of(&edge["node"]["id"]).to_owned();
                let stock = edge["node"]["stock"].as_i64().expect("stock");
                let before = seen.insert(id, stock).unwrap_or(0);
                assert!(stock >= before, "stock went back from {before} to {stock}");
            }
            reads += 1;
            if *rx.borrow_and_update() {
                return reads;
            }
        }
    };
    let rebuilds = async {
        let mut rebuilt = 0;
        for _ in 0..3 {
            let done = rebuild(&app, "catalog").await;
            assert_eq!(done["rows"], 12, "{done}");
            rebuilt += 1;
        }
        rebuilt
    };
    let work = async {
        let ((), rebuilt) = tokio::join!(writers, rebuilds);
        let _ = stop.0.send(true);
        rebuilt
    };
    let (rebuilt, reads) = tokio::join!(work, reader);
    assert_eq!(rebuilt, 3);
    assert!(reads > 0);
    for id in &ids {
        wait_for_stock(&admin, id, 16).await;
    }
    assert_eq!(verify(&admin, "catalog").await["ok"], true);
}

#[tokio::test]
async fn a_failed_projection_runs_again_after_its_event_is_fixed_and_it_is_rebuilt() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("FIX-1", "2.00", 10).await;
    let pid = str_of(&product["id"]).to_owned();
    let carol = app.as_user("carol");
    data(&carol.add_to_cart(&pid, 1).await);
    let stream = ordergraph::write::cart::cart_stream_id(
        &ordergraph::domain::values::UserId::parse("carol").expect("a valid user id"),
    );

    let (db, bad) = insert_undecodable_cart_event(&app, stream).await;
    wait_until("the cart projection fails", || async {
        let resp = admin.gql(PROJECTIONS, json!({})).await;
        data(&resp)["projections"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .find(|p| p["name"] == "cart" && p["status"] == "FAILED")
    })
    .await;

    // A rebuild of a view whose log cannot be folded fails, and changes nothing.
    let resp = admin.gql(REBUILD, json!({ "name": "cart" })).await;
    assert_eq!(error_code(&resp), None, "{resp}");
    let failed = wait_until("the rebuild fails", || async {
        let mut ws = WsClient::connect(&app, Some(&token("ops", Role::Admin))).await;
        ws.subscribe("p", PROGRESS, json!({ "name": "cart" })).await;
        let state = ws.next_data("p", "rebuildProgress").await;
        (state["phase"] == "FAILED").then_some(state)
    })
    .await;
    assert!(
        str_of(&failed["error"]).contains("CartItemAdded"),
        "{failed}"
    );
    assert_eq!(carol.cart().await["itemCount"], 1);
    // Every view at once from the command line: the cart fails alone, the others are
    // rebuilt, and the command says which failed.
    let (ok, out) = cli(&app, &["rebuild"]).await;
    assert!(!ok, "exit code 1 when a view fails:\n{out}");
    assert!(
        out.contains("rebuilding cart") && out.contains("CartItemAdded"),
        "{out}"
    );
    for name in ["catalog", "orders", "dashboard"] {
        assert!(
            out.contains(&format!("{name}: rebuilt from")),
            "{name}:\n{out}"
        );
    }
    assert!(!out.contains("cart: rebuilt"), "{out}");
    assert_eq!(carol.cart().await["itemCount"], 1);

    // Fixed in the log, the view is rebuilt and the projection runs again, no restart.
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let mut fixed: ordergraph::entity::events::ActiveModel = bad.into();
    fixed.data = Set(json!({ "user_id": "carol", "product_id": pid, "quantity": 4, "added": 3 }));
    fixed.update(&db).await.expect("the event is fixed");
    rebuild(&app, "cart").await;
    assert_eq!(carol.cart().await["itemCount"], 4);
    let resp = admin.gql(PROJECTIONS, json!({})).await;
    for p in data(&resp)["projections"].as_array().expect("a list") {
        assert_eq!(p["status"], "RUNNING", "{p}");
        assert_eq!(p["error"], Value::Null, "{p}");
    }
    data(&carol.add_to_cart(&pid, 1).await);
    assert_eq!(carol.cart().await["itemCount"], 5);
}

#[tokio::test]
async fn only_admins_may_rebuild_verify_or_follow_a_rebuild() {
    let app = spawn_app().await;
    for (caller, code) in [
        (app.anonymous(), "UNAUTHENTICATED"),
        (app.as_user("mallory"), "FORBIDDEN"),
    ] {
        for query in [VERIFY, REBUILD] {
            let resp = caller.gql(query, json!({ "name": "catalog" })).await;
            assert_error(&resp, code);
        }
    }
    let mut ws = WsClient::connect(&app, Some(&token("mallory", Role::Customer))).await;
    ws.subscribe("p", PROGRESS, json!({ "name": "catalog" }))
        .await;
    let message = ws.recv().await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["payload"][0]["extensions"]["code"], "FORBIDDEN");

    let admin = app.as_admin();
    for query in [VERIFY, REBUILD] {
        let resp = admin.gql(query, json!({ "name": "inventory" })).await;
        assert_error(&resp, "BAD_USER_INPUT");
        assert!(error_message(&resp).contains("catalog"), "{resp}");
    }
    let (ok, out) = cli(&app, &["verify", "inventory"]).await;
    assert!(!ok && out.contains("unknown projection"), "{out}");
}

#[tokio::test]
async fn subscribers_receive_the_rows_a_rebuild_changed_and_only_those() {
    let app = spawn_app().await;
    let ids = shop(&app).await;
    const PRODUCT: &str =
        "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { id sku stock } }";
    let mut watcher = WsClient::connect(&app, None).await;
    watcher
        .subscribe("one", PRODUCT, json!({ "ids": [ids[0]] }))
        .await;
    assert_eq!(
        watcher.next_data("one", "productUpdated").await["stock"],
        12
    );
    watcher.subscribe("all", PRODUCT, json!({})).await;
    let mut untouched = WsClient::connect(&app, None).await;
    untouched
        .subscribe("other", PRODUCT, json!({ "ids": [ids[1]] }))
        .await;
    untouched.next_data("other", "productUpdated").await;
    let mut bob = WsClient::connect(&app, Some(&token("bob", Role::Customer))).await;
    bob.subscribe(
        "cart",
        "subscription { cartUpdated { userId itemCount } }",
        json!({}),
    )
    .await;
    assert_eq!(bob.next_data("cart", "cartUpdated").await["itemCount"], 2);
    let mut ops = WsClient::connect(&app, Some(&token("ops", Role::Admin))).await;
    ops.subscribe(
        "dash",
        "subscription { dashboardUpdated { ordersByStatus { status count } } }",
        json!({}),
    )
    .await;
    let figures = ops.next_data("dash", "dashboardUpdated").await;
    assert_eq!(status_count(&figures, "CONFIRMED"), 1);

    // Behind the service's back, so no change is announced: nobody hears of it.
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    for corruption in [
        "UPDATE catalog_view SET stock = 999 WHERE sku = 'RB-0'",
        "DELETE FROM cart_view_items",
        "UPDATE dashboard_counters SET value = value + 1000",
    ] {
        db.execute_unprepared(corruption)
            .await
            .expect("the view is corrupted");
    }

    // Each rebuild puts the log's truth back, and the subscribers of the rows it changed
    // receive them, current state again; nobody else hears anything.
    rebuild(&app, "catalog").await;
    let mut by_subscription = HashMap::new();
    for _ in 0..2 {
        let message = watcher.recv().await;
        assert_eq!(message["type"], "next", "{message}");
        let product = message["payload"]["data"]["productUpdated"].clone();
        by_subscription.insert(str_of(&message["id"]).to_owned(), product);
    }
    for id in ["one", "all"] {
        let fixed = &by_subscription[id];
        assert_eq!(
            (&fixed["sku"], &fixed["stock"]),
            (&json!("RB-0"), &json!(12)),
            "{id}"
        );
    }
    watcher.assert_silent(QUIET).await;
    untouched.assert_silent(QUIET).await;

    rebuild(&app, "cart").await;
    let cart = bob.next_data("cart", "cartUpdated").await;
    assert_eq!(cart["itemCount"], 2, "{cart}");

    rebuild(&app, "dashboard").await;
    let figures = ops.next_data("dash", "dashboardUpdated").await;
    assert_eq!(status_count(&figures, "CONFIRMED"), 1, "{figures}");

    // A rebuild that changes nothing is not announced.
    rebuild(&app, "catalog").await;
    watcher.assert_silent(QUIET).await;

    // And live changes go on as before.
    data(&app.as_admin().adjust_stock(&ids[0], 1).await);
    for _ in 0..2 {
        let message = watcher.recv().await;
        assert_eq!(
            message["payload"]["data"]["productUpdated"]["stock"], 13,
            "{message}"
        );
    }
}
