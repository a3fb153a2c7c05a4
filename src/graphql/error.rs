//! The only place where an error becomes a GraphQL error with `extensions.code`.
//! Codes are those of DESIGN.md; internal errors are logged here, once, with their cause
//! chain, and reach the client as `INTERNAL` with a fixed message.

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
        let message = match self {
            AppError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", self.code());
            if let AppError::ConsistencyTimeout { position }
            | AppError::ServerDraining { position } = self
            {
                ext.set("position", position.to_string());
            }
        })
    }
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
