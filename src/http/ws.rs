//! GraphQL over WebSocket on `/graphql`: the `graphql-transport-ws` protocol (the
//! graphql-ws library's, PROTOCOL.md) and the legacy `graphql-ws` subprotocol
//! (subscriptions-transport-ws) for older clients.
//!
//! async-graphql 7 ships a protocol engine, but it deviates from the spec where clients
//! depend on it (it closes with 1002 instead of 4400/4403, 1011 instead of 4401, has no
//! 4408 init timeout, silently replaces a duplicate id instead of 4409, never sends an
//! `error` message), so the protocol lives here and async-graphql only executes:
//!
//! - `4400` an invalid message, `4401` subscribe before `connection_ack`, `4403` a
//!   rejected `connection_init` (bad token, too many connections), `4408` no
//!   `connection_init` in time, `4409` a duplicate subscription id, `4429` a second
//!   `connection_init`; `4403` again when the token expires, at its `exp`;
//! - ping/pong both ways (the server pings an idle client every keep-alive period);
//! - an operation that fails validation or authorization gets an `error` message;
//! - a limit on subscriptions per connection (`error` with `RATE_LIMITED`), on
//!   connections per user and on anonymous connections in all (`4403` with the reason);
//! - a message over the size limit closes the socket with `1009` (RFC 6455 §7.4.1);
//! - when the server drains, each subscription ends with a `SERVER_DRAINING` error that
//!   carries its resume position, then the socket closes with 1001;
//! - every close is a closing handshake (RFC 6455 §7.1.2): a client's Close frame is
//!   answered with one before the server drops the connection, and after its own Close
//!   the server waits (briefly) for the client's, so clients see a clean close with its
//!   code, never `1006`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::{Request, ServerError};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response as HttpResponse;
use futures_util::stream::{AbortHandle, SelectAll, abortable};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::HttpState;
use super::shared::{self, Frame, Frames};
use crate::auth::Auth;

/// The subprotocols served, in order of preference.
pub const PROTOCOLS: [&str; 2] = ["graphql-transport-ws", "graphql-ws"];

/// How long a closing handshake may take: the server's answer to a client's Close, or the
/// client's answer to the server's. A client that does not answer in time is dropped.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Most messages written to a socket before it is flushed.
const WRITE_BATCH: usize = 64;

/// Limits and timers of the WebSocket transport.
#[derive(Debug, Clone)]
pub struct WsSettings {
    pub init_timeout: Duration,
    pub keepalive: Duration,
    /// How often an idle multipart HTTP subscription sends a heartbeat part.
    pub multipart_heartbeat: Duration,
    pub max_subscriptions: usize,
    pub max_connections_per_user: usize,
    /// Most anonymous subscription connections (WebSocket or multipart) open at once.
    pub max_anonymous_connections: usize,
    /// How long a subscription's execution stays awake after a message before it
    /// sleeps (`shared::sleeping`); `None`: it never sleeps.
    pub sleep_after: Option<Duration>,
}

/// Open subscription connections: per signed-in user and anonymous ones (for the
/// limits), and WebSockets in all (for draining).
#[derive(Default)]
pub struct Connections {
    per_user: Mutex<HashMap<String, usize>>,
    anonymous: Mutex<usize>,
    open: watch::Sender<usize>,
}

/// Why a subscription connection was refused; the text is safe to show.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    InvalidToken(String),
    #[error("{user} already has {max} open connections, the most allowed")]
    TooManyForUser { user: String, max: usize },
    #[error("{max} anonymous connections are open, the most allowed: sign in to subscribe")]
    TooManyAnonymous { max: usize },
}

/// Holds one anonymous connection slot while alive.
struct AnonymousSlot(Arc<Connections>);

impl Drop for AnonymousSlot {
    fn drop(&mut self) {
        let mut n = self.0.anonymous.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
    }
}

/// A subscription connection's place under its limit (released on drop).
pub struct Slot {
    _user: Option<UserSlot>,
    _anonymous: Option<AnonymousSlot>,
}

/// Counts one open connection while alive.
struct Open(Arc<Connections>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Holds one of a user's connection slots while alive.
struct UserSlot(Arc<Connections>, String);

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut per_user = self.0.per_user.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_user.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                per_user.remove(&self.1);
            }
        }
    }
}

impl Connections {
    fn open(self: &Arc<Self>) -> Open {
        self.open.send_modify(|n| *n += 1);
        Open(self.clone())
    }

    fn claim(self: &Arc<Self>, user: &str, max: usize) -> Option<UserSlot> {
        let mut per_user = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        let n = per_user.entry(user.to_owned()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(UserSlot(self.clone(), user.to_owned()))
    }

    fn claim_anonymous(self: &Arc<Self>, max: usize) -> Option<AnonymousSlot> {
        let mut n = self.anonymous.lock().unwrap_or_else(|e| e.into_inner());
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AnonymousSlot(self.clone()))
    }

    /// Claims a slot for a subscription connection of `auth` (a WebSocket after its
    /// `connection_init`, or a multipart subscription).
    pub fn claim_for(
        self: &Arc<Self>,
        auth: &Auth,
        settings: &WsSettings,
    ) -> Result<Slot, Refusal> {
        match auth {
            Auth::Invalid(reason) => Err(Refusal::InvalidToken(reason.clone())),
            Auth::User(caller) => {
                let user = caller.user_id.as_str();
                let max = settings.max_connections_per_user;
                self.claim(user, max)
                    .map(|slot| Slot {
                        _user: Some(slot),
                        _anonymous: None,
                    })
                    .ok_or_else(|| Refusal::TooManyForUser {
                        user: user.to_owned(),
                        max,
                    })
            }
            Auth::Anonymous => {
                let max = settings.max_anonymous_connections;
                self.claim_anonymous(max)
                    .map(|slot| Slot {
                        _user: None,
                        _anonymous: Some(slot),
                    })
                    .ok_or(Refusal::TooManyAnonymous { max })
            }
        }
    }

    /// Waits until every connection has closed, at most `timeout`; true when all did.
    pub async fn wait_closed(&self, timeout: Duration) -> bool {
        let mut open = self.open.subscribe();
        tokio::time::timeout(timeout, open.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// graphql-transport-ws
    Transport,
    /// graphql-ws (subscriptions-transport-ws), legacy
    Legacy,
}

/// Answers a WebSocket upgrade on `/graphql`.
pub fn upgrade(state: HttpState, ws: WebSocketUpgrade, headers: &HeaderMap) -> HttpResponse {
    let offered = headers.contains_key(axum::http::header::SEC_WEBSOCKET_PROTOCOL);
    // tungstenite reads and buffers writes in 128 KiB chunks by default: most of an idle
    // connection's memory. Subscription messages are small; 8 KiB chunks cost a few
    // more system calls for a large one.
    let ws = ws
        .protocols(PROTOCOLS)
        .max_message_size(state.max_message_bytes)
        .max_frame_size(state.max_message_bytes)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024);
    let protocol = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some("graphql-ws") => Some(Protocol::Legacy),
        Some(_) => Some(Protocol::Transport),
        // No subprotocol asked for: speak the current one.
        None if !offered => Some(Protocol::Transport),
        None => None,
    };
    let header_auth = super::authorization(headers).map(str::to_owned);
    ws.on_upgrade(move |socket| async move {
        match protocol {
            Some(protocol) => {
                Connection::new(socket, protocol, state, header_auth)
                    .run()
                    .await
            }
            None => {
                let mut socket = socket;
                close(&mut socket, 4406, "Subprotocol not acceptable").await;
            }
        }
    })
}

/// Closes the connection from the server's side: sends a Close frame, then waits for the
/// client's (RFC 6455 §7.1.2: the connection is closed once both have sent one), at most
/// [`CLOSE_HANDSHAKE_TIMEOUT`]. Without the wait the client's answer could meet a reset
/// connection, and a browser would report an unclean close.
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    // A close frame's reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason[..end];
    let handshake = async {
        socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await
            .ok()?;
        // Whatever the client still sends before its Close is dropped.
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        Some(())
    };
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, handshake).await;
}

/// Answers a client's Close frame. tungstenite queues the answering Close (with the
/// client's code) when it reads the client's, and writes it on the next write or flush;
/// a socket dropped at once never sends it, and the client sees `1006`.
async fn answer_close(socket: &mut WebSocket) {
    use futures_util::SinkExt as _;
    // The flush ends with "connection closed" once the answer is written: that is the
    // end of the handshake, not an error.
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, socket.flush()).await;
}

/// Whether a receive failed because the message was over the size limit.
fn is_too_big(error: &axum::Error) -> bool {
    let inner: &(dyn std::error::Error + 'static) = error;
    let mut source = Some(inner);
    while let Some(e) = source {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Counts a WebSocket operation while it is open.
struct OpenOperation(Arc<crate::metrics::Metrics>);

impl Drop for OpenOperation {
    fn drop(&mut self) {
        self.0.websocket_operation(-1);
    }
}

/// `frames`, counted as an open operation until dropped.
fn operation(frames: Frames, metrics: Arc<crate::metrics::Metrics>) -> Frames {
    metrics.websocket_operation(1);
    let open = OpenOperation(metrics);
    Box::pin(frames.map(move |frame| {
        let _ = &open;
        frame
    }))
}

/// What the server sends to end an operation (`next` and `data` are written by hand,
/// to bound the payload's size).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Outgoing<'a> {
    Error {
        id: &'a str,
        payload: &'a [ServerError],
    },
    Complete {
        id: &'a str,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Value>,
    },
    Ping {
        #[serde(default)]
        payload: Option<Value>,
    },
    Pong {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<Value>,
    },
    /// graphql-transport-ws
    Subscribe { id: String, payload: Box<Request> },
    /// graphql-transport-ws
    Complete { id: String },
    /// legacy
    Start { id: String, payload: Box<Request> },
    /// legacy
    Stop { id: String },
    /// legacy
    ConnectionTerminate,
}

/// Why the connection ends.
enum Closing {
    /// The server closes it, with this code and reason.
    Server(u16, String),
    /// The client sent a Close frame: answer it.
    Client,
    /// The connection is gone (a read or write failed): nothing to say.
    Lost,
}

impl Closing {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self::Server(code, reason.into())
    }
}

struct Connection {
    socket: WebSocket,
    protocol: Protocol,
    state: HttpState,
    header_auth: Option<String>,
    auth: Option<Auth>,
    _slot: Option<Slot>,
    /// Every open operation's frames, tagged with its id. Polled only where woken (a
    /// `StreamMap` polls each of its streams in turn on every wake-up: with 100 operations
    /// on a socket that was 100 polls of async-graphql's stream stack per message).
    subscriptions: SelectAll<Tagged>,
    /// The open operations by id, each with the handle that ends it.
    open: HashMap<String, AbortHandle>,
}

/// One operation's frames with its id.
type Tagged = std::pin::Pin<Box<dyn futures_util::Stream<Item = (Arc<str>, Frame)> + Send>>;

impl Connection {
    fn new(
        socket: WebSocket,
        protocol: Protocol,
        state: HttpState,
        header_auth: Option<String>,
    ) -> Self {
        Self {
            socket,
            protocol,
            state,
            header_auth,
            auth: None,
            _slot: None,
            subscriptions: SelectAll::new(),
            open: HashMap::new(),
        }
    }

    /// Ends operation `id`; false when none is open.
    fn end(&mut self, id: &str) -> bool {
        match self.open.remove(id) {
            Some(handle) => {
                handle.abort();
                true
            }
            None => false,
        }
    }

    async fn send(&mut self, message: Value) -> bool {
        self.send_text(message.to_string()).await
    }

    async fn send_text(&mut self, text: String) -> bool {
        self.socket.send(Message::Text(text.into())).await.is_ok()
    }

    async fn run(mut self) {
        let _open = self.state.connections.open();
        let metrics = self.state.metrics.clone();
        metrics.websocket_opened();
        let closing = self.serve().await;
        metrics.websocket_closed();
        match closing {
            Closing::Server(code, reason) => close(&mut self.socket, code, &reason).await,
            Closing::Client => answer_close(&mut self.socket).await,
            Closing::Lost => {}
        }
    }

    /// The connection's loop, until it ends.
    async fn serve(&mut self) -> Closing {
        let settings = self.state.ws.clone();
        let init_deadline = tokio::time::sleep(settings.init_timeout);
        tokio::pin!(init_deadline);
        let mut keepalive = tokio::time::interval_at(
            tokio::time::Instant::now() + settings.keepalive,
            settings.keepalive,
        );
        let mut drain = self.state.drain.clone();
        let mut draining = *drain.borrow();
        let mut expires: Option<tokio::time::Instant> = None;
        loop {
            if draining && self.open.is_empty() {
                return Closing::new(1001, "the server is shutting down");
            }
            let acked = self.auth.is_some();
            let expiry = async {
                match expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = self.socket.recv() => {
                    let text = match message {
                        Some(Err(ref e)) if is_too_big(e) => {
                            return Closing::new(
                                1009,
                                format!("a message may be at most {} bytes", self.state.max_message_bytes),
                            );
                        }
                        None | Some(Err(_)) => return Closing::Lost,
                        Some(Ok(Message::Close(_))) => return Closing::Client,
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            return Closing::new(4400, "binary messages are not accepted");
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    };
                    match self.on_message(text.as_str(), &settings, draining).await {
                        Ok(Some(at)) => expires = Some(at),
                        Ok(None) => {}
                        Err(closing) => return closing,
                    }
                }
                Some(first) = self.subscriptions.next(), if !self.subscriptions.is_empty() => {
                    if !self.write_ready(first).await {
                        return Closing::Lost;
                    }
                }
                () = &mut init_deadline, if !acked => {
                    return Closing::new(4408, "Connection initialisation timeout");
                }
                () = expiry => {
                    return Closing::new(4403, "Forbidden: the token expired");
                }
                _ = keepalive.tick() => {
                    let ping = match self.protocol {
                        Protocol::Transport => json!({ "type": "ping" }),
                        Protocol::Legacy if acked => json!({ "type": "ka" }),
                        Protocol::Legacy => continue,
                    };
                    if !self.send(ping).await {
                        return Closing::Lost;
                    }
                }
                () = async { let _ = drain.wait_for(|d| *d).await; }, if !draining => {
                    // Live subscriptions end themselves with SERVER_DRAINING; the socket
                    // closes once the last one has.
                    draining = true;
                }
            }
        }
    }

    /// Writes `first` and the operations' other messages that are ready already (at most
    /// [`WRITE_BATCH`] in all), then flushes once: a change that concerns many operations
    /// of this socket is one write to it, not one per message (a `writev` per message was
    /// a fifth of the server's time at 10 000 subscriptions; BENCHMARKS.md). False when
    /// the connection is gone.
    async fn write_ready(&mut self, first: (Arc<str>, Frame)) -> bool {
        let mut next = Some(first);
        let mut written = 0;
        while let Some((id, frame)) = next.take() {
            if !matches!(frame, Frame::Next(_)) {
                // Done: the id is free again at once.
                self.open.remove(&*id);
            }
            let message = self.render(&id, &frame);
            if self
                .socket
                .feed(Message::Text(message.into()))
                .await
                .is_err()
            {
                return false;
            }
            written += 1;
            if written < WRITE_BATCH {
                // Polled without this task's waker: the loop polls the operations again
                // with it before it waits, so no wake-up is lost.
                next = self.subscriptions.next().now_or_never().flatten();
            }
        }
        self.socket.flush().await.is_ok()
    }

    /// An operation's message around its payload, rendered once however many
    /// subscriptions share it (`shared::frames`: no larger than the response size limit).
    fn render(&self, id: &str, frame: &Frame) -> String {
        let kind = match (frame, self.protocol) {
            (Frame::Next(payload), protocol) => {
                let kind = match protocol {
                    Protocol::Transport => "next",
                    Protocol::Legacy => "data",
                };
                let id = Value::from(id);
                return format!(r#"{{"type":"{kind}","id":{id},"payload":{payload}}}"#);
            }
            (Frame::Error(payload), _) => Outgoing::Error { id, payload },
            (Frame::Complete, _) => Outgoing::Complete { id },
        };
        serde_json::to_string(&kind).unwrap_or_else(|e| {
            tracing::error!(error = %e, "a response did not serialize");
            json!({ "type": "error", "id": id, "payload": [{ "message": "internal error", "extensions": { "code": "INTERNAL" } }] }).to_string()
        })
    }

    /// Handles one client message; `Ok(Some(expiry))` when it signed the client in.
    async fn on_message(
        &mut self,
        text: &str,
        settings: &WsSettings,
        draining: bool,
    ) -> Result<Option<tokio::time::Instant>, Closing> {
        let message: ClientMessage = serde_json::from_str(text)
            .map_err(|e| Closing::new(4400, format!("Invalid message received: {e}")))?;
        let legacy = self.protocol == Protocol::Legacy;
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.auth.is_some() {
                    return Err(Closing::new(4429, "Too many initialisation requests"));
                }
                let expiry = self.connection_init(payload, settings).await?;
                return Ok(expiry);
            }
            ClientMessage::Ping { payload } if !legacy => {
                let mut pong = json!({ "type": "pong" });
                if let Some(payload) = payload {
                    pong["payload"] = payload;
                }
                if !self.send(pong).await {
                    return Err(Closing::Lost);
                }
            }
            ClientMessage::Pong { .. } if !legacy => {}
            ClientMessage::Subscribe { id, payload } if !legacy => {
                self.subscribe(id, *payload, settings, draining).await?;
            }
            ClientMessage::Start { id, payload } if legacy => {
                self.subscribe(id, *payload, settings, draining).await?;
            }
            ClientMessage::Complete { id } if !legacy => {
                self.end(&id);
            }
            ClientMessage::Stop { id } if legacy => {
                if self.end(&id) && !self.send(json!({ "type": "complete", "id": id })).await {
                    return Err(Closing::Lost);
                }
            }
            ClientMessage::ConnectionTerminate if legacy => {
                return Err(Closing::new(1000, "connection_terminate"));
            }
            _ => {
                return Err(Closing::new(
                    4400,
                    "Invalid message received: not a message of this subprotocol",
                ));
            }
        }
        Ok(None)
    }

    async fn connection_init(
        &mut self,
        payload: Option<Value>,
        settings: &WsSettings,
    ) -> Result<Option<tokio::time::Instant>, Closing> {
        let from_payload = payload.as_ref().and_then(|p| {
            ["authorization", "Authorization"]
                .iter()
                .find_map(|k| p.get(*k).and_then(Value::as_str))
        });
        let header = from_payload.or(self.header_auth.as_deref());
        let auth = self.state.verifier.authenticate(header);
        let rejected = match self.state.connections.claim_for(&auth, settings) {
            Ok(slot) => {
                self._slot = Some(slot);
                None
            }
            Err(refusal) => Some(format!("Forbidden: {refusal}")),
        };
        if let Some(reason) = rejected {
            if self.protocol == Protocol::Legacy {
                let _ = self
                    .send(json!({ "type": "connection_error", "payload": { "message": reason } }))
                    .await;
            }
            return Err(Closing::new(4403, reason));
        }
        let expiry = match &auth {
            Auth::User(caller) => {
                let left = caller.expires_at - chrono::Utc::now().timestamp();
                Some(
                    tokio::time::Instant::now()
                        + Duration::from_secs(u64::try_from(left).unwrap_or(0)),
                )
            }
            _ => None,
        };
        self.auth = Some(auth);
        if !self.send(json!({ "type": "connection_ack" })).await {
            return Err(Closing::Lost);
        }
        if self.protocol == Protocol::Legacy && !self.send(json!({ "type": "ka" })).await {
            return Err(Closing::Lost);
        }
        Ok(expiry)
    }

    async fn subscribe(
        &mut self,
        id: String,
        request: Request,
        settings: &WsSettings,
        draining: bool,
    ) -> Result<(), Closing> {
        let Some(auth) = self.auth.clone() else {
            return Err(Closing::new(4401, "Unauthorized"));
        };
        if self.open.contains_key(&id) {
            return Err(Closing::new(
                4409,
                format!("Subscriber for {id} already exists"),
            ));
        }
        let refusal = if draining {
            Some(("SERVER_DRAINING", "the server is shutting down".to_owned()))
        } else if self.open.len() >= settings.max_subscriptions {
            Some((
                "RATE_LIMITED",
                format!(
                    "at most {} subscriptions may be open on one connection",
                    settings.max_subscriptions
                ),
            ))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            let error = json!({ "message": message, "extensions": { "code": code } });
            let sent = self
                .send(json!({ "type": "error", "id": id, "payload": [error] }))
                .await;
            return if sent { Ok(()) } else { Err(Closing::Lost) };
        }
        // Identical subscriptions of the same caller share one execution (ADR 0024).
        let identity = match &auth {
            Auth::Anonymous => Some("anonymous".to_owned()),
            Auth::User(caller) => Some(format!(
                "{:?} {:?} {}",
                caller.user_id, caller.role, caller.expires_at
            )),
            Auth::Invalid(_) => None,
        };
        let shape = shared::Shape::of(
            &request.query,
            request.operation_name.as_deref(),
            &request.variables,
        );
        let key = shared::key(identity.as_deref(), &request, shape);
        let schema = self.state.schema.clone();
        let max_response_bytes = self.state.max_response_bytes;
        let Request {
            query,
            operation_name,
            variables,
            extensions,
            ..
        } = request;
        let sleep_after = settings.sleep_after.filter(|_| shape.may_sleep);
        // Kept as their JSON text, a tenth of their parsed size, and parsed again for
        // each execution (which parses its document anyway).
        let variables: Box<str> = serde_json::to_string(&variables)
            .unwrap_or_else(|_| "{}".to_owned())
            .into();
        let requests: shared::Requests = Arc::new(move || {
            let variables = serde_json::from_str(&variables).unwrap_or_default();
            let mut request = Request::new(query.clone())
                .variables(variables)
                .data(auth.clone());
            request.operation_name.clone_from(&operation_name);
            request.extensions = extensions.clone();
            request
        });
        let metrics = self.state.metrics.clone();
        let start: shared::Start = Arc::new(move || match sleep_after {
            Some(after) => shared::frames(
                shared::sleeping(schema.clone(), requests.clone(), after, metrics.clone()),
                max_response_bytes,
            ),
            None => shared::frames(schema.execute_stream(requests()), max_response_bytes),
        });
        let frames = self.state.sharing.follow(key, start);
        let (frames, handle) = abortable(operation(frames, self.state.metrics.clone()));
        let tag: Arc<str> = Arc::from(id.as_str());
        self.subscriptions
            .push(Box::pin(frames.map(move |frame| (tag.clone(), frame))));
        self.open.insert(id, handle);
        Ok(())
    }
}
