//! GraphQL over HTTP as the GraphQL-over-HTTP draft specifies it: the response's media
//! type follows `Accept`, a request error under `application/graphql-response+json` is a
//! `400` with no `data`, only JSON request bodies are read, and every `405` says what is
//! allowed. (The whole graphql-http audit runs against the server in tests/node.)

use serde_json::{Value, json};

use crate::helpers::*;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// What came back: status, `Content-Type` and the JSON body.
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

/// POSTs `body` to `/graphql` with the given headers (reqwest adds `Accept: */*` when
/// they have none, and no `Content-Type`).
async fn post(app: &TestApp, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut request = app.http.post(app.url("/graphql")).body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request
        .send()
        .await
        .expect("the request reaches the server");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("the body is readable");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("HTTP {status}: the body is not JSON ({e}): {text:.500}"));
    Answer {
        status,
        content_type,
        body,
    }
}

/// POSTs a JSON `body` with no `Accept` header, over a connection of its own.
async fn post_without_accept(app: &TestApp, body: &str) -> Answer {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connects");
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut received = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut received),
    )
    .await
    .expect("the server answers and closes")
    .expect("the answer is readable");
    let received = String::from_utf8_lossy(&received);
    let (head, body) = received
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {received}"));
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {received}"));
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let body = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("HTTP {status}: the body is not JSON ({e}): {body:.500}"));
    Answer {
        status,
        content_type,
        body,
    }
}

fn query(document: &str, variables: Value) -> String {
    json!({ "query": document, "variables": variables }).to_string()
}

/// A syntax error, a validation error and a variable coercion error: each raised before
/// execution.
fn request_errors() -> Vec<(&'static str, String)> {
    vec![
        ("a syntax error", query("{ products {", json!({}))),
        ("a validation error", query("{ nope }", json!({}))),
        (
            "a variable coercion error",
            query(
                "query($id: UUID!) { product(id: $id) { id } }",
                json!({ "id": null }),
            ),
        ),
        (
            "an unknown operation name",
            json!({ "query": "query A { __typename }", "operationName": "B" }).to_string(),
        ),
    ]
}

#[tokio::test]
async fn a_client_that_accepts_application_json_gets_application_json() {
    // Arrange
    let app = spawn_app().await;

    for accept in [
        Some("application/json"),
        Some("*/*"),
        Some("text/html,application/xhtml+xml,*/*;q=0.8"),
        None,
    ] {
        // Act
        let answer = match accept {
            Some(accept) => {
                post(
                    &app,
                    &[("content-type", "application/json"), ("accept", accept)],
                    &query("{ __typename }", json!({})),
                )
                .await
            }
            // reqwest always sends `Accept: */*`: without one, the request is written by hand.
            None => post_without_accept(&app, &query("{ __typename }", json!({}))).await,
        };

        // Assert
        assert_eq!(answer.status, 200, "Accept: {accept:?}: {}", answer.body);
        assert!(
            answer.content_type.starts_with("application/json"),
            "Accept: {accept:?}: Content-Type {}",
            answer.content_type
        );
        assert_eq!(answer.body["data"]["__typename"], "Query");
    }
}

#[tokio::test]
async fn a_client_that_accepts_the_graphql_response_type_gets_it() {
    // Arrange
    let app = spawn_app().await;

    for accept in [
        GRAPHQL_RESPONSE_JSON,
        // graphql-http's client and urql
        "application/graphql-response+json, application/json",
        // Apollo Client
        "application/graphql-response+json,application/json;q=0.9",
    ] {
        // Act
        let answer = post(
            &app,
            &[("content-type", "application/json"), ("accept", accept)],
            &query("{ __typename }", json!({})),
        )
        .await;

        // Assert
        assert_eq!(answer.status, 200, "Accept: {accept}: {}", answer.body);
        assert!(
            answer.content_type.starts_with(GRAPHQL_RESPONSE_JSON),
            "Accept: {accept}: Content-Type {}",
            answer.content_type
        );
        assert_eq!(answer.body["data"]["__typename"], "Query");
    }
}

#[tokio::test]
async fn a_request_error_is_a_400_without_data_under_the_graphql_response_type() {
    // Arrange
    let app = spawn_app().await;

    for (what, body) in request_errors() {
        // Act
        let answer = post(
            &app,
            &[
                ("content-type", "application/json"),
                ("accept", GRAPHQL_RESPONSE_JSON),
            ],
            &body,
        )
        .await;

        // Assert
        assert_eq!(answer.status, 400, "{what}: {}", answer.body);
        assert!(
            answer.content_type.starts_with(GRAPHQL_RESPONSE_JSON),
            "{what}: Content-Type {}",
            answer.content_type
        );
        assert!(
            answer.body.get("data").is_none(),
            "{what}: no data entry: {}",
            answer.body
        );
        assert_error(&answer.body, "BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn a_request_error_is_a_200_without_data_under_application_json() {
    // Arrange
    let app = spawn_app().await;

    for (what, body) in request_errors() {
        // Act
        let answer = post(
            &app,
            &[
                ("content-type", "application/json"),
                ("accept", "application/json"),
            ],
            &body,
        )
        .await;

        // Assert
        assert_eq!(answer.status, 200, "{what}: {}", answer.body);
        assert!(
            answer.body.get("data").is_none(),
            "{what}: no data entry: {}",
            answer.body
        );
        assert_error(&answer.body, "BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn a_field_error_is_a_200_with_data_under_the_graphql_response_type() {
    // Arrange: the cart needs a signed-in caller, so the field fails while executing.
    let app = spawn_app().await;

    // Act
    let answer = post(
        &app,
        &[
            ("content-type", "application/json"),
            ("accept", GRAPHQL_RESPONSE_JSON),
        ],
        &query("{ cart { total } }", json!({})),
    )
    .await;

    // Assert
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.get("data").is_some(),
        "executed: data is present, if null: {}",
        answer.body
    );
    assert_error(&answer.body, "UNAUTHENTICATED");
    assert_eq!(answer.body["errors"][0]["path"], json!(["cart"]));
}

#[tokio::test]
async fn a_post_that_is_not_json_is_refused_with_415_and_runs_nothing() {
    // Arrange: a mutation a browser could send to another origin without a preflight.
    let app = spawn_app().await;
    let admin = token("admin", ordergraph::auth::Role::Admin);
    let bearer = format!("Bearer {admin}");
    let create = query(
        CREATE_PRODUCT,
        json!({ "input": { "sku": "MUG-001", "name": "Mug", "price": "1.00", "initialStock": 1 } }),
    );

    for content_type in [
        None,
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=iso-8859-1"),
    ] {
        let mut headers = vec![("authorization", bearer.as_str())];
        if let Some(content_type) = content_type {
            headers.push(("content-type", content_type));
        }

        // Act
        let answer = post(&app, &headers, &create).await;

        // Assert
        assert_eq!(
            answer.status, 415,
            "Content-Type {content_type:?}: {}",
            answer.body
        );
        assert_error(&answer.body, "BAD_USER_INPUT");
    }
    let products = app
        .anonymous()
        .products(json!({ "includeDiscontinued": true }))
        .await;
    assert_eq!(products["totalCount"], 0, "nothing was created");
}

#[tokio::test]
async fn a_client_that_accepts_neither_json_type_gets_406() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let answer = post(
        &app,
        &[
            ("content-type", "application/json"),
            ("accept", "text/html"),
        ],
        &query("{ __typename }", json!({})),
    )
    .await;

    // Assert
    assert_eq!(answer.status, 406, "{}", answer.body);
    assert_error(&answer.body, "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_request_without_a_query_is_a_400_whatever_the_client_accepts() {
    // Arrange
    let app = spawn_app().await;

    for accept in ["application/json", GRAPHQL_RESPONSE_JSON] {
        // Act
        let answer = post(
            &app,
            &[("content-type", "application/json"), ("accept", accept)],
            r#"{"qeury": "{ __typename }"}"#,
        )
        .await;

        // Assert
        assert_eq!(answer.status, 400, "Accept: {accept}: {}", answer.body);
        assert_error(&answer.body, "BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn every_405_lists_the_allowed_methods() {
    // Arrange
    let app = spawn_app().await;
    let requests = [
        (reqwest::Method::PUT, "/graphql", "POST"),
        (reqwest::Method::DELETE, "/graphql", "GET"),
        (reqwest::Method::POST, "/", "GET"),
        (reqwest::Method::POST, "/healthz", "GET"),
        (reqwest::Method::POST, "/readyz", "GET"),
        (reqwest::Method::POST, "/metrics", "GET"),
    ];

    for (method, path, allowed) in requests {
        // Act
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("the request reaches the server");

        // Assert
        assert_eq!(response.status(), 405, "{method} {path}");
        let allow = response
            .headers()
            .get(reqwest::header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow: {allow:?}"
        );
    }

    // A mutation over GET, refused by the GraphQL endpoint itself.
    let url = reqwest::Url::parse_with_params(
        &app.url("/graphql"),
        &[("query", "mutation { clearCart { position } }")],
    )
    .expect("a valid URL");
    let response = app.http.get(url).send().await.expect("an answer");
    assert_eq!(response.status(), 405);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::ALLOW)
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
}

#[tokio::test]
async fn a_get_selects_the_operation_named_by_operation_name() {
    // Arrange
    let app = spawn_app().await;
    let url = reqwest::Url::parse_with_params(
        &app.url("/graphql"),
        &[
            (
                "query",
                "query A { a: __typename } query B { b: __typename }",
            ),
            ("operationName", "B"),
            ("variables", "{}"),
        ],
    )
    .expect("a valid URL");

    // Act
    let answer = answer(app.http.get(url).header("accept", GRAPHQL_RESPONSE_JSON)).await;

    // Assert
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["data"], json!({ "b": "Query" }));
}

#[tokio::test]
async fn a_response_is_gzipped_when_the_client_asks_for_it() {
    use std::io::Read as _;

    // Arrange: a page of products, a few KB of repetitive JSON.
    let app = spawn_app().await;
    let admin = app.as_admin();
    for i in 0..20 {
        admin
            .create_product(&format!("GZIP-{i:02}"), "1.00", 1)
            .await;
    }
    let body = query(
        "{ products(first: 20) { edges { node { id sku name description price stock } } } }",
        json!({}),
    );

    // Act
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("the request reaches the server");

    // Assert
    assert_eq!(
        response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let compressed = response.bytes().await.expect("a body");
    let mut json = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut json)
        .expect("the body is gzip");
    assert!(
        compressed.len() < json.len(),
        "{} >= {}",
        compressed.len(),
        json.len()
    );
    let json: Value = serde_json::from_str(&json).expect("JSON inside");
    assert_eq!(
        json["data"]["products"]["edges"].as_array().map(Vec::len),
        Some(20)
    );
}
