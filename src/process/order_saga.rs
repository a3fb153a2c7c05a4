//! The order saga: a process manager with its own checkpoint. For every order or payment
//! event it reconciles that order: it reads the order's and the payment's state and takes
//! the next step — reserve inventory, charge, confirm, or compensate (release stock,
//! refund) — until nothing is left to do.
//!
//! Crash safety: the checkpoint advances only after an event's reconciliation completed,
//! so a crash replays the event; every step is idempotent (the aggregates record nothing
//! twice, and the gateway answers a repeated idempotency key with its first result), so a
//! replay neither reserves nor charges twice. Commands keep the checkout's correlation id
//! and cite the event that caused them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::gateway::{ChargeOutcome, GatewayError, PaymentGateway};
use crate::domain::Aggregate;
use crate::domain::order::{Order, OrderCommand, OrderStatus, Reservation};
use crate::domain::payment::{Payment, PaymentCommand, PaymentEvent, PaymentStatus};
use crate::entity::events;
use crate::error::AppError;
use crate::read::checkpoints;
use crate::read::relay::safe_horizon;
use crate::write::event_store::{self, EventMetadata};
use crate::write::orders::{ReleaseOrder, ReserveOrder, payment_stream_id};
use crate::write::{CommandContext, WriteGate, Writer};

/// Persisted name of the saga's checkpoint.
pub const NAME: &str = "order-saga";

/// Events read per batch.
const BATCH: u64 = 256;

/// The next thing an order needs, decided from the order's and its payment's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reserve,
    Charge,
    Confirm,
    /// Payment declined: give the stock back and reject the order.
    ReleaseAndReject(String),
    /// Cancelled or rejected while holding stock.
    Release,
    /// Cancelled after the payment succeeded.
    Refund,
}

/// The saga's decision: pure, from state alone, so a replay decides the same.
pub fn next_step(order: &Order, payment: &Payment) -> Option<Step> {
    if !order.exists {
        return None;
    }
    match order.status {
        OrderStatus::Pending if order.reservation == Reservation::NotStarted => Some(Step::Reserve),
        OrderStatus::Reserved => match payment.status {
            PaymentStatus::NotStarted => Some(Step::Charge),
            PaymentStatus::Succeeded => Some(Step::Confirm),
            PaymentStatus::Declined => Some(Step::ReleaseAndReject(format!(
                "payment declined: {}",
                payment
                    .decline_reason
                    .as_deref()
                    .unwrap_or("no reason given")
            ))),
            PaymentStatus::Refunded => Some(Step::Release),
        },
        status if status.is_failed() => {
            if order.reservation == Reservation::Reserved {
                Some(Step::Release)
            } else if payment.status == PaymentStatus::Succeeded {
                Some(Step::Refund)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Where a test may stop the saga, as if the process died there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    AfterReserve,
    /// The gateway charged, nothing recorded yet.
    AfterGatewayCharge,
    /// The charge is recorded, the order not yet confirmed.
    AfterRecordCharge,
    AfterConfirm,
    AfterRelease,
    /// The gateway refunded, nothing recorded yet.
    AfterGatewayRefund,
    AfterRecordRefund,
}

/// Fault injection for tests: the saga stops the first time it reaches `at`.
#[derive(Debug, Clone)]
pub struct SagaFault {
    pub at: Boundary,
}

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("fault injected at {0:?}")]
    Injected(Boundary),
    #[error("shutting down")]
    Stopping,
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

pub struct OrderSaga {
    pub db: DatabaseConnection,
    /// Its checkpoint writes queue with every other writer (one at a time on SQLite).
    pub gate: WriteGate,
    pub writer: Writer,
    pub gateway: Arc<dyn PaymentGateway>,
    pub wakeup: watch::Receiver<u64>,
    pub poll: Duration,
    pub fault: Option<SagaFault>,
}

impl OrderSaga {
    /// Runs until `shutdown` resolves. Returns an error only for an injected fault (the
    /// service then stops, as a crashed process would); other failures are retried.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), SagaError> {
        let mut checkpoint = checkpoints::load_one(&self.db, NAME).await?;
        let mut backoff = Duration::from_millis(50);
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match self.tick(&mut checkpoint, &shutdown).await {
                Ok(()) => {
                    backoff = Duration::from_millis(50);
                    tokio::select! {
                        _ = shutdown.changed() => return Ok(()),
                        Ok(()) = self.wakeup.changed() => {}
                        _ = tokio::time::sleep(self.poll) => {}
                    }
                }
                Err(SagaError::Stopping) => return Ok(()),
                Err(e @ SagaError::Injected(_)) => return Err(e),
                Err(e) => {
                    tracing::error!(error = ?e, "order saga step failed; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn tick(
        &mut self,
        checkpoint: &mut i64,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), SagaError> {
        let horizon = safe_horizon(&self.db, *checkpoint).await?;
        while *checkpoint < horizon {
            let batch = events::Entity::find()
                .filter(events::Column::Position.gt(*checkpoint))
                .filter(events::Column::Position.lte(horizon))
                .filter(
                    events::Column::StreamType.is_in([Order::STREAM_TYPE, Payment::STREAM_TYPE]),
                )
                .order_by_asc(events::Column::Position)
                .limit(BATCH)
                .all(&self.db)
                .await?;
            let upto = if (batch.len() as u64) < BATCH {
                horizon
            } else {
                batch.last().map_or(horizon, |e| e.position)
            };
            for event in &batch {
                if *shutdown.borrow() {
                    return Err(SagaError::Stopping);
                }
                self.handle(event, shutdown).await?;
                {
                    let _gate = self.gate.enter_views().await;
                    checkpoints::store(&self.db, NAME, event.position).await?;
                }
                *checkpoint = event.position;
            }
            // Past the last order or payment event nothing needs the saga: advance in
            // memory only (after a restart those events are filtered out again).
            *checkpoint = (*checkpoint).max(upto);
        }
        Ok(())
    }

    async fn handle(
        &self,
        event: &events::Model,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), SagaError> {
        let order_id = if event.stream_type == Payment::STREAM_TYPE {
            match crate::read::decode_row::<PaymentEvent>(event)? {
                PaymentEvent::Charged { order_id, .. }
                | PaymentEvent::Declined { order_id, .. }
                | PaymentEvent::Refunded { order_id, .. } => order_id,
            }
        } else {
            event.stream_id
        };
        let metadata: EventMetadata =
            serde_json::from_value(event.metadata.clone()).unwrap_or_default();
        self.reconcile(order_id, &metadata, event.position, shutdown)
            .await
    }

    async fn load<A: Aggregate>(&self, stream_id: Uuid) -> Result<A, SagaError> {
        let mut state = A::default();
        for row in event_store::load_stream(&self.db, stream_id).await? {
            state = state.apply(&crate::read::decode_row::<A::Event>(&row)?);
        }
        Ok(state)
    }

    /// Takes steps until the order needs nothing more (a bounded number: each step moves
    /// the state forward, so a loop would be a bug).
    async fn reconcile(
        &self,
        order_id: Uuid,
        cause: &EventMetadata,
        position: i64,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), SagaError> {
        for _ in 0..8 {
            let order: Order = self.load(order_id).await?;
            let payment: Payment = self.load(payment_stream_id(order_id)).await?;
            let Some(step) = next_step(&order, &payment) else {
                return Ok(());
            };
            let Some(owner) = order.user_id.clone() else {
                return Ok(());
            };
            let ctx = CommandContext {
                user_id: owner,
                idempotency_key: None,
                correlation_id: cause.correlation_id,
                causation_id: format!("event:{position}"),
            };
            tracing::debug!(%order_id, ?step, "order saga step");
            self.take(step, order_id, &order, &payment, &ctx, shutdown)
                .await?;
        }
        Err(AppError::Internal(anyhow::anyhow!(
            "order {order_id} did not settle after 8 saga steps"
        ))
        .into())
    }

    fn boundary(&self, at: Boundary) -> Result<(), SagaError> {
        match &self.fault {
            Some(fault) if fault.at == at => Err(SagaError::Injected(at)),
            _ => Ok(()),
        }
    }

    async fn take(
        &self,
        step: Step,
        order_id: Uuid,
        order: &Order,
        payment: &Payment,
        ctx: &CommandContext,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), SagaError> {
        let products = || {
            let mut quantities: BTreeMap<Uuid, i64> = BTreeMap::new();
            for line in &order.lines {
                *quantities.entry(line.product_id).or_default() += i64::from(line.quantity);
            }
            quantities
        };
        match step {
            Step::Reserve => {
                self.writer
                    .execute(
                        ctx,
                        ReserveOrder {
                            order_id,
                            quantities: products(),
                        },
                    )
                    .await?;
                self.boundary(Boundary::AfterReserve)
            }
            Step::Charge => {
                let token = order.payment_token.as_ref().map_or("", |t| t.as_str());
                let key = format!("charge:{order_id}");
                let outcome = self
                    .with_retries(shutdown, || self.gateway.charge(&key, order.total, token))
                    .await?;
                self.boundary(Boundary::AfterGatewayCharge)?;
                let command = match outcome {
                    ChargeOutcome::Succeeded { charge_id } => PaymentCommand::RecordCharge {
                        order_id,
                        amount: order.total,
                        charge_id,
                    },
                    ChargeOutcome::Declined { reason } => PaymentCommand::RecordDecline {
                        order_id,
                        amount: order.total,
                        reason,
                    },
                };
                self.writer.record_payment(ctx, order_id, command).await?;
                self.boundary(Boundary::AfterRecordCharge)
            }
            Step::Confirm => {
                self.writer
                    .order_step(ctx, "confirmOrder", order_id, OrderCommand::Confirm)
                    .await?;
                self.boundary(Boundary::AfterConfirm)
            }
            Step::ReleaseAndReject(reason) => {
                self.writer
                    .execute(
                        ctx,
                        ReleaseOrder {
                            order_id,
                            products: products().into_keys().collect(),
                            reject: Some(reason),
                        },
                    )
                    .await?;
                self.boundary(Boundary::AfterRelease)
            }
            Step::Release => {
                self.writer
                    .execute(
                        ctx,
                        ReleaseOrder {
                            order_id,
                            products: products().into_keys().collect(),
                            reject: None,
                        },
                    )
                    .await?;
                self.boundary(Boundary::AfterRelease)
            }
            Step::Refund => {
                let charge_id = payment.charge_id.clone().unwrap_or_default();
                let key = format!("refund:{order_id}");
                let refund_id = self
                    .with_retries(shutdown, || {
                        self.gateway.refund(&key, &charge_id, payment.amount)
                    })
                    .await?;
                self.boundary(Boundary::AfterGatewayRefund)?;
                self.writer
                    .record_payment(ctx, order_id, PaymentCommand::RecordRefund { refund_id })
                    .await?;
                self.boundary(Boundary::AfterRecordRefund)
            }
        }
    }

    /// Calls the gateway until it answers, backing off on transient failures: a transient
    /// failure is never a reason to give up on an order.
    async fn with_retries<T, F, Fut>(
        &self,
        shutdown: &watch::Receiver<bool>,
        mut call: F,
    ) -> Result<T, SagaError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let mut backoff = Duration::from_millis(20);
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(GatewayError::Transient(reason)) => {
                    tracing::warn!(%reason, "payment gateway unavailable; retrying");
                    if *shutdown.borrow() {
                        return Err(SagaError::Stopping);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(GatewayError::Internal(e)) => return Err(AppError::Internal(e).into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::{OrderEvent, OrderLine, RejectedAt};
    use crate::domain::values::{Money, PaymentToken, ProductName, ShippingAddress, Sku, UserId};

    fn placed() -> OrderEvent {
        OrderEvent::Placed {
            user_id: UserId::parse("alice").unwrap(),
            lines: vec![OrderLine {
                product_id: Uuid::from_u128(1),
                sku: Sku::parse("A").unwrap(),
                name: ProductName::parse("A").unwrap(),
                unit_price: Money::from_cents(100),
                quantity: 1,
            }],
            total: Money::from_cents(100),
            shipping_address: ShippingAddress::parse("x").unwrap(),
            payment_token: PaymentToken::parse("tok_visa").unwrap(),
        }
    }

    fn order(events: &[OrderEvent]) -> Order {
        events.iter().fold(Order::default(), |o, e| o.apply(e))
    }

    fn payment(events: &[PaymentEvent]) -> Payment {
        events.iter().fold(Payment::default(), |p, e| p.apply(e))
    }

    fn charged() -> PaymentEvent {
        PaymentEvent::Charged {
            order_id: Uuid::from_u128(5),
            amount: Money::from_cents(100),
            charge_id: "ch".into(),
        }
    }

    fn cancelled() -> OrderEvent {
        OrderEvent::Cancelled {
            by: UserId::parse("alice").unwrap(),
            reason: None,
        }
    }

    #[test]
    fn a_placed_order_is_reserved_first() {
        assert_eq!(
            next_step(&order(&[placed()]), &payment(&[])),
            Some(Step::Reserve)
        );
    }

    #[test]
    fn a_reserved_order_is_charged_then_confirmed() {
        let reserved = order(&[placed(), OrderEvent::Reserved {}]);
        assert_eq!(next_step(&reserved, &payment(&[])), Some(Step::Charge));
        assert_eq!(
            next_step(&reserved, &payment(&[charged()])),
            Some(Step::Confirm)
        );
        let confirmed = order(&[placed(), OrderEvent::Reserved {}, OrderEvent::Confirmed {}]);
        assert_eq!(next_step(&confirmed, &payment(&[charged()])), None);
    }

    #[test]
    fn a_declined_payment_releases_the_stock_and_rejects_with_the_reason() {
        let reserved = order(&[placed(), OrderEvent::Reserved {}]);
        let declined = payment(&[PaymentEvent::Declined {
            order_id: Uuid::from_u128(5),
            amount: Money::from_cents(100),
            reason: "card declined".into(),
        }]);
        assert_eq!(
            next_step(&reserved, &declined),
            Some(Step::ReleaseAndReject(
                "payment declined: card declined".into()
            ))
        );
    }

    #[test]
    fn an_order_rejected_for_stock_needs_nothing_more() {
        let rejected = order(&[
            placed(),
            OrderEvent::Rejected {
                at: RejectedAt::Stock,
                reason: "x".into(),
            },
        ]);
        assert_eq!(next_step(&rejected, &payment(&[])), None);
    }

    #[test]
    fn a_cancelled_order_releases_its_stock_then_refunds_its_payment_once() {
        let cancelled_reserved = order(&[
            placed(),
            OrderEvent::Reserved {},
            OrderEvent::Confirmed {},
            cancelled(),
        ]);
        assert_eq!(
            next_step(&cancelled_reserved, &payment(&[charged()])),
            Some(Step::Release)
        );
        let released = order(&[
            placed(),
            OrderEvent::Reserved {},
            OrderEvent::Confirmed {},
            cancelled(),
            OrderEvent::StockReleased {},
        ]);
        assert_eq!(
            next_step(&released, &payment(&[charged()])),
            Some(Step::Refund)
        );
        let refunded = payment(&[
            charged(),
            PaymentEvent::Refunded {
                order_id: Uuid::from_u128(5),
                amount: Money::from_cents(100),
                refund_id: "re".into(),
            },
        ]);
        assert_eq!(next_step(&released, &refunded), None);
    }

    #[test]
    fn a_pending_order_cancelled_before_reservation_needs_nothing() {
        assert_eq!(
            next_step(&order(&[placed(), cancelled()]), &payment(&[])),
            None
        );
    }
}
