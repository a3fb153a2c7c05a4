//! Persisted queries (ADR 0010): Apollo's automatic persisted queries over POST, GET,
//! batches and WebSocket subscriptions, and the manifest allow-list mode.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{assert_error, data, error_code, spawn_app, spawn_app_with};
use crate::ws_client::WsClient;

const PRODUCTS: &str = "query Skus { products(first: 5) { edges { node { sku } } } }";

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// POSTs `query` (none when empty) with `hash` in `extensions.persistedQuery`.
async fn post(app: &crate::helpers::TestApp, query: &str, hash: &str) -> Value {
    let mut body = json!({ "extensions": persisted(hash) });
    if !query.is_empty() {
        body["query"] = json!(query);
    }
    app.anonymous().post_json(&body).await
}

/// A GET carrying only the hash, as Apollo's `useGETForHashedQueries` sends it.
async fn get_hash_only(app: &crate::helpers::TestApp, hash: &str) -> (reqwest::StatusCode, Value) {
    let url = reqwest::Url::parse_with_params(
        &app.url("/graphql"),
        &[("extensions", persisted(hash).to_string())],
    )
    .expect("a valid URL");
    let response = reqwest::Client::new()
        .get(url)
        .header("accept", "application/graphql-response+json")
        .send()
        .await
        .expect("the request reaches the server");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn an_unknown_hash_is_persisted_query_not_found_and_the_text_registers_it() {
    let app = spawn_app().await;
    app.as_admin().create_product("APQ-1", "1.00", 1).await;
    let hash = sha256(PRODUCTS);

    // Apollo clients retry with the text on this message or code.
    let unknown = post(&app, "", &hash).await;
    assert_error(&unknown, "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(unknown["errors"][0]["message"], "PersistedQueryNotFound");
    assert!(unknown.get("data").is_none(), "a request error: {unknown}");

    let registered = post(&app, PRODUCTS, &hash).await;
    assert_eq!(
        data(&registered)["products"]["edges"][0]["node"]["sku"],
        "APQ-1"
    );

    let by_hash = post(&app, "", &hash).await;
    assert_eq!(by_hash, registered);
}

#[tokio::test]
async fn a_hash_only_get_runs_a_registered_query_so_a_cdn_can_cache_it() {
    let app = spawn_app().await;
    let hash = sha256(PRODUCTS);
    let (status, unknown) = get_hash_only(&app, &hash).await;
    assert_eq!(status, 400, "{unknown}");
    assert_eq!(
        error_code(&unknown).as_deref(),
        Some("PERSISTED_QUERY_NOT_FOUND")
    );

    post(&app, PRODUCTS, &hash).await;
    let (status, body) = get_hash_only(&app, &hash).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "data": { "products": { "edges": [] } } }));
}

#[tokio::test]
async fn a_text_sent_with_another_hash_is_refused_and_registers_nothing() {
    let app = spawn_app().await;
    let other = sha256("{ __typename }");
    let mismatch = post(&app, PRODUCTS, &other).await;
    assert_error(&mismatch, "BAD_USER_INPUT");
    assert!(mismatch.get("data").is_none(), "{mismatch}");

    let by_hash = post(&app, "", &other).await;
    assert_error(&by_hash, "PERSISTED_QUERY_NOT_FOUND");
}

#[tokio::test]
async fn a_document_that_fails_validation_is_not_registered() {
    let app = spawn_app().await;
    let invalid = "{ noSuchField }";
    let hash = sha256(invalid);
    let refused = post(&app, invalid, &hash).await;
    assert_error(&refused, "BAD_USER_INPUT");
    let by_hash = post(&app, "", &hash).await;
    assert_error(&by_hash, "PERSISTED_QUERY_NOT_FOUND");
}

#[tokio::test]
async fn a_document_sent_with_its_hash_is_held_to_the_document_limits_and_not_registered() {
    let app = spawn_app_with(|s| s.max_document_tokens = 10).await;
    let hash = sha256(PRODUCTS);
    let too_large = post(&app, PRODUCTS, &hash).await;
    assert_error(&too_large, "BAD_USER_INPUT");
    assert!(
        too_large["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("tokens")),
        "{too_large}"
    );
    let by_hash = post(&app, "", &hash).await;
    assert_error(&by_hash, "PERSISTED_QUERY_NOT_FOUND");
}

#[tokio::test]
async fn each_operation_of_a_batch_is_resolved_on_its_own() {
    let app = spawn_app().await;
    let typename = "{ __typename }";
    post(&app, typename, &sha256(typename)).await;

    let batch = app
        .anonymous()
        .post_json(&json!([
            { "extensions": persisted(&sha256(typename)) },
            { "extensions": persisted(&sha256(PRODUCTS)) },
            { "query": PRODUCTS, "extensions": persisted(&sha256(PRODUCTS)) },
        ]))
        .await;
    assert_eq!(batch[0], json!({ "data": { "__typename": "Query" } }));
    assert_error(&batch[1], "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(batch[2], json!({ "data": { "products": { "edges": [] } } }));
}

#[tokio::test]
async fn a_subscription_over_a_websocket_runs_by_hash() {
    let app = spawn_app().await;
    let product = app.as_admin().create_product("APQ-WS", "2.00", 3).await;
    let subscription = "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { sku stock } }";
    let hash = sha256(subscription);
    let variables = json!({ "ids": [product["id"]] });
    let mut client = WsClient::connect(&app, None).await;

    client
        .send(json!({ "type": "subscribe", "id": "unknown",
            "payload": { "variables": variables, "extensions": persisted(&hash) } }))
        .await;
    let refused = client.recv().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );

    client
        .send(json!({ "type": "subscribe", "id": "register",
            "payload": { "query": subscription, "variables": variables, "extensions": persisted(&hash) } }))
        .await;
    assert_eq!(
        client.next_data("register", "productUpdated").await["sku"],
        "APQ-WS"
    );
    client
        .send(json!({ "type": "subscribe", "id": "by-hash",
            "payload": { "variables": variables, "extensions": persisted(&hash) } }))
        .await;
    assert_eq!(
        client.next_data("by-hash", "productUpdated").await["stock"],
        3
    );
}

#[tokio::test]
async fn with_a_manifest_only_its_documents_run() {
    let listed = "query Listed { __typename }";
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = dir.path().join("persisted-queries.json");
    std::fs::write(
        &manifest,
        json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{ "id": sha256(listed), "name": "Listed", "type": "query", "body": listed }]
        })
        .to_string(),
    )
    .expect("the manifest is written");
    let app = spawn_app_with(|s| s.persisted_queries = Some(manifest.clone())).await;

    let by_hash = post(&app, "", &sha256(listed)).await;
    assert_eq!(by_hash, json!({ "data": { "__typename": "Query" } }));
    let by_text = app.gql(listed, json!({})).await;
    assert_eq!(by_text, by_hash);
    let (status, by_get) = get_hash_only(&app, &sha256(listed)).await;
    assert_eq!((status.as_u16(), &by_get), (200, &by_hash));

    let other = app.gql("{ __typename }", json!({})).await;
    assert_error(&other, "QUERY_NOT_IN_SAFELIST");
    let registering = post(&app, PRODUCTS, &sha256(PRODUCTS)).await;
    assert_error(&registering, "QUERY_NOT_IN_SAFELIST");
    let unknown = post(&app, "", &sha256(PRODUCTS)).await;
    assert_error(&unknown, "PERSISTED_QUERY_NOT_IN_LIST");

    let mut client = WsClient::connect(&app, None).await;
    client
        .send(json!({ "type": "subscribe", "id": "s",
            "payload": { "query": "subscription { productUpdated { sku } }" } }))
        .await;
    let refused = client.recv().await;
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "QUERY_NOT_IN_SAFELIST",
        "{refused}"
    );
}
