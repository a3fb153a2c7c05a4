//! Database constraints are the last line of defence behind the aggregates: this maps
//! their violations to domain error codes, on SQLite and PostgreSQL alike.
//!
//! SeaORM's `SqlErr` knows unique and foreign-key violations only; a CHECK violation is
//! read from the driver error (SQLSTATE 23514 on PostgreSQL, extended code 275
//! `SQLITE_CONSTRAINT_CHECK` on SQLite).

use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// What kind of constraint a database error violated, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Unique(String),
    ForeignKey(String),
    Check(String),
}

pub trait ConstraintExt {
    fn violation(&self) -> Option<Violation>;
}

impl ConstraintExt for DbErr {
    fn violation(&self) -> Option<Violation> {
        match self.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(m)) => return Some(Violation::Unique(m)),
            Some(SqlErr::ForeignKeyConstraintViolation(m)) => {
                return Some(Violation::ForeignKey(m));
            }
            _ => {}
        }
        if let DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) = self
            && let sea_orm::sqlx::Error::Database(db) = &**e
        {
            let code = db.code().unwrap_or_default();
            // 23514 check_violation (PostgreSQL); 275 SQLITE_CONSTRAINT_CHECK.
            if code == "23514" || code == "275" {
                let name = db
                    .constraint()
                    .map(str::to_owned)
                    .unwrap_or_else(|| db.message().to_owned());
                return Some(Violation::Check(name));
            }
        }
        None
    }
}
