//! The order aggregate: one stream per order. Owns the order's lines and total (priced at
//! checkout), its status, and what it knows of its reservation. Inventory (product
//! streams) and payment (payment stream) are separate aggregates; the order saga moves an
//! order through them and records each outcome here.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::{Money, PaymentToken, ProductName, Reason, ShippingAddress, Sku, UserId};
use super::{Aggregate, Stored, WriteTables};

stored! {
    pub enum OrderStatus as "order status" {
        #[default]
        Pending = "PENDING",
        Reserved = "RESERVED",
        Confirmed = "CONFIRMED",
        Shipped = "SHIPPED",
        Delivered = "DELIVERED",
        Cancelled = "CANCELLED",
        Rejected = "REJECTED",
    }
}

impl OrderStatus {
    /// Cancelled or rejected: the order will never ship.
    pub fn is_failed(self) -> bool {
        matches!(self, OrderStatus::Cancelled | OrderStatus::Rejected)
    }
}

stored! {
    /// What the order knows of its inventory reservation.
    pub enum Reservation as "reservation status" {
        #[default]
        NotStarted = "NOT_STARTED",
        Reserved = "RESERVED",
        Failed = "FAILED",
        Released = "RELEASED",
    }
}

/// One line of an order, priced when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub product_id: Uuid,
    pub sku: Sku,
    pub name: ProductName,
    pub unit_price: Money,
    pub quantity: u32,
}

impl OrderLine {
    pub fn total(&self) -> Money {
        self.unit_price.times(i64::from(self.quantity))
    }
}

/// Which step refused the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectedAt {
    Stock,
    Payment,
}

#[derive(Debug, Clone)]
pub enum OrderCommand {
    Place {
        user_id: UserId,
        lines: Vec<OrderLine>,
        shipping_address: ShippingAddress,
        payment_token: PaymentToken,
    },
    /// Saga: inventory holds every line.
    MarkReserved,
    /// Saga: a step refused the order (not enough stock, payment declined).
    Reject {
        at: RejectedAt,
        reason: String,
    },
    /// Saga: the payment succeeded.
    Confirm,
    /// Saga: the reservation was given back.
    MarkReleased,
    /// Customer (own order) or admin, before the order ships.
    Cancel {
        by: UserId,
        as_admin: bool,
        reason: Option<Reason>,
    },
    Ship,
    Deliver,
}

events! {
    /// The order's events. The `type` tags are persisted identifiers: never rename them.
    pub enum OrderEvent {
        #[serde(rename = "OrderPlaced")]
        Placed {
            user_id: UserId,
            lines: Vec<OrderLine>,
            total: Money,
            shipping_address: ShippingAddress,
            payment_token: PaymentToken,
        },
        #[serde(rename = "OrderReserved")]
        Reserved {},
        #[serde(rename = "OrderRejected")]
        Rejected { at: RejectedAt, reason: String },
        #[serde(rename = "OrderConfirmed")]
        Confirmed {},
        #[serde(rename = "OrderStockReleased")]
        StockReleased {},
        #[serde(rename = "OrderCancelled")]
        Cancelled {
            by: UserId,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            reason: Option<Reason>,
        },
        #[serde(rename = "OrderShipped")]
        Shipped {},
        #[serde(rename = "OrderDelivered")]
        Delivered {},
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// NOT_FOUND
    #[error("order not found")]
    NotFound,
    /// BAD_USER_INPUT
    #[error("the cart is empty")]
    EmptyCart,
    /// BAD_USER_INPUT: the lines add up to more than any amount an order may carry (the
    /// amount must stay readable in the event, and chargeable).
    #[error("the order total exceeds {max}, the largest an order may have")]
    TotalTooLarge { max: Money },
    /// CONFLICT: names the current status.
    #[error("cannot {action} an order that is {status}")]
    InvalidTransition {
        action: &'static str,
        status: &'static str,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub exists: bool,
    pub user_id: Option<UserId>,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub payment_token: Option<PaymentToken>,
    pub status: OrderStatus,
    pub reservation: Reservation,
    pub version: i64,
}

impl Order {
    fn transition(
        &self,
        action: &'static str,
        allowed: &[OrderStatus],
        event: OrderEvent,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        if !self.exists {
            return Err(OrderError::NotFound);
        }
        if allowed.contains(&self.status) {
            Ok(vec![event])
        } else {
            Err(OrderError::InvalidTransition {
                action,
                status: self.status.as_str(),
            })
        }
    }
}

impl Aggregate for Order {
    const STREAM_TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Tables = WriteTables;

    fn apply(mut self, event: &OrderEvent) -> Self {
        self.version += 1;
        match event {
            OrderEvent::Placed {
                user_id,
                lines,
                total,
                payment_token,
                ..
            } => {
                self.exists = true;
                self.user_id = Some(user_id.clone());
                self.lines = lines.clone();
                self.total = *total;
                self.payment_token = Some(payment_token.clone());
            }
            OrderEvent::Reserved {} => {
                self.status = OrderStatus::Reserved;
                self.reservation = Reservation::Reserved;
            }
            OrderEvent::Rejected { at, .. } => {
                self.status = OrderStatus::Rejected;
                if *at == RejectedAt::Stock {
                    self.reservation = Reservation::Failed;
                }
            }
            OrderEvent::Confirmed {} => self.status = OrderStatus::Confirmed,
            OrderEvent::StockReleased {} => self.reservation = Reservation::Released,
            OrderEvent::Cancelled { .. } => self.status = OrderStatus::Cancelled,
            OrderEvent::Shipped {} => self.status = OrderStatus::Shipped,
            OrderEvent::Delivered {} => self.status = OrderStatus::Delivered,
        }
        self
    }

    fn decide(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderStatus::*;
        match command {
            OrderCommand::Place {
                user_id,
                lines,
                shipping_address,
                payment_token,
            } => {
                if self.exists {
                    // A retried placement (same order id) is already done.
                    return Ok(vec![]);
                }
                if lines.is_empty() {
                    return Err(OrderError::EmptyCart);
                }
                // Summed wide: 99 units at the highest price already exceed the bound,
                // and many such lines would overflow an i64.
                let total = lines
                    .iter()
                    .map(|l| i128::from(l.unit_price.cents()) * i128::from(l.quantity))
                    .sum();
                let total = Money::checked_input(total)
                    .ok_or(OrderError::TotalTooLarge { max: Money::MAX })?;
                Ok(vec![OrderEvent::Placed {
                    user_id,
                    lines,
                    total,
                    shipping_address,
                    payment_token,
                }])
            }
            // The saga's steps are idempotent: a step that already happened, or that no
            // longer applies (the order was cancelled meanwhile), records nothing.
            OrderCommand::MarkReserved => Ok(match self.status {
                Pending if self.exists => vec![OrderEvent::Reserved {}],
                _ => vec![],
            }),
            OrderCommand::Reject { at, reason } => Ok(match self.status {
                Pending | Reserved if self.exists => vec![OrderEvent::Rejected { at, reason }],
                _ => vec![],
            }),
            OrderCommand::Confirm => Ok(match self.status {
                Reserved => vec![OrderEvent::Confirmed {}],
                _ => vec![],
            }),
            OrderCommand::MarkReleased => Ok(match self.reservation {
                Reservation::Reserved => vec![OrderEvent::StockReleased {}],
                _ => vec![],
            }),
            OrderCommand::Cancel {
                by,
                as_admin,
                reason,
            } => {
                // Someone else's order does not exist, as far as a customer can tell.
                if !as_admin && self.user_id.as_ref() != Some(&by) {
                    return Err(OrderError::NotFound);
                }
                self.transition(
                    "cancel",
                    &[Pending, Reserved, Confirmed],
                    OrderEvent::Cancelled { by, reason },
                )
            }
            OrderCommand::Ship => self.transition("ship", &[Confirmed], OrderEvent::Shipped {}),
            OrderCommand::Deliver => {
                self.transition("deliver", &[Shipped], OrderEvent::Delivered {})
            }
        }
    }

    fn version(&self) -> i64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::given;

    fn line(quantity: u32, cents: i64) -> OrderLine {
        OrderLine {
            product_id: Uuid::from_u128(9),
            sku: Sku::parse("TEE-1").unwrap(),
            name: ProductName::parse("Tee").unwrap(),
            unit_price: Money::from_cents(cents),
            quantity,
        }
    }

    fn placed() -> OrderEvent {
        OrderEvent::Placed {
            user_id: UserId::parse("alice").unwrap(),
            lines: vec![line(2, 1050), line(1, 99)],
            total: Money::from_cents(2199),
            shipping_address: ShippingAddress::parse("1 Main St").unwrap(),
            payment_token: PaymentToken::parse("tok_visa").unwrap(),
        }
    }

    fn place(lines: Vec<OrderLine>) -> OrderCommand {
        OrderCommand::Place {
            user_id: UserId::parse("alice").unwrap(),
            lines,
            shipping_address: ShippingAddress::parse("1 Main St").unwrap(),
            payment_token: PaymentToken::parse("tok_visa").unwrap(),
        }
    }

    #[test]
    fn placing_an_order_totals_its_lines_exactly() {
        let events = given::<Order>(&[])
            .when(place(vec![line(2, 1050), line(1, 99)]))
            .unwrap();
        assert_eq!(events, vec![placed()]);
    }

    #[test]
    fn an_order_totalling_the_largest_amount_is_placed_and_one_cent_more_is_refused() {
        let max = line(1, Money::MAX_CENTS);
        let events = given::<Order>(&[]).when(place(vec![max])).unwrap();
        assert!(matches!(
            &events[..],
            [OrderEvent::Placed { total, .. }] if *total == Money::MAX
        ));
        let over = vec![line(1, Money::MAX_CENTS), line(1, 1)];
        assert_eq!(
            given::<Order>(&[]).when(place(over)),
            Err(OrderError::TotalTooLarge { max: Money::MAX })
        );
        // Two units at half a trillion: the order that stopped the saga (issue, point 3).
        assert_eq!(
            given::<Order>(&[]).when(place(vec![line(2, 50_000_000_000_000)])),
            Err(OrderError::TotalTooLarge { max: Money::MAX })
        );
    }

    #[test]
    fn many_lines_at_the_highest_price_are_refused_without_overflowing() {
        let lines = (0..2_000).map(|_| line(99, Money::MAX_CENTS)).collect();
        assert_eq!(
            given::<Order>(&[]).when(place(lines)),
            Err(OrderError::TotalTooLarge { max: Money::MAX })
        );
    }

    #[test]
    fn an_order_without_lines_is_refused() {
        assert_eq!(
            given::<Order>(&[]).when(place(vec![])),
            Err(OrderError::EmptyCart)
        );
    }

    #[test]
    fn the_happy_path_goes_pending_reserved_confirmed_shipped_delivered() {
        let mut history = vec![placed()];
        for (command, event) in [
            (OrderCommand::MarkReserved, OrderEvent::Reserved {}),
            (OrderCommand::Confirm, OrderEvent::Confirmed {}),
            (OrderCommand::Ship, OrderEvent::Shipped {}),
            (OrderCommand::Deliver, OrderEvent::Delivered {}),
        ] {
            assert_eq!(
                given::<Order>(&history).when(command).unwrap(),
                vec![event.clone()]
            );
            history.push(event);
        }
    }

    #[test]
    fn shipping_an_order_that_is_not_confirmed_names_its_status() {
        let result = given::<Order>(&[placed()]).when(OrderCommand::Ship);
        assert_eq!(
            result,
            Err(OrderError::InvalidTransition {
                action: "ship",
                status: "PENDING"
            })
        );
        assert_eq!(
            result.unwrap_err().to_string(),
            "cannot ship an order that is PENDING"
        );
    }

    #[test]
    fn a_shipped_order_cannot_be_cancelled() {
        let history = [
            placed(),
            OrderEvent::Reserved {},
            OrderEvent::Confirmed {},
            OrderEvent::Shipped {},
        ];
        let result = given::<Order>(&history).when(OrderCommand::Cancel {
            by: UserId::parse("alice").unwrap(),
            as_admin: false,
            reason: None,
        });
        assert!(matches!(
            result,
            Err(OrderError::InvalidTransition {
                status: "SHIPPED",
                ..
            })
        ));
    }

    #[test]
    fn saga_steps_that_no_longer_apply_record_nothing() {
        let cancelled = OrderEvent::Cancelled {
            by: UserId::parse("alice").unwrap(),
            reason: None,
        };
        let history = [placed(), cancelled];
        assert_eq!(
            given::<Order>(&history).when(OrderCommand::MarkReserved),
            Ok(vec![])
        );
        assert_eq!(
            given::<Order>(&history).when(OrderCommand::Confirm),
            Ok(vec![])
        );
        assert_eq!(
            given::<Order>(&history).when(OrderCommand::Reject {
                at: RejectedAt::Stock,
                reason: "x".into()
            }),
            Ok(vec![])
        );
    }

    #[test]
    fn a_release_is_recorded_once_and_only_after_a_reservation() {
        assert_eq!(
            given::<Order>(&[placed()]).when(OrderCommand::MarkReleased),
            Ok(vec![])
        );
        let reserved = [placed(), OrderEvent::Reserved {}];
        assert_eq!(
            given::<Order>(&reserved).when(OrderCommand::MarkReleased),
            Ok(vec![OrderEvent::StockReleased {}])
        );
        let released = [
            placed(),
            OrderEvent::Reserved {},
            OrderEvent::StockReleased {},
        ];
        assert_eq!(
            given::<Order>(&released).when(OrderCommand::MarkReleased),
            Ok(vec![])
        );
    }

    #[test]
    fn a_customer_cannot_cancel_another_customers_order_but_an_admin_can() {
        let cancel = |by: &str, as_admin| OrderCommand::Cancel {
            by: UserId::parse(by).unwrap(),
            as_admin,
            reason: None,
        };
        assert_eq!(
            given::<Order>(&[placed()]).when(cancel("bob", false)),
            Err(OrderError::NotFound)
        );
        assert!(
            given::<Order>(&[placed()])
                .when(cancel("root", true))
                .is_ok()
        );
        assert!(
            given::<Order>(&[placed()])
                .when(cancel("alice", false))
                .is_ok()
        );
    }
}
