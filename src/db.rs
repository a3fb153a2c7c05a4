//! Connecting to the database and applying migrations.

use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};

/// Connects with pool settings fit for the backend. SQLite gets WAL (readers never block
/// the writer), a busy timeout, and foreign keys on.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))
}

/// Key of the PostgreSQL advisory lock that migrating processes queue on ("ogmigrat").
const MIGRATION_LOCK: i64 = 0x6f67_6d69_6772_6174;

/// Applies every pending migration, one process at a time.
///
/// Replicas started together on one database raced on the same DDL (two of three
/// crashed in their migrations in 3 of 4 tries). So the migrations run in one transaction
/// that first takes a lock every migrating process waits on: a transaction-scoped
/// advisory lock on PostgreSQL (freed at commit, or when a dying process's connection
/// closes), the database's write lock (`BEGIN IMMEDIATE`) on SQLite. The next process in
/// finds them applied and does nothing. DDL is transactional on both, so a migration
/// that fails leaves no half-made schema behind.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    let txn = crate::write::begin_write(db)
        .await
        .context("starting the migration transaction")?;
    if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await
            .context("waiting for other processes' migrations")?;
    }
    Migrator::up(&txn, None)
        .await
        .context("applying migrations")?;
    txn.commit().await.context("committing the migrations")
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
