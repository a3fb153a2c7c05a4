//! Changes reach every replica (PostgreSQL; ADR 0013, docs/adr/0013-doorbells.md).
//!
//! Every replica serves every subscription, but one process folds a view. The folding
//! projector rings a small **doorbell** inside its fold transaction ([`Folded::ring`]:
//! `pg_notify('og_view', {"p", "from", "upto", "h", "n"})`), which PostgreSQL delivers at
//! commit, in commit order, and never for a rollback. Each replica runs one
//! [`Doorbells`] listener on a connection of its own, and keeps how far it has read each
//! view (`seen[p]`). On a doorbell with `upto > seen[p]` it
//!
//! 1. advances the local [`Checkpoints`] to `upto` first (read-your-writes, and every
//!    subscription that starts from now on reads its state at or after it), then
//! 2. reads the view rows whose position moved into `(seen[p], upto]`, in position order
//!    (`LiveView::moved`: one indexed query per view per doorbell per replica, however
//!    many subscribers it has, and none when nobody watches the view), and delivers them
//!    to the local hub through the [`DoorbellBus`], as the relay did in one process;
//! 3. raises the horizon the event feed follows to the doorbell's `h` (a safe horizon:
//!    every position at or below it is final), so an `events` subscriber on any replica
//!    gets every event in order.
//!
//! The folding replica reads its own doorbells like any other: one path, so a change
//! reaches each subscriber once and in the order of the log, whoever folded it.
//!
//! **Loss heals itself.** A read always covers `(seen[p], upto]`, so a lost doorbell is
//! made up by the next one; `try_recv()` answering `Ok(None)` means the listener's
//! connection dropped (PostgreSQL forgets what it would have delivered), and the listener
//! re-reads every stored checkpoint at once; a poll of the checkpoints every 500 ms is the
//! backstop for a connection that dies silently.
//!
//! The same connection hears **writer hints** (`og_wake`: another replica committed a
//! command; wake the local relay and saga now instead of at their next poll) and
//! **rebuild notices** (`og_rebuild`: a swap recorded in `rebuild_notices` which keys it
//! changed; every replica re-sends them, as `LiveViews::rebuilt` does in one process).
//! Hints leave this replica coalesced, at most one per [`HINT_EVERY`], each in a
//! statement of its own after the command committed: a NOTIFY inside a write transaction
//! would take PostgreSQL's database-wide notify lock at every command's commit.
//!
//! SQLite is one process: none of this runs there; the relay publishes in process.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, watch};
use uuid::Uuid;

use super::bus::{Change, DoorbellBus};
use super::cache::CatalogCache;
use super::catalog::catalog_view;
use super::checkpoints::{self, Checkpoints};
use super::live::LiveViews;
use super::rebuild::Changed;
use crate::cluster::member::ClusterState;
use crate::supervise::TaskHealth;
use crate::write::Wakeup;

/// The channel of view doorbells (and horizon-only doorbells).
pub const VIEW_CHANNEL: &str = "og_view";
/// The channel of writer hints.
pub const WAKE_CHANNEL: &str = "og_wake";
/// The channel of rebuild notices.
pub const REBUILD_CHANNEL: &str = "og_rebuild";

/// The `application_name` of every listener connection (followed by `/` and the node id):
/// how an operator, or a test, finds them in `pg_stat_activity`.
pub const LISTENER_APPLICATION: &str = "ordergraph-listener";

/// The backstop: how often the listener re-reads the stored checkpoints and notices.
pub const POLL: Duration = Duration::from_millis(500);

/// At most one writer hint per replica per this long.
pub const HINT_EVERY: Duration = Duration::from_millis(2);

/// How long the local horizon may run ahead of every doorbell heard before a
/// horizon-only doorbell says so (a fold's doorbell usually carries it first).
const HORIZON_BELL_AFTER: Duration = Duration::from_millis(5);

/// View rows read per query after a doorbell.
const PAGE: u64 = 500;

/// Rebuild notices read per query.
const NOTICES_PAGE: u64 = 100;

/// Key of the advisory lock under which rebuild notices are recorded ("ogrbnote"): their
/// ids then commit in order, so reading `id > last` never skips a late one.
const NOTICE_LOCK: i64 = 0x6f67_7262_6e6f_7465;

/// What a doorbell says. A fold's: which view, the range it folded, the safe horizon
/// then, and how many changes it announced. A horizon-only doorbell has only `h`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Bell {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upto: Option<i64>,
    h: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<u64>,
    /// The keys of the rows the fold changed, when few (at most `KEYS_IN_A_BELL`): a
    /// replica then drops its copies of those rows only (`Checkpoints::changed_keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<Vec<String>>,
    /// The catalog's rows as the fold wrote them, when it names their keys and they fit
    /// ([`ROWS_IN_A_BELL`]): a replica keeps them as copies (ADR 0023), so that a
    /// mutation it took answers without reading its product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<Vec<CarriedRow>>,
}

/// The most keys a doorbell names (36-byte ids: about 650 bytes, far below PostgreSQL's
/// 8 000-byte payload); a fold that changed more rows says only how many.
const KEYS_IN_A_BELL: usize = 16;

/// The longest doorbell that carries rows (`Bell::r`); a longer one goes without them,
/// well below PostgreSQL's limit of 8 000 bytes.
const ROWS_IN_A_BELL: usize = 7_000;

/// A row of `catalog_view` in a doorbell: every column, so that it is exactly the row a
/// read of the view after the fold returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CarriedRow {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    price_cents: i64,
    stock: i64,
    status: String,
    review_count: i64,
    rating_total: i64,
    version: i64,
    updated_at: chrono::DateTime<chrono::Utc>,
    position: i64,
}

impl From<&catalog_view::Model> for CarriedRow {
    fn from(row: &catalog_view::Model) -> Self {
        let row = row.clone();
        Self {
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            price_cents: row.price_cents,
            stock: row.stock,
            status: row.status,
            review_count: row.review_count,
            rating_total: row.rating_total,
            version: row.version,
            updated_at: row.updated_at,
            position: row.position,
        }
    }
}

impl From<CarriedRow> for catalog_view::Model {
    fn from(row: CarriedRow) -> Self {
        Self {
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            price_cents: row.price_cents,
            stock: row.stock,
            status: row.status,
            review_count: row.review_count,
            rating_total: row.rating_total,
            version: row.version,
            updated_at: row.updated_at,
            position: row.position,
        }
    }
}

/// A NOTIFY inside the caller's transaction (a fold's doorbell): delivered at its commit.
async fn notify<C: ConnectionTrait>(db: &C, channel: &str, payload: &str) -> Result<(), DbErr> {
    send(db, "SELECT pg_notify($1, $2)", channel, payload).await
}

/// A NOTIFY in a transaction of its own that does not wait for its commit to be flushed
/// to disk: a writer hint or a horizon-only doorbell, which the next one or a poll makes
/// up for if lost. A NOTIFY takes a transaction id, so with the default
/// `synchronous_commit = on` each one was a commit that waited for a WAL flush: on 3
/// replicas under load, up to 1 500 of them a second besides the writes themselves.
async fn notify_now(db: &DatabaseConnection, channel: &str, payload: &str) -> Result<(), DbErr> {
    let sql = "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)";
    send(db, sql, channel, payload).await
}

async fn send<C: ConnectionTrait>(
    db: &C,
    sql: &str,
    channel: &str,
    payload: &str,
) -> Result<(), DbErr> {
    let values = [channel.into(), payload.into()];
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    db.execute_raw(statement).await.map(|_| ())
}

/// What a fold's doorbell says: `projection` folded `(from, upto]`, the safe horizon was
/// `horizon`, and the fold announced `changes` changes, of the rows `keys` when known
/// (the keys of every row it wrote).
pub struct Folded<'a> {
    pub projection: &'a str,
    pub from: i64,
    pub upto: i64,
    pub horizon: i64,
    pub changes: usize,
    pub keys: Option<&'a [Change]>,
    /// The catalog's rows the fold wrote, as it wrote them (`FoldedRows`); empty for
    /// every other view.
    pub rows: &'a [catalog_view::Model],
}

/// A view's move a replica hears of: folded up to `upto` (the fold, if known, started at
/// `from` and announced changes when `changed`, of the rows `keys` when it said, and
/// carried the catalog's `rows` when they fit), or a stored checkpoint found further.
struct Moved<'a> {
    name: &'a str,
    upto: i64,
    from: Option<i64>,
    changed: bool,
    keys: Option<&'a [String]>,
    rows: Option<Vec<CarriedRow>>,
}

impl<'a> Moved<'a> {
    /// A move of which only the position is known: anything may have changed.
    fn all(name: &'a str, upto: i64) -> Self {
        Self {
            name,
            upto,
            from: None,
            changed: true,
            keys: None,
            rows: None,
        }
    }
}

impl Folded<'_> {
    /// Rings the doorbell inside the fold's transaction (delivered at its commit, never
    /// for a rollback). Nothing on SQLite.
    ///
    /// Only projectors ring, never a command's transaction: NOTIFY serializes the commits
    /// of every notifying transaction of the database.
    pub async fn ring<C: ConnectionTrait>(&self, txn: &C) -> Result<(), DbErr> {
        match self.payload(txn)? {
            Some(payload) => notify(txn, VIEW_CHANNEL, &payload).await,
            None => Ok(()),
        }
    }

    /// [`ring`](Self::ring) for a fold that wrote no row (a page of events a view only
    /// announces), so has no transaction to ring in: one statement of its own that also
    /// moves the stored checkpoint to `upto`. The stored checkpoint is what heals a lost
    /// doorbell (every replica re-reads them on its poll and when its listener
    /// reconnects); kept in memory only, an announcement lost on its way (a listener not
    /// yet listening, a dropped connection) was never sent to any subscriber. It never
    /// moves back, and only over events that write nothing to the view, so whoever moves
    /// it (even a fenced holder) states what is true of the view. As for
    /// [`notify_now`], its commit is not flushed to disk: a move lost in a crash is
    /// announced again after the restart.
    pub async fn ring_now(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let Some(payload) = self.payload(db)? else {
            return Ok(());
        };
        let sql = "WITH stored AS (UPDATE projection_checkpoints SET position = $3, \
                   updated_at = now() WHERE name = $4 AND position < $3 RETURNING 1) \
                   SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)";
        let values = [
            VIEW_CHANNEL.into(),
            payload.into(),
            self.upto.into(),
            self.projection.into(),
        ];
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await
        .map(|_| ())
    }

    /// The payload, on PostgreSQL.
    fn payload<C: ConnectionTrait>(&self, db: &C) -> Result<Option<String>, DbErr> {
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(None);
        }
        self.encoded().map(Some)
    }

    /// The doorbell's JSON.
    fn encoded(&self) -> Result<String, DbErr> {
        let mut bell = Bell {
            p: Some(self.projection.to_owned()),
            from: Some(self.from),
            upto: Some(self.upto),
            h: self.horizon.max(self.upto),
            n: Some(self.changes as u64),
            k: self.keys.and_then(few_keys),
            r: None,
        };
        let encode =
            |bell: &Bell| serde_json::to_string(bell).map_err(|e| DbErr::Custom(e.to_string()));
        // Rows only with the keys they are the rows of: a replica keeps them in the
        // epoch whose move named those keys.
        if bell.k.is_some() && !self.rows.is_empty() {
            bell.r = Some(self.rows.iter().map(CarriedRow::from).collect());
            let payload = encode(&bell)?;
            if payload.len() <= ROWS_IN_A_BELL {
                return Ok(payload);
            }
            bell.r = None;
        }
        encode(&bell)
    }
}

/// The distinct keys of `changes`, when at most `KEYS_IN_A_BELL`.
fn few_keys(changes: &[Change]) -> Option<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    for change in changes {
        if !keys.contains(&change.key) {
            if keys.len() == KEYS_IN_A_BELL {
                return None;
            }
            keys.push(change.key.clone());
        }
    }
    Some(keys)
}

/// Records, inside a rebuild's swap transaction, which keys of `projection` the swap
/// changed (`None`: too many to name), and tells every replica (PostgreSQL; in one SQLite
/// process the server re-sends directly). Notices older than a day are pruned here.
pub async fn notice_rebuild<C: ConnectionTrait>(
    txn: &C,
    projection: &str,
    changed: Option<&BTreeSet<String>>,
) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let pg = |sql: &str, values: Vec<sea_orm::Value>| {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
    };
    txn.execute_raw(pg(
        "SELECT pg_advisory_xact_lock($1)",
        vec![NOTICE_LOCK.into()],
    ))
    .await?;
    txn.execute_raw(pg(
        "DELETE FROM rebuild_notices WHERE created_at < now() - interval '1 day'",
        vec![],
    ))
    .await?;
    let keys = changed.map(|keys| serde_json::json!(keys));
    let id: i64 = txn
        .query_one_raw(pg(
            "INSERT INTO rebuild_notices (projection, keys, created_at) \
             VALUES ($1, $2, now()) RETURNING id",
            vec![projection.into(), keys.into()],
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "id"))
        .transpose()?
        .ok_or_else(|| DbErr::Custom("the rebuild notice has no id".into()))?;
    notify(txn, REBUILD_CHANNEL, &id.to_string()).await
}

/// What the listener's reader task hears.
enum Heard {
    Note {
        channel: String,
        payload: String,
    },
    /// The connection dropped (and is being made again): what it would have delivered
    /// meanwhile is lost.
    Lost,
}

/// Where the listener is: how far it has read each view, the last rebuild notice
/// handled, and the highest horizon a doorbell has said.
struct Seen {
    views: HashMap<&'static str, i64>,
    notice: i64,
    rung: i64,
}

/// One replica's doorbell listener, writer hints and horizon; `run` drives it.
pub struct Doorbells {
    db: DatabaseConnection,
    url: String,
    /// This process, in writer hints (its own are ignored) and `application_name`.
    node: Uuid,
    bus: Arc<DoorbellBus>,
    hub: Arc<LiveViews>,
    checkpoints: Arc<Checkpoints>,
    /// Where the catalog's rows a doorbell carries are kept (ADR 0023).
    kept: Option<Arc<CatalogCache>>,
    wakeup: Wakeup,
    /// Who else is alive: a replica alone sends no writer hints.
    cluster: Arc<ClusterState>,
    /// The highest safe horizon known here: this replica's relay's, or a doorbell's.
    horizon: watch::Sender<i64>,
    seen: Mutex<Seen>,
}

/// Aborts a helper task when the run that started it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Doorbells {
    /// The listener of a replica whose views are at `checkpoints` (as loaded at start-up:
    /// no subscriber exists yet, so nothing before them needs delivering).
    #[allow(clippy::too_many_arguments)]
    pub async fn new(
        db: DatabaseConnection,
        url: String,
        bus: Arc<DoorbellBus>,
        hub: Arc<LiveViews>,
        checkpoints: Arc<Checkpoints>,
        kept: Option<Arc<CatalogCache>>,
        wakeup: Wakeup,
        cluster: Arc<ClusterState>,
    ) -> Result<Arc<Self>, DbErr> {
        let notice = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT COALESCE(MAX(id), 0) AS id FROM rebuild_notices",
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "id"))
            .transpose()?
            .unwrap_or(0);
        let views = hub
            .view_names()
            .into_iter()
            .map(|name| (name, checkpoints.get(name)))
            .collect();
        Ok(Arc::new(Self {
            db,
            url,
            node: Uuid::new_v4(),
            bus,
            hub,
            checkpoints,
            kept,
            wakeup,
            cluster,
            horizon: watch::Sender::new(0),
            seen: Mutex::new(Seen {
                views,
                notice,
                rung: 0,
            }),
        }))
    }

    /// The highest safe horizon known on this replica, for the event feed and rebuilds.
    pub fn horizon(&self) -> watch::Receiver<i64> {
        self.horizon.subscribe()
    }

    fn raise_horizon(&self, to: i64) {
        self.horizon.send_if_modified(|known| {
            let raised = to > *known;
            if raised {
                *known = to;
            }
            raised
        });
    }

    /// Listens until `shutdown`, following `local` (this replica's relay's horizon). A
    /// run that fails (the database away, a read that fails) ends with the error and the
    /// supervisor starts another, which re-reads from where this one had read: nothing
    /// is lost across runs.
    pub async fn run(
        self: Arc<Self>,
        mut local: watch::Receiver<i64>,
        up: TaskHealth,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let listener = self.listen().await?;
        let (tx, mut heard) = mpsc::channel(1024);
        let _reader = AbortOnDrop(tokio::spawn(read_notifications(listener, tx)));
        let cluster = self.cluster.clone();
        let _hints = AbortOnDrop(tokio::spawn(send_hints(
            self.db.clone(),
            self.node,
            self.wakeup.clone(),
            move || !cluster.alone(),
        )));
        // Listening: everything committed before is in the tables.
        self.resync().await?;
        up.ready();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut horizon_bell: Option<tokio::time::Instant> = None;
        let mut following = true;
        loop {
            let due = horizon_bell;
            let bell_due = async move {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                msg = heard.recv() => match msg {
                    Some(Heard::Note { channel, payload }) => {
                        self.heard(&channel, &payload).await?;
                    }
                    Some(Heard::Lost) => {
                        tracing::warn!("the doorbell listener's connection dropped; re-reading every view");
                        self.resync().await?;
                    }
                    None => anyhow::bail!("the doorbell listener's reader stopped"),
                },
                _ = poll.tick() => self.resync().await?,
                changed = local.changed(), if following => {
                    if changed.is_err() {
                        // No local relay any more: doorbells alone carry the horizon.
                        following = false;
                        continue;
                    }
                    let at = *local.borrow_and_update();
                    self.raise_horizon(at);
                    if at > self.seen.lock().await.rung && horizon_bell.is_none() {
                        horizon_bell = Some(tokio::time::Instant::now() + HORIZON_BELL_AFTER);
                    }
                }
                () = bell_due => {
                    horizon_bell = None;
                    let at = *local.borrow();
                    let mut seen = self.seen.lock().await;
                    if at > seen.rung {
                        // The horizon moved with no fold to carry it (events no view
                        // wants, or views failed): tell the other replicas' feeds.
                        let bell = Bell { p: None, from: None, upto: None, h: at, n: None, k: None, r: None };
                        let payload = serde_json::to_string(&bell)?;
                        notify_now(&self.db, VIEW_CHANNEL, &payload).await?;
                        seen.rung = at;
                    }
                }
            }
        }
    }

    /// A listener connection of its own, named, listening on every channel.
    async fn listen(&self) -> anyhow::Result<PgListener> {
        let options: PgConnectOptions = self
            .url
            .parse()
            .context("the database URL, for the doorbell listener")?;
        let options =
            options.application_name(&format!("{LISTENER_APPLICATION}/{}", self.node.simple()));
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool)
            .await
            .context("connecting the doorbell listener")?;
        listener.ignore_pool_close_event(true);
        listener
            .listen_all([VIEW_CHANNEL, WAKE_CHANNEL, REBUILD_CHANNEL])
            .await
            .context("listening for doorbells")?;
        Ok(listener)
    }

    /// One notification.
    async fn heard(&self, channel: &str, payload: &str) -> anyhow::Result<()> {
        match channel {
            VIEW_CHANNEL => {
                let mut bell: Bell = match serde_json::from_str(payload) {
                    Ok(bell) => bell,
                    Err(e) => {
                        // Another build's doorbell: the next read or poll covers it.
                        tracing::warn!(payload, error = %e, "a doorbell this build cannot read");
                        return Ok(());
                    }
                };
                let mut seen = self.seen.lock().await;
                seen.rung = seen.rung.max(bell.h);
                if let (Some(name), Some(upto)) = (bell.p.as_deref(), bell.upto) {
                    let moved = Moved {
                        name,
                        upto,
                        from: bell.from,
                        changed: bell.n.is_none_or(|n| n > 0),
                        keys: bell.k.as_deref(),
                        rows: bell.r.take(),
                    };
                    self.read_view(&mut seen, moved).await?;
                }
                drop(seen);
                self.raise_horizon(bell.h);
            }
            // Another replica committed (this one's own hints come back too: ignored).
            WAKE_CHANNEL => match Hint::parse(payload) {
                Hint { node, .. } if node == self.node.simple().to_string() => {}
                Hint {
                    wrote: Wrote::Anything,
                    ..
                } => self.wakeup.wake_local(),
                Hint {
                    wrote: Wrote::NothingForTheSaga,
                    ..
                } => self.wakeup.wake_relay(),
                Hint {
                    wrote: Wrote::Kinds(kinds),
                    ..
                } => self.wakeup.wake_for(&kinds),
            },
            REBUILD_CHANNEL => {
                let mut seen = self.seen.lock().await;
                self.read_notices(&mut seen).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// View `name` is folded up to `upto` (the fold, if known, started at `from` and
    /// announced changes when `changed`, of the rows `keys` when it said): advance the
    /// checkpoint, then deliver the rows that moved since what was read.
    async fn read_view(&self, seen: &mut Seen, moved: Moved<'_>) -> Result<(), DbErr> {
        let Moved {
            name,
            upto,
            from,
            changed,
            keys,
            rows,
        } = moved;
        let Some(view) = self.hub.view(name) else {
            // A view of another build: nothing here watches it.
            return Ok(());
        };
        let name = view.name();
        let read = seen.views.get(name).copied().unwrap_or(0);
        if upto <= read {
            return Ok(());
        }
        // A fold that started where this replica had read, and announced nothing, moved
        // no row; past a gap (a lost doorbell, a poll) anything may have moved.
        let gap = from.is_none_or(|from| from > read);
        // First the checkpoint: a subscription starting from now on reads its state at
        // or after `upto`, and skips what is delivered below. Copies of rows that may
        // have moved are dropped before it moves (`Checkpoints::touch`), unless this
        // replica's checkpoint is there already: its own fold dropped them then.
        if (gap || changed) && self.checkpoints.get(name) < upto {
            let epoch = match keys {
                // Only those rows moved since what was read here.
                Some(keys) if !gap => {
                    let keys = keys.iter().map(String::as_str);
                    self.checkpoints.touch(name, Some(keys))
                }
                _ => self.checkpoints.touch(name, None::<std::iter::Empty<&str>>),
            };
            // The rows the doorbell carries are the view's rows in that epoch, kept as
            // copies before the checkpoint moves, as the folding replica keeps them.
            if let (Some(kept), Some(rows)) = (&self.kept, rows)
                && name == super::catalog::NAME
            {
                kept.keep_folded(epoch, rows.into_iter().map(Into::into).collect());
            }
        }
        self.checkpoints.advance(name, upto);
        if (gap || changed) && self.hub.watched(name) {
            let mut after = read;
            loop {
                let page = view.moved(&self.db, after, upto, PAGE).await?;
                let full = page.len() as u64 == PAGE;
                if let Some(last) = page.last() {
                    after = last.position;
                }
                self.bus.deliver(page);
                if !full {
                    break;
                }
            }
        }
        seen.views.insert(name, upto);
        Ok(())
    }

    /// Re-reads what the stored checkpoints and notices say: after the connection
    /// dropped, on every poll, and when a run starts.
    async fn resync(&self) -> anyhow::Result<()> {
        let rows = checkpoints::all(&self.db).await?;
        let mut seen = self.seen.lock().await;
        let mut highest = 0;
        for row in rows {
            if self.hub.view(&row.name).is_some() {
                // A stored checkpoint was folded up to at most a safe horizon: every
                // position at or below it is final.
                highest = highest.max(row.position);
                self.read_view(&mut seen, Moved::all(&row.name, row.position))
                    .await?;
            }
        }
        self.read_notices(&mut seen).await?;
        drop(seen);
        self.raise_horizon(highest);
        Ok(())
    }

    /// The rebuild notices recorded after the last one handled: each view's checkpoint
    /// as the swap left it, then its subscribers re-send the keys it changed.
    async fn read_notices(&self, seen: &mut Seen) -> Result<(), DbErr> {
        loop {
            let rows = self
                .db
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT id, projection, keys FROM rebuild_notices \
                     WHERE id > $1 ORDER BY id LIMIT $2",
                    [seen.notice.into(), (NOTICES_PAGE as i64).into()],
                ))
                .await?;
            let full = rows.len() as u64 == NOTICES_PAGE;
            for row in rows {
                let id: i64 = row.try_get("", "id")?;
                let projection: String = row.try_get("", "projection")?;
                let keys: Option<serde_json::Value> = row.try_get("", "keys")?;
                seen.notice = id;
                let Some(name) = self.hub.view(&projection).map(|v| v.name()) else {
                    continue;
                };
                let stored = checkpoints::load_one(&self.db, name).await?;
                self.checkpoints.invalidate(name);
                self.read_view(seen, Moved::all(name, stored)).await?;
                let changed = match keys.map(serde_json::from_value::<Vec<String>>) {
                    Some(Ok(keys)) => Changed::Keys(keys),
                    // Too many to name, or unreadable: every watched key is re-sent.
                    _ => Changed::TooMany,
                };
                self.hub.rebuilt(name, changed);
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// Forwards what the listener hears; a dropped connection is reported (`Lost`) once it
/// is listening again, so a re-read then misses nothing.
async fn read_notifications(mut listener: PgListener, tx: mpsc::Sender<Heard>) {
    let mut pause = Duration::from_millis(50);
    loop {
        let heard = match listener.try_recv().await {
            Ok(Some(note)) => {
                pause = Duration::from_millis(50);
                Heard::Note {
                    channel: note.channel().to_owned(),
                    payload: note.payload().to_owned(),
                }
            }
            Ok(None) => Heard::Lost,
            Err(e) => {
                // The server ended the session (its FATAL message arrives as an error) or
                // cannot be reached: the next call reconnects and says `Ok(None)`.
                tracing::warn!(error = %e, "the doorbell listener's connection failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                Heard::Lost
            }
        };
        if tx.send(heard).await.is_err() {
            return;
        }
    }
}

/// A writer hint: the node that committed, and what it committed since its last hint.
/// On the wire, the node id alone (what every version sends, and means "wake
/// everything"), followed by ` relay` (an earlier build: wake the projectors and the
/// publisher only), or followed by ` kinds ` and the kinds of events, `stream/Event`
/// comma-separated (wake the saga if it reads any, and the relay if a reader of this
/// replica wants any).
#[derive(Debug, PartialEq, Eq)]
struct Hint<'a> {
    node: &'a str,
    wrote: Wrote<'a>,
}

/// What a writer hint says was committed.
#[derive(Debug, PartialEq, Eq)]
enum Wrote<'a> {
    /// Anything: wake everything.
    Anything,
    /// Nothing the saga reads (an earlier build's hint).
    NothingForTheSaga,
    /// Events of these (stream type, event type).
    Kinds(Vec<(&'a str, &'a str)>),
}

impl<'a> Hint<'a> {
    const RELAY_ONLY: &'static str = "relay";
    const KINDS: &'static str = "kinds ";

    fn parse(payload: &'a str) -> Hint<'a> {
        let Some((node, rest)) = payload.split_once(' ') else {
            return Hint {
                node: payload,
                wrote: Wrote::Anything,
            };
        };
        let kinds = rest.strip_prefix(Self::KINDS).and_then(|list| {
            list.split(',')
                .map(|kind| kind.split_once('/'))
                .collect::<Option<Vec<_>>>()
        });
        let wrote = match kinds {
            _ if rest == Self::RELAY_ONLY => Wrote::NothingForTheSaga,
            Some(kinds) => Wrote::Kinds(kinds),
            // From a later build: wake everything rather than miss something.
            None => Wrote::Anything,
        };
        Hint { node, wrote }
    }

    fn payload(&self) -> String {
        match &self.wrote {
            Wrote::Anything => self.node.to_owned(),
            Wrote::NothingForTheSaga => format!("{} {}", self.node, Self::RELAY_ONLY),
            Wrote::Kinds(kinds) => {
                let kinds: Vec<String> = kinds.iter().map(|(s, e)| format!("{s}/{e}")).collect();
                format!("{} {}{}", self.node, Self::KINDS, kinds.join(","))
            }
        }
    }
}

/// Wakes the other replicas after this one's commits: at most one hint per
/// [`HINT_EVERY`], each its own statement, never inside a command's transaction. It names
/// the kinds of events committed since the last hint (`Wakeup::take_written`), so that a
/// stock change wakes neither the saga partitions nor the projectors of views it does
/// not reach, on any replica.
pub async fn send_hints(
    db: DatabaseConnection,
    node: Uuid,
    wakeup: crate::write::Wakeup,
    anyone_listens: impl Fn() -> bool,
) {
    let mut commits = wakeup.commits();
    let node = node.simple().to_string();
    while commits.changed().await.is_ok() {
        commits.borrow_and_update();
        // Taken after the commit count: whatever commit this hint covers, its kinds were
        // recorded before it was counted.
        let written = wakeup.take_written();
        if !anyone_listens() {
            // Alone at the last look: the commit woke this replica's own readers
            // already, and a replica that starts is heard of within a look (its units
            // poll until then).
            continue;
        }
        let wrote = match &written {
            Some(kinds) => Wrote::Kinds(kinds.clone()),
            None => Wrote::Anything,
        };
        let payload = Hint { node: &node, wrote }.payload();
        if let Err(e) = notify_now(&db, WAKE_CHANNEL, &payload).await {
            // Only an optimisation: the other replicas poll.
            tracing::debug!(error = %e, "a writer hint was not sent");
        }
        tokio::time::sleep(HINT_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_names_what_was_written_and_a_bare_node_id_wakes_everything() {
        let kinds = vec![
            ("cart", "CartItemAdded"),
            ("product", "ProductStockUpdated"),
        ];
        for wrote in [
            Wrote::Anything,
            Wrote::NothingForTheSaga,
            Wrote::Kinds(kinds),
        ] {
            let hint = Hint {
                node: "0a1b",
                wrote,
            };
            assert_eq!(Hint::parse(&hint.payload()), hint);
        }
        // What replicas of earlier versions send.
        let anything = Hint {
            node: "0a1b",
            wrote: Wrote::Anything,
        };
        assert_eq!(Hint::parse("0a1b"), anything);
        let relay = Hint {
            node: "0a1b",
            wrote: Wrote::NothingForTheSaga,
        };
        assert_eq!(Hint::parse("0a1b relay"), relay);
        // Something this build cannot read wakes everything.
        assert_eq!(Hint::parse("0a1b kinds cart"), anything);
        assert_eq!(Hint::parse("0a1b twice"), anything);
    }

    #[test]
    fn a_doorbell_is_small_json_and_a_horizon_only_one_has_only_the_horizon() {
        let fold = Bell {
            p: Some("catalog".into()),
            from: Some(1200),
            upto: Some(1712),
            h: 1712,
            n: Some(3),
            k: None,
            r: None,
        };
        let text = serde_json::to_string(&fold).expect("serializes");
        assert_eq!(
            text,
            r#"{"p":"catalog","from":1200,"upto":1712,"h":1712,"n":3}"#
        );
        // Without keys, as an older build rings it: it still reads.
        assert_eq!(serde_json::from_str::<Bell>(&text).expect("parses"), fold);
        let keyed = Bell {
            k: Some(vec!["a".into(), "b".into()]),
            ..fold.clone()
        };
        let text = serde_json::to_string(&keyed).expect("serializes");
        assert_eq!(serde_json::from_str::<Bell>(&text).expect("parses"), keyed);
        let horizon: Bell = serde_json::from_str(r#"{"h":9}"#).expect("parses");
        assert_eq!((horizon.p, horizon.upto, horizon.h), (None, None, 9));
        assert_eq!(
            serde_json::to_string(&horizon_only(9)).expect("serializes"),
            r#"{"h":9}"#
        );
        // Far below PostgreSQL's 8000-byte limit on a payload, whatever the numbers.
        let widest = Bell {
            p: Some("x".repeat(64)),
            from: Some(i64::MIN),
            upto: Some(i64::MAX),
            h: i64::MAX,
            n: Some(u64::MAX),
            k: None,
            r: None,
        };
        assert!(serde_json::to_string(&widest).expect("serializes").len() < 300);
        // With as many ids as a doorbell names, still far below it.
        let changes: Vec<Change> = (0..100u128)
            .map(|i| Change {
                projection: "catalog",
                key: uuid::Uuid::from_u128(u128::MAX - i).to_string(),
                position: i as i64,
            })
            .collect();
        assert_eq!(few_keys(&changes), None);
        let keys = few_keys(&changes[..KEYS_IN_A_BELL]).expect("few enough");
        assert_eq!(keys.len(), KEYS_IN_A_BELL);
        let widest = Bell {
            k: Some(keys),
            ..widest
        };
        assert!(serde_json::to_string(&widest).expect("serializes").len() < 1_000);
        // Repeated keys count once.
        let same = vec![changes[0].clone(); 40];
        assert_eq!(few_keys(&same), Some(vec![changes[0].key.clone()]));
    }

    fn horizon_only(h: i64) -> Bell {
        Bell {
            p: None,
            from: None,
            upto: None,
            h,
            n: None,
            k: None,
            r: None,
        }
    }

    fn row(description: &str) -> catalog_view::Model {
        catalog_view::Model {
            id: Uuid::from_u128(7),
            sku: "SKU-7".into(),
            name: "Seven \"quoted\" ünïcode".into(),
            description: description.into(),
            price_cents: 1_999,
            stock: 12,
            status: "ACTIVE".into(),
            review_count: 3,
            rating_total: 11,
            version: 9,
            updated_at: chrono::DateTime::from_timestamp_micros(1_764_400_000_123_456)
                .expect("a time"),
            position: 1712,
        }
    }

    fn folded<'a>(changes: &'a [Change], rows: &'a [catalog_view::Model]) -> Folded<'a> {
        Folded {
            projection: "catalog",
            from: 1200,
            upto: 1712,
            horizon: 1712,
            changes: changes.len(),
            keys: Some(changes),
            rows,
        }
    }

    #[test]
    fn a_catalog_doorbell_carries_its_rows_exactly_when_they_fit() {
        let change = Change {
            projection: "catalog",
            key: Uuid::from_u128(7).to_string(),
            position: 1712,
        };
        let changes = [change];
        let rows = [row("a short description")];
        let payload = folded(&changes, &rows).encoded().expect("encodes");
        let bell: Bell = serde_json::from_str(&payload).expect("parses");
        let carried: Vec<catalog_view::Model> = bell
            .r
            .expect("rows carried")
            .into_iter()
            .map(Into::into)
            .collect();
        // Every column round-trips, the time to the microsecond.
        assert_eq!(carried, rows);
        // Too long to fit: the doorbell goes without them, keys and all else as before.
        let long = [row(&"x".repeat(ROWS_IN_A_BELL))];
        let payload = folded(&changes, &long).encoded().expect("encodes");
        assert!(payload.len() < ROWS_IN_A_BELL, "{}", payload.len());
        let bell: Bell = serde_json::from_str(&payload).expect("parses");
        assert_eq!((bell.r, bell.k.map(|k| k.len())), (None, Some(1)));
        // Without named keys, no rows either.
        let many: Vec<Change> = (0..=KEYS_IN_A_BELL as u128)
            .map(|i| Change {
                projection: "catalog",
                key: Uuid::from_u128(i).to_string(),
                position: 1700 + i as i64,
            })
            .collect();
        let payload = folded(&many, &rows).encoded().expect("encodes");
        let bell: Bell = serde_json::from_str(&payload).expect("parses");
        assert_eq!((bell.r, bell.k), (None, None));
    }
}
