//! GraphQL over Server-Sent Events, distinct connections mode (the protocol of npm
//! `graphql-sse`), for a client that asks for `text/event-stream` alone: each result a
//! `next` event as soon as it happens, `complete` at the end, request errors as a `next`
//! event on an accepted stream, and the limits of a multipart subscription.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::streamed::Streamed;

const WATCH: &str = "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { id stock } }";

/// An event stream, split into events as an SSE parser does: an event is complete at the
/// blank line after it.
struct Events {
    body: Streamed,
}

/// One event: its `event` field and its `data`; a comment (a heartbeat) has neither.
#[derive(Debug, PartialEq)]
struct Event {
    event: Option<String>,
    data: String,
}

impl Events {
    fn new(response: reqwest::Response) -> Self {
        Self {
            body: Streamed::new(response),
        }
    }

    /// The next complete event; `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        Some(parse_event(&self.body.until("\n\n").await?))
    }

    /// The next `next` event's data, as JSON (heartbeats skipped).
    async fn next_result(&mut self) -> Value {
        loop {
            let event = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the stream ended; received: {:?}", self.body.received));
            match event.event.as_deref() {
                None => continue,
                Some("next") => {
                    return serde_json::from_str(&event.data).unwrap_or_else(|e| {
                        panic!("a next event's data is JSON ({e}): {event:?}")
                    });
                }
                Some(other) => panic!("expected a next event, got {other}: {event:?}"),
            }
        }
    }
}

fn parse_event(block: &str) -> Event {
    let mut event = Event {
        event: None,
        data: String::new(),
    };
    for line in block.lines() {
        if let Some(name) = line.strip_prefix("event:") {
            event.event = Some(name.trim().to_owned());
        } else if let Some(data) = line.strip_prefix("data:") {
            event.data.push_str(data.strip_prefix(' ').unwrap_or(data));
        }
    }
    event
}

fn event_stream_request(
    app: &TestApp,
    token: Option<&str>,
    body: Value,
) -> reqwest::RequestBuilder {
    let request = app
        .http
        .post(app.url("/graphql"))
        .header("accept", "text/event-stream")
        .json(&body);
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

async fn event_stream(app: &TestApp, token: Option<&str>, body: Value) -> reqwest::Response {
    event_stream_request(app, token, body)
        .send()
        .await
        .expect("the request reaches the server")
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn each_event_arrives_as_soon_as_it_happens() {
    // Arrange: no heartbeat for an hour, so only the change itself can reach the client.
    let app = spawn_app_with(|s| s.multipart_heartbeat_ms = 3_600_000).await;
    let admin = app.as_admin();
    let product = admin.create_product("SSE-1", "1.00", 3).await;
    let id = product["id"].as_str().expect("an id").to_owned();

    // Act
    let response = event_stream_request(
        &app,
        None,
        json!({ "query": WATCH, "variables": { "ids": [id] } }),
    )
    // Browsers always ask for compression: a compressed stream would hold events back.
    .header("accept-encoding", "gzip")
    .send()
    .await
    .expect("the request reaches the server");

    // Assert
    assert_eq!(response.status(), 200);
    assert_eq!(content_type(&response), "text/event-stream; charset=utf-8");
    assert_eq!(response.headers().get("content-encoding"), None);
    let mut events = Events::new(response);
    let state = events.next_result().await;
    assert_eq!(state["data"]["productUpdated"]["stock"], 3, "{state}");
    admin.adjust_stock(&id, 2).await;
    let change = events.next_result().await;
    assert_eq!(change["data"]["productUpdated"]["stock"], 5, "{change}");
}

#[tokio::test]
async fn a_query_over_sse_is_one_next_event_then_complete() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = event_stream(&app, None, json!({ "query": "{ __typename }" })).await;

    // Assert
    assert_eq!(response.status(), 200);
    let mut events = Events::new(response);
    assert_eq!(
        events.next_result().await,
        json!({ "data": { "__typename": "Query" } })
    );
    let complete = events.next().await.expect("a complete event");
    assert_eq!(complete.event.as_deref(), Some("complete"), "{complete:?}");
    assert_eq!(events.next().await, None, "the stream ends");
}

#[tokio::test]
async fn a_request_error_is_a_next_event_on_an_accepted_stream() {
    // Arrange
    let app = spawn_app().await;

    for (query, code) in [
        ("subscription { productUpdated(", "BAD_USER_INPUT"),
        ("subscription { noSuchField }", "BAD_USER_INPUT"),
    ] {
        // Act
        let response = event_stream(&app, None, json!({ "query": query })).await;

        // Assert
        assert_eq!(response.status(), 200, "{query}");
        let mut events = Events::new(response);
        let result = events.next_result().await;
        assert_eq!(result.get("data"), None, "{query}: {result}");
        assert_error(&result, code);
        let complete = events.next().await.expect("a complete event");
        assert_eq!(complete.event.as_deref(), Some("complete"), "{query}");
    }
}

#[tokio::test]
async fn an_idle_event_stream_sends_heartbeats() {
    // Arrange
    let app = spawn_app_with(|s| s.multipart_heartbeat_ms = 100).await;

    // Act: watching every product, with nothing to send.
    let response = event_stream(&app, None, json!({ "query": WATCH })).await;

    // Assert
    let mut events = Events::new(response);
    for _ in 0..2 {
        let heartbeat = events.next().await.expect("the stream stays open");
        assert_eq!(
            heartbeat,
            Event {
                event: None,
                data: String::new()
            }
        );
    }
}

#[tokio::test]
async fn an_event_stream_counts_against_the_anonymous_connection_cap() {
    // Arrange: the one anonymous slot is taken by an open stream.
    let app = spawn_app_with(|s| s.max_anonymous_connections = 1).await;
    let first = event_stream(&app, None, json!({ "query": WATCH })).await;
    assert_eq!(first.status(), 200);

    // Act
    let second = event_stream(&app, None, json!({ "query": WATCH })).await;
    let signed_in = event_stream(
        &app,
        Some(&token("alice", ordergraph::auth::Role::Customer)),
        json!({ "query": WATCH }),
    )
    .await;

    // Assert
    assert_eq!(second.status(), 429);
    let body: Value = second.json().await.expect("JSON");
    assert_error(&body, "RATE_LIMITED");
    assert_eq!(
        signed_in.status(),
        200,
        "a signed-in caller is not affected"
    );

    // Once the first stream is closed, its slot is free again.
    drop(first);
    wait_until("the anonymous slot is free again", || async {
        let again = event_stream(&app, None, json!({ "query": WATCH })).await;
        (again.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_event_too_large_for_a_response_is_replaced_by_an_error() {
    // Arrange: a product, then a response limit smaller than it.
    let mut app = spawn_app().await;
    let product = app.as_admin().create_product("SSE-BIG", "1.00", 1).await;
    let id = product["id"].as_str().expect("an id").to_owned();
    app.restart_with(|s| s.max_response_bytes = 64).await;

    // Act
    let response = event_stream(
        &app,
        None,
        json!({
            "query": "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { id sku name description price stock } }",
            "variables": { "ids": [id] }
        }),
    )
    .await;

    // Assert
    let result = Events::new(response).next_result().await;
    assert_error(&result, "BAD_USER_INPUT");
    let message = result["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("larger than"), "{message}");
}

/// A GET with the request in its query string and `Accept: text/event-stream`, as a
/// browser's `EventSource` sends it.
async fn event_stream_get(app: &TestApp, params: &[(&str, &str)]) -> reqwest::Response {
    let url = reqwest::Url::parse_with_params(&app.url("/graphql"), params)
        .expect("a URL with a query string");
    app.http
        .get(url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("the request reaches the server")
}

#[tokio::test]
async fn a_subscription_over_get_streams_each_change_as_eventsource_asks() {
    // Arrange
    let app = spawn_app_with(|s| s.multipart_heartbeat_ms = 3_600_000).await;
    let admin = app.as_admin();
    let product = admin.create_product("SSE-GET-1", "1.00", 3).await;
    let id = product["id"].as_str().expect("an id").to_owned();
    let variables = json!({ "ids": [id] }).to_string();

    // Act
    let response = event_stream_get(&app, &[("query", WATCH), ("variables", &variables)]).await;

    // Assert
    assert_eq!(response.status(), 200);
    assert_eq!(content_type(&response), "text/event-stream; charset=utf-8");
    let mut events = Events::new(response);
    let state = events.next_result().await;
    assert_eq!(state["data"]["productUpdated"]["stock"], 3, "{state}");
    admin.adjust_stock(&id, 2).await;
    let change = events.next_result().await;
    assert_eq!(change["data"]["productUpdated"]["stock"], 5, "{change}");
}

#[tokio::test]
async fn a_query_over_get_is_one_next_event_and_a_refused_document_its_error() {
    // Arrange
    let app = spawn_app().await;

    // Act: a query, named among several operations.
    let response = event_stream_get(
        &app,
        &[
            (
                "query",
                "query A { __typename } query B { products(first: 1) { totalCount } }",
            ),
            ("operationName", "A"),
        ],
    )
    .await;

    // Assert
    assert_eq!(response.status(), 200);
    let mut events = Events::new(response);
    assert_eq!(
        events.next_result().await,
        json!({ "data": { "__typename": "Query" } })
    );
    let complete = events.next().await.expect("a complete event");
    assert_eq!(complete.event.as_deref(), Some("complete"), "{complete:?}");

    // A document that does not parse: its error as a next event, as over POST.
    let response = event_stream_get(&app, &[("query", "subscription { productUpdated(")]).await;
    assert_eq!(response.status(), 200);
    let mut events = Events::new(response);
    let result = events.next_result().await;
    assert_eq!(result.get("data"), None, "{result}");
    assert_error(&result, "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_mutation_or_a_malformed_request_over_get_is_refused_before_any_stream() {
    // Arrange
    let app = spawn_app().await;

    // Act: a mutation over GET changes nothing (GraphQL over HTTP, §GET).
    let response =
        event_stream_get(&app, &[("query", "mutation { clearCart { position } }")]).await;

    // Assert
    assert_eq!(response.status(), 405);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let body: Value = response.json().await.expect("a GraphQL-shaped body");
    assert_error(&body, "BAD_USER_INPUT");

    for params in [
        vec![("variables", "{}")],
        vec![("query", "{ __typename }"), ("variables", "[not json")],
    ] {
        let response = event_stream_get(&app, &params).await;
        assert_eq!(response.status(), 400, "{params:?}");
        let body: Value = response.json().await.expect("a GraphQL-shaped body");
        assert_error(&body, "BAD_USER_INPUT");
    }
}
