//! Live views: the fan-out between the change bus and view subscriptions.
//!
//! One hub per server listens on the change bus, loads each changed row **once** (by the
//! view's own loader, `view::LiveView`, registered with its projection in `read::views`)
//! and broadcasts it to every subscription, so the cost of a change does not grow with the
//! number of subscribers. A subscription ([`follow`]) emits the current state first, then
//! every change newer than what it has emitted, and never loses a change that commits
//! between the two:
//!
//! 1. it subscribes to the hub, *then* reads the projection's checkpoint `c`;
//! 2. it emits the state of its keys as of at least `c` (their rows at position ≤ `c`);
//! 3. it forwards only hub changes with a position above its cursor (`c` at first).
//!
//! A change above `c` was published after `c` was read, so after step 1: the hub delivers
//! it. The hub emits a row only when the row is exactly at the change's position (a newer
//! row means a newer change is queued behind and will carry it), so a subscription sees
//! positions in increasing order and its cursor is a safe resume point.
//!
//! A subscriber that falls behind the hub's buffer (or a hub that falls behind the bus)
//! is **conflated**: it re-reads the rows of its keys that changed since its cursor, so it
//! gets the latest state of each key and never a stale one after a newer one.
//!
//! A **rebuild** replaces rows without moving their positions, so no position tells a
//! subscription about them: the hub counts rebuilds per view (a generation, with the keys
//! each one changed), wakes the view's subscriptions, and each one whose generation is
//! behind re-sends the current state of the changed keys it watches. The generation is
//! kept beside the queue, never in it, so a full queue cannot lose it.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::Stream;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{broadcast, watch};

use super::bus::Change;
use super::checkpoints::Checkpoints;
use super::rebuild::Changed;
use super::view::{LiveView, View};
use crate::error::{AppError, AppResult};
use crate::supervise::TaskHealth;

/// Rows read per query when a subscription catches up.
pub const CATCH_UP_PAGE: u64 = 500;

/// Rebuilds remembered per view with the keys they changed; a subscription further
/// behind re-sends everything it watches.
const REBUILDS_KEPT: usize = 16;

pub use super::view::ViewChange;

#[derive(Debug, Clone)]
pub enum LiveMsg {
    Change(Arc<ViewChange>),
    /// The hub missed changes: the subscription must re-read what changed since its
    /// cursor.
    Resync,
    /// A rebuild replaced rows of the view: the subscription re-reads what it changed.
    Rebuilt,
}

/// The routing key of every order of `user_id`.
pub fn user_route(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// One subscription's queue: the hub never waits for it. A full queue drops the change
/// and flags the subscription, which then re-reads what changed (conflation).
///
/// A queue under a mutex and a `Notify`, not a `tokio::sync::mpsc` channel: an idle
/// subscription holds about a hundred bytes here (and a small buffer once it has had a
/// message) where a channel allocates a block of 32 slots and a cache-padded header up
/// front, about 1 KiB for each of ten thousand subscriptions (BENCHMARKS.md,
/// subscriptions). The hub only ever offers without waiting, and one task receives.
struct Queue {
    state: Mutex<Queued>,
    ready: tokio::sync::Notify,
    capacity: usize,
}

#[derive(Default)]
struct Queued {
    msgs: VecDeque<LiveMsg>,
    /// A message was dropped because the queue was full.
    lagged: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn offer(&self, msg: LiveMsg) {
        {
            let mut queued = self.lock();
            if queued.msgs.len() >= self.capacity {
                queued.lagged = true;
            } else {
                queued.msgs.push_back(msg);
            }
        }
        // Stores a wake-up when the subscription is not waiting: it never misses one.
        self.ready.notify_one();
    }
}

/// A registered subscription, as the hub offers to it.
type Subscriber = Arc<Queue>;

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// (projection, routing key) → subscriptions watching that key.
    by_key: HashMap<(&'static str, String), HashMap<u64, Subscriber>>,
    /// projection → subscriptions watching every key.
    every: HashMap<&'static str, HashMap<u64, Subscriber>>,
    /// projection → number of subscriptions (a change nobody watches is not loaded).
    count: HashMap<&'static str, usize>,
    /// projection → the rebuilds of its view.
    rebuilds: HashMap<&'static str, RebuildLog>,
}

/// The rebuilds of one view: how many, and the keys the latest ones changed (`None`:
/// too many to name).
#[derive(Default)]
struct RebuildLog {
    generation: u64,
    recent: VecDeque<(u64, Option<Arc<Vec<String>>>)>,
}

impl RebuildLog {
    /// The keys changed by the rebuilds after generation `since` (`None`: any key).
    fn since(&self, since: u64) -> Option<BTreeSet<String>> {
        let kept_from = self.recent.front().map_or(u64::MAX, |(g, _)| *g);
        if since + 1 < kept_from {
            return None;
        }
        let mut keys = BTreeSet::new();
        for (_, changed) in self.recent.iter().filter(|(g, _)| *g > since) {
            keys.extend(changed.as_ref()?.iter().cloned());
        }
        Some(keys)
    }
}

/// The hub. Cheap to share; `run` drives it. A change is loaded once and offered only to
/// the subscriptions watching its key (or every key of its view), each through its own
/// bounded queue, in the hub's order.
pub struct LiveViews {
    /// Every registered view, by name: the loader of its changes.
    views: HashMap<&'static str, View>,
    registry: Mutex<Registry>,
    /// The change a run of the hub failed to load: the next run delivers it first.
    pending: Mutex<Option<Change>>,
    capacity: usize,
    /// The subscriptions reading their starting state (or catching up) at once: at most
    /// as many as the database has connections. The others wait here, in a few bytes
    /// each, instead of in the pool, each in a database future of about 10 KiB: ten
    /// thousand subscribers reconnecting at once would otherwise leave the process
    /// holding twice the memory they need once started (BENCHMARKS.md, subscriptions).
    reads: tokio::sync::Semaphore,
    metrics: Arc<crate::metrics::Metrics>,
}

/// A subscription's place in the hub while alive: its queue and its lag flag.
pub struct Registration {
    hub: Arc<LiveViews>,
    projection: &'static str,
    keys: Option<Vec<String>>,
    id: u64,
    queue: Arc<Queue>,
}

impl Registration {
    /// The next message, or `Resync` when the hub had to drop one for this subscription
    /// (re-read now; what is still queued is skipped by position).
    async fn next(&mut self) -> LiveMsg {
        loop {
            {
                let mut queued = self.queue.lock();
                if std::mem::take(&mut queued.lagged) {
                    return LiveMsg::Resync;
                }
                if let Some(msg) = queued.msgs.pop_front() {
                    return msg;
                }
            }
            self.queue.ready.notified().await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = self.hub.lock();
        match &self.keys {
            Some(keys) => {
                for key in keys {
                    let slot = (self.projection, key.clone());
                    if let Some(subs) = registry.by_key.get_mut(&slot) {
                        subs.remove(&self.id);
                        if subs.is_empty() {
                            registry.by_key.remove(&slot);
                        }
                    }
                }
            }
            None => {
                if let Some(subs) = registry.every.get_mut(self.projection) {
                    subs.remove(&self.id);
                }
            }
        }
        if let Some(n) = registry.count.get_mut(self.projection) {
            *n = n.saturating_sub(1);
        }
        drop(registry);
        self.hub.metrics.subscription_closed(self.projection);
    }
}

impl LiveViews {
    pub fn new(
        views: &[View],
        capacity: usize,
        reads: usize,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            views: views.iter().map(|v| (v.name(), v.clone())).collect(),
            registry: Mutex::new(Registry::default()),
            pending: Mutex::new(None),
            capacity: capacity.max(1),
            reads: tokio::sync::Semaphore::new(reads.max(1)),
            metrics,
        })
    }

    /// A turn to read a subscription's rows from the database (see `reads`), held until
    /// dropped. (`reads` is never closed; if it were, reads would go on without turns.)
    async fn read_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.reads.acquire().await.ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a subscription to `keys` of `projection` (every key when `None`).
    fn register(
        self: &Arc<Self>,
        projection: &'static str,
        keys: Option<Vec<String>>,
    ) -> Registration {
        let queue = Arc::new(Queue {
            state: Mutex::default(),
            ready: tokio::sync::Notify::new(),
            capacity: self.capacity,
        });
        let subscriber = queue.clone();
        let mut registry = self.lock();
        registry.next_id += 1;
        let id = registry.next_id;
        match &keys {
            Some(keys) => {
                for key in keys {
                    registry
                        .by_key
                        .entry((projection, key.clone()))
                        .or_default()
                        .insert(id, subscriber.clone());
                }
            }
            None => {
                registry
                    .every
                    .entry(projection)
                    .or_default()
                    .insert(id, subscriber);
            }
        }
        *registry.count.entry(projection).or_default() += 1;
        drop(registry);
        self.metrics.subscription_opened(projection);
        Registration {
            hub: self.clone(),
            projection,
            keys,
            id,
            queue,
        }
    }

    /// Whether any subscription watches `projection` (a change nobody watches is neither
    /// loaded here nor read by the doorbell listener).
    pub(crate) fn watched(&self, projection: &str) -> bool {
        self.lock().count.get(projection).is_some_and(|n| *n > 0)
    }

    /// The registered view called `name`.
    pub(crate) fn view(&self, name: &str) -> Option<&View> {
        self.views.get(name)
    }

    /// The registered views' names.
    pub(crate) fn view_names(&self) -> Vec<&'static str> {
        self.views.keys().copied().collect()
    }

    /// Offers a loaded change to the subscriptions watching it.
    fn route(&self, change: ViewChange) {
        let change = Arc::new(change);
        let registry = self.lock();
        let mut offered = std::collections::HashSet::new();
        let keyed = change
            .routes
            .iter()
            .filter_map(|key| registry.by_key.get(&(change.projection, key.clone())));
        let every = registry.every.get(change.projection);
        for subs in keyed.chain(every) {
            for (id, sub) in subs {
                // A subscription watching two routes of one change gets it once.
                if offered.insert(*id) {
                    sub.offer(LiveMsg::Change(change.clone()));
                }
            }
        }
    }

    /// A rebuild replaced rows of `projection`'s view: each of its subscriptions re-sends
    /// the current state of the changed keys it watches.
    pub fn rebuilt(&self, projection: &'static str, changed: Changed) {
        let changed = match changed {
            Changed::Keys(keys) if keys.is_empty() => return,
            Changed::Keys(keys) => Some(Arc::new(keys)),
            Changed::TooMany => None,
        };
        let mut registry = self.lock();
        let log = registry.rebuilds.entry(projection).or_default();
        log.generation += 1;
        let generation = log.generation;
        log.recent.push_back((generation, changed));
        if log.recent.len() > REBUILDS_KEPT {
            log.recent.pop_front();
        }
        let mut woken = HashSet::new();
        let keyed = registry
            .by_key
            .iter()
            .filter(|((p, _), _)| *p == projection)
            .map(|(_, subs)| subs);
        for subs in keyed.chain(registry.every.get(projection)) {
            for (id, sub) in subs {
                if woken.insert(*id) {
                    // A full queue flags the subscription, which then looks too.
                    sub.offer(LiveMsg::Rebuilt);
                }
            }
        }
    }

    /// How many rebuilds `projection`'s view has had.
    fn generation(&self, projection: &'static str) -> u64 {
        self.lock()
            .rebuilds
            .get(projection)
            .map_or(0, |log| log.generation)
    }

    /// The current generation of `projection`, and the keys the rebuilds after `since`
    /// changed (`None`: any key).
    fn rebuilt_since(
        &self,
        projection: &'static str,
        since: u64,
    ) -> (u64, Option<BTreeSet<String>>) {
        match self.lock().rebuilds.get(projection) {
            Some(log) => (log.generation, log.since(since)),
            None => (0, Some(BTreeSet::new())),
        }
    }

    /// Loads the state a change names, by its view's loader. A change of a view that is
    /// not registered is an error (the run ends, and the supervisor says so), never a
    /// change dropped in silence; `View::of` makes every registered view loadable.
    async fn load(
        &self,
        db: &DatabaseConnection,
        change: &Change,
    ) -> Result<Option<ViewChange>, DbErr> {
        match self.views.get(change.projection) {
            Some(view) => view.load(db, change).await,
            None => Err(DbErr::Custom(format!(
                "live views: {} is not a registered view",
                change.projection
            ))),
        }
    }

    /// Every subscription re-reads: the hub itself missed changes.
    fn resync_all(&self) {
        let registry = self.lock();
        for sub in registry
            .by_key
            .values()
            .chain(registry.every.values())
            .flat_map(|subs| subs.values())
        {
            sub.offer(LiveMsg::Resync);
        }
    }

    /// Loads and routes one change; on failure keeps it for the next run of the hub.
    async fn deliver(&self, db: &DatabaseConnection, change: Change) -> anyhow::Result<()> {
        match self.load(db, &change).await {
            Ok(Some(state)) => self.route(state),
            Ok(None) => {}
            Err(e) => {
                let what = format!(
                    "loading the change of {} {} at position {}",
                    change.projection, change.key, change.position
                );
                *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(change);
                return Err(anyhow::Error::new(e).context(what));
            }
        }
        Ok(())
    }

    /// Listens on `changes` until `shutdown`. The first run's `changes` must be
    /// subscribed before the relay runs. A run that cannot load a change ends with the
    /// error (the supervisor starts another); the next run, `restarted`, first delivers
    /// that change, and only then is up, and has every subscriber re-read what was
    /// published while the hub was down.
    pub async fn run(
        self: Arc<Self>,
        mut changes: broadcast::Receiver<Change>,
        restarted: bool,
        db: DatabaseConnection,
        up: TaskHealth,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(change) = pending {
            self.deliver(&db, change).await?;
        }
        up.ready();
        if restarted {
            self.resync_all();
        }
        loop {
            let change = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                change = changes.recv() => change,
            };
            match change {
                Ok(change) => {
                    if self.watched(change.projection) {
                        self.deliver(&db, change).await?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "live views fell behind the change bus; subscribers re-read"
                    );
                    self.metrics.subscriber_lagged("hub");
                    self.resync_all();
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
}

/// The state of one key of the view `W` watches.
pub type LiveState<W> = <<W as Watch>::View as LiveView>::State;

/// States of keys of the view `W` watches, each with the position it reflects, oldest
/// first.
pub type Positioned<W> = Vec<(i64, LiveState<W>)>;

/// What a subscription watches, and who may see what.
#[async_trait::async_trait]
pub trait Watch: Send + Sync + 'static {
    /// The view whose changes concern this watch.
    type View: LiveView;

    /// The routing keys watched (a row's key; `user_route` for a user's orders), or
    /// `None` for every key of the projection.
    fn keys(&self) -> Option<Vec<String>>;

    /// The current state of each watched key, oldest first, when the subscription names
    /// its keys (emitted first); `None` when it is open-ended (all products, all orders).
    async fn current(
        &self,
        db: &DatabaseConnection,
        checkpoint: i64,
    ) -> Result<Option<Positioned<Self>>, DbErr>;

    /// Watched keys whose rows are at a position in `(after, upto]`, oldest first, at
    /// most `limit`.
    async fn changed(
        &self,
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Positioned<Self>, DbErr>;

    /// The current rows of those of `keys` (change keys: [`Change::key`]) that this
    /// watch covers and the caller may see, oldest first.
    async fn rows(
        &self,
        db: &DatabaseConnection,
        keys: &BTreeSet<String>,
        upto: i64,
    ) -> Result<Positioned<Self>, DbErr>;

    /// Whether a live state concerns this watch and the caller may see it.
    fn accepts(&self, state: &LiveState<Self>) -> bool;
}

/// A watch of one key of the view `V`, read whole by the view's own loader
/// ([`LiveView::load`]): a user's cart, the dashboard's figures. Its state comes first,
/// then each change of it; the hub routes it no other key's.
pub struct OneKey<V> {
    key: String,
    view: PhantomData<fn() -> V>,
}

impl<V> OneKey<V> {
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            view: PhantomData,
        }
    }
}

#[async_trait::async_trait]
impl<V: LiveView> Watch for OneKey<V> {
    type View = V;

    fn keys(&self) -> Option<Vec<String>> {
        Some(vec![self.key.clone()])
    }

    async fn current(
        &self,
        db: &DatabaseConnection,
        checkpoint: i64,
    ) -> Result<Option<Positioned<Self>>, DbErr> {
        Ok(Some(
            V::load(db, &self.key, checkpoint)
                .await?
                .into_iter()
                .collect(),
        ))
    }

    /// The state, when it moved after `after`: up to `upto`, or beyond it when the view
    /// says a newer state is what a change at `upto` sends ([`LiveView::sends`]: the
    /// dashboard's figures, which have no position of their own).
    async fn changed(
        &self,
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        _limit: u64,
    ) -> Result<Positioned<Self>, DbErr> {
        let state = V::load(db, &self.key, upto).await?;
        Ok(state
            .filter(|(p, _)| *p > after && (*p <= upto || V::sends(*p, upto)))
            .into_iter()
            .collect())
    }

    async fn rows(
        &self,
        db: &DatabaseConnection,
        keys: &BTreeSet<String>,
        upto: i64,
    ) -> Result<Positioned<Self>, DbErr> {
        if !keys.contains(&self.key) {
            return Ok(vec![]);
        }
        Ok(V::load(db, &self.key, upto).await?.into_iter().collect())
    }

    fn accepts(&self, _: &V::State) -> bool {
        true
    }
}

/// How a subscription ends besides its client leaving.
#[derive(Clone)]
pub struct Limits {
    /// Flips to true when the server drains.
    pub drain: watch::Receiver<bool>,
    /// The caller's token expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Limits {
    /// Resolves with the error that ends the subscription.
    pub async fn ended(&mut self, cursor: i64) -> AppError {
        self.ending().await.at(cursor)
    }

    /// Resolves with why the subscription ends; `Ending::at` makes it the error, with
    /// the position to resume after.
    pub async fn ending(&mut self) -> Ending {
        let expiry = async {
            match self.expires_at {
                Some(at) => {
                    let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                    tokio::time::sleep(left).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = async { let _ = self.drain.wait_for(|d| *d).await; } => Ending::Draining,
            _ = expiry => Ending::Expired,
        }
    }

    pub fn draining(&self) -> bool {
        *self.drain.borrow()
    }
}

/// Why a subscription ends.
pub enum Ending {
    /// The server drains.
    Draining,
    /// The caller's token expired.
    Expired,
}

impl Ending {
    /// The error the subscription ends with, `cursor` being the last position it sent.
    pub fn at(self, cursor: i64) -> AppError {
        match self {
            Ending::Draining => AppError::ServerDraining { position: cursor },
            Ending::Expired => AppError::Unauthenticated("the token expired: sign in again".into()),
        }
    }
}

/// Everything a subscription needs from the server.
#[derive(Clone)]
pub struct Source {
    pub hub: Arc<LiveViews>,
    pub db: DatabaseConnection,
    pub checkpoints: Arc<Checkpoints>,
}

/// The current rows of the watched keys whose rows moved into `(after, upto]`, oldest
/// first, read a page at a time (a subscription never holds more than a page of them);
/// ends after an error.
fn catch_up<'a, W: Watch>(
    watch: &'a W,
    hub: &'a LiveViews,
    db: &'a DatabaseConnection,
    after: i64,
    upto: i64,
) -> impl Stream<Item = AppResult<LiveState<W>>> + Send + 'a {
    async_stream::stream! {
        let mut from = after;
        while from < upto {
            let turn = hub.read_turn().await;
            let page = watch.changed(db, from, upto, CATCH_UP_PAGE).await;
            drop(turn);
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    yield Err(e.into());
                    return;
                }
            };
            let full = page.len() as u64 == CATCH_UP_PAGE;
            if let Some((last, _)) = page.last() {
                from = *last;
            }
            for (_, item) in page {
                yield Ok(item);
            }
            if !full {
                break;
            }
        }
    }
}

enum Step {
    Ended(Ending),
    Msg(LiveMsg),
}

/// The state of `watch`'s keys first (or, for an open-ended watch, what changed after
/// `after`), then every change, in position order; see the module documentation.
pub fn follow<W: Watch>(
    source: Source,
    watch: W,
    after: Option<i64>,
    mut limits: Limits,
) -> impl Stream<Item = AppResult<LiveState<W>>> + Send {
    async_stream::stream! {
        let projection = W::View::NAME;
        // A view missing from `read::views()` would never change: say so at once.
        if !source.hub.views.contains_key(projection) {
            yield Err(AppError::Internal(anyhow::anyhow!(
                "{projection} is not a registered view (read::views)"
            )));
            return;
        }
        // Registered before the checkpoint is read: no change above it is missed.
        let mut registration = source.hub.register(projection, watch.keys());
        // The state read below is at least as new as every rebuild counted here.
        let mut rebuilt = source.hub.generation(projection);
        let checkpoint = source.checkpoints.get(projection);
        let mut cursor = checkpoint.max(after.unwrap_or(0));
        let turn = source.hub.read_turn().await;
        let current = watch.current(&source.db, checkpoint).await;
        drop(turn);
        match current {
            Ok(Some(states)) => {
                if let [(position, _)] = states.as_slice() {
                    // One key: its row, however new, is the state to start from.
                    cursor = cursor.max(*position);
                }
                let several = states.len() > 1;
                for (position, item) in states {
                    // Several keys: rows above the checkpoint come from the hub, in order.
                    if !several || position <= checkpoint {
                        yield Ok(item);
                    }
                }
            }
            Ok(None) => {
                if let Some(after) = after {
                    for await item in Box::pin(catch_up(&watch, &source.hub, &source.db, after, checkpoint)) {
                        let failed = item.is_err();
                        yield item;
                        if failed { return; }
                    }
                }
            }
            Err(e) => {
                yield Err(e.into());
                return;
            }
        }
        // One future for the subscription's life, not one (and a timer) per message.
        let mut ending = std::pin::pin!(limits.ending());
        loop {
            let step = tokio::select! {
                biased;
                ending = &mut ending => Step::Ended(ending),
                msg = registration.next() => Step::Msg(msg),
            };
            match step {
                Step::Ended(ending) => {
                    yield Err(ending.at(cursor));
                    return;
                }
                Step::Msg(LiveMsg::Change(change)) => {
                    if change.projection != projection || change.position <= cursor {
                        continue;
                    }
                    cursor = change.position;
                    if let Some(state) = change.state.downcast_ref::<LiveState<W>>()
                        && watch.accepts(state)
                    {
                        yield Ok(state.clone());
                    }
                }
                Step::Msg(msg @ (LiveMsg::Resync | LiveMsg::Rebuilt)) => {
                    // Conflate: re-read what changed since the cursor; what is still
                    // queued is skipped by position.
                    if matches!(msg, LiveMsg::Resync) {
                        source.hub.metrics.subscriber_lagged(projection);
                    }
                    let upto = source.checkpoints.get(projection);
                    for await item in Box::pin(catch_up(&watch, &source.hub, &source.db, cursor, upto)) {
                        let failed = item.is_err();
                        yield item;
                        if failed { return; }
                    }
                    cursor = cursor.max(upto);
                    // Then what rebuilds replaced since it last looked: the current rows
                    // of those keys, up to `upto` (newer ones are queued behind).
                    let (generation, changed) = source.hub.rebuilt_since(projection, rebuilt);
                    if generation > rebuilt {
                        rebuilt = generation;
                        let turn = source.hub.read_turn().await;
                        let rows = match changed {
                            Some(keys) => watch.rows(&source.db, &keys, upto).await.map(Some),
                            None => watch.current(&source.db, upto).await,
                        };
                        drop(turn);
                        match rows {
                            Ok(Some(rows)) => {
                                for (position, item) in rows {
                                    if position <= upto {
                                        yield Ok(item);
                                    }
                                }
                            }
                            // Open-ended, and anything may have changed: all of it.
                            Ok(None) => {
                                for await item in Box::pin(catch_up(&watch, &source.hub, &source.db, 0, upto)) {
                                    let failed = item.is_err();
                                    yield item;
                                    if failed { return; }
                                }
                            }
                            Err(e) => { yield Err(e.into()); return; }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::events;
    use sea_orm::TransactionTrait;
    use uuid::Uuid;

    /// Folds the events of `log` that `view`'s projection wants, in one transaction, and
    /// returns the changes it announces.
    async fn fold(db: &DatabaseConnection, view: &View, log: &[events::Model]) -> Vec<Change> {
        let txn = db.begin().await.expect("a transaction");
        let wanted: Vec<events::Model> = log
            .iter()
            .filter(|e| crate::log::reader::Wanted::any(view.projection.wants(), e))
            .cloned()
            .collect();
        let changes = view
            .projection
            .apply(&txn, &wanted)
            .await
            .unwrap_or_else(|e| panic!("{} folds the golden log: {e}", view.name()));
        txn.commit().await.expect("commits");
        changes
    }

    /// Every registered view's projection announces changes of the golden log (every
    /// aggregate's fixture stream, `log::golden`), and its live loader loads each one at its
    /// position: a view whose loader cannot read what its projection announces fails here,
    /// not in a subscription that stays silent.
    #[tokio::test]
    async fn every_registered_view_loads_the_changes_its_projection_announces() {
        let db = crate::db::in_memory().await;
        let views = super::super::views();
        let hub = LiveViews::new(&views, 16, 4, Arc::new(crate::metrics::Metrics::default()));
        let log = crate::log::golden::log();
        for view in &views {
            let changes = fold(&db, view, &log).await;
            assert!(!changes.is_empty(), "{} announces a change", view.name());
            // The latest change of each key: an earlier one's row has moved on since (a
            // newer change sends it), which the hub tells by loading nothing.
            let latest: std::collections::BTreeMap<String, Change> = changes
                .into_iter()
                .map(|change| (change.key.clone(), change))
                .collect();
            for change in latest.into_values() {
                let loaded = hub
                    .load(&db, &change)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", view.name()))
                    .unwrap_or_else(|| panic!("{} loads {change:?}", view.name()));
                assert_eq!(loaded.projection, view.name());
                assert!(loaded.position >= change.position, "{change:?}");
                assert_eq!(loaded.routes[0], change.key);
            }
        }
        // A name no view can have (not one word): the worked example of
        // docs/adding-a-view.md, a wishlist, must not collide with it.
        let unknown = Change {
            projection: "not a registered view",
            key: Uuid::nil().to_string(),
            position: 1,
        };
        assert!(hub.load(&db, &unknown).await.is_err());
    }

    /// What every replica reads after a doorbell (`read::doorbell`): each registered
    /// view's `moved` names every key its projection announced in the range, at the
    /// position of the key's latest change (or later). A view that deleted the row
    /// carrying a change, or read the wrong column, fails here: its subscribers on the
    /// other replicas would never hear of the change.
    #[tokio::test]
    async fn every_registered_view_names_the_keys_that_moved_in_a_range() {
        let db = crate::db::in_memory().await;
        let log = crate::log::golden::log();
        let upto = log.last().map_or(0, |e| e.position);
        for view in super::super::views() {
            let changes = fold(&db, &view, &log).await;
            let moved = view
                .moved(&db, 0, upto, 100)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", view.name()));
            assert!(
                moved.windows(2).all(|w| w[0].position <= w[1].position),
                "{}: oldest first: {moved:?}",
                view.name()
            );
            for change in &changes {
                assert!(
                    moved
                        .iter()
                        .any(|m| m.key == change.key && m.position >= change.position),
                    "{} names {change:?} among {moved:?}",
                    view.name()
                );
            }
            // A page holds at most `limit`.
            assert!(view.moved(&db, 0, upto, 1).await.expect("reads").len() <= 1);
        }
    }
}
