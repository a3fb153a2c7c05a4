//! A small graphql-transport-ws (and legacy graphql-ws) client for the black-box tests:
//! it speaks the protocol over a real WebSocket to the running server and lets a test
//! assert on each message it receives, or on the close frame.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::TestApp;

/// How long a test waits for one expected message.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(15);

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server sent.
#[derive(Debug)]
pub enum Received {
    Message(Value),
    Closed { code: u16, reason: String },
}

impl WsClient {
    /// Opens a socket with the given subprotocol (none when `None`).
    pub async fn open(app: &TestApp, protocol: Option<&str>) -> Self {
        Self::open_url(&format!("ws://127.0.0.1:{}/graphql", app.port), protocol).await
    }

    /// Opens a socket to `url` (a server this process did not start: a replica).
    pub async fn open_url(url: &str, protocol: Option<&str>) -> Self {
        let mut request = url.into_client_request().expect("a valid ws URL");
        if let Some(protocol) = protocol {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                protocol.parse().expect("a valid header value"),
            );
        }
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the WebSocket handshake succeeds");
        if let Some(protocol) = protocol {
            assert_eq!(
                response
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok()),
                Some(protocol),
                "the server accepts subprotocol {protocol}"
            );
        }
        Self { socket }
    }

    /// Opens a graphql-transport-ws socket and completes `connection_init` with `token`.
    pub async fn connect(app: &TestApp, token: Option<&str>) -> Self {
        Self::connect_url(&format!("ws://127.0.0.1:{}/graphql", app.port), token).await
    }

    /// Like `connect`, to the server at `url` (`ws://…/graphql`).
    pub async fn connect_url(url: &str, token: Option<&str>) -> Self {
        let mut client = Self::open_url(url, Some("graphql-transport-ws")).await;
        client.init(token).await;
        let ack = client.recv().await;
        assert_eq!(
            ack["type"], "connection_ack",
            "connection_init is acknowledged"
        );
        client
    }

    pub async fn init(&mut self, token: Option<&str>) {
        let payload = match token {
            Some(token) => json!({ "authorization": format!("Bearer {token}") }),
            None => json!({}),
        };
        self.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .expect("the socket accepts a message");
    }

    /// Starts operation `id` (graphql-transport-ws `subscribe`).
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({
            "type": "subscribe",
            "id": id,
            "payload": { "query": query, "variables": variables },
        }))
        .await;
    }

    pub async fn complete(&mut self, id: &str) {
        self.send(json!({ "type": "complete", "id": id })).await;
    }

    /// The next protocol message or the close frame; skips server pings (answering them)
    /// and WebSocket-level control frames.
    pub async fn next_event(&mut self) -> Received {
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.socket.next())
                .await
                .expect("a message arrives in time");
            match frame {
                None => {
                    return Received::Closed {
                        code: 1006,
                        reason: "stream ended".into(),
                    };
                }
                Some(Err(e)) => {
                    return Received::Closed {
                        code: 1006,
                        reason: e.to_string(),
                    };
                }
                Some(Ok(Message::Text(text))) => {
                    let value: Value =
                        serde_json::from_str(text.as_str()).expect("the server sends JSON");
                    if value["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    if value["type"] == "ka" {
                        continue;
                    }
                    return Received::Message(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(frame) => Received::Closed {
                            code: frame.code.into(),
                            reason: frame.reason.to_string(),
                        },
                        None => Received::Closed {
                            code: 1005,
                            reason: String::new(),
                        },
                    };
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next text frame as JSON, whatever it is (pings included).
    pub async fn next_text(&mut self) -> Value {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).expect("the server sends JSON");
                }
                Some(Ok(Message::Close(frame))) => panic!("closed: {frame:?}"),
                None | Some(Err(_)) => panic!("the socket ended"),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next protocol message; fails the test on a close.
    pub async fn recv(&mut self) -> Value {
        match self.next_event().await {
            Received::Message(value) => value,
            Received::Closed { code, reason } => {
                panic!("expected a message, the server closed the socket: {code} {reason}")
            }
        }
    }

    /// The next `next` payload's `data.<field>` for operation `id`; fails on anything else.
    pub async fn next_data(&mut self, id: &str, field: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["type"], "next", "expected next, got {message}");
        assert_eq!(message["id"], id, "for operation {id}: {message}");
        let errors = &message["payload"]["errors"];
        assert!(errors.is_null(), "no errors expected: {message}");
        message["payload"]["data"][field].clone()
    }

    /// Asserts nothing arrives within `quiet`.
    pub async fn assert_silent(&mut self, quiet: Duration) {
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(quiet, self.socket.next()).await
        {
            panic!("expected nothing, received {text}");
        }
    }

    /// The close code and reason the server ends the connection with.
    pub async fn closed(&mut self) -> (u16, String) {
        match self.next_event().await {
            Received::Closed { code, reason } => (code, reason),
            Received::Message(message) => {
                panic!("expected the socket to close, received {message}")
            }
        }
    }

    /// Starts the closing handshake from the client's side (RFC 6455 §7.1.2).
    pub async fn close(&mut self, code: u16, reason: &str) {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        self.socket
            .send(Message::Close(Some(CloseFrame {
                code: code.into(),
                reason: reason.into(),
            })))
            .await
            .expect("the socket accepts a Close frame");
    }

    /// Whether the connection ended cleanly after the closing handshake: the stream ends
    /// with no further frame and no error (tungstenite reports an end without a
    /// handshake as an error).
    pub async fn ended_cleanly(&mut self) -> Result<(), String> {
        match tokio::time::timeout(RECV_TIMEOUT, self.socket.next())
            .await
            .expect("the connection ends in time")
        {
            None => Ok(()),
            Some(Ok(frame)) => Err(format!("a frame after the close: {frame:?}")),
            Some(Err(e)) => Err(format!("the connection ended with an error: {e}")),
        }
    }

    /// Waits until `next` for `id` satisfies `accept`, skipping other payloads of it.
    pub async fn next_until(
        &mut self,
        id: &str,
        field: &str,
        mut accept: impl FnMut(&Value) -> bool,
    ) -> Value {
        loop {
            let data = self.next_data(id, field).await;
            if accept(&data) {
                return data;
            }
            // Shown when the test fails: what arrived instead of what it waits for.
            println!("{id}: skipped {field} {data}");
        }
    }
}

/// A position as a number, from its string form.
pub fn pos(value: &Value) -> i64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a Position is a string of digits: {value}"))
}
