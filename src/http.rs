//! HTTP transport: GraphQL over POST and GET on `/graphql`, GraphiQL on `/`, health and
//! readiness probes. Everything a client sends that is malformed gets a GraphQL-shaped
//! JSON error with `extensions.code`, never a plain-text body.

pub mod serve;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::trace::TraceLayer;

use crate::auth::TokenVerifier;
use crate::graphql::AppSchema;
use crate::graphql::error::ensure_code;
use crate::read::relay::RelayHealth;

/// How often an idle multipart subscription sends a heartbeat part.
const MULTIPART_HEARTBEAT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct HttpState {
    pub schema: AppSchema,
    pub verifier: TokenVerifier,
    pub db: sea_orm::DatabaseConnection,
    pub relay_health: Arc<RelayHealth>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Open WebSocket connections.
    pub connections: Arc<ws::Connections>,
    pub ws: ws::WsSettings,
    /// True once the server drains.
    pub drain: tokio::sync::watch::Receiver<bool>,
    /// Largest accepted request body or WebSocket message, in bytes.
    pub max_message_bytes: usize,
    /// Largest response (a whole batch, a WebSocket message or a multipart part), in bytes.
    pub max_response_bytes: usize,
    /// Most operations in one batch request.
    pub max_batch_operations: usize,
    /// Most complexity the operations of one batch may add up to.
    pub max_batch_complexity: usize,
    /// Limits on one document (checked here too, before the transport parses one to see
    /// its operation's type).
    pub document_limits: crate::graphql::limits::DocumentLimits,
    /// Each projection's status (a failed one makes the service not ready).
    pub projections: Arc<crate::read::status::Statuses>,
}

/// The application's routes and middleware.
pub fn router(state: HttpState, request_timeout: Duration) -> Router {
    let max_body_bytes = state.max_message_bytes;
    Router::new()
        .route("/", get(graphiql))
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // axum adds the `Allow` header to the 405 itself. Neither fallback reads the
        // request's body.
        .method_not_allowed_fallback(|| async {
            closing(error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "BAD_USER_INPUT",
                "this method is not allowed here (the Allow header lists those that are)",
            ))
        })
        .fallback(|| async {
            closing(error_response(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "nothing is served at this path: GraphQL is at /graphql",
            ))
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(move |request, next| {
            deadline(request_timeout, request, next)
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Bounds the time to produce a response (reading the body included) and answers a
/// late one with a GraphQL-shaped `408`. A streamed body (a multipart subscription)
/// runs on after its head, unbounded by design.
async fn deadline(
    timeout: Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => closing(error_response(
            StatusCode::REQUEST_TIMEOUT,
            "BAD_USER_INPUT",
            &format!(
                "the request took longer than {} s (a slow body, or too much work for one request)",
                timeout.as_secs()
            ),
        )),
    }
}

/// Marks a response sent before the request's body was read to its end: hyper closes
/// such a connection after the response, and a client must not reuse it for its next
/// request (without the header it would, and that request would fail).
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .title("ordergraph")
            .finish(),
    )
}

/// The body of every transport-level error: GraphQL-shaped JSON with `extensions.code`
/// (the one producer of such bodies outside async-graphql's own responses).
pub fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    })
    .to_string()
}

/// A transport-level error response.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        error_body(code, message),
    )
        .into_response()
}

/// A malformed request.
fn request_error(status: StatusCode, message: impl Into<String>) -> Response {
    error_response(status, "BAD_USER_INPUT", &message.into())
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn execute(state: &HttpState, headers: &HeaderMap, request: BatchRequest) -> Response {
    let request = match request {
        BatchRequest::Batch(requests) if requests.len() > state.max_batch_operations => {
            return request_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "a batch may hold at most {} operations, this one has {}",
                    state.max_batch_operations,
                    requests.len()
                ),
            );
        }
        BatchRequest::Batch(requests) => {
            // One budget for the whole batch: the per-operation complexity limit alone
            // let one request of many operations do unbounded work.
            let budget = crate::graphql::limits::BatchBudget::new(state.max_batch_complexity);
            BatchRequest::Batch(
                requests
                    .into_iter()
                    .map(|r| r.data(budget.clone()))
                    .collect(),
            )
        }
        single => single,
    };
    let auth = state.verifier.authenticate(authorization(headers));
    let request = request.data(auth);
    let mut response = state.schema.execute_batch(request).await;
    match &mut response {
        BatchResponse::Single(r) => r.errors.iter_mut().for_each(ensure_code),
        BatchResponse::Batch(rs) => rs
            .iter_mut()
            .flat_map(|r| r.errors.iter_mut())
            .for_each(ensure_code),
    }
    graphql_response(&response, state.max_response_bytes)
}

/// The HTTP response of a GraphQL result, serialized within `max_bytes`: an operation
/// whose result does not fit in what is left is replaced by an error saying so, before
/// more than `max_bytes` are ever buffered.
fn graphql_response(response: &BatchResponse, max_bytes: usize) -> Response {
    let mut budget = max_bytes;
    let body = match response {
        BatchResponse::Single(r) => bounded_json(r, &mut budget),
        BatchResponse::Batch(rs) => {
            let mut body = String::from("[");
            for (i, r) in rs.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&bounded_json(r, &mut budget));
            }
            body.push(']');
            body
        }
    };
    let mut http = (
        [(header::CONTENT_TYPE, "application/graphql-response+json")],
        body,
    )
        .into_response();
    if response.is_ok()
        && let Some(value) = response.cache_control().value()
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        http.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    http
}

/// `response` as JSON if it fits in `budget` bytes (then taken from the budget), else a
/// GraphQL error saying it is too large.
pub(crate) fn bounded_json(response: &async_graphql::Response, budget: &mut usize) -> String {
    let mut out = Bounded {
        bytes: Vec::new(),
        max: *budget,
    };
    match serde_json::to_writer(&mut out, response) {
        Ok(()) => {
            *budget -= out.bytes.len();
            String::from_utf8(out.bytes).unwrap_or_default()
        }
        Err(_) => serde_json::json!({
            "data": null,
            "errors": [{
                "message": format!(
                    "the result is larger than the {} bytes a response may have: select fewer fields or a smaller page",
                    *budget
                ),
                "extensions": { "code": "BAD_USER_INPUT" }
            }]
        })
        .to_string(),
    }
}

/// A buffer that refuses to grow past `max` bytes.
struct Bounded {
    bytes: Vec<u8>,
    max: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.max {
            return Err(std::io::Error::other("response too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn graphql_post(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return closing(request_error(rejection.status(), rejection.body_text()));
        }
    };
    let request: BatchRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                format!("the request body is not a GraphQL request in JSON: {e}"),
            );
        }
    };
    let wants_multipart = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(async_graphql::http::is_accept_multipart_mixed);
    let request = match request {
        BatchRequest::Single(single) => {
            let mut single = match prepared(&state, single).await {
                Ok(single) => single,
                Err(response) => return response,
            };
            if wants_multipart {
                return multipart(&state, &headers, single);
            }
            if operation_is(&mut single, OperationType::Subscription) {
                return request_error(
                    StatusCode::BAD_REQUEST,
                    "subscriptions are served over a WebSocket (graphql-transport-ws) or with 'Accept: multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"'",
                );
            }
            BatchRequest::Single(single)
        }
        batch => batch,
    };
    execute(&state, &headers, request).await
}

/// The request with its document parsed within the limits (see `graphql/limits.rs`), or
/// the GraphQL error response that refuses it.
async fn prepared(
    state: &HttpState,
    request: async_graphql::Request,
) -> Result<async_graphql::Request, Response> {
    crate::graphql::limits::prepare(request, &state.document_limits)
        .await
        .map_err(|mut error| {
            ensure_code(&mut error);
            let response = async_graphql::Response::from_errors(vec![error]);
            graphql_response(&BatchResponse::Single(response), state.max_response_bytes)
        })
}

/// Subscriptions over HTTP for clients without WebSockets (Apollo's multipart subscription
/// protocol): each event is one `multipart/mixed` part `{"payload": <response>}`, with a
/// `{}` heartbeat part while idle, until the subscription ends.
///
/// A multipart subscription holds a connection as long as a WebSocket does, so it counts
/// against the same limits: a signed-in user's connection limit, or the cap on anonymous
/// connections.
fn multipart(state: &HttpState, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    const PART: &str = "--graphql\r\ncontent-type: application/json\r\n\r\n";
    let auth = state.verifier.authenticate(authorization(headers));
    let slot = match state.connections.claim_for(&auth, &state.ws) {
        Ok(slot) => slot,
        Err(refusal) => {
            let (status, code) = match refusal {
                ws::Refusal::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
                _ => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            };
            return error_response(status, code, &refusal.to_string());
        }
    };
    let max_part_bytes = state.max_response_bytes;
    let responses = state.schema.execute_stream(request.data(auth));
    let body = async_stream::stream! {
        use futures_util::StreamExt as _;
        // The slot is held for as long as the subscription streams.
        let _slot = slot;
        let mut responses = std::pin::pin!(responses);
        let mut heartbeat = tokio::time::interval(MULTIPART_HEARTBEAT);
        heartbeat.tick().await;
        loop {
            let part = tokio::select! {
                response = responses.next() => match response {
                    Some(mut response) => {
                        response.errors.iter_mut().for_each(ensure_code);
                        let mut budget = max_part_bytes;
                        format!("{{\"payload\":{}}}", bounded_json(&response, &mut budget))
                    }
                    None => break,
                },
                _ = heartbeat.tick() => "{}".to_owned(),
            };
            yield Ok::<_, std::convert::Infallible>(format!("{PART}{part}\r\n"));
        }
        yield Ok("--graphql--\r\n".to_owned());
    };
    (
        [(
            header::CONTENT_TYPE,
            "multipart/mixed; boundary=\"graphql\"; subscriptionSpec=\"1.0\"",
        )],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// A WebSocket upgrade (subscriptions), or a query: a GET must not change anything
/// (caches and prefetchers replay GETs).
async fn graphql_get(
    State(state): State<HttpState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Ok(upgrade) = upgrade {
        return ws::upgrade(state, upgrade, &headers);
    }
    let request = match async_graphql::http::parse_query_string(query.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                format!("the query string is not a GraphQL request: {e}"),
            );
        }
    };
    let mut request = match prepared(&state, request).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if operation_is(&mut request, OperationType::Mutation) {
        let mut response = request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations are only accepted over POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, &headers, BatchRequest::Single(request)).await
}

/// Whether the operation the request runs is of type `ty`, from its document as parsed
/// by `prepared` (false when it does not parse: execution reports that).
fn operation_is(request: &mut async_graphql::Request, ty: OperationType) -> bool {
    use async_graphql::parser::types::DocumentOperations;
    let operation_name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return false;
    };
    match &doc.operations {
        DocumentOperations::Single(op) => op.node.ty == ty,
        DocumentOperations::Multiple(ops) => match &operation_name {
            Some(name) => ops.get(name.as_str()).is_some_and(|op| op.node.ty == ty),
            None => ops.values().any(|op| op.node.ty == ty),
        },
    }
}

/// Prometheus text exposition.
async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Ready when the database answers, the relay is ticking and no projection has failed.
async fn readyz(State(state): State<HttpState>) -> Response {
    let db_ok = state.db.ping().await.is_ok();
    let relay_ok = state.relay_health.is_healthy(Duration::from_secs(30));
    let failed: Vec<serde_json::Value> = state
        .projections
        .failures()
        .into_iter()
        .map(|(name, position, error)| {
            serde_json::json!({ "name": name, "position": position.to_string(), "error": error })
        })
        .collect();
    let status = if db_ok && relay_ok && failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({
            "database": db_ok,
            "relay": relay_ok,
            "failedProjections": failed,
        })),
    )
        .into_response()
}
