//! A WebSocket subscription's execution sleeps while its view does not change
//! (`http::shared::sleeping`): it keeps only the view it follows, and each change wakes
//! an execution that renders it. What a client receives is what it would receive from an
//! execution that never slept: the current state, then every change in order, none
//! missed, none twice; `/metrics` says how many executions sleep.

use std::collections::HashMap;

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::*;
use crate::ws_client::{WsClient, pos};

const WATCH: &str =
    "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { id sku stock position } }";

async fn wait_asleep(app: &TestApp, asleep: i64) {
    wait_until(&format!("{asleep} executions asleep"), || async {
        (app.gauge("ordergraph_subscription_executions_asleep").await == asleep).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_subscription_that_sleeps_after_every_message_still_sees_every_change_in_order() {
    // Asleep after every message: each change below wakes an execution of its own.
    let app = spawn_app_with(|s| {
        s.subscription_sleep_after_ms = 0;
        s.share_subscriptions = false;
    })
    .await;
    let admin = app.as_admin();
    let mut ids = Vec::new();
    for sku in ["SLEEP-A", "SLEEP-B"] {
        let product = admin.create_product(sku, "1.00", 10).await;
        ids.push(str_of(&product["id"]).to_owned());
    }
    let mut client = WsClient::connect(&app, None).await;
    client.subscribe("p", WATCH, json!({ "ids": ids })).await;
    let mut last: HashMap<String, (i64, i64)> = HashMap::new();
    for _ in 0..2 {
        let state = client.next_data("p", "productUpdated").await;
        assert_eq!(state["stock"], 10, "{state}");
        last.insert(
            str_of(&state["id"]).to_owned(),
            (pos(&state["position"]), 10),
        );
    }
    wait_asleep(&app, 1).await;

    // Writers in bursts and one at a time, over both products.
    let mut expected: HashMap<String, (i64, i64)> = HashMap::new();
    let mut written = Vec::new();
    for round in 0..6 {
        let writes = (0..4).map(|k| {
            let id = ids[(round + k) % 2].clone();
            let admin = &admin;
            async move { (id.clone(), admin.adjust_stock(&id, 1).await) }
        });
        written.extend(join_all(writes).await);
        if round % 2 == 0 {
            // One at a time too: the subscription is asleep between these.
            let id = ids[round % 2].clone();
            let resp = admin.adjust_stock(&id, 1).await;
            written.push((id, resp));
        }
    }
    for (id, resp) in &written {
        let at = pos(&data(resp)["adjustStock"]["position"]);
        let stock = data(resp)["adjustStock"]["product"]["stock"]
            .as_i64()
            .unwrap_or_else(|| panic!("the payload reads its product: {resp}"));
        let entry = expected.entry(id.clone()).or_insert((at, stock));
        if at > entry.0 {
            *entry = (at, stock);
        }
    }

    let mut previous = last.values().map(|(p, _)| *p).max().expect("two states");
    while last.iter().any(|(id, seen)| Some(seen) != expected.get(id)) {
        let product = client.next_data("p", "productUpdated").await;
        let at = pos(&product["position"]);
        assert!(at > previous, "positions only grow: {at} after {previous}");
        previous = at;
        let id = str_of(&product["id"]).to_owned();
        let stock = product["stock"].as_i64().expect("a stock");
        let (seen_at, seen_stock) = last[&id];
        assert!(
            at > seen_at && stock > seen_stock,
            "{id}: never an older state after a newer one"
        );
        last.insert(id, (at, stock));
    }
    assert_eq!(last, expected, "each product at its last write");
    // Nothing more, nothing twice; and asleep again.
    client
        .assert_silent(std::time::Duration::from_millis(300))
        .await;
    wait_asleep(&app, 1).await;
}

#[tokio::test]
async fn a_subscription_sleeps_after_its_current_state_and_stays_awake_after_a_change() {
    // Awake for a minute after a change: long enough to see it awake.
    let app = spawn_app_with(|s| s.subscription_sleep_after_ms = 60_000).await;
    let admin = app.as_admin();
    let product = admin.create_product("SLEEP-C", "1.00", 5).await;
    let id = str_of(&product["id"]).to_owned();
    let mut client = WsClient::connect(&app, None).await;
    client.subscribe("p", WATCH, json!({ "ids": [id] })).await;
    let state = client.next_data("p", "productUpdated").await;
    assert_eq!(state["stock"], 5);
    // The current state says nothing of when the next change comes: asleep at once.
    wait_asleep(&app, 1).await;

    let resp = admin.adjust_stock(&id, 2).await;
    let changed = client.next_data("p", "productUpdated").await;
    assert_eq!(changed["stock"], 7);
    assert_eq!(
        pos(&changed["position"]),
        pos(&data(&resp)["adjustStock"]["position"])
    );
    wait_asleep(&app, 0).await;
    let resp = admin.adjust_stock(&id, 3).await;
    let changed = client.next_data("p", "productUpdated").await;
    assert_eq!(changed["stock"], 10);
    assert_eq!(
        pos(&changed["position"]),
        pos(&data(&resp)["adjustStock"]["position"])
    );

    // Leaving ends it, awake or asleep.
    client.complete("p").await;
    wait_until("no execution left", || async {
        (app.gauge("ordergraph_subscription_executions").await == 0).then_some(())
    })
    .await;
    wait_asleep(&app, 0).await;

    // An operation of two root fields never sleeps (each item would not say whose it
    // is); nor does any when sleeping is off.
    let mut two = WsClient::connect(&app, None).await;
    two.subscribe(
        "two",
        "subscription($ids: [UUID!]) { a: productUpdated(ids: $ids) { stock } b: productUpdated(ids: $ids) { sku } }",
        json!({ "ids": [id] }),
    )
    .await;
    two.recv().await;
    two.recv().await;
    client
        .assert_silent(std::time::Duration::from_millis(100))
        .await;
    assert_eq!(
        app.gauge("ordergraph_subscription_executions_asleep").await,
        0
    );
}

#[tokio::test]
async fn with_sleeping_off_an_execution_runs_for_the_whole_subscription() {
    let app = spawn_app_with(|s| s.sleeping_subscriptions = false).await;
    let admin = app.as_admin();
    let product = admin.create_product("SLEEP-D", "1.00", 1).await;
    let id = str_of(&product["id"]).to_owned();
    let mut client = WsClient::connect(&app, None).await;
    client.subscribe("p", WATCH, json!({ "ids": [id] })).await;
    assert_eq!(client.next_data("p", "productUpdated").await["stock"], 1);
    admin.adjust_stock(&id, 1).await;
    assert_eq!(client.next_data("p", "productUpdated").await["stock"], 2);
    assert_eq!(
        app.gauge("ordergraph_subscription_executions_asleep").await,
        0
    );
    assert_eq!(app.gauge("ordergraph_subscription_executions").await, 1);
}
