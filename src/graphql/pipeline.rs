//! The request pipeline: the schema's one async-graphql extension, which takes every
//! request through the steps of each concern in turn — the trace span (`traces.rs`, only
//! when spans are exported), the operation metrics (`metrics.rs`), persisted queries
//! (`persisted.rs`) and the document limits (`limits.rs`) — in that order on the way in
//! and in the reverse order on the way out. The span thus wraps everything else, the
//! metrics see every request, refusals included, and persisted queries are resolved
//! before the limits, so that a document named by its hash is held to them like any
//! other.
//!
//! One extension rather than one per concern: async-graphql runs every hook of every
//! extension for each request (and, for each field it resolves, a `resolve` hook that
//! none of them needs), and the operation each request runs is found once, for the span
//! and the metrics alike.

use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextRequest, NextSubscribe, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, Response, ServerError, ServerResult, ValidationResult, Variables};
use futures_util::stream::BoxStream;

use super::limits::{self, DocumentLimits};
use super::persisted::{self, PersistedQueries};
use super::traces::{self, Operation, OperationSpan};
use crate::metrics::{Metrics, OperationTimer};

/// The schema's extension: the steps of each request.
pub struct RequestPipeline {
    /// Whether operation spans are exported ([`traces::enabled`] when the schema was built).
    pub spans: bool,
    pub metrics: Arc<Metrics>,
    pub persisted: PersistedQueries,
    pub limits: DocumentLimits,
}

impl ExtensionFactory for RequestPipeline {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestSteps {
            span: self.spans.then(OperationSpan::default),
            timer: OperationTimer::new(self.metrics.clone()),
            persisted: self.persisted.for_request(),
            limits: self.limits.clone(),
            requested_name: Mutex::new(None),
            operation: Mutex::new(None),
        })
    }
}

/// The steps of one request, each concern's state for it, and what they share.
struct RequestSteps {
    span: Option<OperationSpan>,
    timer: OperationTimer,
    persisted: persisted::Resolving,
    limits: DocumentLimits,
    /// The request's `operationName`.
    requested_name: Mutex<Option<String>>,
    /// The type and name of the operation the document runs, once parsed.
    operation: Mutex<Option<Operation>>,
}

#[async_trait::async_trait]
impl Extension for RequestSteps {
    /// A request over HTTP: its span, and the errors it answers (refusals included).
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let request = async {
            let response = next.run(ctx).await;
            self.timer.responded(&response);
            response
        };
        match &self.span {
            Some(span) => span.request(request).await,
            None => request.await,
        }
    }

    /// A stream (WebSocket and multipart operations, subscriptions' events): the errors
    /// of each response.
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, self.timer.stream(stream))
    }

    /// Notes the requested operation's name, resolves a persisted query, then parses and
    /// measures the document within the limits.
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        *locked(&self.requested_name) = request.operation_name.clone();
        let request = self.persisted.prepare(request)?;
        let request = limits::prepare(request, &self.limits).await?;
        next.run(ctx, request).await
    }

    /// Finds the operation the document runs, and names the span after it.
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let requested = locked(&self.requested_name).clone();
        let operation = traces::operation(&document, requested);
        if let Some(span) = &self.span {
            span.parsed(operation.as_ref());
        }
        *locked(&self.operation) = operation;
        Ok(document)
    }

    /// Once the document validated: the depth and complexity limits, then the
    /// registration of a persisted query's text, and the operation labelled in the
    /// metrics; a refusal on the span.
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.and_then(|result| {
            let result = limits::check_validated(ctx, result)?;
            self.persisted.validated();
            self.timer.validated(locked(&self.operation).take());
            Ok(result)
        });
        if let Some(span) = &self.span {
            span.validated(&result);
        }
        result
    }

    /// The execution of a query or mutation, timed, and over a WebSocket in its span.
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let execution = self.timer.execute(next.run(ctx, operation_name));
        match &self.span {
            Some(span) => span.execute(execution).await,
            None => execution.await,
        }
    }
}

/// Takes a lock of this module, poisoned or not: nothing in a critical section here
/// panics, and each holds a value that is only ever replaced whole.
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
