//! Identical subscriptions share one execution (ADR 0024); every execution of one root
//! field sleeps between its changes ([`sleeping`], ADR 0029).
//!
//! A GraphQL subscription costs its server an execution: async-graphql's state for the
//! operation (about 30 KiB of it, measured), a place in the hub, and for every change the
//! selection set run and the result rendered to JSON. Dashboards and storefronts open the
//! same subscription many times — ten thousand shoppers watching the product they look
//! at — so the WebSocket transport runs **one execution per distinct operation** (the
//! document, operation name, variables and extensions, and who asks: the caller's user,
//! role and token expiry) and hands each of its rendered messages to every subscription
//! that asked for it. A message is rendered once, whatever its number of subscribers.
//! The first subscription of an operation runs alone (most are never asked for twice,
//! and sharing costs a task and a queue); the second starts the shared execution.
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

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Name, ServerError, Value, Variables};
use futures_util::{Stream, StreamExt};

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
    /// Keys whose first subscription runs alone: the next identical one starts the
    /// shared execution. (Locked after `joinable` when both are.)
    alone: Mutex<std::collections::HashSet<Arc<str>>>,
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
    queue: Outbox,
    behind: Arc<AtomicBool>,
}

impl Sharing {
    pub fn new(metrics: Arc<Metrics>, enabled: bool) -> Arc<Self> {
        Arc::new(Self {
            joinable: Mutex::new(HashMap::new()),
            alone: Mutex::new(std::collections::HashSet::new()),
            metrics,
            enabled,
        })
    }

    /// The messages of an operation for one subscription: from the execution of `key`
    /// shared with identical subscriptions, or (no key) from a private one.
    ///
    /// The first subscription of a key runs alone, as one without a key does: most
    /// operations are never asked for twice (a customer watching an order of their own),
    /// and sharing costs each of them a task, a queue and a hop through both for every
    /// message (BENCHMARKS.md, subscriptions). The second identical subscription, while
    /// the first still runs, starts the execution that it and every later one share.
    pub fn follow(self: &Arc<Self>, key: Option<Arc<str>>, start: Start) -> Frames {
        let metrics = self.metrics.clone();
        let Some(key) = key.filter(|_| self.enabled) else {
            metrics.subscription_execution(1);
            return counted(start(), metrics, None);
        };
        if let Some(alone) = self.first_alone(&key) {
            metrics.subscription_execution(1);
            return counted(start(), metrics, Some(alone));
        }
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

    /// The first subscription of `key` (none shares it, none runs it alone): it runs
    /// alone, marked so until it ends.
    fn first_alone(self: &Arc<Self>, key: &Arc<str>) -> Option<Alone> {
        let joinable = self.lock();
        if joinable.contains_key(key) {
            return None;
        }
        let mut alone = self.alone.lock().unwrap_or_else(|e| e.into_inner());
        if !alone.insert(key.clone()) {
            return None;
        }
        Some(Alone {
            sharing: self.clone(),
            key: key.clone(),
        })
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
        (id, frames, behind): (u64, Inbox, Arc<AtomicBool>),
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
    fn enlist(&mut self) -> (u64, Inbox, Arc<AtomicBool>) {
        let (queue, frames) = mailbox(self.sent.iter().flatten().cloned().collect());
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
        match self.queue.offer(frame) {
            Offer::Queued => true,
            Offer::Full => {
                self.behind.store(true, Ordering::Release);
                false
            }
            Offer::Gone => false,
        }
    }
}

/// One subscriber's queue of an execution's messages, at most [`QUEUE`]: a queue under a
/// mutex with a waker, not a `tokio::sync::mpsc` channel, which allocates a block of 32
/// slots and a cache-padded header up front (1.3 KiB, measured, for each of ten thousand
/// subscriptions; BENCHMARKS.md, subscriptions). The execution only ever offers without
/// waiting; one subscription receives.
struct Mailbox {
    mail: Mutex<Mail>,
    waker: futures_util::task::AtomicWaker,
}

struct Mail {
    frames: VecDeque<Frame>,
    /// The execution let go of it: nothing more comes.
    closed: bool,
    /// The subscription let go of it: nothing more is wanted.
    gone: bool,
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Mail> {
        self.mail.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A mailbox holding `frames`, as the execution's end and the subscription's.
fn mailbox(frames: VecDeque<Frame>) -> (Outbox, Inbox) {
    let mailbox = Arc::new(Mailbox {
        mail: Mutex::new(Mail {
            frames,
            closed: false,
            gone: false,
        }),
        waker: futures_util::task::AtomicWaker::new(),
    });
    (Outbox(mailbox.clone()), Inbox(mailbox))
}

enum Offer {
    Queued,
    Full,
    Gone,
}

/// The execution's end of a mailbox; dropping it closes the mailbox.
struct Outbox(Arc<Mailbox>);

impl Outbox {
    fn offer(&self, frame: &Frame) -> Offer {
        {
            let mut mail = self.0.lock();
            if mail.gone {
                return Offer::Gone;
            }
            if mail.frames.len() >= QUEUE {
                return Offer::Full;
            }
            mail.frames.push_back(frame.clone());
        }
        self.0.waker.wake();
        Offer::Queued
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.waker.wake();
    }
}

/// The subscription's end of a mailbox; dropping it tells the execution it is gone.
struct Inbox(Arc<Mailbox>);

impl Inbox {
    /// The next message; `None` once the mailbox is closed and empty.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        // Registered before looking: a message offered after the look wakes it.
        self.0.waker.register(cx.waker());
        let mut mail = self.0.lock();
        match mail.frames.pop_front() {
            Some(frame) => Poll::Ready(Some(frame)),
            None if mail.closed => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut mail = self.0.lock();
        mail.gone = true;
        mail.frames.clear();
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
    frames: Inbox,
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
                    this.private = Some(counted((this.start)(), this.metrics.clone(), None));
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

/// The mark of the first subscription of a key running alone, while it runs.
struct Alone {
    sharing: Arc<Sharing>,
    key: Arc<str>,
}

impl Drop for Alone {
    fn drop(&mut self) {
        let mut alone = self.sharing.alone.lock().unwrap_or_else(|e| e.into_inner());
        alone.remove(&self.key);
    }
}

/// `frames` of a private execution, counted while they run (counted in already), and
/// marked as the first of its key while they run when `alone`.
fn counted(frames: Frames, metrics: Arc<Metrics>, alone: Option<Alone>) -> Frames {
    let count = (ExecutionCount(metrics), alone);
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
    responses: impl Stream<Item = async_graphql::Response> + Unpin + Send + 'static,
    max_response_bytes: usize,
) -> Frames {
    Box::pin(Rendered {
        responses,
        held: None,
        next: None,
        ended: false,
        max_response_bytes,
    })
}

/// The stream [`frames`] returns. Every subscription holds one for its whole life, so it
/// holds only small things between messages (a rendered frame, a boxed response): a
/// `Response` kept in it would cost each subscription its size (BENCHMARKS.md,
/// subscriptions).
struct Rendered<S> {
    responses: S,
    /// A response that failed without data: the last message if nothing follows it.
    held: Option<Box<async_graphql::Response>>,
    /// A message rendered, to send after the one being sent.
    next: Option<Frame>,
    ended: bool,
    max_response_bytes: usize,
}

impl<S> Rendered<S> {
    fn render(&self, response: &async_graphql::Response) -> Frame {
        let mut budget = self.max_response_bytes;
        Frame::Next(Arc::from(super::bounded_json(response, &mut budget)))
    }
}

impl<S: Stream<Item = async_graphql::Response> + Unpin> Stream for Rendered<S> {
    type Item = Frame;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let this = &mut *self;
        if let Some(frame) = this.next.take() {
            return Poll::Ready(Some(frame));
        }
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match this.responses.poll_next_unpin(cx) {
                Poll::Ready(Some(mut response)) => {
                    response.errors.iter_mut().for_each(ensure_code);
                    let previous = this.held.take().map(|previous| this.render(&previous));
                    let next = if response.data == Value::Null && !response.errors.is_empty() {
                        this.held = Some(Box::new(response));
                        None
                    } else {
                        Some(this.render(&response))
                    };
                    match (previous, next) {
                        (Some(previous), next) => {
                            this.next = next;
                            return Poll::Ready(Some(previous));
                        }
                        (None, Some(next)) => return Poll::Ready(Some(next)),
                        (None, None) => {}
                    }
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    return Poll::Ready(Some(match this.held.take() {
                        Some(failed) => Frame::Error(failed.errors.into()),
                        None => Frame::Complete,
                    }));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Makes the request of one execution of an operation (each with its own data).
pub type Requests = Arc<dyn Fn() -> async_graphql::Request + Send + Sync>;

/// The responses of an operation whose execution sleeps between its changes: a
/// subscription of one root field that follows a view (`graphql::live::Asleep`) holds
/// only that view while nothing changes, not an execution (BENCHMARKS.md, subscriptions).
///
/// The first execution hands the followed view over and ends (or, failing or following
/// none, runs to its end here as any execution would). Each item of the view then wakes
/// an execution of the same request, which renders it and stays awake for `sleep_after`
/// after its last response, in case more follow; it is dropped only when it has rendered
/// every item it took, so an item is never lost or sent twice. The first item (the
/// current state) is rendered by an execution that sleeps at once: a subscription that
/// has just started says nothing about when it will change, and ten thousand opened at
/// once then never hold ten thousand executions. Waking costs an execution's start
/// (parsing and validating the document), so a subscription that changes more often than
/// every `sleep_after` stays awake and costs what it did before.
pub fn sleeping(
    schema: crate::graphql::AppSchema,
    requests: Requests,
    sleep_after: std::time::Duration,
    metrics: Arc<Metrics>,
) -> Sleeper {
    let asleep = Arc::new(crate::graphql::live::Asleep::default());
    let first = schema.execute_stream(requests().data(asleep.clone()));
    Sleeper {
        schema,
        requests,
        sleep_after,
        metrics,
        asleep,
        sent: 0,
        state: Phase::Starting(first),
    }
}

/// The stream [`sleeping`] returns. Small while asleep (a few pointers): what only an
/// awake execution needs is boxed apart, and dropped with it.
pub struct Sleeper {
    schema: crate::graphql::AppSchema,
    requests: Requests,
    sleep_after: std::time::Duration,
    metrics: Arc<Metrics>,
    asleep: Arc<crate::graphql::live::Asleep>,
    /// Responses of the executions that took items (see `Asleep::handed`).
    sent: u64,
    state: Phase,
}

enum Phase {
    /// The first execution, until it hands over what it follows (or ends).
    Starting(futures_util::stream::BoxStream<'static, async_graphql::Response>),
    /// No execution: waiting for the followed view's next item. `first`: none has been
    /// rendered yet.
    Asleep {
        first: bool,
        _counted: Sleeping,
    },
    Awake(Box<Awake>),
    Ended,
}

struct Awake {
    execution: futures_util::stream::BoxStream<'static, async_graphql::Response>,
    /// Fires `idle` after the last response or later (moved on only when it fires, not
    /// at every response: a timer's reset takes the timer wheel's lock).
    timer: Pin<Box<tokio::time::Sleep>>,
    idle: std::time::Duration,
    /// When the last response was sent.
    last: tokio::time::Instant,
}

impl Sleeper {
    fn fall_asleep(&mut self, first: bool) {
        self.state = Phase::Asleep {
            first,
            _counted: Sleeping::new(self.metrics.clone()),
        };
    }
}

impl Stream for Sleeper {
    type Item = async_graphql::Response;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<async_graphql::Response>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                Phase::Ended => return Poll::Ready(None),
                Phase::Starting(execution) => match execution.poll_next_unpin(cx) {
                    Poll::Ready(Some(response)) => return Poll::Ready(Some(response)),
                    Poll::Ready(None) if this.asleep.handed_over() => this.fall_asleep(true),
                    // It failed before following anything, or followed nothing: it ran
                    // here to its end, as any execution would.
                    Poll::Ready(None) => this.state = Phase::Ended,
                    Poll::Pending => return Poll::Pending,
                },
                Phase::Asleep { first, .. } => match this.asleep.poll_ready(cx) {
                    Poll::Ready(true) => {
                        let idle = if *first {
                            std::time::Duration::ZERO
                        } else {
                            this.sleep_after
                        };
                        let request = (this.requests)().data(this.asleep.clone());
                        this.state = Phase::Awake(Box::new(Awake {
                            execution: this.schema.execute_stream(request),
                            timer: Box::pin(tokio::time::sleep(idle)),
                            idle,
                            last: tokio::time::Instant::now(),
                        }));
                    }
                    Poll::Ready(false) => this.state = Phase::Ended,
                    Poll::Pending => return Poll::Pending,
                },
                Phase::Awake(awake) => {
                    match awake.execution.poll_next_unpin(cx) {
                        Poll::Ready(Some(response)) => {
                            this.sent += 1;
                            awake.last = tokio::time::Instant::now();
                            return Poll::Ready(Some(response));
                        }
                        // The view ended (or the execution failed): so does the operation.
                        Poll::Ready(None) => {
                            this.state = Phase::Ended;
                            continue;
                        }
                        Poll::Pending => {}
                    }
                    if awake.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let now = tokio::time::Instant::now();
                    if awake.last + awake.idle > now {
                        // It sent something since the timer was set.
                        let at = awake.last + awake.idle;
                        awake.timer.as_mut().reset(at);
                    } else if this.asleep.handed() == this.sent {
                        // Idle, and holding nothing: it sleeps.
                        this.fall_asleep(false);
                    } else {
                        // An item it took is still being rendered.
                        awake.timer.as_mut().reset(now + awake.idle);
                    }
                }
            }
        }
    }
}

/// Counts a sleeping execution while it sleeps.
struct Sleeping(Arc<Metrics>);

impl Sleeping {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.subscription_asleep(1);
        Self(metrics)
    }
}

impl Drop for Sleeping {
    fn drop(&mut self) {
        self.0.subscription_asleep(-1);
    }
}

/// Whether an operation may sleep between its changes ([`sleeping`]): a subscription
/// of exactly one root field, with no directive (each field that follows a view sleeps;
/// any other runs as an execution always does).
pub fn may_sleep(query: &str, operation_name: Option<&str>) -> bool {
    Shape::of(query, operation_name, &Variables::default()).may_sleep
}

type Operation = async_graphql::Positioned<async_graphql::parser::types::OperationDefinition>;

fn sleeps(operation: &Operation) -> bool {
    operation.node.ty == OperationType::Subscription
        && matches!(
            operation.node.selection_set.node.items.as_slice(),
            [selection] if matches!(&selection.node, Selection::Field(f) if f.node.directives.is_empty())
        )
}

/// What the WebSocket transport needs to know of an operation, from one parse of its
/// document: whether identical subscriptions may share its execution ([`restartable`])
/// and whether its execution may sleep ([`may_sleep`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub restartable: bool,
    pub may_sleep: bool,
}

impl Shape {
    pub fn of(query: &str, operation_name: Option<&str>, variables: &Variables) -> Self {
        let Ok(document) = async_graphql::parser::parse_query(query) else {
            return Self::default();
        };
        let Some(operation) = operation_of(&document, operation_name) else {
            return Self::default();
        };
        Self {
            restartable: restartable_operation(operation, variables),
            may_sleep: sleeps(operation),
        }
    }
}

fn operation_of<'a>(
    document: &'a async_graphql::parser::types::ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a Operation> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        // A document of one named operation runs it without `operationName`.
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Whether a private execution started afresh is a valid continuation of the operation
/// named `operation_name` in `query` with `variables`: every root field of its selection
/// sends a complete current state first (see the module's documentation). Anything not
/// understood here is not.
pub fn restartable(query: &str, operation_name: Option<&str>, variables: &Variables) -> bool {
    Shape::of(query, operation_name, variables).restartable
}

fn restartable_operation(operation: &Operation, variables: &Variables) -> bool {
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
/// as asked; `None` when the operation is not to be shared (`shape`: the request's).
pub fn key(
    identity: Option<&str>,
    request: &async_graphql::Request,
    shape: Shape,
) -> Option<Arc<str>> {
    let identity = identity?;
    if !shape.restartable {
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
    use tokio::sync::mpsc;

    fn key_of(identity: Option<&str>, request: &async_graphql::Request) -> Option<Arc<str>> {
        let shape = Shape::of(
            &request.query,
            request.operation_name.as_deref(),
            &request.variables,
        );
        key(identity, request, shape)
    }

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
        // One named operation runs without `operationName`, as GraphQL says.
        let named = "subscription Watch { cartUpdated { position } }";
        assert!(restartable(named, None, &none));
        assert!(!restartable(named, Some("Other"), &none));
    }

    #[test]
    fn only_a_subscription_of_one_plain_root_field_may_sleep() {
        let yes = [
            "subscription { productUpdated(ids: [\"00000000-0000-0000-0000-000000000001\"]) { id stock } }",
            "subscription($id: UUID) { orderUpdated(id: $id) { id } }",
            "subscription { events { position } }",
        ];
        for query in yes {
            assert!(may_sleep(query, None), "{query}");
        }
        let no = [
            "subscription { a: cartUpdated { position } b: dashboardUpdated { position } }",
            "subscription { cartUpdated @include(if: true) { position } }",
            "subscription { ... on Subscription { cartUpdated { position } } }",
            "query { products { totalCount } }",
            "subscription {",
        ];
        for query in no {
            assert!(!may_sleep(query, None), "{query}");
        }
        let two = "subscription A { cartUpdated { position } } subscription B { a: events { position } b: events { type } }";
        assert!(may_sleep(two, Some("A")));
        assert!(!may_sleep(two, Some("B")));
        assert!(!may_sleep(two, None));
        let named = "subscription Mine($id: UUID) { orderUpdated(id: $id) { id } }";
        assert!(may_sleep(named, None));
        assert!(may_sleep(named, Some("Mine")));
        assert!(!may_sleep(named, Some("Other")));
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
        assert_eq!(key_of(Some("u1"), &a), key_of(Some("u1"), &a));
        assert_ne!(key_of(Some("u1"), &a), key_of(Some("u2"), &a));
        assert_ne!(key_of(Some("u1"), &a), key_of(Some("u1"), &b));
        assert_eq!(key_of(None, &a), None);
        let events = async_graphql::Request::new("subscription { events { position } }");
        assert_eq!(key_of(Some("u1"), &events), None);
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
        // The first runs alone; the second starts the shared execution.
        let mut alone = sharing.follow(Some(key.clone()), upstream.start());
        let mut first = sharing.follow(Some(key.clone()), upstream.start());
        assert_eq!(upstream.starts(), 2);
        upstream.send(1, next(1));
        upstream.send(1, next(2));
        assert_eq!(take(&mut first, 2).await, ["1", "2"]);
        let mut second = sharing.follow(Some(key.clone()), upstream.start());
        assert_eq!(
            upstream.starts(),
            2,
            "the third joined the second's execution"
        );
        assert_eq!(take(&mut second, 2).await, ["1", "2"]);
        upstream.send(1, next(3));
        upstream.send(1, Frame::Complete);
        assert_eq!(take(&mut first, 2).await, ["3", "complete"]);
        assert_eq!(take(&mut second, 2).await, ["3", "complete"]);
        assert!(first.next().await.is_none());
        assert!(second.next().await.is_none());
        // The one alone follows its own.
        upstream.send(0, next(9));
        assert_eq!(take(&mut alone, 1).await, ["9"]);
        // Ended: the next identical subscription starts afresh.
        let _third = sharing.follow(Some(key), upstream.start());
        assert_eq!(upstream.starts(), 3);
    }

    #[tokio::test]
    async fn the_first_subscription_of_a_key_runs_alone_until_it_ends() {
        let sharing = sharing();
        let upstream = Arc::new(Upstream {
            senders: Mutex::new(Vec::new()),
        });
        let key: Arc<str> = Arc::from("k");
        let alone = sharing.follow(Some(key.clone()), upstream.start());
        let _other = sharing.follow(Some(Arc::from("other")), upstream.start());
        assert_eq!(upstream.starts(), 2, "different keys: each alone");
        drop(alone);
        // Gone: the next of its key runs alone again.
        let _alone = sharing.follow(Some(key.clone()), upstream.start());
        assert_eq!(upstream.starts(), 3);
        let _shared = sharing.follow(Some(key.clone()), upstream.start());
        let _joined = sharing.follow(Some(key), upstream.start());
        assert_eq!(upstream.starts(), 4, "then one execution for the others");
    }

    #[tokio::test]
    async fn an_execution_that_sent_more_than_it_can_replay_takes_no_more_joiners() {
        let sharing = sharing();
        let upstream = Arc::new(Upstream {
            senders: Mutex::new(Vec::new()),
        });
        let key: Arc<str> = Arc::from("k");
        let _alone = sharing.follow(Some(key.clone()), upstream.start());
        let mut first = sharing.follow(Some(key.clone()), upstream.start());
        for n in 0..=REPLAY as u32 {
            upstream.send(1, next(n));
        }
        assert_eq!(take(&mut first, REPLAY + 1).await.len(), REPLAY + 1);
        let mut second = sharing.follow(Some(key.clone()), upstream.start());
        assert_eq!(upstream.starts(), 3);
        upstream.send(2, next(100));
        assert_eq!(take(&mut second, 1).await, ["100"]);
        // The first still follows its own.
        upstream.send(1, next(101));
        assert_eq!(take(&mut first, 1).await, ["101"]);
    }

    #[tokio::test]
    async fn a_subscriber_too_far_behind_goes_on_alone_and_holds_nobody_back() {
        let sharing = sharing();
        let upstream = Arc::new(Upstream {
            senders: Mutex::new(Vec::new()),
        });
        let key: Arc<str> = Arc::from("k");
        let _alone = sharing.follow(Some(key.clone()), upstream.start());
        let mut quick = sharing.follow(Some(key.clone()), upstream.start());
        let mut slow = sharing.follow(Some(key.clone()), upstream.start());
        // The slow one reads nothing while more than its queue is sent.
        for n in 0..=QUEUE as u32 {
            upstream.send(1, next(n));
            assert_eq!(take(&mut quick, 1).await, [n.to_string()]);
        }
        assert_eq!(upstream.starts(), 2);
        // It reads what was queued, then is given a private execution of its own.
        let queued = take(&mut slow, QUEUE).await;
        assert_eq!(queued.first().map(String::as_str), Some("0"));
        let pending = tokio::time::timeout(Duration::from_millis(50), slow.next()).await;
        assert!(pending.is_err(), "waiting on its own execution");
        assert_eq!(upstream.starts(), 3);
        upstream.send(2, next(7));
        assert_eq!(take(&mut slow, 1).await, ["7"]);
        upstream.send(1, next(1000));
        assert_eq!(take(&mut quick, 1).await, ["1000"]);
    }

    #[tokio::test]
    async fn the_last_subscriber_leaving_cancels_the_execution() {
        let sharing = sharing();
        let upstream = Arc::new(Upstream {
            senders: Mutex::new(Vec::new()),
        });
        let key: Arc<str> = Arc::from("k");
        let _alone = sharing.follow(Some(key.clone()), upstream.start());
        let first = sharing.follow(Some(key.clone()), upstream.start());
        let second = sharing.follow(Some(key.clone()), upstream.start());
        settle().await;
        drop(first);
        settle().await;
        assert!(upstream.running(1), "one subscriber is left");
        drop(second);
        settle().await;
        assert!(!upstream.running(1), "cancelled with its last subscriber");
        let _again = sharing.follow(Some(key), upstream.start());
        assert_eq!(upstream.starts(), 3);
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
