//! `projectionsUpdated`, over a real WebSocket: every projection's status table first,
//! then again as it changes (a checkpoint moving with a write, a projection failing at an
//! event it cannot fold, a rebuild's end), pushed with no query from the client; admins
//! only; ended with SERVER_DRAINING when the server shuts down.

use serde_json::{Value, json};

use ordergraph::auth::Role;

use crate::helpers::*;
use crate::ws_client::{WsClient, pos};

const STATUS: &str = "subscription {
  projectionsUpdated { name position head lag lagMillis status error failedPosition updatedAt }
}";
const VIEWS: [&str; 4] = ["cart", "catalog", "dashboard", "orders"];

/// The row of `name` in a table.
#[track_caller]
fn row<'a>(table: &'a Value, name: &str) -> &'a Value {
    table
        .as_array()
        .unwrap_or_else(|| panic!("a list: {table}"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} is in the table: {table}"))
}

async fn follow(app: &TestApp) -> WsClient {
    let mut ws = WsClient::connect(app, Some(&token("ops", Role::Admin))).await;
    ws.subscribe("s", STATUS, json!({})).await;
    ws
}

#[tokio::test]
async fn projections_updated_sends_the_table_first_then_each_checkpoint_that_moves() {
    // Arrange
    let app = spawn_app().await;
    let mut ws = follow(&app).await;

    // The table as `projections` has it, every view running.
    let first = ws.next_data("s", "projectionsUpdated").await;
    let mut names: Vec<&str> = first
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, VIEWS, "{first}");
    for name in VIEWS {
        assert_eq!(row(&first, name)["status"], "RUNNING", "{first}");
        assert_eq!(row(&first, name)["lag"], 0, "{first}");
    }
    let queried = app
        .as_admin()
        .gql("{ projections { name position } }", json!({}))
        .await;
    for name in VIEWS {
        assert_eq!(
            row(&data(&queried)["projections"], name)["position"],
            row(&first, name)["position"],
            "the same table as the query"
        );
    }

    // Act: a write moves the catalog's checkpoint.
    let product = app.as_admin().create_product("LIVE-1", "1.00", 3).await;
    let written = pos(&product["position"]);

    // Assert: pushed, with no query.
    let moved = ws
        .next_until("s", "projectionsUpdated", |t| {
            pos(&row(t, "catalog")["position"]) >= written
        })
        .await;
    let catalog = row(&moved, "catalog");
    assert_eq!(catalog["status"], "RUNNING", "{moved}");
    assert!(pos(&catalog["head"]) >= written, "{moved}");
    assert!(!catalog["updatedAt"].is_null(), "{moved}");
}

#[tokio::test]
async fn projections_updated_pushes_a_projection_that_fails_and_one_that_recovers() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("LIVE-FAIL", "2.00", 10).await;
    let pid = str_of(&product["id"]).to_owned();
    let carol = app.as_user("carol");
    data(&carol.add_to_cart(&pid, 1).await);
    let mut ws = follow(&app).await;
    let first = ws.next_data("s", "projectionsUpdated").await;
    assert_eq!(row(&first, "cart")["status"], "RUNNING", "{first}");

    // Act: an event the cart view cannot fold, behind the service's back.
    let stream = ordergraph::write::cart::cart_stream_id(
        &ordergraph::domain::values::UserId::parse("carol").expect("a valid user id"),
    );
    let (db, bad) = insert_undecodable_cart_event(&app, stream).await;

    // Assert: the failure is pushed (no checkpoint moves: the recheck finds it), with
    // where it stopped, while the other views run on.
    let failed = ws
        .next_until("s", "projectionsUpdated", |t| {
            row(t, "cart")["status"] == "FAILED"
        })
        .await;
    let cart = row(&failed, "cart");
    assert_eq!(pos(&cart["failedPosition"]), bad.position, "{failed}");
    assert!(str_of(&cart["error"]).contains("CartItemAdded"), "{failed}");
    assert!(cart["lag"].as_i64() >= Some(1), "{failed}");
    assert_eq!(row(&failed, "catalog")["status"], "RUNNING", "{failed}");

    // Act: the event fixed in the log, the view rebuilt.
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let mut fixed: ordergraph::entity::events::ActiveModel = bad.into();
    fixed.data = Set(json!({ "user_id": "carol", "product_id": pid, "quantity": 4, "added": 3 }));
    fixed.update(&db).await.expect("the event is fixed");
    let resp = admin
        .gql(
            "mutation { rebuildProjection(name: \"cart\") { phase } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&resp), None, "{resp}");

    // Assert: running again, caught up, pushed.
    let recovered = ws
        .next_until("s", "projectionsUpdated", |t| {
            row(t, "cart")["status"] == "RUNNING" && row(t, "cart")["lag"] == 0
        })
        .await;
    assert_eq!(row(&recovered, "cart")["error"], Value::Null, "{recovered}");
}

#[tokio::test]
async fn projections_updated_is_refused_to_customers_and_anonymous_callers() {
    let app = spawn_app().await;
    for (who, token, code) in [
        (
            "a customer",
            Some(token("bob", Role::Customer)),
            "FORBIDDEN",
        ),
        ("an anonymous caller", None, "UNAUTHENTICATED"),
    ] {
        let mut ws = WsClient::connect(&app, token.as_deref()).await;
        ws.subscribe("s", STATUS, json!({})).await;
        let refused = ws.recv().await;
        assert_eq!(refused["type"], "error", "{who}: {refused}");
        assert_eq!(
            refused["payload"][0]["extensions"]["code"], code,
            "{who}: {refused}"
        );
    }
}

#[tokio::test]
async fn projections_updated_ends_with_server_draining_when_the_server_shuts_down() {
    let mut app = spawn_app().await;
    let mut ws = follow(&app).await;
    let first = ws.next_data("s", "projectionsUpdated").await;

    let (stopped, ended) = tokio::join!(app.shut_down(), ws.recv());

    stopped.expect("the server stops cleanly");
    assert_eq!(ended["type"], "error", "{ended}");
    let error = &ended["payload"][0];
    assert_eq!(error["extensions"]["code"], "SERVER_DRAINING", "{ended}");
    let head = first
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| pos(&p["head"]))
        .max();
    assert_eq!(Some(pos(&error["extensions"]["position"])), head, "{ended}");
}
