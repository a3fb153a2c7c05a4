//! Connecting to the database and applying migrations; and the tag that tells each
//! pool's acquires apart in sqlx's tracing events ([`tag_acquires`]).

use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::pool::PoolOptions;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};

use crate::metrics::AcquireTimes;

/// How long a pooled connection sits idle before it is pinged on its next acquire.
pub const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// The pool's settings, before its acquires are tagged.
fn pool_options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        // A connection is pinged before it is handed out only when it sat idle for a
        // while (a restarted server or a proxy may have dropped it), not on every
        // acquire: sqlx's default ping is a round trip per acquire, and a mutation
        // acquires about ten times (its write, the horizon, the page and the fold
        // beside it, its payload's read). A busy connection that broke fails its
        // statement instead, which answers UNAVAILABLE, as any statement in flight
        // when a server goes away does; the relay retries it (ADR 0026).
        .test_before_acquire_if_idle_for(IDLE_BEFORE_PING)
        // No idle or lifetime reaping: sqlx 0.9.0's reaper can see the idle count wrap
        // below zero (a race between returning and taking a connection) and then loops
        // without yielding, a core at 100 % for good, and a process that never exits
        // (sqlx issue 3645, fixed upstream by pull request 4289, not yet released). It
        // hung `ordergraph projections rebuild` in CI. Connections stay open, as a
        // service's pool usually keeps them; bring reaping back with a release that
        // has the fix.
        .idle_timeout(None::<Duration>)
        .max_lifetime(None::<Duration>)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    options
}

/// Connects with pool settings fit for the backend. SQLite gets WAL (readers never block
/// the writer), a busy timeout, and foreign keys on. The pool is tagged so that its
/// acquire times can be measured ([`tag_acquires`]).
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let mut options = pool_options(url, max_connections);
    if let Some((tag, times)) = tag_acquires() {
        let also = times.clone();
        options
            .map_sqlx_postgres_pool_opts(move |o| tagged(o, tag, &times))
            .map_sqlx_sqlite_pool_opts(move |o| tagged(o, tag, &also));
    }
    // Processes (or services of one process) opening a new SQLite file at the same moment
    // race to switch it to WAL; the loser's first pragma answers SQLITE_BUSY at once,
    // before the busy timeout applies. It is tried again, briefly.
    let mut attempt = 0;
    loop {
        match Database::connect(options.clone()).await {
            Err(e) if attempt < 20 && e.to_string().contains("database is locked") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(25 * attempt)).await;
            }
            connected => {
                return connected.with_context(|| format!("connecting to {}", redact(url)));
            }
        }
    }
}

/// The target of the event sqlx sends for each acquire from a pool (sqlx-core's
/// `PoolInner::acquire`), with the time it took in `acquired_after_secs`.
pub const ACQUIRE_TARGET: &str = "sqlx::pool::acquire";

/// The level of the acquire events ([`tag_acquires`]): `info`, not `trace`, so that the
/// layer that takes them does not raise the process's maximum level above the log's
/// default, which would make every `trace!` and `debug!` call site of every crate (and
/// every `log` record) reach the filters, instead of being dropped at the first check.
/// The log layer never shows these events, whatever its level (`telemetry::init`).
pub const ACQUIRE_LEVEL: &str = "info";

/// Most pools of one process told apart: tags run from 1 ns to this many.
const MAX_TAGS: usize = 1000;

/// Each tag's acquire times (tag `n` at index `n - 1`); a tag whose pool is gone (no
/// strong reference left) is free for the next pool. Process-wide because tracing's
/// dispatcher is: the events of every pool in the process reach the one layer.
static TAGS: RwLock<Vec<Weak<AcquireTimes>>> = RwLock::new(Vec::new());

/// A tag for a new pool, and the histogram its acquires go to (`None` when every tag is
/// taken: that pool is then not measured).
///
/// sqlx keeps no count of the tasks waiting for a connection, and SeaORM takes its
/// connections inside the library. What sqlx does report is each acquire's duration, as
/// a tracing event ([`ACQUIRE_TARGET`]) that names no pool. It comes in two forms: a
/// "slow" one, sent when the acquire took longer than `acquire_slow_threshold`, which
/// carries that threshold (`slow_acquire_threshold_secs`), and a plain one which carries
/// nothing else. So each pool gets a threshold of its own of a few nanoseconds, its tag,
/// and its slow event at `INFO` (see [`ACQUIRE_LEVEL`]): every acquire takes longer than that (it takes a
/// permit, pops an idle connection and runs the idle check, a boxed future that pings a
/// connection idle for [`IDLE_BEFORE_PING`]: hundreds of nanoseconds at the least; or it
/// opens a new connection), so every acquire sends the slow event, and
/// its threshold says which pool it came from. `telemetry::pool_acquire_layer` reads the
/// events and [`record_acquire`] routes each to its pool's histogram; two services in one
/// process (the tests) each get their own pools' figures.
///
/// The cost: sqlx's own warning for an acquire slower than 2 s (its default slow level
/// and threshold) is gone; the histogram has every acquire, and an alert watches the
/// wait (deploy/prometheus/alerts.yml).
fn tag_acquires() -> Option<(Duration, Arc<AcquireTimes>)> {
    let times = Arc::new(AcquireTimes::default());
    let mut tags = TAGS.write().unwrap_or_else(PoisonError::into_inner);
    let index = match tags.iter().position(|pool| pool.strong_count() == 0) {
        Some(free) => free,
        None if tags.len() < MAX_TAGS => {
            tags.push(Weak::new());
            tags.len() - 1
        }
        None => return None,
    };
    tags[index] = Arc::downgrade(&times);
    let nanos = u64::try_from(index + 1).ok()?;
    Some((Duration::from_nanos(nanos), times))
}

/// `options` with the tag of [`tag_acquires`]. The pool holds `times` (in an
/// `after_connect` hook that does nothing else), so its tag stays taken exactly as long
/// as the pool lives. The hook is the pool's only one: SeaORM sets one on PostgreSQL
/// only for a `schema_search_path`, which this service does not use.
fn tagged<DB: sea_orm::sqlx::Database>(
    options: PoolOptions<DB>,
    tag: Duration,
    times: &Arc<AcquireTimes>,
) -> PoolOptions<DB> {
    let held = times.clone();
    options
        .acquire_slow_threshold(tag)
        // sqlx takes `log`'s level type, which this crate does not depend on.
        .acquire_slow_level(ACQUIRE_LEVEL.parse().expect("a log level's name"))
        .after_connect(move |_, _| {
            let _held = &held;
            Box::pin(async { Ok(()) })
        })
}

/// The tag's index in [`TAGS`], if `threshold_secs` is one.
fn tag_index(threshold_secs: f64) -> Option<usize> {
    let nanos = (threshold_secs * 1e9).round();
    // Within 1..=MAX_TAGS, so the cast is exact.
    (nanos >= 1.0 && nanos <= MAX_TAGS as f64).then(|| nanos as usize - 1)
}

/// Records one acquire that sqlx reported with the slow threshold `threshold_secs` and
/// the duration `seconds`, in its pool's histogram; nothing if the threshold is no tag
/// (an untagged pool's event) or its pool is gone.
pub fn record_acquire(threshold_secs: f64, seconds: f64) {
    let Some(index) = tag_index(threshold_secs) else {
        return;
    };
    let times = TAGS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(index)
        .and_then(Weak::upgrade);
    if let Some(times) = times {
        times.observe(seconds);
    }
}

/// The acquire times of `db`'s pool, found by its tag, if [`connect`] tagged it.
pub fn acquire_times(db: &DatabaseConnection) -> Option<Arc<AcquireTimes>> {
    let threshold = match db.get_database_backend() {
        DbBackend::Postgres => db
            .get_postgres_connection_pool()
            .options()
            .get_acquire_slow_threshold(),
        DbBackend::Sqlite => db
            .get_sqlite_connection_pool()
            .options()
            .get_acquire_slow_threshold(),
        _ => return None,
    };
    let index = tag_index(threshold.as_secs_f64())?;
    TAGS.read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(index)
        .and_then(Weak::upgrade)
}

/// Connects, checks PostgreSQL's settings, and applies every pending migration: a
/// database ready to serve.
pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let db = connect(url, max_connections).await?;
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    if postgres {
        check_postgres(url).await?;
    }
    migrate(&db).await?;
    if postgres {
        check_postgres_schema(&db).await?;
    }
    Ok(db)
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

/// What the relay's proof (ADR 0001) needs of a PostgreSQL server, as read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresFacts {
    /// `max_prepared_transactions`: a prepared transaction holds its positions but is
    /// not in `pg_stat_activity`, where the relay looks for writers in flight.
    pub max_prepared_transactions: i64,
    /// Whether this role saw another session's transaction id in `pg_stat_activity`.
    pub sees_other_writers: bool,
}

impl PostgresFacts {
    /// Why the service must not run on this server, if it must not.
    pub fn refusal(&self) -> Option<String> {
        if self.max_prepared_transactions > 0 {
            return Some(format!(
                "max_prepared_transactions is {} on this PostgreSQL server: a prepared transaction would hold event positions where the relay cannot see it, and a view could skip an event (docs/adr/0001). Set max_prepared_transactions = 0",
                self.max_prepared_transactions
            ));
        }
        if !self.sees_other_writers {
            return Some(
                "this database role cannot see other sessions' transaction ids in pg_stat_activity, so the relay cannot tell which events are still being written (docs/adr/0001). Grant it pg_read_all_stats, or run as the database owner".to_owned(),
            );
        }
        None
    }
}

/// Reads the [`PostgresFacts`]: the setting, and a self-test in which a second
/// connection opens a transaction id and the first looks for it.
pub async fn postgres_facts(url: &str) -> anyhow::Result<PostgresFacts> {
    use sea_orm::TransactionTrait;
    let one = |sql: &'static str| sea_orm::Statement::from_string(DbBackend::Postgres, sql);
    let observer = connect(url, 1).await?;
    let writer = connect(url, 1).await?;
    let max_prepared_transactions = scalar::<i64>(
        &observer,
        one("SELECT current_setting('max_prepared_transactions')::bigint AS n"),
        "n",
    )
    .await?
    .unwrap_or(0);
    let txn = writer.begin().await?;
    let xid: String = scalar(&txn, one("SELECT pg_current_xact_id()::text AS xid"), "xid")
        .await?
        .unwrap_or_default();
    let seen = scalar::<i64>(
        &observer,
        sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE backend_xid::text = $1",
            [xid.into()],
        ),
        "n",
    )
    .await?
    .unwrap_or(0);
    txn.rollback().await?;
    let _ = writer.close().await;
    let _ = observer.close().await;
    Ok(PostgresFacts {
        max_prepared_transactions,
        sees_other_writers: seen > 0,
    })
}

/// Refuses to go on when the PostgreSQL server at `url` lacks what the relay relies on.
pub async fn check_postgres(url: &str) -> anyhow::Result<()> {
    let facts = postgres_facts(url)
        .await
        .context("checking the PostgreSQL server's settings")?;
    match facts.refusal() {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}

/// The function the `events.position` default calls on PostgreSQL (migration
/// `m20261126_000010`): it takes the transaction's xid before it draws the position.
pub const POSITION_DEFAULT: &str = "events_position_after_xid";

/// After the migrations, on PostgreSQL: refuses to go on when the `events.position`
/// default no longer takes the xid first (ADR 0001's writer rule, which the schema
/// enforces for every writer since ADR 0013; someone changed it by hand), and warns when
/// the server would let a session frozen inside a transaction hold every view back for
/// good (`idle_in_transaction_session_timeout` off).
pub async fn check_postgres_schema(db: &DatabaseConnection) -> anyhow::Result<()> {
    let one = |sql: &'static str| sea_orm::Statement::from_string(DbBackend::Postgres, sql);
    let default: Option<String> = scalar(
        db,
        one(
            "SELECT pg_get_expr(d.adbin, d.adrelid) AS expr FROM pg_attrdef d \
             JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
             WHERE d.adrelid = 'events'::regclass AND a.attname = 'position'",
        ),
        "expr",
    )
    .await?;
    if let Some(why) = writer_rule_refusal(default.as_deref()) {
        anyhow::bail!(why);
    }
    let idle: String = scalar(
        db,
        one("SELECT current_setting('idle_in_transaction_session_timeout') AS v"),
        "v",
    )
    .await?
    .unwrap_or_default();
    if idle == "0" {
        tracing::warn!(
            "idle_in_transaction_session_timeout is off: a process frozen inside a write transaction holds every view of every replica back until it ends; set it (5s is a good value, README: Running on PostgreSQL)"
        );
    }
    Ok(())
}

/// Why the service must not run with this `events.position` default, if it must not.
fn writer_rule_refusal(default: Option<&str>) -> Option<String> {
    match default {
        Some(expr) if expr.contains(POSITION_DEFAULT) => None,
        other => Some(format!(
            "the default of events.position is {} where it must be {POSITION_DEFAULT}(): without it a writer may draw a position before its transaction id, and the relay could skip its event (docs/adr/0001, docs/adr/0013). Restore it with ALTER TABLE events ALTER COLUMN position SET DEFAULT {POSITION_DEFAULT}()",
            other.unwrap_or("missing")
        )),
    }
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

/// Inserts `row`, or, where a row with the same `key` columns exists, updates its
/// `columns` from `row`: one statement, so no read-then-write race between writers.
pub async fn upsert<A, C>(
    db: &C,
    row: A,
    key: impl IntoIterator<Item = <A::Entity as sea_orm::EntityTrait>::Column>,
    columns: impl IntoIterator<Item = <A::Entity as sea_orm::EntityTrait>::Column>,
) -> Result<(), sea_orm::DbErr>
where
    A: sea_orm::ActiveModelTrait,
    C: ConnectionTrait,
{
    use sea_orm::EntityTrait as _;
    use sea_orm::sea_query::OnConflict;
    A::Entity::insert(row)
        .on_conflict(OnConflict::columns(key).update_columns(columns).to_owned())
        .exec(db)
        .await?;
    Ok(())
}

/// `sql` written with SQLite's `?` placeholders, numbered `$1`, `$2`, … for PostgreSQL:
/// one text for both databases where each value is bound once per `?`. The text must hold
/// no `?` other than placeholders (no string literal or operator with one).
pub fn numbered(backend: sea_orm::DbBackend, sql: &str) -> String {
    if backend != sea_orm::DbBackend::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// The `column` of the first row `statement` returns (a count, a setting), or `None`
/// when it returns no row.
pub async fn scalar<T: sea_orm::TryGetable>(
    db: &impl ConnectionTrait,
    statement: sea_orm::Statement,
    column: &str,
) -> Result<Option<T>, sea_orm::DbErr> {
    db.query_one_raw(statement)
        .await?
        .map(|row| row.try_get::<T>("", column))
        .transpose()
}

/// A migrated database in memory, for unit tests of what reads and writes tables.
#[cfg(test)]
pub async fn in_memory() -> DatabaseConnection {
    let db = connect("sqlite::memory:", 1)
        .await
        .expect("an in-memory database");
    migrate(&db).await.expect("the migrations apply");
    db
}

/// A fresh migrated database for unit tests that must hold on both backends: a database
/// of its own on the PostgreSQL server `TEST_DATABASE_URL` names, when it is set, else
/// SQLite in memory ([`in_memory`]).
#[cfg(test)]
pub struct TestDatabase {
    pub db: DatabaseConnection,
    /// The PostgreSQL database made for the test: (server URL, database name).
    postgres: Option<(String, String)>,
}

#[cfg(test)]
impl TestDatabase {
    pub async fn new() -> Self {
        let server = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty());
        let Some(server) = server else {
            return Self {
                db: in_memory().await,
                postgres: None,
            };
        };
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("TEST_DATABASE_URL={server} is reachable: {e}"));
        admin
            .execute_unprepared(&format!(r#"CREATE DATABASE "{name}""#))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
        let _ = admin.close().await;
        let mut url = reqwest::Url::parse(&server).expect("TEST_DATABASE_URL is a valid URL");
        url.set_path(&format!("/{name}"));
        let db = connect(url.as_str(), 2)
            .await
            .expect("the test database is reachable");
        migrate(&db).await.expect("the migrations apply");
        Self {
            db,
            postgres: Some((server, name)),
        }
    }

    /// Closes the database; a PostgreSQL one is dropped (a failed test, which never gets
    /// here, leaves it for a look).
    pub async fn close(self) {
        let _ = self.db.close().await;
        if let Some((server, name)) = self.postgres
            && let Ok(admin) = Database::connect(&server).await
        {
            let drop = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
            let _ = admin.execute_unprepared(&drop).await;
            let _ = admin.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool runs no reaper, whose loop can spin for good in sqlx 0.9.0 (issue 3645):
    /// neither an idle timeout nor a lifetime, which is what starts it. (Read from the
    /// options: a pool of its own would take an acquire tag that another test counts.)
    #[test]
    fn the_pool_runs_no_idle_or_lifetime_reaper() {
        let options = pool_options("sqlite::memory:", 2);
        assert_eq!(options.get_idle_timeout(), Some(None));
        assert_eq!(options.get_max_lifetime(), Some(None));
    }

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let sql = "SELECT a FROM t WHERE b = ? AND c IN (?, ?)";
        assert_eq!(
            numbered(sea_orm::DbBackend::Postgres, sql),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
        );
        assert_eq!(numbered(sea_orm::DbBackend::Sqlite, sql), sql);
    }

    #[test]
    fn only_a_few_nanoseconds_are_a_tag() {
        assert_eq!(tag_index(1e-9), Some(0));
        assert_eq!(tag_index(1e-6), Some(MAX_TAGS - 1));
        // sqlx's default threshold (an untagged pool), and what lies around the tags.
        for untagged in [2.0, 0.0, 1.001e-6, -1e-9, f64::NAN] {
            assert_eq!(tag_index(untagged), None, "{untagged}");
        }
    }

    /// The count and sum of `pool`'s acquire times in an exposition.
    fn acquires(metrics: &crate::metrics::Metrics, pool: &str) -> (u64, f64) {
        let text = metrics.render();
        let sample = |suffix: &str| {
            let prefix = format!("ordergraph_db_pool_acquire_seconds_{suffix}{{pool=\"{pool}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {suffix} for {pool}:\n{text}"))
        };
        (sample("count") as u64, sample("sum"))
    }

    /// Held by the test that counts a pool's acquires and by this module's tests that
    /// make pools of their own through a relay: run beside them, the count missed every
    /// acquire of its pool in one to four runs of ten (cause not pinned; never in ten
    /// runs without them).
    static POOL_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test]
    async fn a_wait_for_the_connection_is_counted_in_its_own_pool_alone() {
        use sea_orm::TransactionTrait as _;
        let _alone = POOL_TESTS.lock().await;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tracing_subscriber::layer::SubscriberExt as _;
        // Arrange: the layer the service installs, on this test's thread (a
        // current-thread runtime: every task of the test runs here).
        let _subscriber = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(crate::telemetry::pool_acquire_layer()),
        );
        let busy = connect("sqlite::memory:", 1).await.expect("a pool");
        let other = connect("sqlite::memory:", 1).await.expect("a pool");
        let metrics = crate::metrics::Metrics::default();
        metrics.watch_pool("busy", &busy);
        metrics.watch_pool("other", &other);
        let (busy_before, busy_waited_before) = acquires(&metrics, "busy");
        let other_before = acquires(&metrics, "other");

        // Act: the pool's one connection is held by a transaction while another task
        // asks for it.
        let txn = busy.begin().await.expect("a transaction");
        let asking = Arc::new(AtomicBool::new(false));
        let waiter = tokio::spawn({
            let (busy, asking) = (busy.clone(), asking.clone());
            async move {
                asking.store(true, Ordering::SeqCst);
                // Acquires in the same poll as the store above, up to its wait.
                busy.execute_unprepared("SELECT 1").await
            }
        });
        while !asking.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let waiting_since = std::time::Instant::now();
        for _ in 0..20 {
            txn.execute_unprepared("SELECT 1").await.expect("a query");
        }
        let held = waiting_since.elapsed().as_secs_f64();
        txn.commit().await.expect("the commit");
        waiter
            .await
            .expect("the task")
            .expect("the query, once the connection is free");

        // Assert: two more acquires, the waiter's at least as long as it waited (the
        // bound is what this test measured itself, so never too high); none in the
        // other pool.
        let (busy_after, busy_waited_after) = acquires(&metrics, "busy");
        assert_eq!(busy_after, busy_before + 2);
        assert!(
            busy_waited_after - busy_waited_before >= held,
            "{busy_waited_before} -> {busy_waited_after}, held {held}"
        );
        assert_eq!(acquires(&metrics, "other"), other_before);
    }

    #[test]
    fn a_position_default_that_does_not_take_the_xid_first_is_refused() {
        assert_eq!(
            writer_rule_refusal(Some("events_position_after_xid()")),
            None
        );
        let plain = writer_rule_refusal(Some("nextval('events_position_seq'::regclass)"));
        assert!(plain.is_some_and(|why| why.contains("SET DEFAULT events_position_after_xid()")));
        assert!(writer_rule_refusal(None).is_some_and(|why| why.contains("is missing")));
    }

    #[test]
    fn a_server_with_prepared_transactions_or_hidden_writers_is_refused() {
        let healthy = PostgresFacts {
            max_prepared_transactions: 0,
            sees_other_writers: true,
        };
        assert_eq!(healthy.refusal(), None);
        let prepared = PostgresFacts {
            max_prepared_transactions: 10,
            ..healthy.clone()
        };
        assert!(
            prepared
                .refusal()
                .is_some_and(|r| r.contains("max_prepared_transactions = 0"))
        );
        let blind = PostgresFacts {
            sees_other_writers: false,
            ..healthy
        };
        assert!(
            blind
                .refusal()
                .is_some_and(|r| r.contains("pg_read_all_stats"))
        );
    }

    /// A test of PostgreSQL's wire protocol: a fresh database, and a pool of one
    /// connection to it through a relay that keeps every byte the client sends. Holds
    /// `POOL_TESTS` while it lives.
    struct Relayed {
        test: TestDatabase,
        db: DatabaseConnection,
        sent: Arc<std::sync::Mutex<Vec<u8>>>,
        _alone: tokio::sync::MutexGuard<'static, ()>,
    }

    impl Relayed {
        /// `None` on SQLite (no pool is made there).
        async fn new() -> Option<Relayed> {
            std::env::var("TEST_DATABASE_URL").ok()?;
            let alone = POOL_TESTS.lock().await;
            let test = TestDatabase::new().await;
            let (db, sent) = through_a_relay(&test).await?;
            Some(Relayed {
                test,
                db,
                sent,
                _alone: alone,
            })
        }

        async fn close(self) {
            let _ = self.db.close().await;
            self.test.close().await;
        }
    }

    /// A pool of one connection to the PostgreSQL database of `test`, through a relay
    /// that keeps every byte the client sends (`sent`); `None` on SQLite.
    async fn through_a_relay(
        test: &TestDatabase,
    ) -> Option<(DatabaseConnection, Arc<std::sync::Mutex<Vec<u8>>>)> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (server, name) = test.postgres.clone()?;
        let mut url = reqwest::Url::parse(&server).expect("TEST_DATABASE_URL is a URL");
        let upstream = format!(
            "{}:{}",
            url.host_str().expect("a host"),
            url.port().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream)
                    .await
                    .expect("the server");
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let kept = kept.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                        kept.lock().expect("the bytes").extend_from_slice(&buf[..n]);
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                });
            }
        });
        url.set_host(Some("127.0.0.1")).expect("a host");
        url.set_port(Some(port)).expect("a port");
        url.set_path(&format!("/{name}"));
        url.query_pairs_mut().append_pair("sslmode", "disable");
        let db = connect(url.as_str(), 1)
            .await
            .expect("a pool through the relay");
        Some((db, sent))
    }

    /// A connection goes back to the pool without another round trip: sqlx pinged it on
    /// every release, though it had just answered (ADR 0030). What the client sends
    /// after a statement is that statement, and nothing after it.
    #[tokio::test]
    async fn a_connection_goes_back_to_the_pool_without_a_ping() {
        let Some(relayed) = Relayed::new().await else {
            return;
        };
        let (db, sent) = (&relayed.db, &relayed.sent);
        db.execute_unprepared("SELECT 1").await.expect("a query");
        // Anything the release of that connection sends has been sent by now (within
        // `IDLE_BEFORE_PING`, so that the next acquire does not ping either).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mark = sent.lock().expect("the bytes").len();

        db.execute_unprepared("SELECT 2").await.expect("a query");
        tokio::time::sleep(Duration::from_millis(300)).await;

        // The simple-query message of `SELECT 2`: 'Q', its length, the text and a NUL.
        let text = b"SELECT 2\0";
        let mut query = vec![b'Q'];
        query.extend_from_slice(&(4 + text.len() as u32).to_be_bytes());
        query.extend_from_slice(text);
        let after = sent.lock().expect("the bytes")[mark..].to_vec();
        assert_eq!(after, query, "the statement alone, no Sync ('S') after it");
        relayed.close().await;
    }

    /// A transaction dropped without a commit is rolled back as its connection goes
    /// back to the pool, not when the connection is next used: its locks are free at
    /// once for everyone else (the rollback sqlx queues is flushed on release).
    #[tokio::test]
    async fn a_dropped_transaction_is_rolled_back_as_its_connection_returns() {
        use sea_orm::TransactionTrait as _;
        let Some(relayed) = Relayed::new().await else {
            return;
        };
        let (test, db) = (&relayed.test, &relayed.db);
        let key = i64::from(rand::random::<u32>());
        let txn = db.begin().await.expect("a transaction");
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({key})"))
            .await
            .expect("the lock");
        drop(txn);

        // Another session takes the lock as soon as the rollback reached the server.
        let free = format!("SELECT pg_try_advisory_xact_lock({key}) AS free");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let statement = sea_orm::Statement::from_string(DbBackend::Postgres, &free);
            if scalar::<bool>(&test.db, statement, "free")
                .await
                .expect("a query")
                .expect("a flag")
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the dropped transaction still holds its lock"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        relayed.close().await;
    }

    /// A statement whose future is dropped midway leaves its connection fit for the
    /// next one: its answers are read off before the connection is used again.
    #[tokio::test]
    async fn a_statement_abandoned_midway_leaves_its_connection_usable() {
        let Some(relayed) = Relayed::new().await else {
            return;
        };
        let db = &relayed.db;
        let abandoned = tokio::time::timeout(
            Duration::from_millis(50),
            db.execute_unprepared("SELECT pg_sleep(0.5)"),
        )
        .await;
        assert!(abandoned.is_err(), "the sleep outlasts its timeout");
        for n in 0..3_i64 {
            let statement = sea_orm::Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT {n}::bigint + 1 AS n"),
            );
            let next = scalar::<i64>(db, statement, "n")
                .await
                .expect("a query on the same connection");
            assert_eq!(next, Some(n + 1));
        }
        relayed.close().await;
    }

    /// A connection the server closed is not handed out again: the statement that finds
    /// it broken fails (UNAVAILABLE, as any statement in flight when a server goes away),
    /// and the next one gets a new connection, even when the pool is used so often that no
    /// connection ever sits idle long enough to be pinged before use (ADR 0026).
    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_handed_out_again() {
        let Some(relayed) = Relayed::new().await else {
            return;
        };
        let (test, db) = (&relayed.test, &relayed.db);
        let pid_of = |db: DatabaseConnection| async move {
            let statement = sea_orm::Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_backend_pid() AS pid",
            );
            scalar::<i32>(&db, statement, "pid").await
        };
        let pid = pid_of(db.clone()).await.expect("a query").expect("a pid");
        test.db
            .execute_unprepared(&format!("SELECT pg_terminate_backend({pid}, 5000)"))
            .await
            .expect("the backend terminated");

        // Statements one after another, never a second apart: the first may find the
        // connection broken; a later one is answered by another backend.
        let mut answers = Vec::new();
        for _ in 0..5 {
            answers.push(pid_of(db.clone()).await.ok().flatten());
            if answers.last().is_some_and(Option::is_some) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let answered = answers.iter().flatten().last().copied();
        assert!(
            answered.is_some_and(|other| other != pid),
            "answers after the backend {pid} was terminated: {answers:?}"
        );
        assert!(answers.len() <= 2, "at most one failure: {answers:?}");
        relayed.close().await;
    }
}
