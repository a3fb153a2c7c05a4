//! The background tasks (relay, saga, live views, event feed) are supervised together: one
//! that dies is logged, named by `/readyz` (503) until it is up again, and restarted
//! meanwhile (ADR 0006).

use ordergraph::auth::Role;
use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws_client::WsClient;

const CART_UPDATED: &str = "subscription { cartUpdated { userId itemCount position } }";

/// `/readyz`'s status and body.
async fn readiness(app: &TestApp) -> Option<(u16, Value)> {
    let response = app.http.get(app.url("/readyz")).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// The `failedTasks` entry of `name` in a readiness body.
fn failed_task<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body["failedTasks"]
        .as_array()?
        .iter()
        .find(|task| task["name"] == name)
}

#[tokio::test]
async fn a_live_views_hub_that_cannot_load_a_change_is_named_by_readyz_until_the_cause_is_repaired()
{
    // Arrange: alice watches her cart; the service is ready.
    let app = spawn_app().await;
    let product = app.as_admin().create_product("SUP-1", "3.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    let mut client = WsClient::connect(&app, Some(&token("alice", Role::Customer))).await;
    client.subscribe("c", CART_UPDATED, json!({})).await;
    assert_eq!(client.next_data("c", "cartUpdated").await["itemCount"], 0);
    wait_until("/readyz answers 200", || async {
        readiness(&app).await.filter(|(status, _)| *status == 200)
    })
    .await;

    // Act: behind the service's back, the catalog view (a cart's lines are priced from
    // it) goes away, and alice's cart changes: the hub cannot load the change.
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    db.execute_unprepared("ALTER TABLE catalog_view RENAME TO catalog_view_away")
        .await
        .expect("the view can be renamed");
    let _ = app.as_user("alice").add_to_cart(&id, 2).await;

    // Assert: not ready, naming the task and not the database's error; restarted, and
    // still down while the cause lasts.
    let body = wait_until("/readyz names the live views hub", || async {
        let (status, body) = readiness(&app).await?;
        (status == 503 && failed_task(&body, "live-views").is_some()).then_some(body)
    })
    .await;
    assert_eq!(body["database"], true, "{body}");
    assert_eq!(body["failedProjections"], json!([]), "{body}");
    assert!(!body.to_string().contains("catalog_view"), "{body}");
    wait_until("the hub was restarted and died again", || async {
        let (status, body) = readiness(&app).await?;
        let deaths = failed_task(&body, "live-views")?["deaths"].as_u64()?;
        (status == 503 && deaths >= 2).then_some(())
    })
    .await;

    // Act: the cause is repaired.
    db.execute_unprepared("ALTER TABLE catalog_view_away RENAME TO catalog_view")
        .await
        .expect("the view can be renamed back");

    // Assert: ready again, and alice receives the change the hub could not load.
    wait_until("/readyz answers 200 again", || async {
        readiness(&app).await.filter(|(status, _)| *status == 200)
    })
    .await;
    let change = client.next_data("c", "cartUpdated").await;
    assert_eq!(change["userId"], "alice");
    assert_eq!(change["itemCount"], 2);
}

#[tokio::test]
async fn readyz_names_a_failed_projection_and_its_position_but_not_its_error() {
    // Arrange: alice's cart stream gets an event the cart projection cannot read.
    let app = spawn_app().await;
    let product = app.as_admin().create_product("SUP-2", "2.00", 10).await;
    data(
        &app.as_user("alice")
            .add_to_cart(str_of(&product["id"]), 1)
            .await,
    );
    let alice = ordergraph::domain::values::UserId::parse("alice").expect("a valid user id");
    let stream = ordergraph::write::cart::cart_stream_id(&alice);

    // Act
    let (_db, bad) = insert_undecodable_cart_event(&app, stream).await;

    // Assert: /readyz, unauthenticated, names the view and where it stopped, and says
    // nothing of why; an admin reads why in `projections`.
    let body = wait_until("/readyz names the failed cart projection", || async {
        let (status, body) = readiness(&app).await?;
        let failed = body["failedProjections"].as_array()?;
        (status == 503 && failed.iter().any(|p| p["name"] == "cart")).then_some(body)
    })
    .await;
    assert_eq!(
        body["failedProjections"],
        json!([{ "name": "cart", "position": bad.position.to_string() }]),
        "{body}"
    );
    assert!(!body.to_string().contains("CartItemAdded"), "{body}");
    let resp = app
        .as_admin()
        .gql("{ projections { name error } }", json!({}))
        .await;
    let cart = data(&resp)["projections"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "cart").cloned())
        .unwrap_or_default();
    assert!(str_of(&cart["error"]).contains("CartItemAdded"), "{cart}");
}
