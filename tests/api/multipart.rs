//! Subscriptions over HTTP with Apollo's multipart protocol, read the way Apollo Client and
//! urql read them: a part is released when the delimiter that closes it has arrived, so
//! each part must be closed as soon as it is written, not when the next one comes.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::streamed::Streamed;

const WATCH: &str =
    "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { id stock position } }";

/// Apollo Client's subscription `Accept`.
const APOLLO_CLIENT: &str =
    r#"multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json"#;

/// A multipart body, split into parts as the clients' parsers do (Apollo Client's
/// `readMultipartBody`): a part is complete once the delimiter after it has arrived.
struct Parts {
    body: Streamed,
}

impl Parts {
    const DELIMITER: &str = "\r\n--graphql";

    fn new(response: reqwest::Response) -> Self {
        Self {
            body: Streamed::new(response),
        }
    }

    /// The next complete part's JSON, skipping the empty preamble; `None` when the body
    /// ends.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let part = self.body.until(Self::DELIMITER).await?;
            if part.is_empty() {
                continue; // the preamble before the first delimiter
            }
            let (headers, body) = part
                .split_once("\r\n\r\n")
                .unwrap_or_else(|| panic!("a part has headers and a body: {part:?}"));
            assert!(
                headers
                    .to_ascii_lowercase()
                    .contains("content-type: application/json"),
                "{headers:?}"
            );
            return Some(
                serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("a part's body is JSON ({e}): {body:?}")),
            );
        }
    }

    /// The next part that is not a heartbeat.
    async fn next_payload(&mut self) -> Value {
        loop {
            let part = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the body ended; received: {:?}", self.body.received));
            if part != json!({}) {
                return part;
            }
        }
    }
}

async fn subscribe(app: &TestApp, accept: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url("/graphql"))
        .header("accept", accept)
        // Browsers always ask for compression: a compressed stream would hold parts back.
        .header("accept-encoding", "gzip")
        .json(&body)
        .send()
        .await
        .expect("the request reaches the server")
}

#[tokio::test]
async fn each_part_arrives_complete_as_soon_as_it_happens() {
    // Arrange: no heartbeat for an hour, so nothing but the next event could complete a
    // part that was written unclosed.
    let app = spawn_app_with(|s| s.multipart_heartbeat_ms = 3_600_000).await;
    let admin = app.as_admin();
    let product = admin.create_product("MP-1", "1.00", 3).await;
    let id = product["id"].as_str().expect("an id").to_owned();
    let response = subscribe(
        &app,
        APOLLO_CLIENT,
        json!({ "query": WATCH, "variables": { "ids": [id] } }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-encoding"),
        None,
        "not compressed"
    );
    let mut parts = Parts::new(response);

    // Act / Assert: the current state is a complete part before anything else happens.
    let state = parts.next_payload().await;
    assert_eq!(
        state["payload"]["data"]["productUpdated"]["stock"], 3,
        "{state}"
    );

    // And a change is a complete part at once, with no later part to push it out.
    admin.adjust_stock(&id, 2).await;
    let change = parts.next_payload().await;
    assert_eq!(
        change["payload"]["data"]["productUpdated"]["stock"], 5,
        "{change}"
    );
}

#[tokio::test]
async fn every_accept_form_of_apollo_and_urql_gets_a_multipart_subscription() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MP-2", "1.00", 7).await;
    let id = product["id"].as_str().expect("an id").to_owned();
    let forms = [
        // Apollo Client
        APOLLO_CLIENT,
        // Apollo's multipart protocol documentation
        r#"multipart/mixed;boundary="graphql";subscriptionSpec="1.0",application/json"#,
        r#"multipart/mixed;subscriptionSpec="1.0", application/json"#,
        // urql's fetchSubscriptions
        "text/event-stream, multipart/mixed",
        "multipart/mixed",
    ];

    for accept in forms {
        // Act
        let response = subscribe(
            &app,
            accept,
            json!({ "query": WATCH, "variables": { "ids": [id] } }),
        )
        .await;

        // Assert
        assert_eq!(response.status(), 200, "Accept: {accept}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("multipart/mixed") && content_type.contains("boundary"),
            "Accept: {accept}: Content-Type {content_type}"
        );
        let state = Parts::new(response).next_payload().await;
        assert_eq!(
            state["payload"]["data"]["productUpdated"]["stock"], 7,
            "Accept: {accept}: {state}"
        );
    }
}

#[tokio::test]
async fn an_idle_multipart_subscription_sends_heartbeats() {
    // Arrange
    let app = spawn_app_with(|s| s.multipart_heartbeat_ms = 100).await;
    let product = app.as_admin().create_product("MP-3", "1.00", 1).await;
    let response = subscribe(
        &app,
        APOLLO_CLIENT,
        json!({ "query": WATCH, "variables": { "ids": [product["id"]] } }),
    )
    .await;
    let mut parts = Parts::new(response);
    parts.next_payload().await;

    // Act / Assert: with nothing happening, the next parts are heartbeats.
    for _ in 0..2 {
        let part = parts.next().await.expect("the subscription stays open");
        assert_eq!(part, json!({}), "a heartbeat is an empty object");
    }
}

#[tokio::test]
async fn a_subscription_that_ends_closes_the_multipart_body() {
    // Arrange: a subscription refused by validation ends after its one part.
    let app = spawn_app().await;

    // Act
    let response = subscribe(
        &app,
        APOLLO_CLIENT,
        json!({ "query": "subscription { nope }" }),
    )
    .await;
    let mut parts = Parts::new(response);
    let refused = parts.next_payload().await;
    let end = parts.next().await;

    // Assert
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused}"
    );
    assert!(end.is_none(), "no part after the last: {end:?}");
    assert!(
        parts.body.received.ends_with("\r\n--graphql--\r\n"),
        "the body ends with the close delimiter (RFC 2046 §5.1.1): {:?}",
        parts.body.received
    );
}

#[tokio::test]
async fn a_query_from_a_client_that_also_accepts_multipart_is_answered_in_json() {
    // Arrange: urql offers multipart with every query (for @defer).
    let app = spawn_app().await;
    let accept = "application/graphql-response+json, application/graphql+json, application/json, text/event-stream, multipart/mixed";

    // Act
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("accept", accept)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("the request reaches the server");

    // Assert
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/graphql-response+json"),
        "{content_type}"
    );
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["data"]["__typename"], "Query");
}
