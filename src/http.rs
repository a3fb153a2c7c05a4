//! HTTP transport: GraphQL over POST and GET on `/graphql`, GraphiQL on `/`, health and
//! readiness probes. Everything a client sends that is malformed gets a GraphQL-shaped
//! JSON error with `extensions.code`, never a plain-text body.

pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse};
use async_graphql_axum::GraphQLResponse;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::timeout::TimeoutLayer;
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
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
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

/// A transport-level error in GraphQL shape.
fn request_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message.into(), "extensions": { "code": "BAD_USER_INPUT" } }]
    });
    (status, axum::Json(body)).into_response()
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn execute(state: &HttpState, headers: &HeaderMap, request: BatchRequest) -> Response {
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
    GraphQLResponse::from(response).into_response()
}

async fn graphql_post(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return request_error(rejection.status(), rejection.body_text());
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
        BatchRequest::Single(single) if wants_multipart => {
            return multipart(&state, &headers, single);
        }
        BatchRequest::Single(single) if operation_is(&single, OperationType::Subscription) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "subscriptions are served over a WebSocket (graphql-transport-ws) or with 'Accept: multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"'",
            );
        }
        other => other,
    };
    execute(&state, &headers, request).await
}

/// Subscriptions over HTTP for clients without WebSockets (Apollo's multipart subscription
/// protocol): each event is one `multipart/mixed` part `{"payload": <response>}`, with a
/// `{}` heartbeat part while idle, until the subscription ends.
fn multipart(state: &HttpState, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    const PART: &str = "--graphql\r\ncontent-type: application/json\r\n\r\n";
    let auth = state.verifier.authenticate(authorization(headers));
    let responses = state.schema.execute_stream(request.data(auth));
    let body = async_stream::stream! {
        use futures_util::StreamExt as _;
        let mut responses = std::pin::pin!(responses);
        let mut heartbeat = tokio::time::interval(MULTIPART_HEARTBEAT);
        heartbeat.tick().await;
        loop {
            let part = tokio::select! {
                response = responses.next() => match response {
                    Some(mut response) => {
                        response.errors.iter_mut().for_each(ensure_code);
                        // Typed, so the fields keep the selection's order.
                        #[derive(serde::Serialize)]
                        struct Part<'a> {
                            payload: &'a async_graphql::Response,
                        }
                        serde_json::to_string(&Part { payload: &response })
                            .unwrap_or_else(|_| "{}".to_owned())
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
    if operation_is(&request, OperationType::Mutation) {
        return request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations are only accepted over POST",
        );
    }
    execute(&state, &headers, BatchRequest::Single(request)).await
}

/// Whether the operation the request runs is of type `ty` (false when it does not parse:
/// execution reports that).
fn operation_is(request: &async_graphql::Request, ty: OperationType) -> bool {
    use async_graphql::parser::types::DocumentOperations;
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    match &doc.operations {
        DocumentOperations::Single(op) => op.node.ty == ty,
        DocumentOperations::Multiple(ops) => match &request.operation_name {
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
