//! The only place where an error becomes a GraphQL error with `extensions.code`.
//! Codes are those of DESIGN.md; internal errors are logged here, once, with their cause
//! chain, and reach the client as `INTERNAL` with a fixed message and an `errorId` that
//! names the log line. Errors the client caused are not logged at all: they are answers.

use async_graphql::{ErrorExtensions, ServerError};

use crate::domain::cart::CartError;
use crate::domain::order::OrderError;
use crate::domain::product::ProductError;
use crate::error::AppError;

impl AppError {
    /// The `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Validation(_) | AppError::BadUserInput(_) => "BAD_USER_INPUT",
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Product(e) => match e {
                ProductError::NotFound => "NOT_FOUND",
                ProductError::AlreadyExists | ProductError::Discontinued => "CONFLICT",
                ProductError::InsufficientStock { .. } => "INSUFFICIENT_STOCK",
                ProductError::StockOverflow { .. } => "BAD_USER_INPUT",
            },
            AppError::Cart(e) => match e {
                CartError::UnknownProduct(_) | CartError::NotInCart(_) => "NOT_FOUND",
                CartError::Discontinued(_) => "CONFLICT",
                CartError::InsufficientStock { .. } => "INSUFFICIENT_STOCK",
                CartError::LineLimit { .. } => "BAD_USER_INPUT",
            },
            AppError::Order(e) => match e {
                OrderError::NotFound => "NOT_FOUND",
                OrderError::EmptyCart | OrderError::TotalTooLarge { .. } => "BAD_USER_INPUT",
                OrderError::InvalidTransition { .. } => "CONFLICT",
            },
            AppError::Conflict(_) => "CONFLICT",
            AppError::InsufficientStock(_) => "INSUFFICIENT_STOCK",
            AppError::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            AppError::ConsistencyTimeout { .. } => "CONSISTENCY_TIMEOUT",
            AppError::RateLimited(_) => "RATE_LIMITED",
            AppError::ServerDraining { .. } => "SERVER_DRAINING",
            AppError::Unavailable(_) => "UNAVAILABLE",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    /// Converts into the GraphQL error sent to the client.
    pub fn into_graphql(self) -> async_graphql::Error {
        self.extend()
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        let (message, error_id) = match self {
            AppError::Internal(e) => (
                "internal error".to_owned(),
                Some(log_internal(e).to_string()),
            ),
            AppError::Unavailable(e) => (self.to_string(), Some(log_unavailable(e).to_string())),
            other => (other.to_string(), None),
        };
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", self.code());
            if let AppError::ConsistencyTimeout { position }
            | AppError::ServerDraining { position } = self
            {
                ext.set("position", position.to_string());
            }
            if let Some(id) = &error_id {
                ext.set("errorId", id.as_str());
            }
        })
    }
}

/// Logs an internal error as one ERROR line and returns the id it is logged under, which
/// the client receives as `extensions.errorId`: what an operator needs to find the line
/// behind a user's report.
///
/// The line carries the cause chain in anyhow's alternate form (`{:#}`: "database error:
/// connection refused"), which is what an operator acts on. Not the debug form: with
/// `RUST_BACKTRACE=1` (or `RUST_LIB_BACKTRACE=1`) it appends the backtrace captured where
/// the error was made, tens of KB of async frames per request that say little the chain
/// does not, and a log flood for anyone who can make the server fail on purpose.
fn log_internal(error: &anyhow::Error) -> uuid::Uuid {
    let error_id = uuid::Uuid::new_v4();
    tracing::error!(%error_id, error = %format_args!("{error:#}"), "internal error");
    error_id
}

/// Logs an unavailable database as one WARN line (the service is fine; what it depends
/// on is not) and returns its id, like `log_internal`.
fn log_unavailable(error: &anyhow::Error) -> uuid::Uuid {
    let error_id = uuid::Uuid::new_v4();
    tracing::warn!(%error_id, error = %format_args!("{error:#}"), "database unavailable");
    error_id
}

/// Maps an application result into a resolver result.
pub trait IntoGraphql<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> IntoGraphql<T> for Result<T, AppError> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(AppError::into_graphql)
    }
}

/// Errors raised by async-graphql itself (syntax, validation, input coercion, limits)
/// carry no code: they are the client's request being malformed, so BAD_USER_INPUT.
pub fn ensure_code(error: &mut ServerError) {
    let has_code = error
        .extensions
        .as_ref()
        .is_some_and(|ext| ext.get("code").is_some());
    if !has_code {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", "BAD_USER_INPUT");
    }
}

/// An error raised before execution (a request error), with `extensions.code`.
pub fn request_error(message: String, code: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    error
}

/// The error's `extensions.code`, when it has one.
pub fn code_of(error: &ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Whatever the subscriber writes, kept for the test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// Maps `error` for the client as a resolver does; returns it and what was logged.
    fn mapped(error: AppError) -> (async_graphql::Error, String) {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false)
            .finish();
        let graphql = tracing::subscriber::with_default(subscriber, || error.into_graphql());
        let log = String::from_utf8_lossy(&out.0.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned();
        (graphql, log)
    }

    fn extension(error: &async_graphql::Error, name: &str) -> Option<String> {
        match error.extensions.as_ref()?.get(name)? {
            async_graphql::Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    #[test]
    fn an_internal_error_is_logged_once_as_its_cause_chain_on_one_line() {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = AppError::Internal(anyhow::Error::new(cause).context("database error"));

        let (graphql, log) = mapped(error);

        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {log}");
        assert!(lines[0].contains("ERROR"), "{log}");
        assert!(lines[0].contains("database error: refused"), "{log}");
        // The debug form's multi-line chain, and the backtrace it may carry, stay out.
        assert!(
            !log.contains("Caused by") && !log.contains("acktrace"),
            "{log}"
        );
        assert_eq!(graphql.message, "internal error");
        assert_eq!(extension(&graphql, "code").as_deref(), Some("INTERNAL"));
        let error_id = extension(&graphql, "errorId").expect("an errorId");
        assert!(
            lines[0].contains(&error_id),
            "the line names {error_id}: {log}"
        );
    }

    #[test]
    fn errors_the_client_caused_are_answered_and_not_logged() {
        let errors = [
            AppError::NotFound("order 1 not found".into()),
            AppError::Product(ProductError::NotFound),
            AppError::Order(OrderError::NotFound),
            AppError::Cart(CartError::NotInCart(uuid::Uuid::nil())),
            AppError::Conflict("stream 1 was changed concurrently".into()),
            AppError::IdempotencyKeyReused,
            AppError::BadUserInput("first must be between 0 and 100".into()),
        ];
        for error in errors {
            let code = error.code();

            let (graphql, log) = mapped(error);

            assert_eq!(log, "", "{code} is not logged");
            assert_eq!(extension(&graphql, "code").as_deref(), Some(code));
            assert_eq!(extension(&graphql, "errorId"), None);
        }
    }
}
