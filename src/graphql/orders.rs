//! The orders area: checkout, the order details view (order + inventory + payment in one
//! row), cancellation, fulfilment (each input parsed straight into its command), the
//! admin dashboard, and the orders the saga parked.

use std::collections::BTreeSet;

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use super::catalog::Product;
use super::error::IntoGraphql;
use super::live::{Live, by_position, live, uuids};
use super::scalars::{Decimal, Position};
use super::{Cursor, PageInfo, admin, page_size, services, signed_in, stored, written};
use crate::auth::Caller;
use crate::domain::order::{self, OrderCommand, OrderLine as DomainLine};
use crate::domain::payment;
use crate::domain::values::{Money, PaymentToken, Reason, ShippingAddress};
use crate::entity::saga_dead_letters;
use crate::error::{AppError, AppResult};
use crate::process::dead_letters::Status as DeadLetterStatus;
use crate::read::dashboard::{self as dashboard_view, DashboardProjection};
use crate::read::live::{LiveState, OneKey, Positioned, Watch, user_route};
use crate::read::orders::order_view;
use crate::read::orders::{self as view, OrderProjection};
use crate::write::idempotency::request_hash;
use crate::write::orders::{Checkout, order_command};
use crate::write::{CommandContext, Envelope, Outcome};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "order::OrderStatus")]
pub enum OrderStatus {
    Pending,
    Reserved,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
    Rejected,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "payment::PaymentStatus")]
pub enum PaymentStatus {
    NotStarted,
    Succeeded,
    Declined,
    Refunded,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "order::Reservation")]
pub enum ReservationStatus {
    NotStarted,
    Reserved,
    Failed,
    Released,
}

/// The order details view: order, inventory reservation and payment, joined in one denormalized row.
pub struct Order(pub(crate) order_view::Model);

#[Object]
impl Order {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    /// Global id (`Order:<id>`), for Relay's `Node` interface and `node(id:)`.
    pub(crate) async fn node_id(&self) -> async_graphql::ID {
        super::node::NodeKind::Order.global_id(self.0.id)
    }
    async fn user_id(&self) -> &str {
        &self.0.user_id
    }
    async fn status(&self) -> async_graphql::Result<OrderStatus> {
        stored::<order::OrderStatus, _>(&self.0.status).gql()
    }
    /// The lines as priced at checkout.
    async fn lines(&self) -> async_graphql::Result<Vec<OrderLine>> {
        // Lines the view cannot read are an internal error, not an empty order.
        serde_json::from_value::<Vec<DomainLine>>(self.0.lines.clone())
            .map(|lines| lines.into_iter().map(OrderLine).collect())
            .map_err(|e| {
                AppError::Internal(
                    anyhow::Error::new(e).context(format!("the lines of order {}", self.0.id)),
                )
            })
            .gql()
    }
    /// Sum of the line totals at checkout.
    async fn total(&self) -> Decimal {
        Decimal(Money::from_cents(self.0.total_cents))
    }
    async fn shipping_address(&self) -> &str {
        &self.0.shipping_address
    }
    /// The inventory reservation of the order's lines.
    async fn reservation(&self) -> async_graphql::Result<ReservationStatus> {
        stored::<order::Reservation, _>(&self.0.reservation).gql()
    }
    async fn payment(&self) -> async_graphql::Result<PaymentStatus> {
        stored::<payment::PaymentStatus, _>(&self.0.payment).gql()
    }
    /// Why the order was cancelled or rejected.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    async fn placed_at(&self) -> DateTime<Utc> {
        self.0.placed_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Version of the order's event stream (number of events).
    async fn version(&self) -> i64 {
        self.0.version
    }
    /// Position of the last event (order, inventory or payment) folded into this view.
    async fn position(&self) -> Position {
        Position(self.0.position)
    }
}

/// One line of an order, priced at checkout.
pub struct OrderLine(pub(crate) DomainLine);

#[Object]
impl OrderLine {
    async fn product_id(&self) -> Uuid {
        self.0.product_id
    }
    async fn sku(&self) -> &str {
        self.0.sku.as_str()
    }
    async fn name(&self) -> &str {
        self.0.name.as_str()
    }
    async fn unit_price(&self) -> Decimal {
        Decimal(self.0.unit_price)
    }
    async fn quantity(&self) -> i64 {
        i64::from(self.0.quantity)
    }
    async fn line_total(&self) -> Decimal {
        Decimal(self.0.total())
    }
}

#[derive(SimpleObject)]
pub struct OrderEdge {
    pub node: Order,
    pub cursor: String,
}

#[derive(SimpleObject)]
pub struct OrderConnection {
    pub edges: Vec<OrderEdge>,
    pub page_info: PageInfo,
    /// Number of orders matching the filters, on all pages.
    pub total_count: i64,
}

/// Every mutation returns the log position of its last event and the affected read model,
/// read once the projection has reached that position (read-your-writes).
#[derive(SimpleObject)]
pub struct OrderPayload {
    pub position: Position,
    pub order: Order,
}

#[derive(InputObject)]
pub struct CheckoutInput {
    /// A token from the payment provider. The built-in simulator: `tok_visa` succeeds,
    /// `tok_decline` is declined, `tok_flaky` fails transiently twice, then succeeds.
    pub payment_token: String,
    pub shipping_address: String,
    pub idempotency_key: Option<String>,
}

/// Where the saga stands with an order it could not advance.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "DeadLetterStatus")]
pub enum ParkedOrderStatus {
    /// The saga tries the order again at `nextAttemptAt` (after `retryOrder`).
    Retrying,
    /// Set aside: the saga leaves the order alone until an admin calls `retryOrder`.
    Parked,
}

/// A dead letter of the order saga, as the admin API shows it.
pub struct ParkedOrder(pub(crate) saga_dead_letters::Model);

/// An order the order saga could not advance and set aside, so that the other orders go
/// on: an event of it does not decode, a step was refused, or it kept failing
/// unexpectedly. Its later events wait too. Fix the cause, then call `retryOrder`.
#[Object]
impl ParkedOrder {
    async fn order_id(&self) -> Uuid {
        self.0.order_id
    }
    async fn status(&self) -> async_graphql::Result<ParkedOrderStatus> {
        stored::<DeadLetterStatus, _>(&self.0.status).gql()
    }
    /// Why the last attempt failed, with its causes.
    async fn error(&self) -> &str {
        &self.0.error
    }
    /// Attempts made so far; every one failed.
    async fn attempts(&self) -> i64 {
        i64::from(self.0.attempts)
    }
    async fn first_failed_at(&self) -> DateTime<Utc> {
        self.0.first_failed_at
    }
    async fn last_failed_at(&self) -> DateTime<Utc> {
        self.0.last_failed_at
    }
    /// When the saga tries again (RETRYING only).
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_attempt_at
    }
    /// Position of the event whose handling failed first (see `history` or `events`).
    async fn position(&self) -> Position {
        Position(self.0.position)
    }
    /// The order as the order details view has it; null when the view has no such
    /// order (say, its OrderPlaced does not decode).
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Order>> {
        async {
            let s = services(ctx)?;
            Ok(view::find(&s.views, self.0.order_id).await?.map(Order))
        }
        .await
        .gql()
    }
}

#[derive(SimpleObject)]
pub struct ParkedOrderEdge {
    pub node: ParkedOrder,
    pub cursor: String,
}

#[derive(SimpleObject)]
pub struct ParkedOrderConnection {
    pub edges: Vec<ParkedOrderEdge>,
    pub page_info: PageInfo,
    /// Number of parked orders, on all pages.
    pub total_count: i64,
}

fn encode_cursor(placed_position: i64) -> String {
    Cursor::encode("order", placed_position)
}

fn decode_cursor(cursor: &str) -> AppResult<i64> {
    Cursor::decode("order", cursor)
}

#[derive(Default)]
pub struct OrdersQuery;

#[Object]
impl OrdersQuery {
    /// One order: the caller's own, or any for an admin; null when unknown or not visible to the caller.
    async fn order(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Option<Order>> {
        async {
            let caller = signed_in(ctx)?;
            let s = services(ctx)?;
            Ok(view::find(&s.views, id)
                .await?
                .filter(|o| caller.may_see_order(&o.user_id))
                .map(Order))
        }
        .await
        .gql()
    }

    /// The caller's orders, newest first; admins see every user's orders (optionally
    /// filtered by userId). `first` is at most 100.
    #[graphql(complexity = "5 + first.unwrap_or(20).clamp(0, 100) as usize * child_complexity")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(20)")] first: Option<i32>,
        after: Option<String>,
        status: Option<OrderStatus>,
        user_id: Option<String>,
    ) -> async_graphql::Result<OrderConnection> {
        async {
            let caller = signed_in(ctx)?;
            let s = services(ctx)?;
            let first = page_size(first.unwrap_or(20))?;
            let after = after.as_deref().map(decode_cursor).transpose()?;
            let owner = if caller.is_admin() {
                user_id
            } else {
                match user_id {
                    Some(other) if other != caller.user_id.as_str() => {
                        return Err(AppError::Forbidden(
                            "customers may list only their own orders".into(),
                        ));
                    }
                    _ => Some(caller.user_id.as_str().to_owned()),
                }
            };
            let page = view::page(
                &s.views,
                owner.as_deref(),
                status.map(Into::into),
                first,
                after,
            )
            .await?;
            let start_cursor = page.items.first().map(|o| encode_cursor(o.placed_position));
            let end_cursor = page.items.last().map(|o| encode_cursor(o.placed_position));
            Ok(OrderConnection {
                edges: page
                    .items
                    .into_iter()
                    .map(|o| OrderEdge {
                        cursor: encode_cursor(o.placed_position),
                        node: Order(o),
                    })
                    .collect(),
                page_info: PageInfo::forward(page.has_next_page, start_cursor, end_cursor),
                total_count: i64::try_from(page.total_count).unwrap_or(i64::MAX),
            })
        }
        .await
        .gql()
    }

    /// Admin: the orders the saga set aside (PARKED), oldest failure first (by the
    /// position of the event that failed first). `first` is at most 100. The saga goes on
    /// with every other order meanwhile; fix the cause, then `retryOrder`.
    #[graphql(complexity = "5 + first.unwrap_or(20).clamp(0, 100) as usize * child_complexity")]
    async fn parked_orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(20)")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ParkedOrderConnection> {
        async {
            admin(ctx)?;
            let s = services(ctx)?;
            let first = page_size(first.unwrap_or(20))?;
            let after = after
                .as_deref()
                .map(|c| Cursor::decode::<i64>("parked", c))
                .transpose()?;
            let page = s.dead_letters.parked(first, after).await?;
            let cursor = |m: &saga_dead_letters::Model| Cursor::encode("parked", m.position);
            let start_cursor = page.items.first().map(cursor);
            let end_cursor = page.items.last().map(cursor);
            Ok(ParkedOrderConnection {
                edges: page
                    .items
                    .into_iter()
                    .map(|m| ParkedOrderEdge {
                        cursor: cursor(&m),
                        node: ParkedOrder(m),
                    })
                    .collect(),
                page_info: PageInfo::forward(page.has_next_page, start_cursor, end_cursor),
                total_count: i64::try_from(page.total_count).unwrap_or(i64::MAX),
            })
        }
        .await
        .gql()
    }

    /// Live sales and stock figures. Admin only.
    async fn dashboard(&self, ctx: &Context<'_>) -> async_graphql::Result<Dashboard> {
        async {
            admin(ctx)?;
            let s = services(ctx)?;
            let known = s.checkpoints.get(dashboard_view::NAME);
            let figures = dashboard_view::read(&s.views, Utc::now(), known).await?;
            Ok(Dashboard { figures })
        }
        .await
        .gql()
    }
}

/// Live sales and stock figures.
pub struct Dashboard {
    pub(crate) figures: dashboard_view::DashboardRead,
}

#[derive(SimpleObject)]
pub struct StatusCount {
    pub status: OrderStatus,
    pub count: i64,
}

impl Dashboard {
    /// `lowStock` is read from the catalog when the figures are sent, and shows the stock
    /// as of their position: this waits (at most the consistency wait) until this
    /// replica's catalog has folded the last stock change at or before it. In one process
    /// the relay folds the catalog first anyway; across replicas another replica may fold
    /// the catalog, and reach a stock change later than the dashboard announced it
    /// (ADR 0012). A failed catalog holds nothing back.
    async fn catalog_caught_up(&self, s: &crate::graphql::Services) -> AppResult<()> {
        let at = self.figures.position;
        let catalog = crate::read::catalog::NAME;
        if s.checkpoints.get(catalog) >= at || s.projections.is_failed(catalog) {
            return Ok(());
        }
        let last = *self
            .figures
            .stock_at
            .get_or_try_init(|| dashboard_view::last_stock_change(&s.db, at))
            .await?;
        if !s
            .checkpoints
            .wait_for(catalog, last, s.consistency_wait)
            .await
        {
            tracing::debug!(position = at, "lowStock: the catalog is late");
        }
        Ok(())
    }
}

#[Object]
impl Dashboard {
    /// Number of orders in each status (every status listed, zero included).
    async fn orders_by_status(&self) -> Vec<StatusCount> {
        self.figures
            .by_status
            .iter()
            .map(|(status, count)| StatusCount {
                status: (*status).into(),
                count: *count,
            })
            .collect()
    }
    /// Confirmed sales minus refunds.
    async fn revenue(&self) -> Decimal {
        Decimal(Money::from_cents(self.figures.revenue_cents))
    }
    /// Orders placed today (UTC).
    async fn orders_today(&self) -> i64 {
        self.figures.orders_today
    }
    /// Active products with at most `threshold` units on hand, fewest first (at most 100).
    async fn low_stock(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(5)")] threshold: Option<i32>,
    ) -> async_graphql::Result<Vec<Product>> {
        async {
            let threshold = threshold.unwrap_or(5);
            if threshold < 0 {
                return Err(AppError::BadUserInput(
                    "threshold must not be negative".into(),
                ));
            }
            let s = services(ctx)?;
            self.catalog_caught_up(s).await?;
            Ok(
                dashboard_view::low_stock(&s.views, i64::from(threshold), 100)
                    .await?
                    .into_iter()
                    .map(Product)
                    .collect(),
            )
        }
        .await
        .gql()
    }
    /// Position of the last event folded into these figures.
    async fn position(&self) -> Position {
        Position(self.figures.position)
    }
}

async fn order_payload(ctx: &Context<'_>, outcome: Outcome) -> AppResult<OrderPayload> {
    let order = written(ctx, view::NAME, "order", &outcome, |db, id| {
        view::find(db, id)
    })
    .await?;
    Ok(OrderPayload {
        position: Position(outcome.position),
        order: Order(order),
    })
}

impl CheckoutInput {
    /// The caller's checkout, each field parsed at its type.
    pub(crate) fn into_command(self, ctx: &CommandContext) -> AppResult<Checkout> {
        let address = ShippingAddress::parse(&self.shipping_address)?;
        let token = PaymentToken::parse(&self.payment_token)?;
        Ok(Checkout::new(ctx, address, token))
    }
}

/// `cancelOrder` by `caller`: its request is the order and the reason.
pub(crate) fn cancel(
    caller: &Caller,
    ctx: &CommandContext,
    id: Uuid,
    reason: Option<String>,
) -> AppResult<Envelope<order::Order>> {
    let reason = reason.as_deref().map(Reason::parse).transpose()?;
    let request = request_hash(&(id, reason.as_ref().map(Reason::as_str)));
    let command = OrderCommand::Cancel {
        by: ctx.user_id.clone(),
        as_admin: caller.is_admin(),
        reason,
    };
    Ok(Envelope::new("cancelOrder", id, request, command))
}

/// `shipOrder`: its request is the order's id.
pub(crate) fn ship(id: Uuid) -> Envelope<order::Order> {
    order_command("shipOrder", id, OrderCommand::Ship)
}

/// `deliverOrder`: its request is the order's id.
pub(crate) fn deliver(id: Uuid) -> Envelope<order::Order> {
    order_command("deliverOrder", id, OrderCommand::Deliver)
}

command_mutations! {
    pub struct OrdersMutation -> OrderPayload, read by order_payload {
        /// Turns the caller's cart into an order (status PENDING) and empties the cart. Inventory reservation and payment then run asynchronously: watch orderUpdated.
        // The checkout empties the cart too: the payload waits for the cart view as well
        // (`await_written`), so the caller reads an empty cart once this answers.
        command checkout(input: CheckoutInput) by signed_in, key in input => {
            |_, cx| input.into_command(cx)
        }

        /// Customer (own order, before SHIPPED) or admin. Releases reserved stock and refunds a
        /// succeeded payment, asynchronously (watch `reservation` and `payment`).
        /// With `idempotencyKey`, a retry returns the first payload and changes nothing.
        command cancel_order(
            id: Uuid,
            reason: Option<String>,
            idempotency_key: Option<String>,
        ) by signed_in, key idempotency_key => {
            |caller, cx| cancel(caller, cx, id, reason)
        }

        /// Admin: CONFIRMED -> SHIPPED -> DELIVERED. With `idempotencyKey`, a retry returns the first payload and changes nothing.
        command ship_order(
            id: Uuid,
            idempotency_key: Option<String>,
        ) by admin, key idempotency_key => {
            |_, _| Ok(ship(id))
        }

        /// Admin: makes the saga try a parked order again now, once the cause is fixed. Returns
        /// the order's dead letter, now RETRYING: it leaves `parkedOrders` at once, and is gone
        /// for good when the attempt advances the order (watch `orderUpdated`); if the order
        /// still fails it is parked again, one attempt more. NOT_FOUND when the order is not
        /// parked.
        async fn retry_order(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<ParkedOrder> {
            async {
                admin(ctx)?;
                let s = services(ctx)?;
                s.dead_letters
                    .retry_now(id, Utc::now())
                    .await?
                    .map(ParkedOrder)
                    .ok_or_else(|| AppError::NotFound(format!("order {id} is not parked")))
            }
            .await
            .gql()
        }

        /// Admin: SHIPPED -> DELIVERED. With `idempotencyKey`, a retry returns the first payload and changes nothing.
        command deliver_order(
            id: Uuid,
            idempotency_key: Option<String>,
        ) by admin, key idempotency_key => {
            |_, _| Ok(deliver(id))
        }
    }
}

#[derive(Default)]
pub struct OrdersSubscription;

#[Subscription]
impl OrdersSubscription {
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
                let visible = view::find(&s.views, id)
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
        admin(ctx).gql()?;
        let watch = OneKey::<DashboardProjection>::new(dashboard_view::KEY);
        live(ctx, watch, after, |figures| Dashboard { figures }).gql()
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
            view::find(db, id)
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
            Some(id) => view::find(db, id)
                .await?
                .filter(|o| o.position > after && o.position <= upto)
                .into_iter()
                .collect(),
            None => {
                let user = (!self.caller.is_admin()).then(|| self.caller.user_id.as_str());
                view::changed(db, user, after, upto, limit).await?
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
            if let Some(order) = view::find(db, id).await?
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
