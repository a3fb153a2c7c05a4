//! Subscriptions as a client sees them over graphql-transport-ws: every view sends its
//! current state first and then every change; `after` resumes without a gap; each caller
//! sees only what is theirs; the raw `events` feed has no gap and no duplicate, also for a
//! slow subscriber.

use std::collections::HashMap;
use std::time::Duration;

use ordergraph::auth::Role;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws_client::{Received, WsClient, pos};

const PRODUCT_UPDATED: &str = "subscription($ids: [UUID!], $after: Position) {
  productUpdated(ids: $ids, after: $after) { id sku stock price status averageRating reviewCount version position }
}";
const CART_UPDATED: &str = "subscription($after: Position) {
  cartUpdated(after: $after) { userId itemCount total items { productId quantity } position }
}";
const ORDER_UPDATED: &str = "subscription($id: UUID, $after: Position) {
  orderUpdated(id: $id, after: $after) { id userId status reservation payment position }
}";
const DASHBOARD_UPDATED: &str = "subscription($after: Position) {
  dashboardUpdated(after: $after) { ordersByStatus { status count } revenue lowStock(threshold: 3) { sku stock } position }
}";
const EVENTS: &str = "subscription($after: Position, $types: [String!]) {
  events(after: $after, streamTypes: $types) { position streamId streamType version type data metadata recordedAt }
}";

fn mutation_position(resp: &Value, field: &str) -> i64 {
    pos(&data(resp)[field]["position"])
}

/// Asserts the next message for `id` is an `error` with `code`.
async fn expect_error(client: &mut WsClient, id: &str, code: &str) -> Value {
    let message = client.recv().await;
    assert_eq!(message["type"], "error", "expected an error: {message}");
    assert_eq!(message["id"], id);
    assert_eq!(
        message["payload"][0]["extensions"]["code"], code,
        "error code: {message}"
    );
    message
}

#[tokio::test]
async fn product_updated_sends_the_current_state_first_then_every_change() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("SUB-1", "10.00", 5).await;
    let id = str_of(&product["id"]).to_owned();

    // Anonymous: the catalog is public.
    let mut client = WsClient::connect(&app, None).await;
    client
        .subscribe("p", PRODUCT_UPDATED, json!({ "ids": [id] }))
        .await;
    let first = client.next_data("p", "productUpdated").await;
    assert_eq!(first["stock"], 5);
    assert_eq!(first["position"], product["position"]);

    let resp = admin.adjust_stock(&id, 3).await;
    let change = client.next_data("p", "productUpdated").await;
    assert_eq!(change["stock"], 8);
    assert_eq!(
        pos(&change["position"]),
        mutation_position(&resp, "adjustStock")
    );

    let resp = admin
        .gql(
            UPDATE_PRODUCT,
            json!({ "input": { "id": id, "price": "12.50" } }),
        )
        .await;
    let change = client.next_data("p", "productUpdated").await;
    assert_eq!(change["price"], "12.50");
    assert_eq!(
        pos(&change["position"]),
        mutation_position(&resp, "updateProduct")
    );

    let resp = app.as_user("reviewer").review(&id, 4).await;
    let change = client.next_data("p", "productUpdated").await;
    assert_eq!(change["reviewCount"], 1);
    assert_eq!(change["averageRating"], 4.0);
    assert_eq!(
        pos(&change["position"]),
        mutation_position(&resp, "reviewProduct")
    );

    let resp = admin.discontinue(&id).await;
    let change = client.next_data("p", "productUpdated").await;
    assert_eq!(change["status"], "DISCONTINUED");
    assert_eq!(
        pos(&change["position"]),
        mutation_position(&resp, "discontinueProduct")
    );

    // A product not watched never shows up.
    let other = admin.create_product("SUB-2", "1.00", 1).await;
    admin.adjust_stock(str_of(&other["id"]), 1).await;
    client.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn product_updated_resumes_after_a_position_without_a_gap() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let a = admin.create_product("RES-A", "1.00", 10).await;
    let b = admin.create_product("RES-B", "1.00", 10).await;
    let (a, b) = (str_of(&a["id"]).to_owned(), str_of(&b["id"]).to_owned());

    let mut client = WsClient::connect(&app, None).await;
    client
        .subscribe("p", PRODUCT_UPDATED, json!({ "ids": [a, b] }))
        .await;
    let mut last = 0;
    for _ in 0..2 {
        let state = client.next_data("p", "productUpdated").await;
        last = last.max(pos(&state["position"]));
    }
    drop(client);

    // While away: A changes twice, B once.
    admin.adjust_stock(&a, -1).await;
    let b_resp = admin.adjust_stock(&b, -2).await;
    let a_resp = admin.adjust_stock(&a, -3).await;

    // Open-ended (every product) with `after`: exactly the changed keys, latest state,
    // in position order.
    let mut all = WsClient::connect(&app, None).await;
    all.subscribe("all", PRODUCT_UPDATED, json!({ "after": last.to_string() }))
        .await;
    let first = all.next_data("all", "productUpdated").await;
    let second = all.next_data("all", "productUpdated").await;
    assert_eq!(first["id"], b.as_str());
    assert_eq!(first["stock"], 8);
    assert_eq!(
        pos(&first["position"]),
        mutation_position(&b_resp, "adjustStock")
    );
    assert_eq!(second["id"], a.as_str());
    assert_eq!(second["stock"], 6);
    assert_eq!(
        pos(&second["position"]),
        mutation_position(&a_resp, "adjustStock")
    );
    all.assert_silent(Duration::from_millis(300)).await;

    // Keyed with `after`: the current state of each, then only newer changes.
    let mut keyed = WsClient::connect(&app, None).await;
    keyed
        .subscribe(
            "k",
            PRODUCT_UPDATED,
            json!({ "ids": [a], "after": last.to_string() }),
        )
        .await;
    let state = keyed.next_data("k", "productUpdated").await;
    assert_eq!(state["stock"], 6);
    let resp = admin.adjust_stock(&a, 1).await;
    let change = keyed.next_data("k", "productUpdated").await;
    assert_eq!(change["stock"], 7);
    assert_eq!(
        pos(&change["position"]),
        mutation_position(&resp, "adjustStock")
    );
    let change = all.next_data("all", "productUpdated").await;
    assert_eq!(change["stock"], 7);
}

#[tokio::test]
async fn cart_updated_sends_the_callers_cart_and_never_anyone_elses() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("CART-SUB", "2.50", 10).await;
    let id = str_of(&product["id"]).to_owned();
    let alice = app.as_user("alice");
    let bob = app.as_user("bob");

    let mut client = WsClient::connect(&app, Some(&token("alice", Role::Customer))).await;
    client.subscribe("c", CART_UPDATED, json!({})).await;
    let empty = client.next_data("c", "cartUpdated").await;
    assert_eq!(empty["userId"], "alice");
    assert_eq!(empty["itemCount"], 0);
    assert_eq!(empty["position"], "0");

    // Bob's cart changes are not alice's business.
    data(&bob.add_to_cart(&id, 1).await);
    let resp = alice.add_to_cart(&id, 2).await;
    let change = client.next_data("c", "cartUpdated").await;
    assert_eq!(change["userId"], "alice");
    assert_eq!(change["itemCount"], 2);
    assert_eq!(change["total"], "5.00");
    assert_eq!(
        pos(&change["position"]),
        mutation_position(&resp, "addToCart")
    );

    data(&bob.add_to_cart(&id, 3).await);
    let resp = alice.clear_cart().await;
    let change = client.next_data("c", "cartUpdated").await;
    assert_eq!(change["itemCount"], 0);
    assert_eq!(
        pos(&change["position"]),
        mutation_position(&resp, "clearCart")
    );
    client.assert_silent(Duration::from_millis(300)).await;

    // Anonymous callers have no cart.
    let mut anonymous = WsClient::connect(&app, None).await;
    anonymous.subscribe("c", CART_UPDATED, json!({})).await;
    expect_error(&mut anonymous, "c", "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn order_updated_follows_the_saga_and_is_authorized_per_order() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("ORD-SUB", "3.00", 10).await;
    let pid = str_of(&product["id"]).to_owned();
    let alice = app.as_user("alice");
    let bob = app.as_user("bob");

    // Alice watches all her orders; an admin watches all orders.
    let mut mine = WsClient::connect(&app, Some(&token("alice", Role::Customer))).await;
    mine.subscribe("mine", ORDER_UPDATED, json!({})).await;
    let mut everything = WsClient::connect(&app, Some(&token("admin", Role::Admin))).await;
    everything.subscribe("all", ORDER_UPDATED, json!({})).await;
    // Both are live once a first change reached them; nothing was sent first.
    let bob_order = bob.order_one(&pid, 1, "tok_visa").await;
    let seen = everything
        .next_until("all", "orderUpdated", |o| o["status"] == "CONFIRMED")
        .await;
    assert_eq!(seen["id"], bob_order.as_str());

    let order = alice.order_one(&pid, 2, "tok_visa").await;
    let mut statuses = vec![];
    loop {
        let o = mine.next_data("mine", "orderUpdated").await;
        assert_eq!(o["userId"], "alice", "only alice's orders: {o}");
        assert_eq!(o["id"], order.as_str());
        statuses.push(o["status"].as_str().unwrap_or_default().to_owned());
        if o["status"] == "CONFIRMED" {
            break;
        }
    }
    // In the saga's order; a step the relay folded together with the next one may be
    // conflated away, never reordered.
    let rank = |s: &str| {
        ["PENDING", "RESERVED", "CONFIRMED"]
            .iter()
            .position(|x| *x == s)
    };
    assert!(
        statuses.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{statuses:?}"
    );
    let seen = everything
        .next_until("all", "orderUpdated", |o| {
            o["id"] == order.as_str() && o["status"] == "CONFIRMED"
        })
        .await;
    assert_eq!(seen["userId"], "alice");

    // One order by id: its current state first, then each change.
    let mut one = WsClient::connect(&app, Some(&token("alice", Role::Customer))).await;
    one.subscribe("one", ORDER_UPDATED, json!({ "id": order }))
        .await;
    let state = one.next_data("one", "orderUpdated").await;
    assert_eq!(state["status"], "CONFIRMED");
    let resp = admin.ship_order(&order).await;
    let change = one.next_data("one", "orderUpdated").await;
    assert_eq!(change["status"], "SHIPPED");
    assert_eq!(
        pos(&change["position"]),
        mutation_position(&resp, "shipOrder")
    );

    // Bob may not watch alice's order: it does not exist for him.
    let mut snoop = WsClient::connect(&app, Some(&token("bob", Role::Customer))).await;
    snoop
        .subscribe("x", ORDER_UPDATED, json!({ "id": order }))
        .await;
    expect_error(&mut snoop, "x", "NOT_FOUND").await;
    // Nor does bob's own feed carry alice's changes.
    snoop.subscribe("bob", ORDER_UPDATED, json!({})).await;
    admin.deliver_order(&order).await;
    snoop.assert_silent(Duration::from_millis(300)).await;
    let change = one.next_data("one", "orderUpdated").await;
    assert_eq!(change["status"], "DELIVERED");

    let mut anonymous = WsClient::connect(&app, None).await;
    anonymous.subscribe("a", ORDER_UPDATED, json!({})).await;
    expect_error(&mut anonymous, "a", "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn dashboard_updated_is_for_admins_and_sends_figures_then_changes() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("DASH-SUB", "4.00", 10).await;
    let pid = str_of(&product["id"]).to_owned();

    let mut customer = WsClient::connect(&app, Some(&token("alice", Role::Customer))).await;
    customer.subscribe("d", DASHBOARD_UPDATED, json!({})).await;
    expect_error(&mut customer, "d", "FORBIDDEN").await;

    let mut client = WsClient::connect(&app, Some(&token("admin", Role::Admin))).await;
    client.subscribe("d", DASHBOARD_UPDATED, json!({})).await;
    let first = client.next_data("d", "dashboardUpdated").await;
    assert_eq!(first["revenue"], "0.00");
    assert_eq!(first["lowStock"], json!([]));

    // Stock falling to the threshold moves lowStock.
    let resp = admin.adjust_stock(&pid, -8).await;
    // The product's creation may reach the dashboard after the first figures were read
    // (createProduct waits for the catalog view only): that change comes first then.
    let change = client
        .next_until("d", "dashboardUpdated", |d| d["lowStock"] != json!([]))
        .await;
    assert_eq!(
        change["lowStock"],
        json!([{ "sku": "DASH-SUB", "stock": 2 }])
    );
    assert_eq!(
        pos(&change["position"]),
        mutation_position(&resp, "adjustStock")
    );

    // A confirmed order moves the revenue.
    app.as_user("alice").order_one(&pid, 1, "tok_visa").await;
    let confirmed = client
        .next_until("d", "dashboardUpdated", |d| d["revenue"] == "4.00")
        .await;
    assert!(pos(&confirmed["position"]) > pos(&change["position"]));
}

#[tokio::test]
async fn events_replays_the_log_then_goes_live_in_order_without_gaps() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("EV-1", "1.00", 5).await;
    let pid = str_of(&product["id"]).to_owned();
    admin.adjust_stock(&pid, 1).await;
    data(&app.as_user("alice").add_to_cart(&pid, 1).await);

    let mut customer = WsClient::connect(&app, Some(&token("alice", Role::Customer))).await;
    customer.subscribe("e", EVENTS, json!({})).await;
    expect_error(&mut customer, "e", "FORBIDDEN").await;

    let mut client = WsClient::connect(&app, Some(&token("admin", Role::Admin))).await;
    client.subscribe("e", EVENTS, json!({})).await;
    let created = client.next_data("e", "events").await;
    assert_eq!(created["type"], "ProductCreated");
    assert_eq!(created["streamType"], "product");
    assert_eq!(created["streamId"], pid.as_str());
    assert_eq!(created["version"], 1);
    assert_eq!(created["data"]["sku"], "EV-1");
    assert_eq!(created["metadata"]["userId"], "admin");
    let adjusted = client.next_data("e", "events").await;
    assert_eq!(adjusted["type"], "ProductStockUpdated");
    let cart = client.next_data("e", "events").await;
    assert_eq!(cart["streamType"], "cart");
    let mut last = pos(&cart["position"]);
    assert!(pos(&created["position"]) < pos(&adjusted["position"]));
    assert!(pos(&adjusted["position"]) < last);

    // Live.
    let resp = admin.adjust_stock(&pid, 2).await;
    let live = client.next_data("e", "events").await;
    assert_eq!(
        pos(&live["position"]),
        mutation_position(&resp, "adjustStock")
    );
    assert!(pos(&live["position"]) > last);
    last = pos(&live["position"]);

    // Resume after a position, filtered by stream type.
    data(&app.as_user("alice").add_to_cart(&pid, 1).await);
    let resp = admin.adjust_stock(&pid, 1).await;
    let mut resumed = WsClient::connect(&app, Some(&token("admin", Role::Admin))).await;
    resumed
        .subscribe(
            "r",
            EVENTS,
            json!({ "after": last.to_string(), "types": ["product"] }),
        )
        .await;
    let next = resumed.next_data("r", "events").await;
    assert_eq!(next["streamType"], "product");
    assert_eq!(
        pos(&next["position"]),
        mutation_position(&resp, "adjustStock")
    );
    resumed.assert_silent(Duration::from_millis(300)).await;

    let mut bad = WsClient::connect(&app, Some(&token("admin", Role::Admin))).await;
    bad.subscribe("b", EVENTS, json!({ "types": ["nope"] }))
        .await;
    expect_error(&mut bad, "b", "BAD_USER_INPUT").await;
}

/// A subscriber that does not read while the log grows far past the in-memory buffer
/// still receives every event exactly once, in order (served from the table).
#[tokio::test]
async fn a_slow_events_subscriber_misses_nothing() {
    let app = spawn_app_with(|s| s.subscription_buffer = 4).await;
    let admin = app.as_admin();
    let product = admin.create_product("SLOW-1", "1.00", 1_000).await;
    let pid = str_of(&product["id"]).to_owned();

    let mut client = WsClient::connect(&app, Some(&token("admin", Role::Admin))).await;
    client.subscribe("e", EVENTS, json!({})).await;
    let first = client.next_data("e", "events").await;
    let mut positions = vec![pos(&first["position"])];
    // Not reading: 60 events pile up behind a 4-slot buffer.
    let mut written = vec![];
    for _ in 0..60 {
        let resp = admin.adjust_stock(&pid, -1).await;
        written.push(mutation_position(&resp, "adjustStock"));
    }
    while positions.len() < 61 {
        let event = client.next_data("e", "events").await;
        positions.push(pos(&event["position"]));
    }
    assert_eq!(
        &positions[1..],
        written.as_slice(),
        "every event, once, in order"
    );
    client.assert_silent(Duration::from_millis(300)).await;
}

/// A view subscriber that falls behind is conflated: it gets the latest state of every
/// key, never an older state after a newer one.
#[tokio::test]
async fn a_slow_view_subscriber_is_conflated_to_the_latest_state() {
    let app = spawn_app_with(|s| s.subscription_buffer = 2).await;
    let admin = app.as_admin();
    let mut ids = vec![];
    for sku in ["CF-1", "CF-2", "CF-3"] {
        let p = admin.create_product(sku, "1.00", 100).await;
        ids.push(str_of(&p["id"]).to_owned());
    }
    let mut client = WsClient::connect(&app, None).await;
    client
        .subscribe("p", PRODUCT_UPDATED, json!({ "ids": ids }))
        .await;
    let mut latest: HashMap<String, (i64, i64)> = HashMap::new();
    for _ in 0..3 {
        let state = client.next_data("p", "productUpdated").await;
        latest.insert(
            str_of(&state["id"]).to_owned(),
            (
                pos(&state["position"]),
                state["stock"].as_i64().unwrap_or(-1),
            ),
        );
    }
    for _ in 0..20 {
        for id in &ids {
            admin.adjust_stock(id, -1).await;
        }
    }
    let mut last_position = 0;
    loop {
        let state = client.next_data("p", "productUpdated").await;
        let id = str_of(&state["id"]).to_owned();
        let position = pos(&state["position"]);
        assert!(position > last_position, "positions only increase: {state}");
        last_position = position;
        let previous = latest.insert(id, (position, state["stock"].as_i64().unwrap_or(-1)));
        assert!(previous.is_none_or(|(p, _)| p < position));
        if latest.values().all(|(_, stock)| *stock == 80) {
            break;
        }
    }
}

/// 1,000 mutations from concurrent writers while subscribers connect, disconnect and
/// resume: the `events` subscribers see every event after their resume point exactly
/// once and in order; the view subscribers end on the latest state of every key.
#[tokio::test]
async fn a_thousand_mutations_interleaved_with_reconnecting_subscribers() {
    const WRITERS: usize = 10;
    const PER_WRITER: usize = 100;
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mut ids = vec![];
    for i in 0..WRITERS {
        let p = admin
            .create_product(&format!("MIX-{i}"), "1.00", 10_000)
            .await;
        ids.push(str_of(&p["id"]).to_owned());
    }
    let start = {
        let resp = app.as_admin().product(&ids[WRITERS - 1]).await;
        pos(&resp["position"])
    };

    let writers = ids.iter().cloned().map(|id| {
        let app = &app;
        async move {
            let admin = app.as_admin();
            let mut positions = vec![];
            for _ in 0..PER_WRITER {
                let resp = admin.adjust_stock(&id, -1).await;
                positions.push(mutation_position(&resp, "adjustStock"));
            }
            positions
        }
    });

    // Event subscribers that reconnect every few events, resuming from what they saw.
    let event_reader = |reconnect_every: usize| {
        let app = &app;
        async move {
            let admin_token = token("admin", Role::Admin);
            let mut seen: Vec<i64> = vec![];
            let mut after = start;
            while seen.len() < WRITERS * PER_WRITER {
                let mut client = WsClient::connect(app, Some(&admin_token)).await;
                client
                    .subscribe("e", EVENTS, json!({ "after": after.to_string() }))
                    .await;
                for _ in 0..reconnect_every {
                    if seen.len() == WRITERS * PER_WRITER {
                        break;
                    }
                    let event = client.next_data("e", "events").await;
                    let p = pos(&event["position"]);
                    seen.push(p);
                    after = p;
                }
            }
            seen
        }
    };

    // A view subscriber that reconnects with `after` every few changes.
    let view_reader = {
        let app = &app;
        let ids = ids.clone();
        async move {
            let mut latest: HashMap<String, i64> = HashMap::new();
            let mut after: Option<i64> = None;
            let mut client = WsClient::connect(app, None).await;
            let mut received = 0;
            loop {
                let variables = match after {
                    Some(a) => json!({ "after": a.to_string() }),
                    None => json!({ "after": start.to_string() }),
                };
                client.subscribe("v", PRODUCT_UPDATED, variables).await;
                for _ in 0..37 {
                    let state = client.next_data("v", "productUpdated").await;
                    let p = pos(&state["position"]);
                    assert!(
                        after.is_none_or(|a| p > a),
                        "only newer than the resume point"
                    );
                    after = Some(p);
                    latest.insert(
                        str_of(&state["id"]).to_owned(),
                        state["stock"].as_i64().unwrap_or(-1),
                    );
                    received += 1;
                    if ids
                        .iter()
                        .all(|id| latest.get(id) == Some(&(10_000 - PER_WRITER as i64)))
                    {
                        return received;
                    }
                }
                client.complete("v").await;
                client = WsClient::connect(app, None).await;
            }
        }
    };

    let (written, a, b, c, views) = tokio::join!(
        futures_util::future::join_all(writers),
        event_reader(50),
        event_reader(333),
        event_reader(usize::MAX),
        view_reader,
    );
    // Every write's position, in log order, is what every reader saw.
    let mut expected: Vec<i64> = written.into_iter().flatten().collect();
    expected.sort_unstable();
    assert_eq!(expected.len(), WRITERS * PER_WRITER);
    for seen in [&a, &b, &c] {
        assert_eq!(seen, &expected, "in order, no gap, no duplicate");
    }
    assert!(views > 0);
}

#[tokio::test]
async fn subscriptions_reject_invalid_arguments_with_an_error_message() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, None).await;
    let too_many: Vec<String> = (0..101).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    client
        .subscribe("p", PRODUCT_UPDATED, json!({ "ids": too_many }))
        .await;
    expect_error(&mut client, "p", "BAD_USER_INPUT").await;
    client
        .subscribe("q", "subscription { nope }", json!({}))
        .await;
    expect_error(&mut client, "q", "BAD_USER_INPUT").await;
    client
        .subscribe("r", PRODUCT_UPDATED, json!({ "after": "-1" }))
        .await;
    expect_error(&mut client, "r", "BAD_USER_INPUT").await;
    // The connection is still fine.
    let admin = app.as_admin();
    let p = admin.create_product("OK-1", "1.00", 1).await;
    client
        .subscribe("s", PRODUCT_UPDATED, json!({ "ids": [p["id"]] }))
        .await;
    let state = client.next_data("s", "productUpdated").await;
    assert_eq!(state["sku"], "OK-1");
    // Queries run over the socket too: one `next`, then `complete`.
    client
        .subscribe(
            "t",
            "query { products(first: 1) { totalCount } }",
            json!({}),
        )
        .await;
    let result = client.next_data("t", "products").await;
    assert_eq!(result["totalCount"], 1);
    let done = client.recv().await;
    assert_eq!(done, json!({ "type": "complete", "id": "t" }));
    // Completing a subscription stops it.
    client.complete("s").await;
    admin.adjust_stock(str_of(&p["id"]), 1).await;
    match tokio::time::timeout(Duration::from_millis(300), client.next_event()).await {
        Err(_) => {}
        Ok(Received::Message(m)) => panic!("nothing after complete, got {m}"),
        Ok(closed) => panic!("the socket stays open: {closed:?}"),
    }
}
