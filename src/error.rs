//! The one error type of the request path. Domain errors stay typed; operational errors
//! are `Internal` with their cause chain. `graphql/error.rs` is the only place that turns
//! these into GraphQL errors with an `extensions.code`.

use crate::domain::cart::CartError;
use crate::domain::order::OrderError;
use crate::domain::payment::PaymentError;
use crate::domain::product::ProductError;
use crate::domain::values::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// BAD_USER_INPUT: an input value was refused.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// BAD_USER_INPUT: a malformed request that is not one field's fault.
    #[error("{0}")]
    BadUserInput(String),
    /// UNAUTHENTICATED
    #[error("{0}")]
    Unauthenticated(String),
    /// FORBIDDEN
    #[error("{0}")]
    Forbidden(String),
    /// NOT_FOUND
    #[error("{0}")]
    NotFound(String),
    /// Code depends on the variant (NOT_FOUND, CONFLICT, INSUFFICIENT_STOCK, BAD_USER_INPUT).
    #[error(transparent)]
    Product(#[from] ProductError),
    /// Code depends on the variant (NOT_FOUND, CONFLICT, INSUFFICIENT_STOCK, BAD_USER_INPUT).
    #[error(transparent)]
    Cart(#[from] CartError),
    /// Code depends on the variant (NOT_FOUND, BAD_USER_INPUT, CONFLICT).
    #[error(transparent)]
    Order(#[from] OrderError),
    /// CONFLICT: a concurrent write, a stale `expectedVersion`, a duplicate unique value.
    #[error("{0}")]
    Conflict(String),
    /// INSUFFICIENT_STOCK: raised by the database's `stock >= 0` check.
    #[error("{0}")]
    InsufficientStock(String),
    /// IDEMPOTENCY_KEY_REUSED: same key, same caller, different input.
    #[error("idempotency key already used with a different input")]
    IdempotencyKeyReused,
    /// CONSISTENCY_TIMEOUT: the write is committed, but the view did not catch up in time.
    #[error("the write was committed at position {position} but the view did not reach it in time")]
    ConsistencyTimeout { position: i64 },
    /// RATE_LIMITED: a per-caller or per-connection limit was reached.
    #[error("{0}")]
    RateLimited(String),
    /// SERVER_DRAINING: the server is shutting down; resume from `position` elsewhere.
    #[error("the server is shutting down: resubscribe with after: \"{position}\"")]
    ServerDraining { position: i64 },
    /// INTERNAL: logged with its cause chain, never shown to clients.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for AppError {
    fn from(e: sea_orm::DbErr) -> Self {
        AppError::Internal(anyhow::Error::new(e).context("database error"))
    }
}

impl From<crate::write::event_store::FoldError> for AppError {
    fn from(e: crate::write::event_store::FoldError) -> Self {
        match e {
            crate::write::event_store::FoldError::Db(e) => e.into(),
            undecodable => AppError::Internal(undecodable.into()),
        }
    }
}

impl From<crate::domain::UnknownStored> for AppError {
    fn from(e: crate::domain::UnknownStored) -> Self {
        AppError::Internal(e.into())
    }
}

/// The error of an aggregate that refuses no command (`type Error = Infallible`): its
/// commands run through `Envelope` without a variant here.
impl From<std::convert::Infallible> for AppError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

impl From<PaymentError> for AppError {
    fn from(e: PaymentError) -> Self {
        match e {}
    }
}

pub type AppResult<T> = Result<T, AppError>;
