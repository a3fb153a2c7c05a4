//! HTTP transport: GraphQL over POST and GET on `/graphql`, GraphiQL on `/`, health and
//! readiness probes. Everything a client sends that is malformed gets a GraphQL-shaped
//! JSON error with `extensions.code`, never a plain-text body.
//!
//! GraphQL over HTTP follows the GraphQL-over-HTTP draft: the response's media type is
//! the one the client's `Accept` asks for (`media.rs`), and under
//! `application/graphql-response+json` a request error is a `400` (ADR 0005).

pub mod assets;
pub mod console;
pub mod cors;
pub mod graphiql;
pub mod media;
pub mod serve;
pub mod shared;
pub mod sse;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse, ErrorExtensions as _, ServerError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::trace::TraceLayer;

use crate::auth::TokenVerifier;
use crate::error::AppError;
use crate::graphql::AppSchema;
use crate::graphql::error::ensure_code;
use crate::read::relay::RelayHealth;
use media::ResponseMedia;

#[derive(Clone)]
pub struct HttpState {
    pub schema: AppSchema,
    pub verifier: TokenVerifier,
    pub db: sea_orm::DatabaseConnection,
    pub relay_health: Arc<RelayHealth>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Open WebSocket connections.
    pub connections: Arc<ws::Connections>,
    /// The executions identical WebSocket subscriptions share.
    pub sharing: Arc<shared::Sharing>,
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
    /// Persisted queries (resolved here too, before the transport parses a document).
    pub persisted: crate::graphql::persisted::PersistedQueries,
    /// Each projection's status (a failed one makes the service not ready).
    pub projections: Arc<crate::read::status::Statuses>,
    /// The background tasks that are down (one makes the service not ready).
    pub tasks: Arc<crate::supervise::Tasks>,
    /// The web origins besides the API's own that may call it (CORS, WebSockets).
    pub origins: cors::AllowedOrigins,
    /// The publisher of the log to the broker, when one is configured.
    pub publisher: Option<Arc<crate::broker::publisher::PublisherStatus>>,
}

/// The application's routes and middleware.
pub fn router(state: HttpState, request_timeout: Duration) -> Router {
    let max_body_bytes = state.max_message_bytes;
    let cors = state.origins.layer();
    Router::new()
        .merge(graphiql::routes())
        .merge(console::routes())
        .merge(assets::routes())
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // axum adds the `Allow` header to the 405 itself. Neither fallback reads the
        // request's body.
        .method_not_allowed_fallback(|| async {
            closing(error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                bad_request(
                    "this method is not allowed here (the Allow header lists those that are)",
                ),
            ))
        })
        .fallback(|| async {
            closing(error_response(
                StatusCode::NOT_FOUND,
                AppError::NotFound("nothing is served at this path: GraphQL is at /graphql".into()),
            ))
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(move |request, next| {
            deadline(request_timeout, request, next)
        }))
        // Latency by route: inside the router, where the matched route is known.
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track_http,
        ))
        // Outside the deadline and the routes: a preflight is answered here, and every
        // response, errors included, carries the CORS headers its origin is due.
        .layer(cors)
        .layer(compression())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// gzip for a client that asks for it (`Accept-Encoding`, RFC 9110 §12.5.3): GraphQL
/// responses are repetitive JSON and shrink several times over. Not for responses under
/// 32 bytes, and never for a stream whose parts must reach the client as they are
/// written: a compressor holds bytes back until its buffer fills, which would delay each
/// multipart part (and each server-sent event) indefinitely.
fn compression()
-> tower_http::compression::CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{NotForContentType, Predicate as _};
    tower_http::compression::CompressionLayer::new().compress_when(
        tower_http::compression::DefaultPredicate::new()
            .and(NotForContentType::const_new("multipart/mixed")),
    )
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
            bad_request(format!(
                "the request took longer than {} s (a slow body, or too much work for one request)",
                timeout.as_secs()
            )),
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

/// The body of every transport-level error: GraphQL-shaped JSON with `extensions.code`.
pub fn error_body(error: &AppError) -> String {
    let mut budget = usize::MAX;
    errors_json(&[server_error(error)], &mut budget)
}

/// `error` as a GraphQL error: its message and extensions as `AppError` makes them (the
/// one mapping of errors to codes, `graphql/error.rs`), at no location.
fn server_error(error: &AppError) -> ServerError {
    let error = error.extend();
    let mut out = ServerError::new(error.message, None);
    out.extensions = error.extensions;
    out
}

/// `{"errors": [...]}`, with no `data` entry: the body of every error raised before
/// execution, the transport's and GraphQL's request errors alike (the one producer of
/// such bodies). The GraphQL spec (§7.1.2 "Data") says `data` is absent, not null, when
/// an error was raised before execution began; a client tells the two apart by that.
fn errors_json(errors: &[ServerError], budget: &mut usize) -> String {
    #[derive(serde::Serialize)]
    struct Errors<'a> {
        errors: &'a [ServerError],
    }
    bounded(&Errors { errors }, budget).unwrap_or_else(|| {
        // Thousands of validation errors: the first one says enough.
        let first = &errors[..errors.len().min(1)];
        serde_json::to_string(&Errors { errors: first }).unwrap_or_default()
    })
}

/// A transport-level error response.
fn error_response(status: StatusCode, error: AppError) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        error_body(&error),
    )
        .into_response()
}

/// A malformed request's error: `BAD_USER_INPUT`.
fn bad_request(message: impl Into<String>) -> AppError {
    AppError::BadUserInput(message.into())
}

/// A GraphQL request refused before it was executed (malformed, or not allowed with this
/// method), in the response's media type.
fn request_error(media: ResponseMedia, status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, media.content_type())],
        error_body(&bad_request(message)),
    )
        .into_response()
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn execute(
    state: &HttpState,
    headers: &HeaderMap,
    request: BatchRequest,
    media: ResponseMedia,
) -> Response {
    let request = match request {
        BatchRequest::Batch(requests) if requests.len() > state.max_batch_operations => {
            return request_error(
                media,
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
    let run = state.schema.execute_batch(request);
    // The caller's trace (W3C `traceparent`), current while the request runs: the
    // operation's span joins it (`graphql/traces.rs`).
    let mut response = if headers.contains_key("traceparent") && crate::graphql::traces::enabled() {
        use opentelemetry::context::FutureExt as _;
        run.with_context(crate::telemetry::remote_parent(headers))
            .await
    } else {
        run.await
    };
    match &mut response {
        BatchResponse::Single(r) => r.errors.iter_mut().for_each(ensure_code),
        BatchResponse::Batch(rs) => rs
            .iter_mut()
            .flat_map(|r| r.errors.iter_mut())
            .for_each(ensure_code),
    }
    graphql_response(&response, state.max_response_bytes, media)
}

/// Whether `response` is a request error: one raised before execution began (a syntax,
/// validation or variable coercion error, an unknown operation name, a limit), which has
/// no data. A field error carries the `path` of its field (GraphQL spec §7.1.2 "Errors"),
/// even when it nulls the whole `data`; an error before execution has none.
fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// The HTTP response of a GraphQL result, serialized within `max_bytes`: an operation
/// whose result does not fit in what is left is replaced by an error saying so, before
/// more than `max_bytes` are ever buffered.
///
/// The status is `200`, except for a single request error under
/// `application/graphql-response+json`: `400` (GraphQL-over-HTTP draft,
/// §"application/graphql-response+json"). A batch is not in the spec; it is `200` with
/// each operation's own result, so that one bad operation does not hide the others.
fn graphql_response(response: &BatchResponse, max_bytes: usize, media: ResponseMedia) -> Response {
    let mut budget = max_bytes;
    let mut status = StatusCode::OK;
    let body = match response {
        BatchResponse::Single(r) => {
            if media == ResponseMedia::GraphqlResponseJson && is_request_error(r) {
                status = StatusCode::BAD_REQUEST;
            }
            bounded_json(r, &mut budget)
        }
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
    let mut http = (status, [(header::CONTENT_TYPE, media.content_type())], body).into_response();
    if response.is_ok()
        && let Some(value) = response.cache_control().value()
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        http.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    http
}

/// `response` as JSON if it fits in `budget` bytes (then taken from the budget), else a
/// GraphQL error saying it is too large. A request error has no `data` entry.
pub(crate) fn bounded_json(response: &async_graphql::Response, budget: &mut usize) -> String {
    if is_request_error(response) {
        return errors_json(&response.errors, budget);
    }
    match bounded(response, budget) {
        Some(json) => json,
        None => {
            /// An error during execution: `data` is there, and null.
            #[derive(serde::Serialize)]
            struct TooLarge {
                data: (),
                errors: [ServerError; 1],
            }
            let error = bad_request(format!(
                "the result is larger than the {} bytes a response may have: select fewer fields or a smaller page",
                *budget
            ));
            serde_json::to_string(&TooLarge {
                data: (),
                errors: [server_error(&error)],
            })
            .unwrap_or_default()
        }
    }
}

/// `value` as JSON if it fits in `budget` bytes (then taken from the budget).
fn bounded(value: &impl serde::Serialize, budget: &mut usize) -> Option<String> {
    let mut out = Bounded {
        bytes: Vec::new(),
        max: *budget,
    };
    serde_json::to_writer(&mut out, value).ok()?;
    *budget -= out.bytes.len();
    String::from_utf8(out.bytes).ok()
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
            return closing(error_response(
                rejection.status(),
                bad_request(rejection.body_text()),
            ));
        }
    };
    if !media::is_json_request(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            bad_request("a GraphQL request is a JSON body with 'Content-Type: application/json'"),
        );
    }
    let wants_multipart = media::accepts_multipart(&headers);
    let negotiated = media::response_media(&headers);
    // graphql-sse's client asks for `text/event-stream` alone; urql, which also accepts
    // multipart, gets multipart.
    let wants_event_stream =
        negotiated.is_none() && !wants_multipart && media::accepts_event_stream(&headers);
    let media = match negotiated {
        Some(media) => media,
        None if wants_multipart || wants_event_stream => ResponseMedia::Json,
        None => return not_acceptable(),
    };
    let request: BatchRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return request_error(
                media,
                StatusCode::BAD_REQUEST,
                format!("the request body is not a GraphQL request in JSON: {e}"),
            );
        }
    };
    let has_query = match &request {
        BatchRequest::Single(r) => has_query(r),
        BatchRequest::Batch(rs) => rs.iter().all(has_query),
    };
    if !has_query {
        return request_error(
            media,
            StatusCode::BAD_REQUEST,
            "the request has no query: send the GraphQL document as the string 'query'",
        );
    }
    let request = match request {
        BatchRequest::Single(single) if wants_event_stream => {
            let single = resolved(&state, single).await;
            return sse::stream(&state, &headers, single, sse::Framing::EventStream).await;
        }
        BatchRequest::Single(single) => {
            let mut single = match prepared(&state, single, media).await {
                Ok(single) => single,
                Err(response) => return response,
            };
            let subscription = operation_is(&mut single, OperationType::Subscription);
            // Multipart for a subscription, or for a client that accepts nothing else. urql
            // offers multipart with every query (for @defer, whose incremental format is
            // not this one), and gets JSON for them.
            if wants_multipart && (subscription || negotiated.is_none()) {
                return sse::stream(&state, &headers, Ok(single), sse::Framing::Multipart).await;
            }
            if subscription {
                return request_error(
                    media,
                    StatusCode::BAD_REQUEST,
                    "subscriptions are served over a WebSocket (graphql-transport-ws), with 'Accept: multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"' or with 'Accept: text/event-stream'",
                );
            }
            BatchRequest::Single(single)
        }
        batch => batch,
    };
    execute(&state, &headers, request, media).await
}

/// Whether a request carries a document: `query` is required (GraphQL-over-HTTP draft,
/// §"Request Parameters"), and a request without one is malformed, not a document that
/// fails to parse; unless it names a persisted query by its hash (`graphql/persisted.rs`).
fn has_query(request: &async_graphql::Request) -> bool {
    !request.query.is_empty() || request.extensions.contains_key("persistedQuery")
}

/// `406`: the client accepts neither response media type (GraphQL-over-HTTP draft,
/// §"Accept").
fn not_acceptable() -> Response {
    error_response(
        StatusCode::NOT_ACCEPTABLE,
        bad_request(
            "GraphQL responses are 'application/graphql-response+json' or 'application/json', and the Accept header allows neither",
        ),
    )
}

/// The request with its persisted query resolved (`graphql/persisted.rs`) and its
/// document parsed within the limits (`graphql/limits.rs`), or the GraphQL error
/// response that refuses it.
async fn prepared(
    state: &HttpState,
    request: async_graphql::Request,
    media: ResponseMedia,
) -> Result<async_graphql::Request, Response> {
    resolved(state, request).await.map_err(|mut error| {
        ensure_code(&mut error);
        // Refused before the schema saw it: counted here (the schema counts the rest).
        state
            .metrics
            .graphql_error(crate::graphql::error::code_of(&error));
        let response = async_graphql::Response::from_errors(vec![error]);
        graphql_response(
            &BatchResponse::Single(response),
            state.max_response_bytes,
            media,
        )
    })
}

/// The request with its persisted query resolved (`graphql/persisted.rs`) and its
/// document parsed within the limits (`graphql/limits.rs`), or the error that refuses it.
async fn resolved(
    state: &HttpState,
    request: async_graphql::Request,
) -> async_graphql::ServerResult<async_graphql::Request> {
    match state.persisted.resolve(request) {
        Ok((request, _)) => crate::graphql::limits::prepare(request, &state.document_limits).await,
        Err(error) => Err(error),
    }
}

/// A WebSocket upgrade (subscriptions), a query, or, for a client that accepts only
/// `text/event-stream` (a browser's `EventSource`), a query or subscription over
/// Server-Sent Events: a GET must not change anything (caches and prefetchers replay
/// GETs).
async fn graphql_get(
    State(state): State<HttpState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    uri: Uri,
) -> Response {
    if let Ok(upgrade) = upgrade {
        if !state.origins.allows_websocket(&headers) {
            return error_response(
                StatusCode::FORBIDDEN,
                AppError::Forbidden("WebSockets from this origin are not allowed (ORDERGRAPH_CORS_ORIGINS lists the origins that are)".into()),
            );
        }
        return ws::upgrade(state, upgrade, &headers);
    }
    let negotiated = media::response_media(&headers);
    if negotiated.is_none() && media::accepts_event_stream(&headers) {
        return event_stream_get(&state, &headers, &uri).await;
    }
    let Some(media) = negotiated else {
        return not_acceptable();
    };
    let request = match get_request(&uri) {
        Ok(request) => request,
        Err(message) => return request_error(media, StatusCode::BAD_REQUEST, message),
    };
    let mut request = match prepared(&state, request, media).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if operation_is(&mut request, OperationType::Mutation) {
        return mutation_over_get(media);
    }
    execute(&state, &headers, BatchRequest::Single(request), media).await
}

/// GraphQL-over-HTTP draft, §"GET": a mutation over GET is a 405.
fn mutation_over_get(media: ResponseMedia) -> Response {
    let mut response = request_error(
        media,
        StatusCode::METHOD_NOT_ALLOWED,
        "mutations are only accepted over POST",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// GraphQL over Server-Sent Events on a GET (graphql-sse's distinct connections mode
/// allows the request's parameters in the URL, as GraphQL over HTTP's GET has them):
/// what a browser's `EventSource`, which can only GET, subscribes with. A query or a
/// subscription; a mutation is a `405`, as over any GET. A query string that is not a
/// GraphQL request is a `400`, as over POST a body that is not one; a document that is
/// refused is a `next` event with its error, as over POST.
async fn event_stream_get(state: &HttpState, headers: &HeaderMap, uri: &Uri) -> Response {
    let request = match get_request(uri) {
        Ok(request) => request,
        Err(message) => {
            return request_error(ResponseMedia::Json, StatusCode::BAD_REQUEST, message);
        }
    };
    let mut request = resolved(state, request).await;
    if let Ok(request) = &mut request
        && operation_is(request, OperationType::Mutation)
    {
        return mutation_over_get(ResponseMedia::Json);
    }
    sse::stream(state, headers, request, sse::Framing::EventStream).await
}

/// The GraphQL request in a GET's query string (GraphQL-over-HTTP draft, §"GET"):
/// `query`, `operationName`, and `variables` and `extensions` as JSON-encoded maps.
/// (async-graphql's `parse_query_string` reads `operation_name`, not `operationName`.)
fn get_request(uri: &Uri) -> Result<async_graphql::Request, String> {
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(default)]
        query: String,
        #[serde(rename = "operationName")]
        operation_name: Option<String>,
        variables: Option<String>,
        extensions: Option<String>,
    }
    let Query(params) = Query::<Params>::try_from_uri(uri).map_err(|e| {
        format!(
            "the query string is not a GraphQL request: {}",
            e.body_text()
        )
    })?;
    let mut request = async_graphql::Request::new(params.query);
    request.operation_name = params.operation_name;
    if let Some(variables) = params.variables {
        request.variables = serde_json::from_str(&variables)
            .map_err(|e| format!("'variables' is not a JSON object: {e}"))?;
    }
    if let Some(extensions) = params.extensions {
        request.extensions = serde_json::from_str(&extensions)
            .map_err(|e| format!("'extensions' is not a JSON object: {e}"))?;
    }
    if !has_query(&request) {
        return Err(
            "the request has no query: send the GraphQL document as the parameter 'query'"
                .to_owned(),
        );
    }
    Ok(request)
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
    // The failure gauges follow the projections' statuses, the one record of failures
    // (a rebuild clears one, a restart reloads it).
    for name in state.projections.names() {
        state
            .metrics
            .projection_failed(name, state.projections.is_failed(name));
    }
    state.metrics.scrape(&state.db, &state.projections).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The readiness report. Unauthenticated, so it names what failed and where, never an
/// error's text (a database's error may say more than a stranger should read; admins see
/// it in the `projections` query, operators in the log).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Readiness {
    database: bool,
    relay: bool,
    failed_projections: Vec<FailedProjection>,
    /// Background tasks that died and are not up again yet.
    failed_tasks: Vec<FailedTask>,
    /// With a broker: whether this replica's publisher stopped because the event stream
    /// and the log disagree (its log line says why). Absent without a broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    publisher_diverged: Option<bool>,
}

#[derive(serde::Serialize)]
struct FailedProjection {
    name: &'static str,
    /// The position of the event it stopped at (a `Position`: a string).
    position: String,
}

#[derive(serde::Serialize)]
struct FailedTask {
    name: &'static str,
    /// Runs that died since it was last up.
    deaths: u32,
}

/// Ready when the database answers, the relay is ticking, no projection has failed,
/// every background task is up, and the publisher (if any) has not stopped on a mismatch.
async fn readyz(State(state): State<HttpState>) -> Response {
    let readiness = Readiness {
        database: state.db.ping().await.is_ok(),
        relay: state.relay_health.is_healthy(Duration::from_secs(30)),
        failed_projections: state
            .projections
            .failures()
            .into_iter()
            .map(|(name, position, _)| FailedProjection {
                name,
                position: position.to_string(),
            })
            .collect(),
        failed_tasks: state
            .tasks
            .down()
            .into_iter()
            .map(|down| FailedTask {
                name: down.name,
                deaths: down.deaths,
            })
            .collect(),
        publisher_diverged: state.publisher.as_ref().map(|p| p.diverged().is_some()),
    };
    let ready = readiness.database
        && readiness.relay
        && readiness.failed_projections.is_empty()
        && readiness.failed_tasks.is_empty()
        && readiness.publisher_diverged != Some(true);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(readiness)).into_response()
}
