//! What every subscription field shares: a view followed live (current state first,
//! then each change) through its `Watch`, and the limits every subscription ends by. Each
//! feature's GraphQL module declares its own subscription fields and watches
//! (`catalog::CatalogSubscription`, …), merged into the root in `graphql.rs`. Each is
//! authorized when it starts and filtered per change by who may see it; each ends with
//! `SERVER_DRAINING` (and its resume position) when the server drains, and with
//! `UNAUTHENTICATED` when the caller's token expires.

use std::any::Any;
use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use async_graphql::Context;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use super::scalars::Position;
use super::services;
use crate::auth::Auth;
use crate::error::{AppError, AppResult};
use crate::read::live::{Limits, LiveState, Source, Watch, follow};

/// A subscription's stream of `T`.
pub(crate) type Live<T> = std::pin::Pin<Box<dyn Stream<Item = async_graphql::Result<T>> + Send>>;

/// How a subscription of the caller ends: when the server drains, or when the caller's
/// token expires.
pub(crate) fn limits(ctx: &Context<'_>) -> AppResult<Limits> {
    let expires_at = match ctx.data_opt::<Auth>() {
        Some(Auth::User(caller)) => DateTime::<Utc>::from_timestamp(caller.expires_at, 0),
        _ => None,
    };
    Ok(Limits {
        drain: services(ctx)?.drain.clone(),
        expires_at,
    })
}

fn source(ctx: &Context<'_>) -> AppResult<Source> {
    let s = services(ctx)?;
    Ok(Source {
        hub: s.live.clone(),
        db: s.views.clone(),
        checkpoints: s.checkpoints.clone(),
    })
}

/// Follows `watch` from `after` (or from its current state), each state wrapped for
/// GraphQL by `wrap`.
/// An execution that may sleep (`Asleep` in its data) hands what it follows over to it
/// instead: see [`Asleep`].
pub(crate) fn live<W: Watch, T: Send + 'static>(
    ctx: &Context<'_>,
    watch: W,
    after: Option<Position>,
    wrap: fn(LiveState<W>) -> T,
) -> AppResult<Live<T>> {
    let followed = || -> AppResult<Live<T>> {
        let stream = follow(source(ctx)?, watch, after.map(|p| p.0), limits(ctx)?);
        Ok(Box::pin(stream.map(move |item| {
            item.map(wrap).map_err(AppError::into_graphql)
        })))
    };
    match ctx.data_opt::<Arc<Asleep>>() {
        Some(asleep) => asleep.attach(followed),
        None => followed(),
    }
}

/// An item of a followed stream, its type erased while no execution holds it.
type Held = Box<dyn Any + Send>;

/// A subscription's followed view, kept while no execution of the subscription runs.
///
/// A subscription's execution holds async-graphql's state for the operation (the parsed
/// document, its variables, the context and the field's streams: about 9 KiB, measured,
/// BENCHMARKS.md) for as long as it runs, although only the followed view (its current
/// state, then its changes: `read::live::follow`, about 1 KiB) has anything to wait for.
/// With an `Asleep` in its data, an execution of a subscription field that follows a view
/// ([`live`]) does not keep the view: the first execution hands it over here and ends;
/// each later execution takes its items from here, and may be dropped whenever it has
/// rendered every item it took ([`Asleep::handed`]) — the view stays here, with its
/// cursor, and the next item wakes a new execution of the same operation
/// (`http::shared::sleeping` drives this). Whatever was followed is never read twice or
/// skipped: an item is taken from here by exactly one execution, which renders it.
#[derive(Default)]
pub struct Asleep {
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    /// The followed view, once handed over.
    follow: Option<Pin<Box<dyn futures_util::Stream<Item = Held> + Send>>>,
    /// Its next item, read while no execution ran.
    peeked: Option<Held>,
    /// Items taken by executions so far.
    handed: u64,
    /// It ended.
    ended: bool,
}

impl Asleep {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The field's stream: on the first execution, `followed` is handed over and the
    /// execution gets nothing; on the others, the items handed over.
    fn attach<T: Send + 'static>(
        self: &Arc<Self>,
        followed: impl FnOnce() -> AppResult<Live<T>>,
    ) -> AppResult<Live<T>> {
        let mut slot = self.lock();
        if slot.follow.is_none() && !slot.ended {
            let stream = followed()?;
            slot.follow = Some(Box::pin(stream.map(|item| Box::new(item) as Held)));
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        drop(slot);
        let this = self.clone();
        Ok(Box::pin(futures_util::stream::poll_fn(move |cx| {
            let mut slot = this.lock();
            let item = match slot.peeked.take() {
                Some(item) => item,
                None => match slot.poll(cx) {
                    Poll::Ready(Some(item)) => item,
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                },
            };
            slot.handed += 1;
            Poll::Ready(Some(match item.downcast::<async_graphql::Result<T>>() {
                Ok(item) => *item,
                Err(_) => Err(AppError::Internal(anyhow::anyhow!(
                    "a sleeping subscription woke as another field"
                ))
                .into_graphql()),
            }))
        })))
    }

    /// Whether the followed view was handed over (an execution that failed before it,
    /// or a field that follows no view, hands nothing).
    pub fn handed_over(&self) -> bool {
        self.lock().follow.is_some()
    }

    /// Ready when the followed view has an item for an execution to take (true) or has
    /// ended (false); polled while no execution runs.
    pub fn poll_ready(&self, cx: &mut TaskContext<'_>) -> Poll<bool> {
        let mut slot = self.lock();
        if slot.peeked.is_some() {
            return Poll::Ready(true);
        }
        match slot.poll(cx) {
            Poll::Ready(Some(item)) => {
                slot.peeked = Some(item);
                Poll::Ready(true)
            }
            Poll::Ready(None) => Poll::Ready(false),
            Poll::Pending => Poll::Pending,
        }
    }

    /// How many items executions have taken: once an execution has sent as many
    /// responses, it holds none.
    pub fn handed(&self) -> u64 {
        self.lock().handed
    }
}

impl Slot {
    fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Held>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let Some(follow) = self.follow.as_mut() else {
            return Poll::Ready(None);
        };
        let next = follow.as_mut().poll_next(cx);
        if let Poll::Ready(None) = next {
            self.ended = true;
            self.follow = None;
        }
        next
    }
}

/// The keys that are UUIDs (the others name no row of a UUID-keyed view).
pub(crate) fn uuids(keys: &BTreeSet<String>) -> impl Iterator<Item = Uuid> + '_ {
    keys.iter().filter_map(|k| Uuid::parse_str(k).ok())
}

/// Rows keyed by their position, oldest first.
pub(crate) fn by_position<T>(rows: Vec<T>, position: fn(&T) -> i64) -> Vec<(i64, T)> {
    let mut rows: Vec<(i64, T)> = rows.into_iter().map(|r| (position(&r), r)).collect();
    rows.sort_by_key(|(p, _)| *p);
    rows
}
