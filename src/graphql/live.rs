//! What every subscription field shares: a view followed live (current state first,
//! then each change) through its `Watch`, and the limits every subscription ends by. Each
//! feature's GraphQL module declares its own subscription fields and watches
//! (`catalog::CatalogSubscription`, …), merged into the root in `graphql.rs`. Each is
//! authorized when it starts and filtered per change by who may see it; each ends with
//! `SERVER_DRAINING` (and its resume position) when the server drains, and with
//! `UNAUTHENTICATED` when the caller's token expires.

use std::collections::BTreeSet;

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
pub(crate) fn live<W: Watch, T: 'static>(
    ctx: &Context<'_>,
    watch: W,
    after: Option<Position>,
    wrap: fn(LiveState<W>) -> T,
) -> AppResult<Live<T>> {
    let stream = follow(source(ctx)?, watch, after.map(|p| p.0), limits(ctx)?);
    Ok(Box::pin(stream.map(move |item| {
        item.map(wrap).map_err(AppError::into_graphql)
    })))
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
