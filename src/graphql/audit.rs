//! What event sourcing promises, as queries: the audit trail of a stream (`history`), the
//! state of a product, cart or order at any past moment (`…AsOf`, rebuilt by replaying
//! its events, from a snapshot when there is one), and the projections' status.

use std::sync::Arc;

use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::events::Event;
use super::orders::{OrderLine, OrderStatus};
use super::scalars::{Decimal, Position};
use super::{Cursor, PageInfo, admin, page_size, services, signed_in};
use crate::auth::Caller;
use crate::domain::cart::Cart;
use crate::domain::order::Order;
use crate::domain::product::Product;
use crate::domain::values::UserId;
use crate::error::{AppError, AppResult};
use crate::log::aggregates::{AggregateKind, StreamReader};
use crate::log::reader::stream_page;
use crate::write::cart::cart_stream_id;
use crate::write::event_store::{Folded, fold};

use super::error::IntoGraphql;

mod timeline;
pub use timeline::ProductChange;

#[derive(Default)]
pub struct AuditQuery;

#[derive(SimpleObject)]
pub struct EventEdge {
    pub node: Event,
    pub cursor: String,
}

#[derive(SimpleObject)]
pub struct EventConnection {
    pub edges: Vec<EventEdge>,
    pub page_info: PageInfo,
}

impl EventConnection {
    fn empty() -> Self {
        Self {
            edges: vec![],
            page_info: PageInfo::forward(false, None, None),
        }
    }
}

/// A product as it was at `at`.
#[derive(SimpleObject)]
pub struct ProductSnapshot {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub price: Decimal,
    pub stock: i64,
    pub status: super::catalog::ProductStatus,
    /// Events folded (the stream version at `at`).
    pub version: i64,
    /// The moment asked for.
    pub at: DateTime<Utc>,
    /// Position of the last event folded.
    pub position: Position,
}

#[derive(SimpleObject)]
pub struct CartSnapshotLine {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// A cart as it was at `at` (quantities; prices are the catalog's, not the cart's).
#[derive(SimpleObject)]
pub struct CartSnapshot {
    pub user_id: String,
    pub items: Vec<CartSnapshotLine>,
    pub item_count: i64,
    pub version: i64,
    pub at: DateTime<Utc>,
    pub position: Position,
}

/// An order as it was at `at`.
#[derive(SimpleObject)]
pub struct OrderSnapshot {
    pub id: Uuid,
    pub user_id: String,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total: Decimal,
    pub version: i64,
    pub at: DateTime<Utc>,
    pub position: Position,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ProjectionState {
    /// Folding new events as they are committed.
    Running,
    /// Being rebuilt from the log into a shadow view; the live view keeps serving.
    Rebuilding,
    /// Stopped at an event it could not fold: see `error` and `failedPosition`.
    Failed,
}

/// One projection's progress through the log.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct ProjectionStatus {
    pub name: String,
    /// Position of the last event folded into the view (its checkpoint).
    pub position: Position,
    /// Highest position below which every event is final (the log's safe head).
    pub head: Position,
    /// Events behind the head.
    pub lag: i64,
    /// Age in milliseconds of the oldest event the view has not folded yet (0 when
    /// caught up).
    pub lag_millis: i64,
    pub status: ProjectionState,
    /// Why the projection stopped, when it failed.
    pub error: Option<String>,
    /// The event it stopped at, when it failed.
    pub failed_position: Option<Position>,
    /// When the checkpoint last moved.
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<crate::read::status::Report> for ProjectionStatus {
    fn from(r: crate::read::status::Report) -> Self {
        Self {
            name: r.name.to_owned(),
            position: Position(r.position),
            head: Position(r.head),
            lag: r.lag,
            lag_millis: r.lag_millis,
            status: match r.state {
                crate::read::status::State::Running => ProjectionState::Running,
                crate::read::status::State::Rebuilding => ProjectionState::Rebuilding,
                crate::read::status::State::Failed => ProjectionState::Failed,
            },
            error: r.error,
            failed_position: r.failed_position.map(Position),
            updated_at: r.updated_at,
        }
    }
}

/// Whether `caller` may read stream `stream_id`, of type `stream_type`: admins any; anyone
/// else as the stream's aggregate says (its `StreamReader` in the registry).
async fn may_read_stream(
    ctx: &Context<'_>,
    caller: &Caller,
    stream_type: &str,
    stream_id: Uuid,
) -> AppResult<bool> {
    if caller.is_admin() {
        return Ok(true);
    }
    Ok(
        match AggregateKind::find(stream_type).map(|kind| kind.reader) {
            Some(StreamReader::UserStream(stream_of)) => stream_of(&caller.user_id) == stream_id,
            Some(StreamReader::OrderOwner) => {
                let s = services(ctx)?;
                crate::read::orders::find(&s.views, stream_id)
                    .await?
                    .is_some_and(|o| caller.may_see_order(&o.user_id))
            }
            Some(StreamReader::Admins) | None => false,
        },
    )
}

async fn folded<A: crate::domain::Aggregate>(
    ctx: &Context<'_>,
    stream_id: Uuid,
    at: DateTime<Utc>,
) -> AppResult<Option<Folded<A>>> {
    let s = services(ctx)?;
    let folded = fold::<A, _>(&s.db, stream_id, Some(at), true).await?;
    Ok((folded.state.version() > 0).then_some(folded))
}

#[Object]
impl AuditQuery {
    /// Audit trail: the events of one stream, oldest first (`first` at most 100). Admins:
    /// any stream; users: their own cart and orders (any other stream reads as empty).
    #[graphql(complexity = "5 + first.unwrap_or(100).clamp(0, 100) as usize * child_complexity")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        stream_id: Uuid,
        #[graphql(default_with = "Some(100)")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<EventConnection> {
        async {
            let caller = signed_in(ctx)?;
            let first = page_size(first.unwrap_or(100))?;
            let after_version: i64 = match after.as_deref() {
                Some(cursor) => Cursor::decode("event", cursor)?,
                None => 0,
            };
            let s = services(ctx)?;
            let (rows, has_next_page) = stream_page(&s.db, stream_id, after_version, first).await?;
            // A stream has one type for life: its rows say whose rule applies.
            let Some(stream_type) = rows.first().map(|row| row.stream_type.clone()) else {
                return Ok(EventConnection::empty());
            };
            if !may_read_stream(ctx, caller, &stream_type, stream_id).await? {
                return Ok(EventConnection::empty());
            }
            let edges: Vec<EventEdge> = rows
                .into_iter()
                .map(|row| EventEdge {
                    cursor: Cursor::encode("event", row.version),
                    node: Event(Arc::new(row)),
                })
                .collect();
            Ok(EventConnection {
                page_info: PageInfo::forward(
                    has_next_page,
                    edges.first().map(|e| e.cursor.clone()),
                    edges.last().map(|e| e.cursor.clone()),
                ),
                edges,
            })
        }
        .await
        .gql()
    }

    /// Temporal query: the product as it was at time `at`, rebuilt by replaying its
    /// events (from the latest snapshot before `at`). Null before it existed. Admin only.
    async fn product_as_of(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> async_graphql::Result<Option<ProductSnapshot>> {
        async {
            admin(ctx)?;
            let Some(f) = folded::<Product>(ctx, id, at).await? else {
                return Ok(None);
            };
            let p = f.state;
            Ok(Some(ProductSnapshot {
                id,
                sku: p.sku.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                name: p.name.map(|n| n.as_str().to_owned()).unwrap_or_default(),
                price: Decimal(p.price),
                stock: p.stock,
                status: p.status.into(),
                version: p.version,
                at,
                position: Position(f.position),
            }))
        }
        .await
        .gql()
    }

    /// Temporal query, at every moment a product changed: its price, stock and status
    /// right after each of its last `last` events (0 to 100), oldest first, rebuilt by
    /// replaying its stream, as `productAsOf` would answer at each event's time. For a
    /// chart of stock and price over time. Empty for an unknown product. Admin only.
    #[graphql(complexity = "5 + last.clamp(0, 100) as usize * child_complexity")]
    async fn product_timeline(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        #[graphql(default = 50)] last: i32,
    ) -> async_graphql::Result<Vec<ProductChange>> {
        async {
            admin(ctx)?;
            let last = page_size(last)?;
            timeline::product(&services(ctx)?.db, id, last).await
        }
        .await
        .gql()
    }

    /// Temporal query: a user's cart as it was at time `at` (the caller's own when
    /// `userId` is omitted; another user's for admins only). Null before it was used.
    async fn cart_as_of(
        &self,
        ctx: &Context<'_>,
        user_id: Option<String>,
        at: DateTime<Utc>,
    ) -> async_graphql::Result<Option<CartSnapshot>> {
        async {
            let caller = signed_in(ctx)?;
            let user = match user_id {
                Some(user) => UserId::parse(&user)?,
                None => caller.user_id.clone(),
            };
            if user != caller.user_id && !caller.is_admin() {
                return Err(AppError::Forbidden(
                    "only admins may read another user's cart".into(),
                ));
            }
            let Some(f) = folded::<Cart>(ctx, cart_stream_id(&user), at).await? else {
                return Ok(None);
            };
            let items: Vec<CartSnapshotLine> = f
                .state
                .lines
                .iter()
                .map(|(product_id, quantity)| CartSnapshotLine {
                    product_id: *product_id,
                    quantity: i64::from(*quantity),
                })
                .collect();
            Ok(Some(CartSnapshot {
                user_id: user.as_str().to_owned(),
                item_count: items.iter().map(|i| i.quantity).sum(),
                items,
                version: f.state.version,
                at,
                position: Position(f.position),
            }))
        }
        .await
        .gql()
    }

    /// Temporal query: an order as it was at time `at` (the caller's own, or any for an
    /// admin). Null before it was placed, or when not visible to the caller.
    async fn order_as_of(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> async_graphql::Result<Option<OrderSnapshot>> {
        async {
            let caller = signed_in(ctx)?;
            let Some(f) = folded::<Order>(ctx, id, at).await? else {
                return Ok(None);
            };
            let o = f.state;
            let owner = o.user_id.as_ref().map(|u| u.as_str().to_owned());
            // An order is never without its owner once placed: "" is nobody's.
            if !caller.may_see_order(owner.as_deref().unwrap_or_default()) {
                return Ok(None);
            }
            Ok(Some(OrderSnapshot {
                id,
                user_id: owner.unwrap_or_default(),
                status: o.status.into(),
                total: Decimal(o.total),
                lines: o.lines.into_iter().map(OrderLine).collect(),
                version: o.version,
                at,
                position: Position(f.position),
            }))
        }
        .await
        .gql()
    }

    /// Each projection's checkpoint, lag behind the head of the event log and status.
    /// Admin only.
    async fn projections(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ProjectionStatus>> {
        async {
            admin(ctx)?;
            let s = services(ctx)?;
            let report = s.projections.report(&s.db).await?;
            Ok(report.into_iter().map(ProjectionStatus::from).collect())
        }
        .await
        .gql()
    }
}
