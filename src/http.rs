//! HTTP transport: GraphQL over POST and GET on `/graphql`, GraphiQL on `/`, health and
//! readiness probes. Everything a client sends that is malformed gets a GraphQL-shaped
//! JSON error with `extensions.code`, never a plain-text body.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::GraphiQLSource;
use async_graphql::{BatchRequest, BatchResponse};
use async_graphql_axum::GraphQLResponse;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
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

#[derive(Clone)]
pub struct HttpState {
    pub schema: AppSchema,
    pub verifier: TokenVerifier,
    pub db: sea_orm::DatabaseConnection,
    pub relay_health: Arc<RelayHealth>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The application's routes and middleware.
pub fn router(state: HttpState, max_body_bytes: usize, request_timeout: Duration) -> Router {
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
    execute(&state, &headers, request).await
}

/// Queries only: a GET must not change anything (caches and prefetchers replay GETs).
async fn graphql_get(
    State(state): State<HttpState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let request = match async_graphql::http::parse_query_string(query.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                format!("the query string is not a GraphQL request: {e}"),
            );
        }
    };
    if is_mutation(&request) {
        return request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations are only accepted over POST",
        );
    }
    execute(&state, &headers, BatchRequest::Single(request)).await
}

fn is_mutation(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let is_mut = |t: OperationType| t == OperationType::Mutation;
    match &doc.operations {
        DocumentOperations::Single(op) => is_mut(op.node.ty),
        DocumentOperations::Multiple(ops) => match &request.operation_name {
            Some(name) => ops.get(name.as_str()).is_some_and(|op| is_mut(op.node.ty)),
            None => ops.values().any(|op| is_mut(op.node.ty)),
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

/// Ready when the database answers and the relay is ticking.
async fn readyz(State(state): State<HttpState>) -> Response {
    let db_ok = state.db.ping().await.is_ok();
    let relay_ok = state.relay_health.is_healthy(Duration::from_secs(30));
    let status = if db_ok && relay_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({ "database": db_ok, "relay": relay_ok })),
    )
        .into_response()
}
