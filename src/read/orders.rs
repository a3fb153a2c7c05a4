//! The order details view: one denormalized row per order, joining the three concerns of
//! the order process — the order (lines, total, status, reason), the inventory (the
//! reservation, from the product streams) and the payment — maintained by one projection
//! from the events of all three aggregates; and its queries.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::view::{self, LiveView};
use super::{ChangeKey, Projection, ViewTable};
use crate::domain::order::{Order, OrderEvent, OrderStatus, RejectedAt, Reservation};
use crate::domain::payment::{Payment, PaymentEvent, PaymentStatus};
use crate::domain::product::{Product, ProductEvent};
use crate::domain::{Aggregate, Stored};
use crate::entity::events;
use crate::log::codec::decode_row;
use crate::log::reader::Wanted;

/// The `order_view` table. One row per order, its lines as JSON.
pub mod order_view {
    crate::entity::table! {
        "order_view" {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub user_id: String,
            pub status: String,
            pub lines: Json,
            pub total_cents: i64,
            pub shipping_address: String,
            pub reservation: String,
            pub payment: String,
            pub reason: Option<String>,
            pub placed_at: DateTimeUtc,
            pub placed_position: i64,
            pub updated_at: DateTimeUtc,
            pub version: i64,
            pub position: i64,
        }
    }
}

pub const NAME: &str = "orders";

pub struct OrderProjection;

/// The product events that move an order's reservation (persisted type names; a unit test
/// checks that the product aggregate declares them).
const RESERVATION_EVENTS: [&str; 2] = ["ProductStockReserved", "ProductStockReleased"];

#[async_trait::async_trait]
impl Projection for OrderProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [ViewTable] {
        &[ViewTable {
            name: "order_view",
            key: &["id"],
            change_key: ChangeKey::Column("id"),
        }]
    }

    /// Of the product streams, only the reservation's events: a stock adjustment, a price
    /// or a review never changes an order.
    fn wants(&self) -> &'static [Wanted] {
        const {
            &[
                Wanted::all(Order::STREAM_TYPE),
                Wanted::only(Product::STREAM_TYPE, &RESERVATION_EVENTS),
                Wanted::all(Payment::STREAM_TYPE),
            ]
        }
    }

    async fn fold(
        &self,
        txn: &DatabaseTransaction,
        row: &events::Model,
    ) -> Result<Option<String>, DbErr> {
        Ok(self.fold_order(txn, row).await?.map(|id| id.to_string()))
    }
}

#[async_trait::async_trait]
impl LiveView for OrderProjection {
    const NAME: &'static str = NAME;
    type State = order_view::Model;

    async fn load(
        db: &DatabaseConnection,
        key: &str,
        _position: i64,
    ) -> Result<Option<(i64, Self::State)>, DbErr> {
        view::by_id(key, |id| find(db, id), |row| row.position).await
    }

    async fn moved(
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Vec<(i64, String)>, DbErr> {
        use order_view::Column;
        view::moved::<Uuid, _>(db, Column::Id, Column::Position, after, upto, limit).await
    }

    /// Its owner's route too: a customer's `orderUpdated` is woken by their orders only.
    fn routes(order: &Self::State) -> Vec<String> {
        vec![super::live::user_route(&order.user_id)]
    }
}

impl OrderProjection {
    /// Folds one event into its order's row; the order's id when it touched one.
    async fn fold_order(
        &self,
        txn: &DatabaseTransaction,
        row: &events::Model,
    ) -> Result<Option<Uuid>, DbErr> {
        let mut view = order_view::ActiveModel {
            updated_at: Set(row.recorded_at),
            position: Set(row.position),
            ..Default::default()
        };
        let order_id = match row.stream_type.as_str() {
            t if t == Order::STREAM_TYPE => {
                let order_id = row.stream_id;
                view.version = Set(row.version);
                match decode_row::<OrderEvent>(row)? {
                    OrderEvent::Placed {
                        user_id,
                        lines,
                        total,
                        shipping_address,
                        ..
                    } => {
                        view.id = Set(order_id);
                        view.user_id = Set(user_id.as_str().to_owned());
                        view.status = Set(OrderStatus::Pending.as_str().to_owned());
                        view.lines = Set(serde_json::to_value(&lines)
                            .map_err(|e| DbErr::Custom(e.to_string()))?);
                        view.total_cents = Set(total.cents());
                        view.shipping_address = Set(shipping_address.as_str().to_owned());
                        view.reservation = Set(Reservation::NotStarted.as_str().to_owned());
                        view.payment = Set(PaymentStatus::NotStarted.as_str().to_owned());
                        view.reason = Set(None);
                        view.placed_at = Set(row.recorded_at);
                        view.placed_position = Set(row.position);
                        order_view::Entity::insert(view).exec(txn).await?;
                        return Ok(Some(order_id));
                    }
                    OrderEvent::Reserved {} => {
                        view.status = Set(OrderStatus::Reserved.as_str().to_owned());
                    }
                    OrderEvent::Rejected { at, reason } => {
                        view.status = Set(OrderStatus::Rejected.as_str().to_owned());
                        view.reason = Set(Some(reason));
                        if at == RejectedAt::Stock {
                            view.reservation = Set(Reservation::Failed.as_str().to_owned());
                        }
                    }
                    OrderEvent::Confirmed {} => {
                        view.status = Set(OrderStatus::Confirmed.as_str().to_owned());
                    }
                    OrderEvent::StockReleased {} => {}
                    OrderEvent::Cancelled { reason, .. } => {
                        view.status = Set(OrderStatus::Cancelled.as_str().to_owned());
                        view.reason = Set(Some(
                            reason
                                .map_or_else(|| "cancelled".to_owned(), |r| r.as_str().to_owned()),
                        ));
                    }
                    OrderEvent::Shipped {} => {
                        view.status = Set(OrderStatus::Shipped.as_str().to_owned());
                    }
                    OrderEvent::Delivered {} => {
                        view.status = Set(OrderStatus::Delivered.as_str().to_owned());
                    }
                }
                order_id
            }
            // Inventory: the reservation as the product streams record it.
            t if t == Product::STREAM_TYPE => match decode_row::<ProductEvent>(row)? {
                ProductEvent::StockReserved { order_id, .. } => {
                    view.reservation = Set(Reservation::Reserved.as_str().to_owned());
                    order_id
                }
                ProductEvent::StockReleased { order_id, .. } => {
                    view.reservation = Set(Reservation::Released.as_str().to_owned());
                    order_id
                }
                _ => return Ok(None),
            },
            t if t == Payment::STREAM_TYPE => {
                let (order_id, status) = match decode_row::<PaymentEvent>(row)? {
                    PaymentEvent::Charged { order_id, .. } => (order_id, PaymentStatus::Succeeded),
                    PaymentEvent::Declined { order_id, .. } => (order_id, PaymentStatus::Declined),
                    PaymentEvent::Refunded { order_id, .. } => (order_id, PaymentStatus::Refunded),
                };
                view.payment = Set(status.as_str().to_owned());
                order_id
            }
            _ => return Ok(None),
        };
        view.id = Set(order_id);
        order_view::Entity::update(view).exec(txn).await?;
        Ok(Some(order_id))
    }
}

pub async fn find<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<order_view::Model>, DbErr> {
    order_view::Entity::find_by_id(id).one(db).await
}

/// Orders whose row is at a position in `(after, upto]` (only `user_id`'s when given),
/// oldest change first, at most `limit`.
pub async fn changed<C: ConnectionTrait>(
    db: &C,
    user_id: Option<&str>,
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<order_view::Model>, DbErr> {
    let mut query = view::moved_rows(order_view::Column::Position, after, upto, limit);
    if let Some(user) = user_id {
        query = query.filter(order_view::Column::UserId.eq(user));
    }
    query.all(db).await
}

pub struct OrderPage {
    pub items: Vec<order_view::Model>,
    pub has_next_page: bool,
    pub total_count: u64,
}

/// Orders newest first (by the position they were placed at), after the cursor `before`.
pub async fn page<C: ConnectionTrait>(
    db: &C,
    user_id: Option<&str>,
    status: Option<OrderStatus>,
    first: u64,
    after_placed_position: Option<i64>,
) -> Result<OrderPage, DbErr> {
    let mut cond = Condition::all();
    if let Some(user) = user_id {
        cond = cond.add(order_view::Column::UserId.eq(user));
    }
    if let Some(status) = status {
        cond = cond.add(order_view::Column::Status.eq(status.as_str()));
    }
    let total_count = order_view::Entity::find()
        .filter(cond.clone())
        .count(db)
        .await?;
    let mut query = order_view::Entity::find().filter(cond);
    if let Some(after) = after_placed_position {
        query = query.filter(order_view::Column::PlacedPosition.lt(after));
    }
    let items = query
        .order_by_desc(order_view::Column::PlacedPosition)
        .limit(first + 1)
        .all(db)
        .await?;
    let (items, has_next_page) = super::split_page(items, first);
    Ok(OrderPage {
        items,
        has_next_page,
        total_count,
    })
}

#[cfg(test)]
mod tests {
    use crate::domain::DomainEvent;
    use crate::domain::product::ProductEvent;

    #[test]
    fn the_reservation_events_are_product_event_types() {
        for event_type in super::RESERVATION_EVENTS {
            assert!(ProductEvent::TYPES.contains(&event_type), "{event_type}");
        }
    }
}
