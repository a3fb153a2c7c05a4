//! No request can exhaust the server: documents whose fragments expand exponentially,
//! batches, large responses, connections that send nothing, too many connections,
//! oversized WebSocket messages — each is refused quickly with a GraphQL-shaped error
//! that names its code, and the server keeps answering everyone else.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::ws_client::{Received, WsClient};

/// A generous bound on one answer: what a hung server fails, never a speed figure
/// (before the document limit, the 30-level bomb below took minutes).
const ANSWER_BOUND: Duration = Duration::from_secs(20);

/// `levels` fragments, each spreading the previous one twice: 1 KB of text, 2^levels
/// selections once expanded.
fn fragment_bomb(levels: usize) -> String {
    let mut q = format!("query {{ ...F{levels} }}\nfragment F0 on Query {{ __typename }}\n");
    for i in 1..=levels {
        q.push_str(&format!(
            "fragment F{i} on Query {{ ...F{p} ...F{p} }}\n",
            p = i - 1
        ));
    }
    q
}

/// The same with aliased fields instead of bare spreads.
fn aliased_bomb(levels: usize) -> String {
    let mut q = format!("query {{ ...F{levels} }}\nfragment F0 on Query {{ __typename }}\n");
    for i in 1..=levels {
        q.push_str(&format!(
            "fragment F{i} on Query {{ a: __type(name: \"Product\") {{ name }} ...F{p} b: __type(name: \"Product\") {{ name }} ...F{p} }}\n",
            p = i - 1
        ));
    }
    q
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(ANSWER_BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {ANSWER_BOUND:?}"))
}

#[tokio::test]
async fn a_fragment_bomb_is_refused_at_once_and_the_server_keeps_answering() {
    // Arrange
    let app = spawn_app().await;

    for query in [fragment_bomb(30), aliased_bomb(30), fragment_bomb(200)] {
        assert!(query.len() < 16 * 1024, "a small document");
        // Act: the bomb, and a plain query beside it.
        let (bomb, plain) = bounded(
            "the bomb and a plain query",
            futures_util::future::join(
                app.gql(&query, json!({})),
                app.gql("{ __typename }", json!({})),
            ),
        )
        .await;

        // Assert
        assert_error(&bomb, "BAD_USER_INPUT");
        assert!(error_message(&bomb).contains("too large"), "{bomb}");
        assert_eq!(data(&plain)["__typename"], "Query");
    }

    // Over GET and over a WebSocket, the same.
    let (status, bomb) = bounded("GET", app.gql_get(&fragment_bomb(30), None)).await;
    assert_eq!(status, 200);
    assert_error(&bomb, "BAD_USER_INPUT");
    let mut ws = WsClient::connect(&app, None).await;
    ws.subscribe("1", &fragment_bomb(30), json!({})).await;
    let message = bounded("the WebSocket", ws.recv()).await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(
        message["payload"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn a_fragment_that_spreads_itself_is_refused_without_being_expanded() {
    let app = spawn_app().await;
    let query = "{ ...A } fragment A on Query { ...B ...B } fragment B on Query { ...A ...A }";

    let resp = bounded("a fragment cycle", app.gql(query, json!({}))).await;

    assert_error(&resp, "BAD_USER_INPUT");
    assert!(error_message(&resp).contains("spreads itself"), "{resp}");
}

#[tokio::test]
async fn a_document_within_the_limits_is_still_answered() {
    // The standard introspection query (GraphiQL, code generators) and a query with a
    // few fragments stay well inside the limits.
    let app = spawn_app().await;
    let query = r#"
        query { ...Both }
        fragment Both on Query { ...List ...List }
        fragment List on Query { products(first: 5) { edges { node { ...Fields } } } }
        fragment Fields on Product { id sku name price stock }
    "#;

    let resp = app.gql(query, json!({})).await;

    assert!(data(&resp)["products"]["edges"].is_array(), "{resp}");
}

#[tokio::test]
async fn a_huge_document_is_parsed_and_refused_without_stalling_others() {
    // 900 KB of aliased fields: parsed off the async workers, refused by size.
    let app = spawn_app().await;
    let mut query = String::from("{");
    let mut i = 0;
    while query.len() < 900 * 1024 {
        query.push_str(&format!(" a{i}: __typename"));
        i += 1;
    }
    query.push('}');

    let (huge, plain) = bounded(
        "a huge document and a plain query",
        futures_util::future::join(
            app.gql(&query, json!({})),
            app.gql("{ __typename }", json!({})),
        ),
    )
    .await;

    assert_error(&huge, "BAD_USER_INPUT");
    assert_eq!(data(&plain)["__typename"], "Query");
}

#[tokio::test]
async fn a_batch_with_more_operations_than_allowed_is_refused_as_a_whole() {
    let app = spawn_app_with(|s| s.max_batch_operations = 3).await;
    let one = json!({ "query": "{ __typename }" });

    let (status, body) = app
        .post_raw(json!([one, one, one, one]).to_string(), None)
        .await;
    let (ok_status, ok_body) = app.post_raw(json!([one, one, one]).to_string(), None).await;

    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_error(&body, "BAD_USER_INPUT");
    assert!(error_message(&body).contains("at most 3"), "{body}");
    assert_eq!(ok_status, 200);
    let ok: Value = serde_json::from_str(&ok_body).expect("JSON");
    assert_eq!(ok.as_array().map(Vec::len), Some(3), "{ok}");
}

#[tokio::test]
async fn the_operations_of_a_batch_share_one_complexity_budget() {
    // Each operation costs 1 + 20 × 3 = 61 (a list field counts `first` times its
    // selection); three of them are over a budget of 150, two are not.
    let app = spawn_app_with(|s| s.max_batch_complexity = 150).await;
    let one = json!({ "query": "{ products(first: 20) { edges { node { id } } } }" });

    let (_, two) = app.post_raw(json!([one, one]).to_string(), None).await;
    let (_, three) = app.post_raw(json!([one, one, one]).to_string(), None).await;

    let two: Vec<Value> = serde_json::from_str(&two).expect("a JSON array");
    assert!(two.iter().all(|r| r.get("errors").is_none()), "{two:?}");
    let three: Vec<Value> = serde_json::from_str(&three).expect("a JSON array");
    let refused: Vec<&Value> = three.iter().filter(|r| r.get("errors").is_some()).collect();
    assert_eq!(refused.len(), 1, "{three:?}");
    assert_error(refused[0], "BAD_USER_INPUT");
    assert!(error_message(refused[0]).contains("batch is too complex"));
}

#[tokio::test]
async fn a_response_over_the_size_limit_is_an_error_not_a_huge_body() {
    // Arrange: a catalog whose page is larger than the limit.
    let app = spawn_app_with(|s| s.max_response_bytes = 4_000).await;
    let admin = app.as_admin();
    let description = "d".repeat(1_000);
    for i in 0..5 {
        let resp = admin
            .gql(
                "mutation ($input: CreateProductInput!) { createProduct(input: $input) { position } }",
                json!({ "input": { "sku": format!("BIG-{i}"), "name": "Big", "description": description, "price": "1.00", "initialStock": 1 } }),
            )
            .await;
        data(&resp);
    }
    let page = "{ products(first: 5) { edges { node { description } } } }";

    // Act
    let (status, single) = app
        .post_raw(json!({ "query": page }).to_string(), None)
        .await;
    let (_, batch) = app
        .post_raw(
            json!([{ "query": "{ __typename }" }, { "query": page }]).to_string(),
            None,
        )
        .await;

    // Assert
    assert_eq!(status, 200);
    assert!(single.len() < 4_000, "{} bytes", single.len());
    let single: Value = serde_json::from_str(&single).expect("JSON");
    assert_error(&single, "BAD_USER_INPUT");
    assert!(error_message(&single).contains("larger than"), "{single}");
    let batch: Vec<Value> = serde_json::from_str(&batch).expect("a JSON array");
    assert_eq!(batch[0]["data"]["__typename"], "Query", "what fits is kept");
    assert_error(&batch[1], "BAD_USER_INPUT");
}

/// Reads from `stream` until the server closes it (or the bound passes); returns what
/// it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    bounded("the server closing the connection", async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_trickles_its_headers_is_closed() {
    let app = spawn_app_with(|s| s.header_timeout_secs = 1).await;
    let address = format!("127.0.0.1:{}", app.port);

    // Nothing at all.
    let mut silent = TcpStream::connect(&address).await.expect("connects");
    read_to_close(&mut silent).await;

    // A header a byte at a time, slower than the timeout allows in all.
    let mut trickle = TcpStream::connect(&address).await.expect("connects");
    let trickled = bounded("a trickled request being cut off", async {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
        {
            if trickle.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    })
    .await;
    let rest = read_to_close(&mut trickle).await;
    assert!(trickled || rest.is_empty(), "never answered: {rest}");

    // A kept-alive connection that goes idle after its request.
    let mut idle = TcpStream::connect(&address).await.expect("connects");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sends");
    let answered = read_to_close(&mut idle).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
}

#[tokio::test]
async fn connections_past_the_cap_get_a_503_and_the_server_stays_reachable() {
    // Arrange: the cap is full of connections that say nothing.
    let app = spawn_app_with(|s| s.max_connections = 4).await;
    let address = format!("127.0.0.1:{}", app.port);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(&address).await.expect("connects"));
    }
    // Let the server accept them all.
    let mut probe = TcpStream::connect(&address).await.expect("connects");

    // Act
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sends");
    let refused = read_to_close(&mut probe).await;

    // Assert: a clear answer, not a hang.
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after"), "{refused}");
    let body: Value =
        serde_json::from_str(refused.split("\r\n\r\n").nth(1).unwrap_or_default()).expect("JSON");
    assert_error(&body, "RATE_LIMITED");

    // Once a held connection goes, a new one is served.
    held.clear();
    wait_until("a connection slot is free again", || async {
        let mut s = TcpStream::connect(&address).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let answer = read_to_close(&mut s).await;
        answer.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
}

#[tokio::test]
async fn anonymous_subscription_connections_are_capped_and_signed_in_ones_are_not_affected() {
    let app = spawn_app_with(|s| s.max_anonymous_connections = 2).await;

    let _a = WsClient::connect(&app, None).await;
    let _b = WsClient::connect(&app, None).await;
    let mut third = WsClient::open(&app, Some("graphql-transport-ws")).await;
    third.init(None).await;
    let (code, reason) = third.closed().await;
    let _signed_in = WsClient::connect(
        &app,
        Some(&token("alice", ordergraph::auth::Role::Customer)),
    )
    .await;

    assert_eq!(code, 4403, "{reason}");
    assert!(reason.contains("anonymous"), "{reason}");

    // A multipart subscription counts against the same cap.
    let response = multipart_subscription(&app, None).await;
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.expect("JSON");
    assert_error(&body, "RATE_LIMITED");
}

async fn multipart_subscription(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url("/graphql"))
        .header(
            "accept",
            "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\",application/json",
        )
        .json(&json!({ "query": "subscription { productUpdated { id } }" }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("the request reaches the server")
}

#[tokio::test]
async fn multipart_subscriptions_count_against_a_users_connection_limit() {
    let app = spawn_app_with(|s| s.max_connections_per_user = 2).await;
    let bob = token("bob", ordergraph::auth::Role::Customer);

    let first = multipart_subscription(&app, Some(&bob)).await;
    let _socket = WsClient::connect(&app, Some(&bob)).await;
    let third = multipart_subscription(&app, Some(&bob)).await;
    let mut over = WsClient::open(&app, Some("graphql-transport-ws")).await;
    over.init(Some(&bob)).await;

    assert_eq!(first.status(), 200);
    assert_eq!(third.status(), 429);
    let (code, _) = over.closed().await;
    assert_eq!(code, 4403);

    // Closing the multipart subscription frees its slot.
    drop(first);
    wait_until("the multipart slot is released", || async {
        let r = multipart_subscription(&app, Some(&bob)).await;
        (r.status() == 200).then_some(())
    })
    .await;
}

/// Sends `request` verbatim and returns the whole answer.
async fn raw(app: &TestApp, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connects");
    stream.write_all(request).await.expect("sends");
    read_to_close(&mut stream).await
}

/// The status code and JSON body of a raw HTTP answer.
fn status_and_body(answer: &str) -> (u16, Value) {
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    (status, body)
}

#[tokio::test]
async fn every_transport_error_has_a_graphql_shaped_body() {
    let app = spawn_app_with(|s| s.request_timeout_secs = 1).await;
    let long_uri = format!(
        "GET /graphql?query={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..200)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("PUT", b"PUT /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), 405),
        ("DELETE", b"DELETE /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), 405),
        ("PATCH", b"PATCH /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), 405),
        ("an unknown path", b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), 404),
        ("an unsupported transfer encoding", b"POST /graphql HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc".to_vec(), 400),
        ("a malformed request line", b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        ("a URI of 70 KB", long_uri.into_bytes(), 414),
        ("200 headers", many_headers.into_bytes(), 431),
        ("a body slower than the request timeout", b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\":".to_vec(), 408),
    ];
    for (what, request, expected) in cases {
        let answer = raw(&app, &request).await;
        let (status, body) = status_and_body(&answer);
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(
            body["errors"][0]["extensions"]["code"].is_string(),
            "{what}: {answer}"
        );
        if status == 405 {
            assert!(
                answer.to_ascii_lowercase().contains("\r\nallow: "),
                "{what}: {answer}"
            );
        }
    }
}

#[tokio::test]
async fn a_websocket_message_over_the_limit_is_closed_with_1009() {
    let app = spawn_app_with(|s| s.max_body_bytes = 2_048).await;
    let mut ws = WsClient::connect(&app, None).await;

    ws.send_text(&format!(
        r#"{{"type":"subscribe","id":"1","payload":{{"query":"{{ __typename }}","x":"{}"}}}}"#,
        "x".repeat(4_096)
    ))
    .await;

    match bounded("the close frame", ws.next_event()).await {
        Received::Closed { code, .. } => assert_eq!(code, 1009),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_response_sent_before_the_body_was_read_tells_the_client_to_close() {
    // Otherwise the client reuses the connection the server then closes, and its next
    // request fails with a broken pipe.
    let app = spawn_app_with(|s| s.max_body_bytes = 1_024).await;
    let big = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{}",
        " ".repeat(4_096)
    );
    let put = "PUT /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789";

    for (what, request, status) in [
        ("a body over the limit", big.as_str(), 413),
        ("a PUT", put, 405),
    ] {
        let answer = raw(&app, request.as_bytes()).await;
        let (got, body) = status_and_body(&answer);
        assert_eq!(got, status, "{what}: {answer}");
        assert_error(&body, "BAD_USER_INPUT");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{what}: {answer}"
        );
    }
}
