//! Browser apps on other origins: CORS preflights and responses for the origins listed in
//! `ORDERGRAPH_CORS_ORIGINS`, none for the others (the default: none at all), and the same
//! list for WebSocket upgrades, which CORS does not cover.

use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::*;

const APP: &str = "http://app.example";

fn allowing(origins: &str) -> impl FnOnce(&mut ordergraph::config::Settings) {
    let origins = origins.parse().expect("a valid origin list");
    move |s| s.cors_origins = origins
}

/// A preflight as a browser sends it before a cross-origin GraphQL POST.
async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.http
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .expect("the preflight reaches the server")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Opens a WebSocket on `/graphql` with `origin`; the HTTP status of the handshake.
async fn websocket_from(app: &TestApp, origin: Option<&str>) -> u16 {
    let mut request = format!("ws://127.0.0.1:{}/graphql", app.port)
        .into_client_request()
        .expect("a valid ws URL");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("a header value"),
    );
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("a header value"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("the handshake got an HTTP answer: {e}"),
    }
}

#[tokio::test]
async fn a_preflight_from_a_listed_origin_is_answered_with_what_graphql_needs() {
    // Arrange
    let app = spawn_app_with(allowing("http://app.example, https://other.example")).await;

    // Act
    let response = preflight(&app, APP).await;

    // Assert
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    let methods = header(&response, "access-control-allow-methods").unwrap_or_default();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let headers = header(&response, "access-control-allow-headers").unwrap_or_default();
    assert!(
        headers.contains("content-type") && headers.contains("authorization"),
        "{headers}"
    );
}

#[tokio::test]
async fn a_listed_origin_may_read_the_response_of_a_query() {
    // Arrange
    let app = spawn_app_with(allowing(APP)).await;

    // Act
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("origin", APP)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("the request reaches the server");

    // Assert
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert!(
        header(&response, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("origin")),
        "caches keep the answers of different origins apart"
    );
}

#[tokio::test]
async fn an_origin_that_is_not_listed_gets_no_cors_headers() {
    for app in [spawn_app().await, spawn_app_with(allowing(APP)).await] {
        // Act
        let response = preflight(&app, "http://evil.example").await;
        let post = app
            .http
            .post(app.url("/graphql"))
            .header("origin", "http://evil.example")
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .expect("the request reaches the server");

        // Assert: without the header, the browser keeps the answer from the page.
        assert_eq!(header(&response, "access-control-allow-origin"), None);
        assert_eq!(header(&post, "access-control-allow-origin"), None);
    }
}

#[tokio::test]
async fn a_websocket_from_an_origin_that_is_not_listed_is_refused() {
    // Arrange
    let app = spawn_app_with(allowing(APP)).await;
    let own = format!("http://127.0.0.1:{}", app.port);

    // Act / Assert
    assert_eq!(websocket_from(&app, Some("http://evil.example")).await, 403);
    assert_eq!(
        websocket_from(&app, Some(APP)).await,
        101,
        "a listed origin"
    );
    assert_eq!(
        websocket_from(&app, Some(&own)).await,
        101,
        "the API's own origin (GraphiQL)"
    );
    assert_eq!(websocket_from(&app, None).await, 101, "not a browser");
}

#[tokio::test]
async fn by_default_only_the_apis_own_origin_may_open_a_websocket() {
    // Arrange
    let app = spawn_app().await;
    let own = format!("http://127.0.0.1:{}", app.port);

    // Act / Assert
    assert_eq!(websocket_from(&app, Some(APP)).await, 403);
    assert_eq!(websocket_from(&app, Some(&own)).await, 101);
}
