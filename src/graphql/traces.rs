//! Trace spans of GraphQL operations (ADR 0014), exported by `telemetry.rs` when an OTLP
//! endpoint is configured, and never built otherwise: [`enabled`] is false, the request
//! pipeline (`pipeline.rs`) has no [`OperationSpan`], and the call sites of [`command`]
//! and [`read_your_writes`] are disabled.
//!
//! One span per query or mutation, over any transport, named as OpenTelemetry's semantic
//! conventions for GraphQL name it (`mutation PlaceOrder`; `mutation` for an anonymous
//! one; `GraphQL Operation` when the document did not parse), with
//! `graphql.operation.type` and `graphql.operation.name`. Over HTTP it covers parsing and
//! validation too, and joins the trace of the request's W3C `traceparent`, which the
//! transport makes the current OpenTelemetry context while the request runs. The command
//! a mutation ran is its `ordergraph.command` (the operation name of
//! `ordergraph_commands_total`), and its read-your-writes wait a child span with the
//! projection, the position waited for and the time it took. A command's `execute`
//! (write.rs) is a child span of its own. Subscriptions are not traced: a span is
//! exported when it ends, and a subscription lasts as long as its client wants.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Response, ServerError, ValidationResult};
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::telemetry::TRACE_TARGET;

/// The span name of an operation whose type is not known (OpenTelemetry's GraphQL
/// conventions).
const UNKNOWN_OPERATION: &str = "GraphQL Operation";

/// Whether operation spans go anywhere: a subscriber (the OTLP layer `telemetry::init`
/// installs) takes the spans of [`TRACE_TARGET`].
pub fn enabled() -> bool {
    tracing::enabled!(target: TRACE_TARGET, tracing::Level::INFO)
}

/// Records the command a mutation runs on its operation's span.
pub(crate) fn command(name: &'static str) {
    tracing::Span::current().record("ordergraph.command", name);
}

/// `wait` (a mutation's read-your-writes wait for `projection` to fold `position`) in a
/// span of its own, with the time it took and whether the view caught up.
pub(crate) async fn read_your_writes(
    projection: &str,
    position: i64,
    wait: impl Future<Output = bool>,
) -> bool {
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "read-your-writes",
        ordergraph.projection = projection,
        ordergraph.position = position,
        ordergraph.waited_ms = Empty,
        ordergraph.caught_up = Empty,
        otel.status_code = Empty,
    );
    if span.is_disabled() {
        return wait.await;
    }
    let started = Instant::now();
    let caught_up = wait.instrument(span.clone()).await;
    // An i64: tracing-opentelemetry exports a u64 as a string (it may exceed OTLP's int).
    let waited_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    span.record("ordergraph.waited_ms", waited_ms);
    span.record("ordergraph.caught_up", caught_up);
    if !caught_up {
        span.record("otel.status_code", "ERROR");
    }
    caught_up
}

/// The span of one request's operation: the trace step of the request pipeline
/// (`pipeline.rs`), which has one only when spans are exported ([`enabled`]).
#[derive(Default)]
pub(super) struct OperationSpan {
    /// The span of this request's operation, once opened.
    span: Mutex<Option<tracing::Span>>,
    /// Whether the span wraps the whole request (HTTP), not only the execution.
    whole_request: AtomicBool,
}

impl OperationSpan {
    /// A span whose parent is the current OpenTelemetry context: the caller's trace over
    /// HTTP (`http.rs`), else none.
    fn open() -> tracing::Span {
        tracing::info_span!(
            target: TRACE_TARGET,
            "graphql",
            otel.name = UNKNOWN_OPERATION,
            otel.kind = "server",
            otel.status_code = Empty,
            "graphql.operation.type" = Empty,
            graphql.operation.name = Empty,
            ordergraph.command = Empty,
            "error.type" = Empty,
        )
    }

    fn span(&self) -> Option<tracing::Span> {
        self.span
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_span(&self, span: tracing::Span) {
        *self.span.lock().unwrap_or_else(PoisonError::into_inner) = Some(span);
    }

    /// The response's outcome on the span: an error's code as `error.type`.
    fn finish(span: &tracing::Span, response: &Response) {
        if let Some(error) = response.errors.first() {
            span.record("otel.status_code", "ERROR");
            span.record(
                "error.type",
                super::error::code_of(error).unwrap_or("BAD_USER_INPUT"),
            );
        }
    }

    /// A request over HTTP: the span covers parsing and validation too.
    pub(super) async fn request(&self, request: impl Future<Output = Response>) -> Response {
        let span = Self::open();
        self.set_span(span.clone());
        self.whole_request.store(true, Ordering::Relaxed);
        let response = request.instrument(span.clone()).await;
        Self::finish(&span, &response);
        response
    }

    /// Names the span once the operation is known ([`operation`]); over a WebSocket (no
    /// `request`), opens it, unless the operation is a subscription.
    pub(super) fn parsed(&self, operation: Option<&Operation>) {
        let Some((ty, name)) = operation else {
            return;
        };
        let span = match self.span() {
            Some(span) => span,
            None if *ty == "subscription" => return,
            None => {
                let span = Self::open();
                self.set_span(span.clone());
                span
            }
        };
        span.record("graphql.operation.type", *ty);
        let span_name = match name {
            Some(name) => {
                span.record("graphql.operation.name", name.as_str());
                format!("{ty} {name}")
            }
            None => (*ty).to_owned(),
        };
        // Through OpenTelemetry's API: the span has started (entered, over HTTP), and
        // tracing-opentelemetry applies a recorded `otel.name` only before that.
        {
            use opentelemetry::trace::TraceContextExt as _;
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            span.context().span().update_name(span_name);
        }
    }

    /// A document that does not validate: the span says so (over a WebSocket, nothing
    /// executes after it, and `request` does not run).
    pub(super) fn validated(&self, result: &Result<ValidationResult, Vec<ServerError>>) {
        if let (Err(errors), Some(span)) = (result, self.span()) {
            Self::finish(&span, &Response::from_errors(errors.clone()));
        }
    }

    /// Over a WebSocket, the span of the operation covers its execution.
    pub(super) async fn execute(&self, execution: impl Future<Output = Response>) -> Response {
        match self.span() {
            Some(span) if !self.whole_request.load(Ordering::Relaxed) => {
                let response = execution.instrument(span.clone()).await;
                Self::finish(&span, &response);
                response
            }
            // Over HTTP, `request` is already in the span.
            _ => execution.await,
        }
    }
}

/// An operation's type (`query`, `mutation`, `subscription`) and name (`None` for an
/// anonymous one).
pub(crate) type Operation = (&'static str, Option<String>);

/// The operation `document` runs, given the request's `operationName`: its type
/// (`query`, `mutation`, `subscription`) and its name (`None` for an anonymous one).
/// `None` when the name picks none of the document's operations (execution refuses it).
/// The trace's span and the operation metrics name an operation by this.
pub(crate) fn operation(
    document: &ExecutableDocument,
    requested: Option<String>,
) -> Option<Operation> {
    let (ty, name) = match (&document.operations, requested) {
        // An anonymous operation.
        (DocumentOperations::Single(op), _) => (op.node.ty, None),
        (DocumentOperations::Multiple(ops), Some(name)) => {
            (ops.get(name.as_str())?.node.ty, Some(name))
        }
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            let (name, op) = ops.iter().next()?;
            (op.node.ty, Some(name.to_string()))
        }
        (DocumentOperations::Multiple(_), None) => return None,
    };
    let ty = match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    };
    Some((ty, name))
}
