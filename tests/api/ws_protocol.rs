//! The WebSocket transport as the graphql-transport-ws spec says (close codes, ping/pong,
//! init), the legacy graphql-ws subprotocol, the limits, token expiry, draining on
//! shutdown, and multipart HTTP subscriptions.

use std::time::Duration;

use ordergraph::auth::Role;
use serde_json::json;

use crate::helpers::*;
use crate::ws_client::{WsClient, pos};

const WATCH: &str =
    "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { id stock position } }";

#[tokio::test]
async fn an_invalid_message_closes_with_4400() {
    let app = spawn_app().await;
    for bad in [
        "not json",
        r#"{"type":"nonsense"}"#,
        r#"{"type":"subscribe","id":"1"}"#,
        r#"{"type":"start","id":"1","payload":{"query":"{ __typename }"}}"#,
    ] {
        let mut client = WsClient::connect(&app, None).await;
        client.send_text(bad).await;
        let (code, _) = client.closed().await;
        assert_eq!(code, 4400, "for {bad}");
    }
}

#[tokio::test]
async fn subscribe_before_the_ack_closes_with_4401() {
    let app = spawn_app().await;
    let mut client = WsClient::open(&app, Some("graphql-transport-ws")).await;
    client.subscribe("1", WATCH, json!({ "ids": [] })).await;
    let (code, reason) = client.closed().await;
    assert_eq!((code, reason.as_str()), (4401, "Unauthorized"));
}

#[tokio::test]
async fn a_rejected_connection_init_closes_with_4403() {
    let app = spawn_app().await;
    for bad in [
        "not-a-jwt".to_owned(),
        expired_token("alice"),
        wrong_secret_token("alice"),
    ] {
        let mut client = WsClient::open(&app, Some("graphql-transport-ws")).await;
        client.init(Some(&bad)).await;
        let (code, reason) = client.closed().await;
        assert_eq!(code, 4403, "{reason}");
        assert!(reason.starts_with("Forbidden"), "{reason}");
    }
}

#[tokio::test]
async fn no_connection_init_in_time_closes_with_4408() {
    let app = spawn_app_with(|s| s.ws_init_timeout_ms = 200).await;
    let mut client = WsClient::open(&app, Some("graphql-transport-ws")).await;
    let (code, _) = client.closed().await;
    assert_eq!(code, 4408);
}

#[tokio::test]
async fn a_duplicate_subscription_id_closes_with_4409() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, None).await;
    client.subscribe("dup", WATCH, json!({ "ids": [] })).await;
    client.subscribe("dup", WATCH, json!({ "ids": [] })).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, 4409);
    assert_eq!(reason, "Subscriber for dup already exists");
}

#[tokio::test]
async fn a_second_connection_init_closes_with_4429() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, None).await;
    client.init(None).await;
    let (code, _) = client.closed().await;
    assert_eq!(code, 4429);
}

#[tokio::test]
async fn ping_gets_pong_and_the_server_pings_idle_clients() {
    let app = spawn_app_with(|s| s.ws_keepalive_secs = 1).await;
    let mut client = WsClient::open(&app, Some("graphql-transport-ws")).await;
    // Ping is allowed before the ack.
    client
        .send(json!({ "type": "ping", "payload": { "n": 1 } }))
        .await;
    assert_eq!(
        client.recv().await,
        json!({ "type": "pong", "payload": { "n": 1 } })
    );
    client.init(None).await;
    assert_eq!(client.recv().await["type"], "connection_ack");
    // The server's own ping, unanswered by the helper.
    let raw = tokio::time::timeout(Duration::from_secs(5), client.next_text())
        .await
        .expect("a ping within the keep-alive period");
    assert_eq!(raw, json!({ "type": "ping" }));
    client.send(json!({ "type": "pong" })).await;
}

#[tokio::test]
async fn a_subscription_over_the_limit_gets_rate_limited() {
    let app = spawn_app_with(|s| s.max_subscriptions_per_connection = 2).await;
    let mut client = WsClient::connect(&app, None).await;
    client.subscribe("1", WATCH, json!({ "ids": [] })).await;
    client.subscribe("2", WATCH, json!({ "ids": [] })).await;
    client.subscribe("3", WATCH, json!({ "ids": [] })).await;
    let message = client.recv().await;
    assert_eq!(message["type"], "error");
    assert_eq!(message["id"], "3");
    assert_eq!(message["payload"][0]["extensions"]["code"], "RATE_LIMITED");
    // Completing one frees a slot.
    client.complete("1").await;
    client.subscribe("4", WATCH, json!({ "ids": [] })).await;
    client.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn connections_per_user_are_limited() {
    let app = spawn_app_with(|s| s.max_connections_per_user = 2).await;
    let alice = token("alice", Role::Customer);
    let first = WsClient::connect(&app, Some(&alice)).await;
    let _second = WsClient::connect(&app, Some(&alice)).await;
    let mut third = WsClient::open(&app, Some("graphql-transport-ws")).await;
    third.init(Some(&alice)).await;
    let (code, reason) = third.closed().await;
    assert_eq!(code, 4403);
    assert!(reason.contains("open connections"), "{reason}");
    // Another user is not affected; a closed connection frees its slot.
    let _bob = WsClient::connect(&app, Some(&token("bob", Role::Customer))).await;
    drop(first);
    wait_until("alice's slot is free again", || async {
        let mut again = WsClient::open(&app, Some("graphql-transport-ws")).await;
        again.init(Some(&alice)).await;
        (again.recv().await["type"] == "connection_ack").then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_expiring_token_closes_the_socket_with_4403_at_its_exp() {
    let app = spawn_app().await;
    let short =
        ordergraph::auth::mint_token(JWT_SECRET, "alice", Role::Customer, Duration::from_secs(2))
            .expect("a token");
    let started = std::time::Instant::now();
    let mut client = WsClient::connect(&app, Some(&short)).await;
    client
        .subscribe("c", "subscription { cartUpdated { itemCount } }", json!({}))
        .await;
    let first = client.recv().await;
    assert_eq!(first["type"], "next");
    // The subscription may end with UNAUTHENTICATED just before the socket closes.
    let (code, reason) = loop {
        match client.next_event().await {
            crate::ws_client::Received::Closed { code, reason } => break (code, reason),
            crate::ws_client::Received::Message(m) => {
                assert_eq!(
                    m["payload"][0]["extensions"]["code"], "UNAUTHENTICATED",
                    "{m}"
                );
            }
        }
    };
    assert_eq!(code, 4403);
    assert!(reason.contains("expired"), "{reason}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn shutdown_ends_each_subscription_with_server_draining_and_its_resume_point() {
    let mut app = spawn_app().await;
    let admin = app.as_admin();
    let p = admin.create_product("DRAIN-1", "1.00", 3).await;
    let id = str_of(&p["id"]).to_owned();
    let mut client = WsClient::connect(&app, None).await;
    client.subscribe("p", WATCH, json!({ "ids": [id] })).await;
    let state = client.next_data("p", "productUpdated").await;
    let mut events = WsClient::connect(&app, Some(&token("admin", Role::Admin))).await;
    events
        .subscribe("e", "subscription { events { position } }", json!({}))
        .await;
    let event = events.next_data("e", "events").await;

    let (stopped, (draining, closed, event_draining)) = tokio::join!(app.shut_down(), async {
        let draining = client.recv().await;
        let closed = client.closed().await;
        let event_draining = events.recv().await;
        (draining, closed, event_draining)
    });
    stopped.expect("the server stops cleanly");
    assert_eq!(draining["type"], "error", "{draining}");
    assert_eq!(draining["id"], "p");
    let error = &draining["payload"][0];
    assert_eq!(error["extensions"]["code"], "SERVER_DRAINING");
    assert!(pos(&error["extensions"]["position"]) >= pos(&state["position"]));
    assert_eq!(closed.0, 1001);
    assert_eq!(event_draining["type"], "error");
    let error = &event_draining["payload"][0];
    assert_eq!(error["extensions"]["code"], "SERVER_DRAINING");
    assert_eq!(error["extensions"]["position"], event["position"]);
}

#[tokio::test]
async fn the_legacy_graphql_ws_subprotocol_works() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let p = admin.create_product("LEGACY-1", "1.00", 3).await;
    let id = str_of(&p["id"]).to_owned();
    let mut client = WsClient::open(&app, Some("graphql-ws")).await;
    client.init(None).await;
    assert_eq!(client.recv().await["type"], "connection_ack");
    client
        .send(json!({ "type": "start", "id": "1", "payload": { "query": WATCH, "variables": { "ids": [id] } } }))
        .await;
    let data = client.recv().await;
    assert_eq!(data["type"], "data");
    assert_eq!(data["payload"]["data"]["productUpdated"]["stock"], 3);
    admin.adjust_stock(&id, 1).await;
    let data = client.recv().await;
    assert_eq!(data["payload"]["data"]["productUpdated"]["stock"], 4);
    client.send(json!({ "type": "stop", "id": "1" })).await;
    assert_eq!(
        client.recv().await,
        json!({ "type": "complete", "id": "1" })
    );
    client.send(json!({ "type": "connection_terminate" })).await;
    let (code, _) = client.closed().await;
    assert_eq!(
        code, 1000,
        "connection_terminate ends with a normal closure"
    );
}

#[tokio::test]
async fn a_clients_close_is_answered_with_a_close_frame() {
    // Arrange: a subscription is running, so the server has work to stop.
    let app = spawn_app().await;
    let p = app.as_admin().create_product("CLOSE-1", "1.00", 3).await;
    let mut client = WsClient::connect(&app, None).await;
    client
        .subscribe("1", WATCH, json!({ "ids": [str_of(&p["id"])] }))
        .await;
    client.next_data("1", "productUpdated").await;

    // Act
    client.close(1000, "bye").await;

    // Assert: the server echoes the code (RFC 6455 §5.5.1), then the connection ends
    // without an error: a clean close, not 1006.
    let (code, _) = client.closed().await;
    assert_eq!(code, 1000);
    client
        .ended_cleanly()
        .await
        .expect("the closing handshake completes");
}

#[tokio::test]
async fn a_close_by_the_server_completes_the_closing_handshake() {
    // Arrange
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, None).await;

    // Act: a second connection_init is closed with 4429.
    client.init(None).await;

    // Assert: the client reads the Close, answers it, and the connection then ends
    // without an error.
    let (code, _) = client.closed().await;
    assert_eq!(code, 4429);
    client
        .ended_cleanly()
        .await
        .expect("the closing handshake completes");
}

#[tokio::test]
async fn an_unknown_subprotocol_is_refused_with_4406() {
    let app = spawn_app().await;
    let url = format!("ws://127.0.0.1:{}/graphql", app.port);
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("a request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().expect("a header"));
    // A client that asked for a protocol the server does not speak: either the handshake
    // fails (no protocol echoed) or the server closes with 4406.
    if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(request).await {
        use futures_util::StreamExt;
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame))))) = frame {
            assert_eq!(u16::from(frame.code), 4406);
        }
    }
}

#[tokio::test]
async fn multipart_http_subscriptions_stream_state_then_changes() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let p = admin.create_product("MP-1", "1.00", 3).await;
    let id = str_of(&p["id"]).to_owned();
    let mut response = app
        .http
        .post(app.url("/graphql"))
        .header(
            "accept",
            "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\",application/json",
        )
        .json(&json!({ "query": WATCH, "variables": { "ids": [id] } }))
        .send()
        .await
        .expect("the request reaches the server");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("multipart/mixed"),
        "{content_type}"
    );
    let mut body = String::new();
    let mut read_until = async |needle: &str, body: &mut String| {
        while !body.contains(needle) {
            let chunk = tokio::time::timeout(Duration::from_secs(15), response.chunk())
                .await
                .expect("a part in time")
                .expect("the body streams")
                .expect("the stream is still open");
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    read_until(r#"{"payload":{"data":{"productUpdated":{"#, &mut body).await;
    read_until(r#""stock":3"#, &mut body).await;
    admin.adjust_stock(&id, 2).await;
    read_until(r#""stock":5"#, &mut body).await;
    assert!(body.contains("content-type: application/json"), "{body}");

    // Without multipart or a WebSocket, a subscription is refused clearly.
    let resp = app.anonymous().gql(WATCH, json!({ "ids": [id] })).await;
    assert_error(&resp, "BAD_USER_INPUT");
}
