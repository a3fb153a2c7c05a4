//! The order details view: one denormalized row per order, joining the three concerns of
//! the order process — the order (lines, total, status, reason), the inventory (the
//! reservation, from the product streams) and the payment — maintained by one projection
//! from the events of all three aggregates; and its queries.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, IdenStatic, Iterable,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Statement, Value,
};
use uuid::Uuid;

use super::bus::Change;
use super::catalog::ROWS_PER_STATEMENT;
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

    /// Folds a batch with a few statements whatever its length (ADR 0022): each order's
    /// events (of the order, of the products reserving its stock, of its payment) are
    /// merged in position order into one row change, each setting only the columns it
    /// names, the last one winning; then the orders placed in the batch are inserted in
    /// one statement and the others updated in one. Every event still announces its
    /// order, at its position.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[events::Model],
    ) -> Result<Vec<Change>, DbErr> {
        let mut rows: Vec<RowChange> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        let mut changes = Vec::new();
        for row in events.iter().filter(|e| Wanted::any(self.wants(), e)) {
            let Some(change) = row_change(row)? else {
                continue;
            };
            let order_id = change.order_id;
            match index.get(&order_id) {
                // An order placed after other events of it (or twice): one at a time, the
                // insert (or the update before it) failed; the relay then folds the batch
                // one event at a time, and stops at the one that fails.
                Some(_) if change.placed => {
                    return Err(DbErr::Custom(format!(
                        "order {order_id} is placed again at position {}",
                        row.position
                    )));
                }
                Some(&at) => rows[at].merge(change.view),
                None => {
                    index.insert(order_id, rows.len());
                    rows.push(change);
                }
            }
            changes.push(Change {
                projection: NAME,
                key: order_id.to_string(),
                position: row.position,
            });
        }
        write_rows(txn, rows).await?;
        Ok(changes)
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

/// One order's row change: what one event sets, or what a batch's events of the order
/// set, merged.
struct RowChange {
    order_id: Uuid,
    /// The columns set: every one of a new row's, else those the events name (always
    /// `updated_at` and `position`).
    view: order_view::ActiveModel,
    /// Placed by the first of the events: a new row.
    placed: bool,
}

impl RowChange {
    /// Sets the columns a later event of the order sets: the last one wins, as when the
    /// events are folded one after another (no event reads the row it changes).
    fn merge(&mut self, later: order_view::ActiveModel) {
        for column in order_view::Column::iter() {
            if let ActiveValue::Set(value) = later.get(column) {
                self.view.set(column, value);
            }
        }
    }
}

/// What the event stored as `row` does to its order's row, if anything: the whole row of
/// an order placed, else the columns it sets.
fn row_change(row: &events::Model) -> Result<Option<RowChange>, DbErr> {
    let mut view = order_view::ActiveModel {
        updated_at: Set(row.recorded_at),
        position: Set(row.position),
        ..Default::default()
    };
    let mut placed = false;
    let order_id = match row.stream_type.as_str() {
        t if t == Order::STREAM_TYPE => {
            view.version = Set(row.version);
            match decode_row::<OrderEvent>(row)? {
                OrderEvent::Placed {
                    user_id,
                    lines,
                    total,
                    shipping_address,
                    ..
                } => {
                    placed = true;
                    view.user_id = Set(user_id.as_str().to_owned());
                    view.status = Set(OrderStatus::Pending.as_str().to_owned());
                    view.lines =
                        Set(serde_json::to_value(&lines)
                            .map_err(|e| DbErr::Custom(e.to_string()))?);
                    view.total_cents = Set(total.cents());
                    view.shipping_address = Set(shipping_address.as_str().to_owned());
                    view.reservation = Set(Reservation::NotStarted.as_str().to_owned());
                    view.payment = Set(PaymentStatus::NotStarted.as_str().to_owned());
                    view.reason = Set(None);
                    view.placed_at = Set(row.recorded_at);
                    view.placed_position = Set(row.position);
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
                        reason.map_or_else(|| "cancelled".to_owned(), |r| r.as_str().to_owned()),
                    ));
                }
                OrderEvent::Shipped {} => {
                    view.status = Set(OrderStatus::Shipped.as_str().to_owned());
                }
                OrderEvent::Delivered {} => {
                    view.status = Set(OrderStatus::Delivered.as_str().to_owned());
                }
            }
            row.stream_id
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
    Ok(Some(RowChange {
        order_id,
        view,
        placed,
    }))
}

/// The columns an event of an order already placed may set. `updated_at` and `position`
/// are set by every one; the others only by some, so an update leaves those an order's
/// events did not set as they are (`COALESCE` with the row's own). None of them is ever
/// set to `NULL` by such an event (`reason` only to a text), so a `NULL` in the update's
/// values can only mean "not set".
const UPDATED: [order_view::Column; 7] = [
    order_view::Column::Status,
    order_view::Column::Reservation,
    order_view::Column::Payment,
    order_view::Column::Reason,
    order_view::Column::Version,
    order_view::Column::UpdatedAt,
    order_view::Column::Position,
];

/// Writes a batch's row changes: the orders placed in it in one `INSERT`, the others in
/// one `UPDATE … FROM (VALUES …)`, at most `ROWS_PER_STATEMENT` rows each. An update that
/// finds fewer rows than it names fails, as a single update of a missing row did.
async fn write_rows(txn: &DatabaseTransaction, rows: Vec<RowChange>) -> Result<(), DbErr> {
    let (placed, updated): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.placed);
    for chunk in placed.chunks(ROWS_PER_STATEMENT) {
        order_view::Entity::insert_many(chunk.iter().map(|r| r.view.clone()))
            .exec(txn)
            .await?;
    }
    for chunk in updated.chunks(ROWS_PER_STATEMENT) {
        update_rows(txn, chunk).await?;
    }
    Ok(())
}

/// `UPDATE order_view SET c = COALESCE(v.columnN, order_view.c), … FROM (VALUES (id, …),
/// …) AS v WHERE order_view.id = v.column1`, as the catalog's (both databases name a
/// `VALUES` list's columns `column1`, `column2`, …, and the parameters carry their
/// types, a `NULL` too).
async fn update_rows(txn: &DatabaseTransaction, rows: &[RowChange]) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let set = UPDATED
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (name, n) = (c.as_str(), i + 2);
            match c {
                order_view::Column::UpdatedAt | order_view::Column::Position => {
                    format!("\"{name}\" = \"v\".\"column{n}\"")
                }
                _ => {
                    format!("\"{name}\" = COALESCE(\"v\".\"column{n}\", \"order_view\".\"{name}\")")
                }
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * (UPDATED.len() + 1));
    let mut tuples = Vec::with_capacity(rows.len());
    for row in rows {
        let mut tuple = Vec::with_capacity(UPDATED.len() + 1);
        values.push(row.order_id.into());
        tuple.push(values.len());
        for column in UPDATED {
            let value = match row.view.get(column) {
                ActiveValue::Set(value) if value == value.as_null() => {
                    return Err(DbErr::Custom(format!(
                        "order {} change sets {} to NULL",
                        row.order_id,
                        column.as_str()
                    )));
                }
                ActiveValue::Set(value) => value,
                _ => unset(column),
            };
            values.push(value);
            tuple.push(values.len());
        }
        let params = tuple
            .into_iter()
            .map(|n| match backend {
                DbBackend::Postgres => format!("${n}"),
                _ => "?".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        tuples.push(format!("({params})"));
    }
    let sql = format!(
        "UPDATE \"order_view\" SET {set} FROM (VALUES {}) AS \"v\" \
         WHERE \"order_view\".\"id\" = \"v\".\"column1\"",
        tuples.join(", ")
    );
    let done = txn
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    if done.rows_affected() != rows.len() as u64 {
        return Err(DbErr::RecordNotUpdated);
    }
    Ok(())
}

/// A `NULL` of `column`'s type: the value of a column an order's events did not set.
/// `updated_at` and `position` are always set; a `NULL` there fails the update.
fn unset(column: order_view::Column) -> Value {
    match column {
        order_view::Column::Version | order_view::Column::Position => Value::BigInt(None),
        order_view::Column::UpdatedAt => Value::ChronoDateTimeUtc(None),
        _ => Value::String(None),
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
pub(crate) mod tests {
    use std::collections::VecDeque;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use sea_orm::TransactionTrait;

    use super::*;
    use crate::db::TestDatabase;
    use crate::domain::DomainEvent;
    use crate::domain::order::OrderLine;
    use crate::domain::values::{
        Money, PaymentToken, ProductName, Reason, ShippingAddress, Sku, UserId,
    };
    use crate::log::codec::encode;
    use crate::log::upcast::current_version;
    use crate::write::orders::payment_stream_id;

    #[test]
    fn the_reservation_events_are_product_event_types() {
        for event_type in super::RESERVATION_EVENTS {
            assert!(ProductEvent::TYPES.contains(&event_type), "{event_type}");
        }
    }

    /// The fold as it was before batches were merged, one event at a time with a
    /// statement each (an insert of a placed order, else an update of its row that must
    /// find it): the reference the batched fold must match.
    async fn fold_one(
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

    /// Folds `log` by the reference as the relay's default `apply` did: the events the
    /// view wants, one transaction each, a change per event that touched an order. Stops
    /// at the first event that fails (rolled back), with its position.
    async fn fold_by_reference(
        db: &DatabaseConnection,
        log: &[events::Model],
    ) -> (Vec<Change>, Option<i64>) {
        let mut changes = Vec::new();
        for row in log {
            let txn = db.begin().await.expect("a transaction");
            if Wanted::any(OrderProjection.wants(), row) {
                match fold_one(&txn, row).await {
                    Ok(Some(id)) => changes.push(Change {
                        projection: NAME,
                        key: id.to_string(),
                        position: row.position,
                    }),
                    Ok(None) => {}
                    Err(_) => {
                        txn.rollback().await.expect("a rollback");
                        return (changes, Some(row.position));
                    }
                }
            }
            txn.commit().await.expect("a commit");
        }
        (changes, None)
    }

    /// Folds each batch with `OrderProjection::apply`, a transaction each, as the relay
    /// does. Stops at the first batch that fails (rolled back), with its first position.
    async fn fold_in(
        db: &DatabaseConnection,
        batches: &[&[events::Model]],
    ) -> (Vec<Change>, Option<i64>) {
        let mut changes = Vec::new();
        for batch in batches {
            let txn = db.begin().await.expect("a transaction");
            match OrderProjection.apply(&txn, batch).await {
                Ok(folded) => changes.extend(folded),
                Err(_) => {
                    txn.rollback().await.expect("a rollback");
                    return (changes, batch.first().map(|e| e.position));
                }
            }
            txn.commit().await.expect("a commit");
        }
        (changes, None)
    }

    /// `log` cut into batches of 1 to 120 events.
    pub(crate) fn random_batches<'a>(
        rng: &mut StdRng,
        log: &'a [events::Model],
    ) -> Vec<&'a [events::Model]> {
        let mut batches = Vec::new();
        let mut rest = log;
        while !rest.is_empty() {
            let n = rng.random_range(1..=rest.len().min(120));
            let (batch, after) = rest.split_at(n);
            batches.push(batch);
            rest = after;
        }
        batches
    }

    async fn rows(db: &DatabaseConnection) -> Vec<order_view::Model> {
        order_view::Entity::find()
            .order_by_asc(order_view::Column::Id)
            .all(db)
            .await
            .expect("the view's rows")
    }

    async fn empty(db: &DatabaseConnection) {
        order_view::Entity::delete_many()
            .exec(db)
            .await
            .expect("the view emptied");
    }

    pub(crate) fn keys(changes: &[Change]) -> Vec<(&'static str, String, i64)> {
        changes
            .iter()
            .map(|c| (c.projection, c.key.clone(), c.position))
            .collect()
    }

    /// An event to store: its stream and the event, encoded.
    type Pending = (&'static str, Uuid, String, serde_json::Value);

    fn pending<E: DomainEvent>(stream_type: &'static str, stream_id: Uuid, event: &E) -> Pending {
        let (event_type, data) = encode(event).expect("an event encodes");
        (stream_type, stream_id, event_type, data)
    }

    /// A log as the write side and the saga store it, appended to one event at a time.
    struct Log {
        events: Vec<events::Model>,
        versions: HashMap<Uuid, i64>,
        start: chrono::DateTime<chrono::Utc>,
    }

    impl Log {
        fn new() -> Self {
            Self {
                events: Vec::new(),
                versions: HashMap::new(),
                start: chrono::Utc::now(),
            }
        }

        fn push(&mut self, (stream_type, stream_id, event_type, data): Pending) {
            let version = self.versions.entry(stream_id).or_default();
            *version += 1;
            let position = self.events.len() as i64 + 1;
            self.events.push(events::Model {
                position,
                stream_id,
                stream_type: stream_type.to_owned(),
                version: *version,
                event_version: current_version(&event_type),
                event_type,
                data,
                metadata: serde_json::json!({}),
                recorded_at: self.start + chrono::Duration::milliseconds(position),
            });
        }
    }

    fn order_event(order_id: Uuid, event: &OrderEvent) -> Pending {
        pending(Order::STREAM_TYPE, order_id, event)
    }

    fn product_event(product_id: Uuid, event: &ProductEvent) -> Pending {
        pending(Product::STREAM_TYPE, product_id, event)
    }

    fn payment_event(order_id: Uuid, event: &PaymentEvent) -> Pending {
        pending(Payment::STREAM_TYPE, payment_stream_id(order_id), event)
    }

    fn placed(rng: &mut StdRng, products: &[Uuid]) -> OrderEvent {
        let n = rng.random_range(1..=products.len().min(3));
        let lines: Vec<OrderLine> = products[..n]
            .iter()
            .enumerate()
            .map(|(i, &product_id)| OrderLine {
                product_id,
                sku: Sku::parse(&format!("SKU-{i}")).expect("a sku"),
                name: ProductName::parse(&format!("Product {i}")).expect("a name"),
                unit_price: Money::from_cents(rng.random_range(100..10_000)),
                quantity: rng.random_range(1..=5),
            })
            .collect();
        let total = Money::from_cents(lines.iter().map(|l| l.total().cents()).sum());
        OrderEvent::Placed {
            user_id: UserId::parse(&format!("user-{}", rng.random_range(0..3))).expect("a user"),
            lines,
            total,
            shipping_address: ShippingAddress::parse("1 Main St").expect("an address"),
            payment_token: PaymentToken::parse("tok_visa").expect("a token"),
        }
    }

    /// The events the domain makes of an order placed with `lines` products, after the
    /// placing: one of the ways an order goes (reserved, charged, confirmed, shipped and
    /// delivered; rejected for stock or for payment, with the stock released; cancelled
    /// before or after it is paid, with a refund), the order's, the products' and the
    /// payment's events interleaved as the saga makes them.
    fn script(rng: &mut StdRng, order_id: Uuid, lines: &[Uuid]) -> VecDeque<Pending> {
        let order = |e: OrderEvent| order_event(order_id, &e);
        let payment = |e: PaymentEvent| payment_event(order_id, &e);
        let reserve = |p: Uuid| {
            product_event(
                p,
                &ProductEvent::StockReserved {
                    order_id,
                    quantity: 1,
                    stock: 9,
                },
            )
        };
        let release = |p: Uuid| {
            product_event(
                p,
                &ProductEvent::StockReleased {
                    order_id,
                    quantity: 1,
                    stock: 10,
                },
            )
        };
        let amount = Money::from_cents(1_000);
        let charged = || {
            payment(PaymentEvent::Charged {
                order_id,
                amount,
                charge_id: format!("ch_{order_id}"),
            })
        };
        let mut s = VecDeque::new();
        let way = rng.random_range(0..10);
        if way == 0 {
            // Cancelled while pending: nothing reserved, nothing charged.
            s.push_back(order(OrderEvent::Cancelled {
                by: UserId::parse("user-0").expect("a user"),
                reason: None,
            }));
            return s;
        }
        if way == 1 {
            // Out of stock: the lines reserved before the one that failed are released.
            let k = rng.random_range(0..lines.len());
            s.extend(lines[..k].iter().map(|&p| reserve(p)));
            s.extend(lines[..k].iter().map(|&p| release(p)));
            s.push_back(order(OrderEvent::Rejected {
                at: RejectedAt::Stock,
                reason: format!("out of stock: SKU-{k}"),
            }));
            return s;
        }
        s.extend(lines.iter().map(|&p| reserve(p)));
        s.push_back(order(OrderEvent::Reserved {}));
        if way == 2 {
            // Declined: the stock goes back, the order is rejected.
            s.push_back(payment(PaymentEvent::Declined {
                order_id,
                amount,
                reason: "card declined".to_owned(),
            }));
            s.extend(lines.iter().map(|&p| release(p)));
            s.push_back(order(OrderEvent::StockReleased {}));
            s.push_back(order(OrderEvent::Rejected {
                at: RejectedAt::Payment,
                reason: "card declined".to_owned(),
            }));
            return s;
        }
        s.push_back(charged());
        s.push_back(order(OrderEvent::Confirmed {}));
        if way <= 4 {
            // Cancelled once paid: released, refunded.
            s.push_back(order(OrderEvent::Cancelled {
                by: UserId::parse("user-1").expect("a user"),
                reason: rng
                    .random_bool(0.5)
                    .then(|| Reason::parse("changed my mind").expect("a reason")),
            }));
            s.extend(lines.iter().map(|&p| release(p)));
            s.push_back(order(OrderEvent::StockReleased {}));
            s.push_back(payment(PaymentEvent::Refunded {
                order_id,
                amount,
                refund_id: format!("re_{order_id}"),
            }));
            return s;
        }
        if way >= 6 {
            s.push_back(order(OrderEvent::Shipped {}));
        }
        if way >= 8 {
            s.push_back(order(OrderEvent::Delivered {}));
        }
        s
    }

    /// An event the saga would not make at that point, of an order placed already: the
    /// fold takes it as it comes (a late or repeated reservation, a release, a payment
    /// event, a status).
    fn odd(rng: &mut StdRng, order_id: Uuid, product_id: Uuid) -> Pending {
        let amount = Money::from_cents(1_000);
        match rng.random_range(0..8) {
            0 => product_event(
                product_id,
                &ProductEvent::StockReserved {
                    order_id,
                    quantity: 2,
                    stock: 3,
                },
            ),
            1 => product_event(
                product_id,
                &ProductEvent::StockReleased {
                    order_id,
                    quantity: 2,
                    stock: 5,
                },
            ),
            2 => payment_event(
                order_id,
                &PaymentEvent::Charged {
                    order_id,
                    amount,
                    charge_id: "ch_again".to_owned(),
                },
            ),
            3 => payment_event(
                order_id,
                &PaymentEvent::Refunded {
                    order_id,
                    amount,
                    refund_id: "re_odd".to_owned(),
                },
            ),
            4 => order_event(order_id, &OrderEvent::StockReleased {}),
            5 => order_event(order_id, &OrderEvent::Shipped {}),
            6 => order_event(
                order_id,
                &OrderEvent::Rejected {
                    at: RejectedAt::Stock,
                    reason: "late".to_owned(),
                },
            ),
            _ => order_event(
                order_id,
                &OrderEvent::Cancelled {
                    by: UserId::parse("admin").expect("a user"),
                    reason: Some(Reason::parse("").expect("a reason")),
                },
            ),
        }
    }

    /// A log of `len` events over a handful of orders at a time (`live`), each going one
    /// of the ways an order goes (`script`), interleaved; new orders are placed as others
    /// finish. Now and then an odd event of an order placed earlier; and product events
    /// the view does not want (a stock adjustment) and never folds.
    pub(crate) fn random_log(rng: &mut StdRng, live: usize, len: usize) -> Vec<events::Model> {
        let products: Vec<Uuid> = (0..4).map(|_| Uuid::from_u128(rng.random())).collect();
        let mut log = Log::new();
        let mut active: Vec<(Uuid, VecDeque<Pending>)> = Vec::new();
        let mut placed_orders: Vec<Uuid> = Vec::new();
        while log.events.len() < len {
            let roll = rng.random_range(0..100);
            if active.len() < live && (active.is_empty() || roll < 15) {
                let order_id = Uuid::from_u128(rng.random());
                let event = placed(rng, &products);
                let OrderEvent::Placed { lines, .. } = &event else {
                    unreachable!("placed")
                };
                let lines: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect();
                log.push(order_event(order_id, &event));
                active.push((order_id, script(rng, order_id, &lines)));
                placed_orders.push(order_id);
            } else if roll < 20 {
                let order_id = placed_orders[rng.random_range(0..placed_orders.len())];
                let product_id = products[rng.random_range(0..products.len())];
                log.push(odd(rng, order_id, product_id));
            } else if roll < 23 {
                let product_id = products[rng.random_range(0..products.len())];
                log.push(product_event(
                    product_id,
                    &ProductEvent::StockUpdated {
                        delta: 1,
                        stock: 11,
                        reason: None,
                    },
                ));
            } else {
                let at = rng.random_range(0..active.len());
                match active[at].1.pop_front() {
                    Some(event) => log.push(event),
                    None => {
                        active.swap_remove(at);
                    }
                }
            }
        }
        log.events
    }

    /// Folding a log in batches of any length (each order's events merged, each touched
    /// row written once) leaves the view and announces the changes exactly as folding it
    /// one event at a time does: by the fold as it was (a statement per event), and by
    /// `apply` with batches of one. On PostgreSQL too when `TEST_DATABASE_URL` is set.
    #[tokio::test]
    async fn a_batch_folds_as_its_events_one_at_a_time() {
        let reference = TestDatabase::new().await;
        let single = TestDatabase::new().await;
        let batched = TestDatabase::new().await;
        for seed in 0..8_u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let log = random_log(&mut rng, 6, 300);
            for db in [&reference, &single, &batched] {
                empty(&db.db).await;
            }
            let (expected, failed) = fold_by_reference(&reference.db, &log).await;
            assert_eq!(failed, None, "seed {seed}: the reference folds the log");
            let one_by_one: Vec<&[events::Model]> = log.chunks(1).collect();
            let (singly, failed) = fold_in(&single.db, &one_by_one).await;
            assert_eq!(failed, None, "seed {seed}: batches of one");
            let batches = random_batches(&mut rng, &log);
            let (changes, failed) = fold_in(&batched.db, &batches).await;
            assert_eq!(failed, None, "seed {seed}: batches");

            let view = rows(&reference.db).await;
            let statuses: std::collections::BTreeSet<&str> =
                view.iter().map(|r| r.status.as_str()).collect();
            assert!(statuses.len() >= 5, "seed {seed}: {statuses:?}");
            assert_eq!(rows(&single.db).await, view, "seed {seed}: batches of one");
            assert_eq!(rows(&batched.db).await, view, "seed {seed}: batches");
            assert_eq!(
                keys(&singly),
                keys(&expected),
                "seed {seed}: batches of one"
            );
            assert_eq!(keys(&changes), keys(&expected), "seed {seed}: batches");
        }
        for db in [reference, single, batched] {
            db.close().await;
        }
    }

    /// A page as long as a rebuild's touches more rows than one statement takes: the
    /// orders placed, then the orders changed, are written in several statements each,
    /// and the view is still the one the events make one at a time.
    #[tokio::test]
    async fn a_page_of_more_rows_than_a_statement_takes_folds_as_its_events() {
        let reference = TestDatabase::new().await;
        let batched = TestDatabase::new().await;
        let mut rng = StdRng::seed_from_u64(99);
        let products: Vec<Uuid> = (0..3).map(|_| Uuid::from_u128(rng.random())).collect();
        let orders: Vec<Uuid> = (0..ROWS_PER_STATEMENT + 20)
            .map(|_| Uuid::from_u128(rng.random()))
            .collect();
        let mut log = Log::new();
        for &order_id in &orders {
            let event = placed(&mut rng, &products);
            log.push(order_event(order_id, &event));
        }
        let placing = log.events.len();
        for &order_id in &orders {
            log.push(product_event(
                products[0],
                &ProductEvent::StockReserved {
                    order_id,
                    quantity: 1,
                    stock: 9,
                },
            ));
            log.push(order_event(order_id, &OrderEvent::Reserved {}));
        }
        let (expected, failed) = fold_by_reference(&reference.db, &log.events).await;
        assert_eq!(failed, None);
        let (placing, changing) = log.events.split_at(placing);
        let (changes, failed) = fold_in(&batched.db, &[placing, changing]).await;
        assert_eq!(failed, None);
        let view = rows(&reference.db).await;
        assert_eq!(view.len(), orders.len());
        assert_eq!(rows(&batched.db).await, view);
        assert_eq!(keys(&changes), keys(&expected));
        reference.close().await;
        batched.close().await;
    }

    /// Where the fold one event at a time failed, a batch fails, and `apply` one event at
    /// a time (the relay's isolation) fails at the same event, the view as the reference
    /// left it: an event of an order whose row is missing, an order placed twice (in two
    /// batches, or after an event of it in one), an event that does not decode. Where
    /// it did nothing (a product event the view does not want), nothing is done.
    #[tokio::test]
    async fn a_batch_fails_where_its_events_one_at_a_time_fail() {
        let mut rng = StdRng::seed_from_u64(7);
        let log = random_log(&mut rng, 4, 80);
        let placings: Vec<usize> = (0..log.len())
            .filter(|&i| log[i].event_type == "OrderPlaced")
            .collect();
        let renumbered = |events: Vec<events::Model>| -> Vec<events::Model> {
            events
                .into_iter()
                .enumerate()
                .map(|(i, mut e)| {
                    e.position = i as i64 + 1;
                    e
                })
                .collect()
        };
        // The second order's placing left out.
        let missing = renumbered(
            log.iter()
                .enumerate()
                .filter(|&(i, _)| i != placings[1])
                .map(|(_, e)| e.clone())
                .collect(),
        );
        // The first order placed again, at the end.
        let mut again = log.clone();
        again.push(log[placings[0]].clone());
        let again = renumbered(again);
        // The second order's placing moved after its next event.
        let next = (placings[1] + 1..log.len())
            .find(|&i| {
                let reference = log[placings[1]].stream_id.to_string();
                log[i].stream_id == log[placings[1]].stream_id
                    || log[i].data.to_string().contains(&reference)
            })
            .expect("an event of the second order");
        let mut late = log.clone();
        let placing = late.remove(placings[1]);
        late.insert(next, placing);
        let late = renumbered(late);
        // An order event that does not decode.
        let mut undecodable = log.clone();
        undecodable[40].stream_type = Order::STREAM_TYPE.to_owned();
        undecodable[40].stream_id = log[placings[0]].stream_id;
        undecodable[40].event_type = "OrderCancelled".to_owned();
        undecodable[40].data = serde_json::json!({ "by": 5 });

        for (name, log) in [
            ("missing", missing),
            ("again", again),
            ("late", late),
            ("undecodable", undecodable),
        ] {
            let reference = TestDatabase::new().await;
            let single = TestDatabase::new().await;
            let batched = TestDatabase::new().await;
            let (expected, failed_at) = fold_by_reference(&reference.db, &log).await;
            let failed_at = failed_at.unwrap_or_else(|| panic!("{name}: the reference fails"));
            let one_by_one: Vec<&[events::Model]> = log.chunks(1).collect();
            let (singly, failed) = fold_in(&single.db, &one_by_one).await;
            assert_eq!(failed, Some(failed_at), "{name}: one at a time");
            assert_eq!(keys(&singly), keys(&expected), "{name}");
            assert_eq!(rows(&single.db).await, rows(&reference.db).await, "{name}");
            let (_, failed) = fold_in(&batched.db, &[&log[..]]).await;
            assert_eq!(failed, Some(1), "{name}: the whole log in one batch");
            assert!(rows(&batched.db).await.is_empty(), "{name}");
            for db in [reference, single, batched] {
                db.close().await;
            }
        }
    }

    /// An update of an order the view has no row for fails as the single update did.
    #[tokio::test]
    async fn a_batch_naming_a_missing_row_fails() {
        let db = TestDatabase::new().await;
        let mut log = Log::new();
        log.push(order_event(Uuid::from_u128(1), &OrderEvent::Shipped {}));
        let txn = db.db.begin().await.expect("a transaction");
        let err = OrderProjection
            .apply(&txn, &log.events)
            .await
            .expect_err("an update of a missing row fails");
        assert!(matches!(err, DbErr::RecordNotUpdated), "{err}");
        txn.rollback().await.expect("a rollback");
        let txn = db.db.begin().await.expect("a transaction");
        let err = fold_one(&txn, &log.events[0])
            .await
            .expect_err("so did the fold one event at a time");
        assert!(matches!(err, DbErr::RecordNotUpdated), "{err}");
        txn.rollback().await.expect("a rollback");
        db.close().await;
    }
}
