//! Subscriptions: every view live (current state first, then each change) and the raw
//! event feed. Each is authorized when it starts and filtered per change by who may see
//! it; each ends with `SERVER_DRAINING` (and its resume position) when the server drains,
//! and with `UNAUTHENTICATED` when the caller's token expires.

use std::collections::BTreeSet;

use async_graphql::{Context, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use super::cart::Cart;
use super::catalog::Product;
use super::error::IntoGraphql;
use super::events::Event;
use super::orders::{Dashboard, Order};
use super::projections::RebuildProgress;
use super::scalars::Position;
use super::{admin, services, signed_in};
use crate::auth::{Auth, Caller};
use crate::error::{AppError, AppResult};
use crate::log::aggregates::{self, AggregateKind};
use crate::read::cart::{CartProjection, CartRead};
use crate::read::catalog::CatalogProjection;
use crate::read::dashboard::{DashboardProjection, DashboardRead};
use crate::read::live::{Limits, LiveState, Positioned, Source, Watch, follow, user_route};
use crate::read::orders::OrderProjection;
use crate::read::{cart, catalog, dashboard, orders};

/// Most product ids one `productUpdated` may watch.
pub const MAX_WATCHED_IDS: usize = 100;

#[derive(Default)]
pub struct SubscriptionRoot;

type Live<T> = std::pin::Pin<Box<dyn Stream<Item = async_graphql::Result<T>> + Send>>;

fn limits(ctx: &Context<'_>) -> AppResult<Limits> {
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
        db: s.db.clone(),
        checkpoints: s.checkpoints.clone(),
    })
}

fn live<W: Watch, T: 'static>(
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

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Catalog changes (stock, price, rating, status). Public. Emits each watched
    /// product's current state first, then every change. Without `ids` every product is
    /// watched: no state is sent first, unless `after` is given, in which case every
    /// product changed after it is sent first. Resume with `after` = the last `position`
    /// received.
    async fn product_updated(
        &self,
        ctx: &Context<'_>,
        ids: Option<Vec<Uuid>>,
        after: Option<Position>,
    ) -> async_graphql::Result<Live<Product>> {
        if ids.as_ref().is_some_and(|ids| ids.len() > MAX_WATCHED_IDS) {
            return Err(AppError::BadUserInput(format!(
                "ids: at most {MAX_WATCHED_IDS} products per subscription"
            )))
            .gql();
        }
        live(ctx, ProductWatch { ids }, after, Product).gql()
    }

    /// The caller's cart: current state first, then every change.
    async fn cart_updated(
        &self,
        ctx: &Context<'_>,
        after: Option<Position>,
    ) -> async_graphql::Result<Live<Cart>> {
        async {
            let caller = signed_in(ctx)?;
            let watch = CartWatch {
                user_id: caller.user_id.to_string(),
            };
            live(ctx, watch, after, Cart)
        }
        .await
        .gql()
    }

    /// The caller's orders (an admin: all orders), or the one with `id`: its current
    /// state first when `id` is given, then every change as the saga moves it. Without
    /// `id`, `after` sends every order changed after it first.
    async fn order_updated(
        &self,
        ctx: &Context<'_>,
        id: Option<Uuid>,
        after: Option<Position>,
    ) -> async_graphql::Result<Live<Order>> {
        async {
            let caller = signed_in(ctx)?.clone();
            if let Some(id) = id {
                let s = services(ctx)?;
                let visible = orders::find(&s.db, id)
                    .await?
                    .is_some_and(|o| caller.may_see_order(&o.user_id));
                if !visible {
                    return Err(AppError::NotFound(format!("order {id} not found")));
                }
            }
            live(ctx, OrderWatch { id, caller }, after, Order)
        }
        .await
        .gql()
    }

    /// Admin: current figures first, then every change.
    async fn dashboard_updated(
        &self,
        ctx: &Context<'_>,
        after: Option<Position>,
    ) -> async_graphql::Result<Live<Dashboard>> {
        async {
            admin(ctx)?;
            live(ctx, DashboardWatch, after, |figures| Dashboard { figures })
        }
        .await
        .gql()
    }

    /// Admin: the raw event log from just after `after` (from the beginning when null),
    /// then live events, with no gap and no duplicate, in position order — also for a
    /// slow subscriber, who is served from the table until it catches up.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<Position>,
        stream_types: Option<Vec<String>>,
    ) -> async_graphql::Result<Live<Event>> {
        async {
            admin(ctx)?;
            if let Some(unknown) = stream_types
                .iter()
                .flatten()
                .find(|t| AggregateKind::find(t).is_none())
            {
                return Err(AppError::BadUserInput(format!(
                    "streamTypes: unknown stream type {unknown:?} (known: {})",
                    aggregates::stream_types().collect::<Vec<_>>().join(", ")
                )));
            }
            let s = services(ctx)?;
            let stream = s.feed.clone().follow(
                s.db.clone(),
                after.map_or(0, |p| p.0),
                stream_types,
                limits(ctx)?,
            );
            let stream: Live<Event> =
                Box::pin(stream.map(|item| item.map(Event).map_err(AppError::into_graphql)));
            Ok(stream)
        }
        .await
        .gql()
    }

    /// Admin: progress of the latest rebuild of projection `name` (see
    /// `rebuildProjection`): its current state first, then every step; completes after
    /// the step that ends a rebuild it saw running (DONE or FAILED).
    async fn rebuild_progress(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<Live<RebuildProgress>> {
        let stream = super::projections::progress_stream(ctx, &name).gql()?;
        let stream: Live<RebuildProgress> = Box::pin(stream.map(Ok));
        Ok(stream)
    }
}

/// The keys that are UUIDs (the others name no row of a UUID-keyed view).
fn uuids(keys: &BTreeSet<String>) -> impl Iterator<Item = Uuid> + '_ {
    keys.iter().filter_map(|k| Uuid::parse_str(k).ok())
}

fn by_position<T>(rows: Vec<T>, position: fn(&T) -> i64) -> Vec<(i64, T)> {
    let mut rows: Vec<(i64, T)> = rows.into_iter().map(|r| (position(&r), r)).collect();
    rows.sort_by_key(|(p, _)| *p);
    rows
}

struct ProductWatch {
    ids: Option<Vec<Uuid>>,
}

#[async_trait::async_trait]
impl Watch for ProductWatch {
    type View = CatalogProjection;

    fn keys(&self) -> Option<Vec<String>> {
        self.ids
            .as_ref()
            .map(|ids| ids.iter().map(Uuid::to_string).collect())
    }

    async fn current(
        &self,
        db: &DatabaseConnection,
        _checkpoint: i64,
    ) -> Result<Option<Positioned<Self>>, DbErr> {
        match &self.ids {
            Some(ids) => Ok(Some(by_position(catalog::find_many(db, ids).await?, |p| {
                p.position
            }))),
            None => Ok(None),
        }
    }

    async fn changed(
        &self,
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Positioned<Self>, DbErr> {
        let rows = catalog::changed(db, self.ids.as_deref(), after, upto, limit).await?;
        Ok(by_position(rows, |p| p.position))
    }

    async fn rows(
        &self,
        db: &DatabaseConnection,
        keys: &BTreeSet<String>,
        _upto: i64,
    ) -> Result<Positioned<Self>, DbErr> {
        let ids: Vec<Uuid> = uuids(keys)
            .filter(|id| self.ids.as_ref().is_none_or(|ids| ids.contains(id)))
            .collect();
        Ok(by_position(catalog::find_many(db, &ids).await?, |p| {
            p.position
        }))
    }

    fn accepts(&self, row: &LiveState<Self>) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&row.id))
    }
}

struct CartWatch {
    user_id: String,
}

#[async_trait::async_trait]
impl Watch for CartWatch {
    type View = CartProjection;

    fn keys(&self) -> Option<Vec<String>> {
        Some(vec![self.user_id.clone()])
    }

    async fn current(
        &self,
        db: &DatabaseConnection,
        _checkpoint: i64,
    ) -> Result<Option<Positioned<Self>>, DbErr> {
        let cart = cart::find(db, &self.user_id).await?;
        Ok(Some(vec![(cart.position, cart)]))
    }

    async fn changed(
        &self,
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        _limit: u64,
    ) -> Result<Positioned<Self>, DbErr> {
        let cart = cart::find(db, &self.user_id).await?;
        Ok(if cart.position > after && cart.position <= upto {
            vec![(cart.position, cart)]
        } else {
            vec![]
        })
    }

    async fn rows(
        &self,
        db: &DatabaseConnection,
        keys: &BTreeSet<String>,
        _upto: i64,
    ) -> Result<Positioned<Self>, DbErr> {
        if !keys.contains(&self.user_id) {
            return Ok(vec![]);
        }
        let cart = cart::find(db, &self.user_id).await?;
        Ok(vec![(cart.position, cart)])
    }

    fn accepts(&self, cart: &CartRead) -> bool {
        cart.user_id == self.user_id
    }
}

struct OrderWatch {
    id: Option<Uuid>,
    caller: Caller,
}

#[async_trait::async_trait]
impl Watch for OrderWatch {
    type View = OrderProjection;

    fn keys(&self) -> Option<Vec<String>> {
        match self.id {
            Some(id) => Some(vec![id.to_string()]),
            None if self.caller.is_admin() => None,
            None => Some(vec![user_route(self.caller.user_id.as_str())]),
        }
    }

    async fn current(
        &self,
        db: &DatabaseConnection,
        _checkpoint: i64,
    ) -> Result<Option<Positioned<Self>>, DbErr> {
        let Some(id) = self.id else { return Ok(None) };
        Ok(Some(
            orders::find(db, id)
                .await?
                .filter(|o| self.caller.may_see_order(&o.user_id))
                .map(|o| (o.position, o))
                .into_iter()
                .collect(),
        ))
    }

    async fn changed(
        &self,
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Positioned<Self>, DbErr> {
        let rows = match self.id {
            Some(id) => orders::find(db, id)
                .await?
                .filter(|o| o.position > after && o.position <= upto)
                .into_iter()
                .collect(),
            None => {
                let user = (!self.caller.is_admin()).then(|| self.caller.user_id.as_str());
                orders::changed(db, user, after, upto, limit).await?
            }
        };
        Ok(rows
            .into_iter()
            .filter(|o| self.caller.may_see_order(&o.user_id))
            .map(|o| (o.position, o))
            .collect())
    }

    async fn rows(
        &self,
        db: &DatabaseConnection,
        keys: &BTreeSet<String>,
        _upto: i64,
    ) -> Result<Positioned<Self>, DbErr> {
        let mut rows = Vec::new();
        for id in uuids(keys).filter(|id| self.id.is_none_or(|watched| watched == *id)) {
            if let Some(order) = orders::find(db, id).await?
                && self.caller.may_see_order(&order.user_id)
            {
                rows.push(order);
            }
        }
        Ok(by_position(rows, |o| o.position))
    }

    fn accepts(&self, order: &LiveState<Self>) -> bool {
        self.id.is_none_or(|id| id == order.id) && self.caller.may_see_order(&order.user_id)
    }
}

struct DashboardWatch;

#[async_trait::async_trait]
impl Watch for DashboardWatch {
    type View = DashboardProjection;

    fn keys(&self) -> Option<Vec<String>> {
        Some(vec![dashboard::KEY.to_owned()])
    }

    async fn current(
        &self,
        db: &DatabaseConnection,
        checkpoint: i64,
    ) -> Result<Option<Positioned<Self>>, DbErr> {
        let figures = dashboard::read(db, Utc::now(), checkpoint).await?;
        Ok(Some(vec![(figures.position, figures)]))
    }

    async fn changed(
        &self,
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        _limit: u64,
    ) -> Result<Positioned<Self>, DbErr> {
        let figures = dashboard::read(db, Utc::now(), upto).await?;
        Ok(if figures.position > after {
            vec![(figures.position, figures)]
        } else {
            vec![]
        })
    }

    async fn rows(
        &self,
        db: &DatabaseConnection,
        keys: &BTreeSet<String>,
        upto: i64,
    ) -> Result<Positioned<Self>, DbErr> {
        if !keys.contains(dashboard::KEY) {
            return Ok(vec![]);
        }
        let figures = dashboard::read(db, Utc::now(), upto).await?;
        Ok(vec![(figures.position, figures)])
    }

    fn accepts(&self, _: &DashboardRead) -> bool {
        true
    }
}
