//! Identical WebSocket subscriptions share one execution (ADR 0024): the first runs
//! alone, the second starts the execution it and every later one share. What each client
//! receives is what it would receive alone, the same operation of different callers is
//! never shared, and `/metrics` shows operations beside the executions serving them.

use ordergraph::auth::Role;
use serde_json::json;

use crate::helpers::*;
use crate::ws_client::{WsClient, pos};

const WATCH: &str =
    "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { id stock position } }";

const CART: &str = "subscription { cartUpdated { userId itemCount position } }";

const EVENTS: &str = "subscription { events { position type } }";

/// Waits until `/metrics` shows `operations` WebSocket operations served by `executions`
/// executions.
async fn wait_for_executions(app: &TestApp, operations: i64, executions: i64) {
    wait_until(
        &format!("{operations} operations run as {executions} executions"),
        || async {
            let o = app.gauge("ordergraph_websocket_operations").await;
            let e = app.gauge("ordergraph_subscription_executions").await;
            (o == operations && e == executions).then_some(())
        },
    )
    .await;
}

/// Receives `productUpdated` messages of operation `id` until one is at `position`;
/// returns the positions and stocks received, in order.
async fn until_position(client: &mut WsClient, id: &str, position: i64) -> Vec<(i64, i64)> {
    let mut got = Vec::new();
    loop {
        let product = client.next_data(id, "productUpdated").await;
        let at = pos(&product["position"]);
        got.push((at, product["stock"].as_i64().expect("stock")));
        if at >= position {
            return got;
        }
    }
}

#[tokio::test]
async fn identical_subscriptions_after_the_first_share_one_execution_and_each_sees_state_then_every_change()
 {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("SH-1", "2.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    let created = pos(&product["position"]);

    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = WsClient::connect(&app, None).await;
        client.subscribe("p", WATCH, json!({ "ids": [id] })).await;
        let first = client.next_data("p", "productUpdated").await;
        assert_eq!(first["stock"], 10, "the current state first: {first}");
        assert_eq!(pos(&first["position"]), created);
        clients.push(client);
    }
    // The first alone, the two others on one execution.
    wait_for_executions(&app, 3, 2).await;

    let mut stock = 10;
    let mut last = created;
    for delta in [1, 2, 3] {
        let resp = admin.adjust_stock(&id, delta).await;
        stock += delta;
        last = pos(&data(&resp)["adjustStock"]["position"]);
        for client in &mut clients {
            let product = client.next_data("p", "productUpdated").await;
            assert_eq!(
                (pos(&product["position"]), product["stock"].as_i64()),
                (last, Some(stock))
            );
        }
    }

    // A late identical subscription: what it is sent starts with a whole state and
    // moves forward, change by change, to the latest.
    let mut late = WsClient::connect(&app, None).await;
    late.subscribe("late", WATCH, json!({ "ids": [id] })).await;
    let got = until_position(&mut late, "late", last).await;
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "positions only grow: {got:?}"
    );
    assert_eq!(got.last(), Some(&(last, stock)), "{got:?}");
    wait_for_executions(&app, 4, 2).await;

    // Each leaves; the others keep receiving; the last one out ends the execution.
    late.complete("late").await;
    wait_for_executions(&app, 3, 2).await;
    for leaving in 0..3 {
        let resp = admin.adjust_stock(&id, 1).await;
        stock += 1;
        last = pos(&data(&resp)["adjustStock"]["position"]);
        for client in &mut clients[leaving..] {
            let product = client.next_data("p", "productUpdated").await;
            assert_eq!(
                (pos(&product["position"]), product["stock"].as_i64()),
                (last, Some(stock))
            );
        }
        clients[leaving].complete("p").await;
        // The first leaves its own; then the two sharing one, one by one.
        let executions = [1, 1, 0][leaving];
        wait_for_executions(&app, 2 - leaving as i64, executions).await;
    }
}

#[tokio::test]
async fn the_same_subscription_of_two_users_is_never_shared() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("SH-2", "3.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    let (ann, bob) = (token("ann", Role::Customer), token("bob", Role::Customer));

    let mut ann_ws = WsClient::connect(&app, Some(&ann)).await;
    let mut bob_ws = WsClient::connect(&app, Some(&bob)).await;
    for client in [&mut ann_ws, &mut bob_ws] {
        client.subscribe("c", CART, json!({})).await;
        let empty = client.next_data("c", "cartUpdated").await;
        assert_eq!(empty["itemCount"], 0, "{empty}");
    }
    wait_for_executions(&app, 2, 2).await;

    app.with_token(ann.clone()).add_to_cart(&id, 2).await;
    let change = ann_ws.next_data("c", "cartUpdated").await;
    assert_eq!(
        (change["userId"].as_str(), change["itemCount"].as_i64()),
        (Some("ann"), Some(2))
    );
    bob_ws
        .assert_silent(std::time::Duration::from_millis(300))
        .await;

    // Anonymous and signed-in callers of the same public subscription do not share
    // either (who asks is part of what is shared).
    let mut anonymous = WsClient::connect(&app, None).await;
    anonymous
        .subscribe("p", WATCH, json!({ "ids": [id] }))
        .await;
    ann_ws.subscribe("p", WATCH, json!({ "ids": [id] })).await;
    anonymous.next_data("p", "productUpdated").await;
    ann_ws.next_data("p", "productUpdated").await;
    wait_for_executions(&app, 4, 4).await;
}

#[tokio::test]
async fn the_events_feed_and_a_resumed_subscription_run_alone() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("SH-3", "4.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    let created = pos(&product["position"]);
    let admin_token = token("admin", Role::Admin);

    let mut a = WsClient::connect(&app, Some(&admin_token)).await;
    let mut b = WsClient::connect(&app, Some(&admin_token)).await;
    for client in [&mut a, &mut b] {
        client.subscribe("e", EVENTS, json!({})).await;
        let first = client.next_data("e", "events").await;
        assert_eq!(pos(&first["position"]), created, "{first}");
    }
    let resumed = "subscription($ids: [UUID!], $after: Position) { productUpdated(ids: $ids, after: $after) { id stock position } }";
    for client in [&mut a, &mut b] {
        client
            .subscribe("r", resumed, json!({ "ids": [id], "after": "0" }))
            .await;
        let first = client.next_data("r", "productUpdated").await;
        assert_eq!(pos(&first["position"]), created, "{first}");
    }
    wait_for_executions(&app, 4, 4).await;
}

#[tokio::test]
async fn with_sharing_off_each_subscription_has_its_own_execution() {
    let app = spawn_app_with(|s| s.share_subscriptions = false).await;
    let product = app.as_admin().create_product("SH-4", "5.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut client = WsClient::connect(&app, None).await;
        client.subscribe("p", WATCH, json!({ "ids": [id] })).await;
        client.next_data("p", "productUpdated").await;
        clients.push(client);
    }
    wait_for_executions(&app, 2, 2).await;
}

#[tokio::test]
async fn completing_some_operations_of_a_socket_leaves_the_others_and_frees_their_ids() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let p = str_of(&admin.create_product("SH-5", "1.00", 10).await["id"]).to_owned();
    let q = str_of(&admin.create_product("SH-6", "1.00", 20).await["id"]).to_owned();
    let mut client = WsClient::connect(&app, None).await;
    for id in ["a", "b", "c", "d", "e"] {
        client.subscribe(id, WATCH, json!({ "ids": [p] })).await;
        assert_eq!(client.next_data(id, "productUpdated").await["stock"], 10);
    }
    client.complete("b").await;
    client.complete("d").await;
    // "b" is free again at once: reused for another product.
    client.subscribe("b", WATCH, json!({ "ids": [q] })).await;
    assert_eq!(client.next_data("b", "productUpdated").await["stock"], 20);
    // "a" alone, "c" and "e" on one execution, "b" alone on its product.
    wait_for_executions(&app, 4, 3).await;

    admin.adjust_stock(&p, 1).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let message = client.recv().await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["payload"]["data"]["productUpdated"]["stock"], 11);
        got.push(message["id"].as_str().expect("an id").to_owned());
    }
    got.sort();
    assert_eq!(got, ["a", "c", "e"]);
    admin.adjust_stock(&q, 1).await;
    assert_eq!(client.next_data("b", "productUpdated").await["stock"], 21);
    client
        .assert_silent(std::time::Duration::from_millis(200))
        .await;
}
