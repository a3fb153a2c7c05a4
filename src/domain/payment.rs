//! The payment aggregate: one stream per order's payment. Records what the payment
//! gateway answered: a charge, a decline, a refund. The gateway call itself happens in
//! the saga (IO); what is recorded here is idempotent, so a retried step changes nothing.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::Money;
use super::{Aggregate, WriteTables};

stored! {
    pub enum PaymentStatus as "payment status" {
        #[default]
        NotStarted = "NOT_STARTED",
        Succeeded = "SUCCEEDED",
        Declined = "DECLINED",
        Refunded = "REFUNDED",
    }
}

#[derive(Debug, Clone)]
pub enum PaymentCommand {
    RecordCharge {
        order_id: Uuid,
        amount: Money,
        charge_id: String,
    },
    RecordDecline {
        order_id: Uuid,
        amount: Money,
        reason: String,
    },
    RecordRefund {
        refund_id: String,
    },
}

events! {
    /// The payment's events. The `type` tags are persisted identifiers: never rename them.
    pub enum PaymentEvent {
        #[serde(rename = "PaymentCharged")]
        Charged {
            order_id: Uuid,
            amount: Money,
            charge_id: String,
        },
        #[serde(rename = "PaymentDeclined")]
        Declined {
            order_id: Uuid,
            amount: Money,
            reason: String,
        },
        #[serde(rename = "PaymentRefunded")]
        Refunded {
            order_id: Uuid,
            amount: Money,
            refund_id: String,
        },
    }
}

/// Payment commands never fail: the gateway already decided, this records it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub order_id: Option<Uuid>,
    pub status: PaymentStatus,
    pub amount: Money,
    pub charge_id: Option<String>,
    /// Why the gateway declined, when it did.
    pub decline_reason: Option<String>,
    pub version: i64,
}

impl Payment {
    /// Why an order whose payment was declined is rejected, as its `reason` says it.
    pub fn decline_text(&self) -> String {
        format!(
            "payment declined: {}",
            self.decline_reason.as_deref().unwrap_or("no reason given")
        )
    }

    /// What the gateway answered when charging `amount` for the order.
    fn answered(&mut self, order_id: Uuid, amount: Money, status: PaymentStatus) {
        self.order_id = Some(order_id);
        self.amount = amount;
        self.status = status;
    }
}

impl Aggregate for Payment {
    const STREAM_TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Tables = WriteTables;

    fn apply(mut self, event: &PaymentEvent) -> Self {
        self.version += 1;
        match event {
            PaymentEvent::Charged {
                order_id,
                amount,
                charge_id,
            } => {
                self.answered(*order_id, *amount, PaymentStatus::Succeeded);
                self.charge_id = Some(charge_id.clone());
            }
            PaymentEvent::Declined {
                order_id,
                amount,
                reason,
            } => {
                self.answered(*order_id, *amount, PaymentStatus::Declined);
                self.decline_reason = Some(reason.clone());
            }
            PaymentEvent::Refunded { .. } => self.status = PaymentStatus::Refunded,
        }
        self
    }

    fn decide(&self, command: PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        Ok(match command {
            PaymentCommand::RecordCharge {
                order_id,
                amount,
                charge_id,
            } if self.status == PaymentStatus::NotStarted => vec![PaymentEvent::Charged {
                order_id,
                amount,
                charge_id,
            }],
            PaymentCommand::RecordDecline {
                order_id,
                amount,
                reason,
            } if self.status == PaymentStatus::NotStarted => vec![PaymentEvent::Declined {
                order_id,
                amount,
                reason,
            }],
            PaymentCommand::RecordRefund { refund_id }
                if self.status == PaymentStatus::Succeeded =>
            {
                match self.order_id {
                    Some(order_id) => vec![PaymentEvent::Refunded {
                        order_id,
                        amount: self.amount,
                        refund_id,
                    }],
                    None => vec![],
                }
            }
            // Already recorded (a retried step), or not applicable: nothing to record.
            _ => vec![],
        })
    }

    fn version(&self) -> i64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::given;

    const ORDER: Uuid = Uuid::from_u128(3);

    fn charged() -> PaymentEvent {
        PaymentEvent::Charged {
            order_id: ORDER,
            amount: Money::from_cents(500),
            charge_id: "ch_1".into(),
        }
    }

    #[test]
    fn a_charge_is_recorded_once() {
        let record = || PaymentCommand::RecordCharge {
            order_id: ORDER,
            amount: Money::from_cents(500),
            charge_id: "ch_1".into(),
        };
        assert_eq!(given::<Payment>(&[]).when(record()), Ok(vec![charged()]));
        assert_eq!(given::<Payment>(&[charged()]).when(record()), Ok(vec![]));
    }

    #[test]
    fn a_refund_needs_a_charge_and_happens_once() {
        let refund = || PaymentCommand::RecordRefund {
            refund_id: "re_1".into(),
        };
        assert_eq!(given::<Payment>(&[]).when(refund()), Ok(vec![]));
        let refunded = PaymentEvent::Refunded {
            order_id: ORDER,
            amount: Money::from_cents(500),
            refund_id: "re_1".into(),
        };
        assert_eq!(
            given::<Payment>(&[charged()]).when(refund()),
            Ok(vec![refunded.clone()])
        );
        assert_eq!(
            given::<Payment>(&[charged(), refunded]).when(refund()),
            Ok(vec![])
        );
    }
}
