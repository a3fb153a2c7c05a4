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
    /// UNAVAILABLE: the database could not be reached (down, restarting, out of
    /// connections). The request may or may not have taken effect; a retry with the same
    /// idempotency key is safe. Logged with its cause chain, like INTERNAL.
    #[error(
        "the database is unavailable: try again (a write retried with the same \
         idempotencyKey takes effect at most once)"
    )]
    Unavailable(anyhow::Error),
    /// INTERNAL: logged with its cause chain, never shown to clients.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for AppError {
    fn from(e: sea_orm::DbErr) -> Self {
        if unavailable(&e) {
            AppError::Unavailable(anyhow::Error::new(e).context("database unavailable"))
        } else {
            AppError::Internal(anyhow::Error::new(e).context("database error"))
        }
    }
}

/// Whether `e` says the database could not be reached rather than that a statement
/// failed: no connection (refused, reset, timed out, closed by the server), the pool
/// exhausted, or PostgreSQL shutting down, restarting or out of connections. Such an
/// error is worth retrying; one of a statement is not.
pub fn unavailable(e: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx};
    let sqlx_error = match e {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => &**e,
        DbErr::Conn(_) => return true,
        _ => return false,
    };
    match sqlx_error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P01 admin_shutdown, 57P02 crash_shutdown,
            // 57P03 cannot_connect_now (starting up, recovering); 53300
            // too_many_connections.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::{DbErr, RuntimeErr, sqlx};

    use super::*;

    fn sqlx_error(e: sqlx::Error) -> [DbErr; 2] {
        let e = Arc::new(e);
        [
            DbErr::Exec(RuntimeErr::SqlxError(e.clone())),
            DbErr::Query(RuntimeErr::SqlxError(e)),
        ]
    }

    #[test]
    fn a_database_out_of_reach_is_unavailable_and_a_failed_statement_is_not() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let out_of_reach = [
            sqlx_error(sqlx::Error::Io(refused())),
            sqlx_error(sqlx::Error::PoolTimedOut),
            sqlx_error(sqlx::Error::PoolClosed),
        ]
        .into_iter()
        .flatten()
        .chain([DbErr::Conn(RuntimeErr::Internal("event bus: gone".into()))]);
        for e in out_of_reach {
            assert!(unavailable(&e), "{e}");
            assert_eq!(
                crate::error::AppError::from(e).code(),
                "UNAVAILABLE",
                "answered UNAVAILABLE"
            );
        }
        let failed = [
            sqlx_error(sqlx::Error::RowNotFound),
            sqlx_error(sqlx::Error::ColumnNotFound("stock".into())),
        ]
        .into_iter()
        .flatten()
        .chain([
            DbErr::Custom("a projection's own refusal".into()),
            DbErr::RecordNotFound("order".into()),
        ]);
        for e in failed {
            assert!(!unavailable(&e), "{e}");
            assert_eq!(AppError::from(e).code(), "INTERNAL");
        }
    }
}
