//! Order commands: checkout (cart → order, in one transaction over both streams), the
//! envelope of a single-order command (cancel, ship, deliver, the saga's confirm); and the
//! saga's steps: reserve inventory for an order (all products or none), settle its payment
//! (the gateway's answer and what follows from it, in one transaction), release and reject. Each keeps the normalized `orders`, `order_lines` and
//! `payments` tables in step.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait};
use serde::Serialize;
use uuid::Uuid;

use super::cart::cart_stream_id;
use super::idempotency::request_hash;
use super::{
    Command, CommandContext, Envelope, Loaded, Outcome, TxError, UnitOfWork, WriteModel, Writer,
    upsert,
};
use crate::domain::cart::{Cart, CartCommand};
use crate::domain::order::{Order, OrderCommand, OrderEvent, OrderLine, RejectedAt, Reservation};
use crate::domain::payment::{Payment, PaymentCommand, PaymentEvent, PaymentStatus};
use crate::domain::product::{Product, ProductCommand, ProductError, ProductStatus};
use crate::domain::values::Money;
use crate::domain::values::{PaymentToken, ProductName, ShippingAddress, Sku, UserId};
use crate::domain::{Aggregate, Stored};
use crate::entity::{order_lines, orders, payments, products};
use crate::error::{AppError, AppResult};

/// Namespace of order ids derived from (caller, idempotency key), and of payment streams.
const ORDER_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7267_7261_7068_2d6f_7264_6572);
const PAYMENT_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7267_7261_7068_2d70_6179_6d74);

/// The stream of an order's payment.
pub fn payment_stream_id(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&PAYMENT_NAMESPACE, order_id.as_bytes())
}

impl WriteModel for Order {
    async fn update_write_tables(
        txn: &DatabaseTransaction,
        stream_id: Uuid,
        state: &Self,
        events: &[OrderEvent],
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let Some(user_id) = &state.user_id else {
            return Err(
                anyhow::anyhow!("order {stream_id} has events but was never placed").into(),
            );
        };
        let placed = events.iter().find_map(|e| match e {
            OrderEvent::Placed {
                shipping_address, ..
            } => Some(shipping_address.as_str().to_owned()),
            _ => None,
        });
        let mut row = orders::ActiveModel {
            id: Set(stream_id),
            user_id: Set(user_id.as_str().to_owned()),
            status: Set(state.status.as_str().to_owned()),
            total_cents: Set(state.total.cents()),
            version: Set(state.version),
            updated_at: Set(now),
            ..Default::default()
        };
        if let Some(address) = placed {
            row.shipping_address = Set(address);
            orders::Entity::insert(row).exec(txn).await?;
            let lines = state.lines.iter().map(|l| order_lines::ActiveModel {
                order_id: Set(stream_id),
                product_id: Set(l.product_id),
                quantity: Set(i32::try_from(l.quantity).unwrap_or(i32::MAX)),
                unit_price_cents: Set(l.unit_price.cents()),
            });
            order_lines::Entity::insert_many(lines).exec(txn).await?;
        } else {
            orders::Entity::update(row).exec(txn).await?;
        }
        Ok(())
    }
}

impl WriteModel for Payment {
    async fn update_write_tables(
        txn: &DatabaseTransaction,
        _stream_id: Uuid,
        state: &Self,
        _events: &[PaymentEvent],
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        use payments::Column;
        let Some(order_id) = state.order_id else {
            return Ok(());
        };
        let payment = payments::ActiveModel {
            order_id: Set(order_id),
            status: Set(state.status.as_str().to_owned()),
            amount_cents: Set(state.amount.cents()),
            charge_id: Set(state.charge_id.clone()),
            updated_at: Set(now),
        };
        let update = [Column::Status, Column::ChargeId, Column::UpdatedAt];
        upsert(txn, payment, [Column::OrderId], update).await?;
        Ok(())
    }
}

/// Turns the caller's cart into an order and empties the cart, in one transaction.
#[derive(Debug, Clone, Serialize)]
pub struct Checkout {
    #[serde(skip)]
    pub user_id: UserId,
    #[serde(skip)]
    pub order_id: Uuid,
    pub shipping_address: ShippingAddress,
    pub payment_token: PaymentToken,
}

impl Checkout {
    /// The caller's checkout, on an order id derived from the idempotency key when there
    /// is one: a retried checkout lands on the same order.
    pub fn new(
        ctx: &CommandContext,
        shipping_address: ShippingAddress,
        payment_token: PaymentToken,
    ) -> Self {
        Self {
            user_id: ctx.user_id.clone(),
            order_id: ctx.new_stream_id(&ORDER_NAMESPACE),
            shipping_address,
            payment_token,
        }
    }
}

impl Command for Checkout {
    fn operation(&self) -> &'static str {
        "checkout"
    }

    fn request_hash(&self) -> String {
        request_hash(self)
    }

    fn streams(&self) -> Vec<Uuid> {
        vec![cart_stream_id(&self.user_id), self.order_id]
    }

    async fn run(&self, uow: &mut UnitOfWork) -> Result<Outcome, TxError> {
        let cart = uow.load::<Cart>(cart_stream_id(&self.user_id)).await?;
        // Lines are priced from the catalog's write table at this moment.
        let ids: Vec<Uuid> = cart.state.lines.keys().copied().collect();
        let rows: BTreeMap<Uuid, products::Model> = if ids.is_empty() {
            BTreeMap::new()
        } else {
            use sea_orm::{ColumnTrait, QueryFilter};
            products::Entity::find()
                .filter(products::Column::Id.is_in(ids))
                .all(uow.txn())
                .await?
                .into_iter()
                .map(|p| (p.id, p))
                .collect()
        };
        let mut lines = Vec::with_capacity(cart.state.lines.len());
        for (product_id, quantity) in &cart.state.lines {
            let Some(p) = rows.get(product_id) else {
                return Err(AppError::NotFound(format!(
                    "product {product_id} in the cart no longer exists"
                ))
                .into());
            };
            if ProductStatus::parse_stored(&p.status)? == ProductStatus::Discontinued {
                return Err(AppError::Conflict(format!(
                    "product {} ({}) in the cart is discontinued; remove it to check out",
                    p.sku, p.id
                ))
                .into());
            }
            lines.push(OrderLine {
                product_id: *product_id,
                sku: Sku::parse(&p.sku)?,
                name: ProductName::parse(&p.name)?,
                unit_price: Money::from_cents(p.price_cents),
                quantity: *quantity,
            });
        }
        let order = uow
            .handle::<Order>(
                self.order_id,
                OrderCommand::Place {
                    user_id: self.user_id.clone(),
                    lines,
                    shipping_address: self.shipping_address.clone(),
                    payment_token: self.payment_token.clone(),
                },
                None,
            )
            .await?;
        let cart = uow
            .handle::<Cart>(
                cart.stream_id,
                CartCommand::Clear {
                    user_id: self.user_id.clone(),
                },
                None,
            )
            .await?;
        let mut outcome = order.outcome();
        outcome.position = outcome.position.max(cart.position);
        Ok(outcome)
    }
}

/// Saga step: hold stock on every product of the order, or none and reject the order.
pub struct ReserveOrder {
    pub order_id: Uuid,
    /// Units per product, from the order's lines.
    pub quantities: BTreeMap<Uuid, i64>,
}

impl Command for ReserveOrder {
    fn operation(&self) -> &'static str {
        "reserveOrder"
    }

    fn request_hash(&self) -> String {
        request_hash(&self.order_id)
    }

    fn streams(&self) -> Vec<Uuid> {
        let mut streams: Vec<Uuid> = self.quantities.keys().copied().collect();
        streams.push(self.order_id);
        streams
    }

    async fn run(&self, uow: &mut UnitOfWork) -> Result<Outcome, TxError> {
        let order = uow.load::<Order>(self.order_id).await?;
        // Decide every product first: all or nothing.
        let mut decided = Vec::with_capacity(self.quantities.len());
        let mut refusal = None;
        for (product_id, quantity) in &self.quantities {
            let product = uow.load::<Product>(*product_id).await?;
            let command = ProductCommand::Reserve {
                order_id: self.order_id,
                quantity: *quantity,
            };
            match product.state.decide(command) {
                Ok(events) => decided.push((product, events)),
                Err(e) => {
                    let sku = product
                        .state
                        .sku
                        .as_ref()
                        .map_or_else(|| product_id.to_string(), |s| s.as_str().to_owned());
                    refusal = Some(match e {
                        ProductError::InsufficientStock {
                            available,
                            requested,
                        } => format!(
                            "insufficient stock for {sku}: {requested} requested, {available} available"
                        ),
                        ProductError::Discontinued => format!("{sku} is discontinued"),
                        other => format!("{sku}: {other}"),
                    });
                    break;
                }
            }
        }
        let order = match refusal {
            Some(reason) => {
                let events = order
                    .state
                    .decide(OrderCommand::Reject {
                        at: RejectedAt::Stock,
                        reason,
                    })
                    .map_err(AppError::from)?;
                uow.append(order, &events).await?
            }
            None => {
                let events = order
                    .state
                    .decide(OrderCommand::MarkReserved)
                    .map_err(AppError::from)?;
                if events.is_empty() {
                    // Already reserved, or no longer wanted: hold nothing.
                    return Ok(order.outcome());
                }
                for (product, events) in decided {
                    uow.append(product, &events).await?;
                }
                uow.append(order, &events).await?
            }
        };
        Ok(order.outcome())
    }
}

/// Saga step: give back what an order holds on every product and record it on the order;
/// with `reject`, also reject the order.
pub struct ReleaseOrder {
    pub order_id: Uuid,
    pub products: Vec<Uuid>,
    pub reject: Option<String>,
}

impl Command for ReleaseOrder {
    fn operation(&self) -> &'static str {
        "releaseOrder"
    }

    fn request_hash(&self) -> String {
        request_hash(&self.order_id)
    }

    fn streams(&self) -> Vec<Uuid> {
        let mut streams = self.products.clone();
        streams.push(self.order_id);
        streams
    }

    async fn run(&self, uow: &mut UnitOfWork) -> Result<Outcome, TxError> {
        let order = uow.load::<Order>(self.order_id).await?;
        let order = release(uow, order, &self.products, self.reject.clone()).await?;
        Ok(order.outcome())
    }
}

/// Gives back what `order` holds on each of `products` and records it on the order; with
/// `reject`, rejects the order too. Each part records nothing when it already happened.
async fn release(
    uow: &mut UnitOfWork,
    order: Loaded<Order>,
    products: &[Uuid],
    reject: Option<String>,
) -> Result<Loaded<Order>, TxError> {
    for product_id in products {
        uow.handle::<Product>(
            *product_id,
            ProductCommand::Release {
                order_id: order.stream_id,
            },
            None,
        )
        .await?;
    }
    let events = order
        .state
        .decide(OrderCommand::MarkReleased)
        .map_err(AppError::from)?;
    let mut order = uow.append(order, &events).await?;
    if let Some(reason) = reject {
        let events = order
            .state
            .decide(OrderCommand::Reject {
                at: RejectedAt::Payment,
                reason,
            })
            .map_err(AppError::from)?;
        order = uow.append(order, &events).await?;
    }
    Ok(order)
}

/// Saga step: records what the gateway answered when charging the order, and what follows
/// from it, in one transaction: a charge confirms the order; a decline gives its stock
/// back and rejects it. When the order was cancelled meanwhile, only the answer is
/// recorded, and the saga's next step compensates.
pub struct SettlePayment {
    pub order_id: Uuid,
    /// `RecordCharge` or `RecordDecline`.
    pub answer: PaymentCommand,
    /// The order's products, whose stock a decline gives back.
    pub products: Vec<Uuid>,
}

impl Command for SettlePayment {
    fn operation(&self) -> &'static str {
        "settlePayment"
    }

    fn request_hash(&self) -> String {
        request_hash(&self.order_id)
    }

    fn streams(&self) -> Vec<Uuid> {
        let mut streams = self.products.clone();
        streams.push(self.order_id);
        streams.push(payment_stream_id(self.order_id));
        streams
    }

    async fn run(&self, uow: &mut UnitOfWork) -> Result<Outcome, TxError> {
        let payment = uow
            .handle::<Payment>(payment_stream_id(self.order_id), self.answer.clone(), None)
            .await?;
        let order = uow.load::<Order>(self.order_id).await?;
        let order = match payment.state.status {
            PaymentStatus::Succeeded => {
                let events = order
                    .state
                    .decide(OrderCommand::Confirm)
                    .map_err(AppError::from)?;
                uow.append(order, &events).await?
            }
            PaymentStatus::Declined if order.state.reservation == Reservation::Reserved => {
                let reason = payment.state.decline_text();
                release(uow, order, &self.products, Some(reason)).await?
            }
            _ => order,
        };
        let mut outcome = order.outcome();
        outcome.position = outcome.position.max(payment.position);
        Ok(outcome)
    }
}

/// A command on one order, its request fingerprinted as the order's id.
pub fn order_command(
    operation: &'static str,
    order_id: Uuid,
    command: OrderCommand,
) -> Envelope<Order> {
    Envelope::new(operation, order_id, request_hash(&order_id), command)
}

impl Writer {
    /// Saga: a single-stream command on an order.
    pub async fn order_step(
        &self,
        ctx: &CommandContext,
        operation: &'static str,
        order_id: Uuid,
        command: OrderCommand,
    ) -> AppResult<Outcome> {
        self.execute(ctx, order_command(operation, order_id, command))
            .await
    }

    /// Saga: records what the gateway answered on the order's payment stream.
    pub async fn record_payment(
        &self,
        ctx: &CommandContext,
        order_id: Uuid,
        command: PaymentCommand,
    ) -> AppResult<Outcome> {
        let stream_id = payment_stream_id(order_id);
        let request_hash = request_hash(&order_id);
        self.execute(
            ctx,
            Envelope::<Payment>::new("recordPayment", stream_id, request_hash, command),
        )
        .await
    }
}
