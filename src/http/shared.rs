//! Identical subscriptions share one execution (ADR 0024).
//!
//! A GraphQL subscription costs its server an execution: async-graphql's state for the
//! operation (about 30 KiB of it, measured), a place in the hub, and for every change the
//! selection set run and the result rendered to JSON. Dashboards and storefronts open the
//! same subscription many times — ten thousand shoppers watching the product they look
//! at — so the WebSocket transport runs **one execution per distinct operation** (the
//! document, operation name, variables and extensions, and who asks: the caller's user,
//! role and token expiry) and hands each of its rendered messages to every subscription
//! that asked for it. A message is rendered once, whatever its number of subscribers.
//!
//! What a subscriber sees is what a private execution would have sent it:
//!
//! - **Joining late.** An execution remembers the messages it has sent, up to
//!   [`REPLAY`]; a subscription that joins it is sent those first, then follows. It
//!   therefore sees exactly what the execution's first subscriber saw: a current state
//!   (as of a moment before it asked), then every change since, in order — as if it had
//!   subscribed a moment earlier. Once an execution has sent more than [`REPLAY`]
//!   messages nobody joins it any more; the next identical subscription starts a new one.
//! - **Falling behind.** An execution never waits for a subscriber: each has a queue of
//!   [`QUEUE`] messages, and one whose queue is full (its client reads too slowly) is
//!   dropped from the execution and given a private one, which starts with the current
//!   state of what it watches: the same conflation a private subscription gets (the
//!   latest state of every key, never an older one after a newer one).
//! - **Only operations for which that is true are shared**: those whose every root field
//!   sends a whole current state first ([`restartable`]): `productUpdated` with `ids`,
//!   `orderUpdated` with `id`, `cartUpdated`, `dashboardUpdated`, `rebuildProgress`,
//!   `projectionsUpdated` and `clusterUpdated`, each without `after`. A subscription that
//!   resumes from `after`, the `events` feed, or one watching every product, runs alone.
//! - **Ending.** An execution ends when its last subscriber leaves (it is cancelled at
//!   once), or with its stream; its last message (`complete`, or an error such as
//!   `SERVER_DRAINING` or an expired token — the token's expiry is part of the key) goes
//!   to every subscriber.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Name, ServerError, Value, Variables};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::graphql::error::ensure_code;
use crate::metrics::Metrics;

/// Messages an execution remembers for the subscriptions that join it late.
pub const REPLAY: usize = 32;

/// Messages queued for one subscription of a shared execution before it is given a
/// private one. More than [`REPLAY`], so a joiner's replay always fits.
pub const QUEUE: usize = 128;

/// What an operation sends its subscriber.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A result, rendered (the `payload` of a `next` message).
    Next(Arc<str>),
    /// The operation failed before or instead of a result: its errors end it.
    Error(Arc<[ServerError]>),
    /// The operation's stream ended.
    Complete,
}

impl Frame {
    fn ends(&self) -> bool {
        !matches!(self, Frame::Next(_))
    }
}

/// An operation's messages, ending with its last ([`Frame::Error`] or
/// [`Frame::Complete`]).
pub type Frames = Pin<Box<dyn Stream<Item = Frame> + Send>>;

/// Starts a private execution of an operation (again, when a subscriber falls behind).
pub type Start = Arc<dyn Fn() -> Frames + Send + Sync>;

/// The shared executions of one server.
pub struct Sharing {
    /// Key → the execution identical subscriptions join (while it takes joiners).
    joinable: Mutex<HashMap<Arc<str>, Arc<Execution>>>,
    metrics: Arc<Metrics>,
    /// Off: every subscription runs its own execution.
    enabled: bool,
}

struct Execution {
    key: Arc<str>,
    state: Mutex<Audience>,
    /// Cancels the execution (set once its task is spawned).
    abort: OnceLock<tokio::task::AbortHandle>,
}

struct Audience {
    /// The messages sent so far, while the execution takes joiners (`None` after).
    sent: Option<Vec<Frame>>,
    followers: Vec<(u64, Follower)>,
    next_id: u64,
}

struct Follower {
    queue: mpsc::Sender<Frame>,
    behind: Arc<AtomicBool>,
}

impl Sharing {
    pub fn new(metrics: Arc<Metrics>, enabled: bool) -> Arc<Self> {
        Arc::new(Self {
            joinable: Mutex::new(HashMap::new()),
            metrics,
            enabled,
        })
    }

    /// The messages of an operation for one subscription: from the execution of `key`
    /// shared with identical subscriptions, or (no key) from a private one.
    pub fn follow(self: &Arc<Self>, key: Option<Arc<str>>, start: Start) -> Frames {
        let metrics = self.metrics.clone();
        let Some(key) = key.filter(|_| self.enabled) else {
            metrics.subscription_execution(1);
            return counted(start(), metrics);
        };
        let joined = self.join(&key, &start);
        Box::pin(Following {
            joined: Some(joined),
            private: None,
            start,
            metrics,
        })
    }

    fn join(self: &Arc<Self>, key: &Arc<str>, start: &Start) -> Joined {
        let existing = self.lock().get(key).cloned();
        if let Some(execution) = existing {
            if let Some(joined) = execution.join(self) {
                return joined;
            }
            self.forget(&execution);
        }
        let (execution, joined) = Execution::started(key.clone(), self);
        // A concurrent identical subscription may have started one too: the later one
        // is the one joined from now on, the other serves whoever joined it.
        self.lock().insert(key.clone(), execution.clone());
        self.metrics.subscription_execution(1);
        let task = tokio::spawn(self.clone().run(execution.clone(), start()));
        let _ = execution.abort.set(task.abort_handle());
        joined
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Execution>>> {
        self.joinable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `execution` out of the joinable ones (unless a newer one took its place).
    fn forget(&self, execution: &Arc<Execution>) {
        let mut joinable = self.lock();
        if joinable
            .get(&execution.key)
            .is_some_and(|e| Arc::ptr_eq(e, execution))
        {
            joinable.remove(&execution.key);
        }
    }

    /// Runs `execution`: each message of `frames` to every subscriber, until the last
    /// message or the last subscriber.
    async fn run(self: Arc<Self>, execution: Arc<Execution>, mut frames: Frames) {
        let _counted = ExecutionCount(self.metrics.clone());
        while let Some(frame) = frames.next().await {
            let ends = frame.ends();
            let (closed, nobody) = {
                let mut audience = execution.lock();
                let was_joinable = audience.sent.is_some();
                match &mut audience.sent {
                    Some(sent) if !ends && sent.len() < REPLAY => sent.push(frame.clone()),
                    _ => audience.sent = None,
                }
                audience.followers.retain(|(_, f)| f.offer(&frame));
                let nobody = audience.followers.is_empty();
                if nobody {
                    audience.sent = None;
                }
                (was_joinable && audience.sent.is_none(), nobody)
            };
            if closed {
                self.forget(&execution);
            }
            if ends || nobody {
                break;
            }
        }
        // Whoever still follows has had the last message: its queue ends after it.
        let mut audience = execution.lock();
        audience.sent = None;
        audience.followers.clear();
        drop(audience);
        self.forget(&execution);
    }
}

impl Execution {
    fn lock(&self) -> std::sync::MutexGuard<'_, Audience> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new execution of `key`, with its first subscriber (who has been sent nothing
    /// yet) on it.
    fn started(key: Arc<str>, sharing: &Arc<Sharing>) -> (Arc<Self>, Joined) {
        let mut audience = Audience {
            sent: Some(Vec::new()),
            followers: Vec::new(),
            next_id: 0,
        };
        let seat = audience.enlist();
        let execution = Arc::new(Execution {
            key,
            state: Mutex::new(audience),
            abort: OnceLock::new(),
        });
        let joined = execution.seat(sharing, seat);
        (execution, joined)
    }

    /// A new subscriber, sent what the execution has sent so far; `None` once it takes
    /// no joiners.
    fn join(self: &Arc<Self>, sharing: &Arc<Sharing>) -> Option<Joined> {
        let mut audience = self.lock();
        audience.sent.as_ref()?;
        let seat = audience.enlist();
        drop(audience);
        Some(self.seat(sharing, seat))
    }

    /// The subscriber `enlist`ed as `(id, frames, behind)`, seated on this execution.
    fn seat(
        self: &Arc<Self>,
        sharing: &Arc<Sharing>,
        (id, frames, behind): (u64, mpsc::Receiver<Frame>, Arc<AtomicBool>),
    ) -> Joined {
        Joined {
            frames,
            behind,
            ended: false,
            _seat: Seat {
                sharing: sharing.clone(),
                execution: self.clone(),
                id,
            },
        }
    }
}

impl Audience {
    /// Adds a follower, its queue holding what has been sent so far: its id, its end of
    /// the queue and its flag for falling behind.
    fn enlist(&mut self) -> (u64, mpsc::Receiver<Frame>, Arc<AtomicBool>) {
        let (queue, frames) = mpsc::channel(QUEUE);
        for frame in self.sent.iter().flatten() {
            // QUEUE > REPLAY: there is room for every one.
            let _ = queue.try_send(frame.clone());
        }
        let behind = Arc::new(AtomicBool::new(false));
        let id = self.next_id;
        self.next_id += 1;
        self.followers.push((
            id,
            Follower {
                queue,
                behind: behind.clone(),
            },
        ));
        (id, frames, behind)
    }
}

impl Follower {
    /// Queues `frame`; false when this subscriber is to leave the execution (gone, or
    /// too far behind: then flagged).
    fn offer(&self, frame: &Frame) -> bool {
        match self.queue.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.behind.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// A subscriber's place in an execution: leaving it cancels the execution when nobody
/// else follows it.
struct Seat {
    sharing: Arc<Sharing>,
    execution: Arc<Execution>,
    id: u64,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let nobody = {
            let mut audience = self.execution.lock();
            audience.followers.retain(|(id, _)| *id != self.id);
            let nobody = audience.followers.is_empty();
            if nobody {
                audience.sent = None;
            }
            nobody
        };
        if nobody {
            if let Some(abort) = self.execution.abort.get() {
                abort.abort();
            }
            self.sharing.forget(&self.execution);
        }
    }
}

/// One subscription's end of a shared execution.
struct Joined {
    frames: mpsc::Receiver<Frame>,
    behind: Arc<AtomicBool>,
    /// Its last message has been received.
    ended: bool,
    _seat: Seat,
}

/// A subscription following a shared execution, or a private one after it fell behind.
struct Following {
    joined: Option<Joined>,
    private: Option<Frames>,
    start: Start,
    metrics: Arc<Metrics>,
}

impl Stream for Following {
    type Item = Frame;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let this = &mut *self;
        if let Some(joined) = &mut this.joined {
            match joined.frames.poll_recv(cx) {
                Poll::Ready(Some(frame)) => {
                    joined.ended |= frame.ends();
                    return Poll::Ready(Some(frame));
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    let ended = joined.ended;
                    let behind = joined.behind.load(Ordering::Acquire);
                    this.joined = None;
                    if ended {
                        return Poll::Ready(None);
                    }
                    // Fell behind (or the execution was cut short): go on alone, from
                    // the current state.
                    if behind {
                        this.metrics.subscriber_lagged("shared");
                    }
                    this.metrics.subscription_execution(1);
                    this.private = Some(counted((this.start)(), this.metrics.clone()));
                }
            }
        }
        match &mut this.private {
            Some(frames) => frames.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

/// Counts an execution while it runs.
struct ExecutionCount(Arc<Metrics>);

impl Drop for ExecutionCount {
    fn drop(&mut self) {
        self.0.subscription_execution(-1);
    }
}

/// `frames` of a private execution, counted while they run (counted in already).
fn counted(frames: Frames, metrics: Arc<Metrics>) -> Frames {
    let count = ExecutionCount(metrics);
    Box::pin(frames.map(move |frame| {
        let _ = &count;
        frame
    }))
}

/// An execution's responses as the messages a subscriber is sent: a response without
/// data that ends the operation (validation, authorization, `SERVER_DRAINING`) is its
/// [`Frame::Error`]; each other one is rendered, at most `max_response_bytes` (a larger
/// one is replaced by an error saying so), into a [`Frame::Next`]; the end is
/// [`Frame::Complete`].
pub fn frames(
    responses: impl Stream<Item = async_graphql::Response> + Send + 'static,
    max_response_bytes: usize,
) -> Frames {
    let render = move |response: async_graphql::Response| {
        let mut budget = max_response_bytes;
        Frame::Next(Arc::from(super::bounded_json(&response, &mut budget)))
    };
    // Only small things live across a `yield` (a rendered frame, a boxed response): this
    // stream is held by every subscription for its whole life, and a `Response` kept
    // across a `yield` would make each one hold a few of them (BENCHMARKS.md,
    // subscriptions).
    Box::pin(async_stream::stream! {
        let mut responses = std::pin::pin!(responses);
        let mut held: Option<Box<async_graphql::Response>> = None;
        while let Some(mut response) = responses.next().await {
            response.errors.iter_mut().for_each(ensure_code);
            let previous = held.take().map(|previous| render(*previous));
            let next = if response.data == Value::Null && !response.errors.is_empty() {
                held = Some(Box::new(response));
                None
            } else {
                Some(render(response))
            };
            if let Some(previous) = previous {
                yield previous;
            }
            if let Some(next) = next {
                yield next;
            }
        }
        match held {
            Some(failed) => yield Frame::Error(failed.errors.into()),
            None => yield Frame::Complete,
        }
    })
}

/// Whether a private execution started afresh is a valid continuation of the operation
/// named `operation_name` in `query` with `variables`: every root field of its selection
/// sends a complete current state first (see the module's documentation). Anything not
/// understood here is not.
pub fn restartable(query: &str, operation_name: Option<&str>, variables: &Variables) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(query) else {
        return false;
    };
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => op,
            None => return false,
        },
        (DocumentOperations::Multiple(_), None) => return false,
    };
    if operation.node.ty != OperationType::Subscription {
        return false;
    }
    let items = &operation.node.selection_set.node.items;
    !items.is_empty()
        && items.iter().all(|selection| {
            let Selection::Field(field) = &selection.node else {
                return false;
            };
            let field = &field.node;
            if !field.directives.is_empty() {
                return false;
            }
            let argument = |name: &str| -> Option<Value> {
                let value = field.get_argument(name)?;
                let resolved = value.node.clone().into_const_with(|var: Name| {
                    Ok::<_, std::convert::Infallible>(
                        variables.get(&var).cloned().unwrap_or(Value::Null),
                    )
                });
                resolved.ok()
            };
            let given = |name: &str| !matches!(argument(name), None | Some(Value::Null));
            let not_empty =
                |name: &str| matches!(argument(name), Some(Value::List(l)) if !l.is_empty());
            match field.name.node.as_str() {
                "productUpdated" => not_empty("ids") && !given("after"),
                "orderUpdated" => given("id") && !given("after"),
                "cartUpdated" | "dashboardUpdated" => !given("after"),
                "rebuildProgress" | "projectionsUpdated" | "clusterUpdated" => true,
                _ => false,
            }
        })
}

/// The key of identical subscriptions: who asks (`identity`) and the operation exactly
/// as asked; `None` when the operation is not to be shared.
pub fn key(identity: Option<&str>, request: &async_graphql::Request) -> Option<Arc<str>> {
    let identity = identity?;
    if !restartable(
        &request.query,
        request.operation_name.as_deref(),
        &request.variables,
    ) {
        return None;
    }
    let operation = serde_json::to_string(&(
        &request.query,
        &request.operation_name,
        &request.variables,
        &request.extensions,
    ))
    .ok()?;
    Some(format!("{identity}\n{operation}").into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn vars(json: serde_json::Value) -> Variables {
        Variables::from_json(json)
    }

    #[test]
    fn only_operations_that_start_with_a_whole_state_are_restartable() {
        let none = Variables::default();
        let yes = [
            "subscription { productUpdated(ids: [\"00000000-0000-0000-0000-000000000001\"]) { id stock } }",
            "subscription { a: cartUpdated { position } b: dashboardUpdated { position } }",
            "subscription { orderUpdated(id: \"00000000-0000-0000-0000-000000000001\") { id } }",
            "subscription { projectionsUpdated { name } clusterUpdated { replicas { node } } }",
            "subscription { rebuildProgress(name: \"catalog\") { state } }",
        ];
        for query in yes {
            assert!(restartable(query, None, &none), "{query}");
        }
        let no = [
            "subscription { productUpdated { id } }",
            "subscription { productUpdated(ids: []) { id } }",
            "subscription { productUpdated(ids: [\"00000000-0000-0000-0000-000000000001\"], after: \"5\") { id } }",
            "subscription { orderUpdated { id } }",
            "subscription { cartUpdated(after: \"1\") { position } }",
            "subscription { events { position } }",
            "subscription { cartUpdated { position } events { position } }",
            "subscription { ... on Subscription { cartUpdated { position } } }",
            "subscription { cartUpdated @include(if: true) { position } }",
            "query { products { totalCount } }",
            "subscription {",
            "subscription A { cartUpdated { position } } subscription B { events { position } }",
        ];
        for query in no {
            assert!(!restartable(query, None, &none), "{query}");
        }
        let two =
            "subscription A { cartUpdated { position } } subscription B { events { position } }";
        assert!(restartable(two, Some("A"), &none));
        assert!(!restartable(two, Some("B"), &none));
        assert!(!restartable(two, Some("C"), &none));
    }

    #[test]
    fn variables_decide_as_the_literals_would() {
        let q = "subscription($ids: [UUID!], $after: Position) { productUpdated(ids: $ids, after: $after) { id } }";
        let id = "00000000-0000-0000-0000-000000000001";
        assert!(restartable(
            q,
            None,
            &vars(serde_json::json!({ "ids": [id] }))
        ));
        assert!(restartable(
            q,
            None,
            &vars(serde_json::json!({ "ids": [id], "after": null }))
        ));
        assert!(!restartable(
            q,
            None,
            &vars(serde_json::json!({ "ids": [id], "after": "3" }))
        ));
        assert!(!restartable(q, None, &vars(serde_json::json!({}))));
        assert!(!restartable(
            q,
            None,
            &vars(serde_json::json!({ "ids": [] }))
        ));
    }

    #[test]
    fn the_key_holds_who_asks_and_the_whole_operation() {
        let q = "subscription($id: UUID) { orderUpdated(id: $id) { id } }";
        let a = async_graphql::Request::new(q).variables(vars(
            serde_json::json!({ "id": "00000000-0000-0000-0000-000000000001" }),
        ));
        let b = async_graphql::Request::new(q).variables(vars(
            serde_json::json!({ "id": "00000000-0000-0000-0000-000000000002" }),
        ));
        assert_eq!(key(Some("u1"), &a), key(Some("u1"), &a));
        assert_ne!(key(Some("u1"), &a), key(Some("u2"), &a));
        assert_ne!(key(Some("u1"), &a), key(Some("u1"), &b));
        assert_eq!(key(None, &a), None);
        let events = async_graphql::Request::new("subscription { events { position } }");
        assert_eq!(key(Some("u1"), &events), None);
    }

    /// An upstream fed by hand: the test sends its frames; starts are counted.
    struct Upstream {
        senders: Mutex<Vec<mpsc::UnboundedSender<Frame>>>,
    }

    impl Upstream {
        fn start(self: &Arc<Self>) -> Start {
            let this = self.clone();
            Arc::new(move || {
                let (tx, rx) = mpsc::unbounded_channel();
                this.senders.lock().unwrap().push(tx);
                Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            })
        }

        fn starts(&self) -> usize {
            self.senders.lock().unwrap().len()
        }

        fn send(&self, execution: usize, frame: Frame) {
            let _ = self.senders.lock().unwrap()[execution].send(frame);
        }

        fn running(&self, execution: usize) -> bool {
            !self.senders.lock().unwrap()[execution].is_closed()
        }
    }

    fn next(n: u32) -> Frame {
        Frame::Next(Arc::from(n.to_string()))
    }

    fn text(frame: &Frame) -> String {
        match frame {
            Frame::Next(payload) => payload.to_string(),
            Frame::Error(_) => "error".into(),
            Frame::Complete => "complete".into(),
        }
    }

    async fn take(frames: &mut Frames, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        for _ in 0..n {
            let frame = tokio::time::timeout(Duration::from_secs(5), frames.next())
                .await
                .expect("a frame in time")
                .expect("a frame");
            got.push(text(&frame));
        }
        got
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    fn sharing() -> Arc<Sharing> {
        Sharing::new(Arc::new(Metrics::default()), true)
    }

    #[tokio::test]
    async fn identical_subscriptions_share_one_execution_and_a_late_one_is_sent_what_it_missed() {
        let sharing = sharing();
        let upstream = Arc::new(Upstream {
            senders: Mutex::new(Vec::new()),
        });
        let key: Arc<str> = Arc::from("k");
        let mut first = sharing.follow(Some(key.clone()), upstream.start());
        upstream.send(0, next(1));
        upstream.send(0, next(2));
        assert_eq!(take(&mut first, 2).await, ["1", "2"]);
        let mut second = sharing.follow(Some(key.clone()), upstream.start());
        assert_eq!(
            upstream.starts(),
            1,
            "the second joined the first's execution"
        );
        assert_eq!(take(&mut second, 2).await, ["1", "2"]);
        upstream.send(0, next(3));
        upstream.send(0, Frame::Complete);
        assert_eq!(take(&mut first, 2).await, ["3", "complete"]);
        assert_eq!(take(&mut second, 2).await, ["3", "complete"]);
        assert!(first.next().await.is_none());
        assert!(second.next().await.is_none());
        // Ended: the next identical subscription starts afresh.
        let _third = sharing.follow(Some(key), upstream.start());
        assert_eq!(upstream.starts(), 2);
    }

    #[tokio::test]
    async fn an_execution_that_sent_more_than_it_can_replay_takes_no_more_joiners() {
        let sharing = sharing();
        let upstream = Arc::new(Upstream {
            senders: Mutex::new(Vec::new()),
        });
        let key: Arc<str> = Arc::from("k");
        let mut first = sharing.follow(Some(key.clone()), upstream.start());
        for n in 0..=REPLAY as u32 {
            upstream.send(0, next(n));
        }
        assert_eq!(take(&mut first, REPLAY + 1).await.len(), REPLAY + 1);
        let mut second = sharing.follow(Some(key.clone()), upstream.start());
        assert_eq!(upstream.starts(), 2);
        upstream.send(1, next(100));
        assert_eq!(take(&mut second, 1).await, ["100"]);
        // The first still follows its own.
        upstream.send(0, next(101));
        assert_eq!(take(&mut first, 1).await, ["101"]);
    }

    #[tokio::test]
    async fn a_subscriber_too_far_behind_goes_on_alone_and_holds_nobody_back() {
        let sharing = sharing();
        let upstream = Arc::new(Upstream {
            senders: Mutex::new(Vec::new()),
        });
        let key: Arc<str> = Arc::from("k");
        let mut quick = sharing.follow(Some(key.clone()), upstream.start());
        let mut slow = sharing.follow(Some(key.clone()), upstream.start());
        // The slow one reads nothing while more than its queue is sent.
        for n in 0..=QUEUE as u32 {
            upstream.send(0, next(n));
            assert_eq!(take(&mut quick, 1).await, [n.to_string()]);
        }
        assert_eq!(upstream.starts(), 1);
        // It reads what was queued, then is given a private execution of its own.
        let queued = take(&mut slow, QUEUE).await;
        assert_eq!(queued.first().map(String::as_str), Some("0"));
        let pending = tokio::time::timeout(Duration::from_millis(50), slow.next()).await;
        assert!(pending.is_err(), "waiting on its own execution");
        assert_eq!(upstream.starts(), 2);
        upstream.send(1, next(7));
        assert_eq!(take(&mut slow, 1).await, ["7"]);
        upstream.send(0, next(1000));
        assert_eq!(take(&mut quick, 1).await, ["1000"]);
    }

    #[tokio::test]
    async fn the_last_subscriber_leaving_cancels_the_execution() {
        let sharing = sharing();
        let upstream = Arc::new(Upstream {
            senders: Mutex::new(Vec::new()),
        });
        let key: Arc<str> = Arc::from("k");
        let first = sharing.follow(Some(key.clone()), upstream.start());
        let second = sharing.follow(Some(key.clone()), upstream.start());
        settle().await;
        drop(first);
        settle().await;
        assert!(upstream.running(0), "one subscriber is left");
        drop(second);
        settle().await;
        assert!(!upstream.running(0), "cancelled with its last subscriber");
        let _again = sharing.follow(Some(key), upstream.start());
        assert_eq!(upstream.starts(), 2);
    }

    #[tokio::test]
    async fn different_keys_and_unshared_operations_never_meet() {
        let sharing = sharing();
        let upstream = Arc::new(Upstream {
            senders: Mutex::new(Vec::new()),
        });
        let mut a = sharing.follow(Some(Arc::from("a")), upstream.start());
        let mut b = sharing.follow(Some(Arc::from("b")), upstream.start());
        let mut alone = sharing.follow(None, upstream.start());
        assert_eq!(upstream.starts(), 3);
        upstream.send(0, next(1));
        upstream.send(1, next(2));
        upstream.send(2, next(3));
        assert_eq!(take(&mut a, 1).await, ["1"]);
        assert_eq!(take(&mut b, 1).await, ["2"]);
        assert_eq!(take(&mut alone, 1).await, ["3"]);
    }
}
