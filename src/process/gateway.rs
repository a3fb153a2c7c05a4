//! The payment gateway: a trait, and a deterministic simulator as the built-in provider.
//!
//! Like a real provider (Stripe, Adyen), every call carries an idempotency key: a retried
//! charge or refund with the same key is answered with the first result and never
//! performed twice. That is what lets the saga crash between "charged" and "recorded".

use chrono::Utc;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use uuid::Uuid;

use crate::domain::values::Money;
use crate::entity::gateway_ledger;
use crate::write::WriteGate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded { charge_id: String },
    Declined { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Try again later (network trouble, provider busy).
    #[error("payment provider temporarily unavailable: {0}")]
    Transient(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[async_trait::async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Charges `amount` to the payment method `token`, at most once per key.
    async fn charge(
        &self,
        idempotency_key: &str,
        amount: Money,
        token: &str,
    ) -> Result<ChargeOutcome, GatewayError>;

    /// Refunds a charge in full, at most once per key; returns the refund's reference.
    async fn refund(
        &self,
        idempotency_key: &str,
        charge_id: &str,
        amount: Money,
    ) -> Result<String, GatewayError>;
}

/// The built-in simulator. Tokens: `tok_visa` succeeds, `tok_decline` is declined,
/// `tok_flaky` fails transiently twice per key and then succeeds; any other token is
/// declined as invalid. Its ledger is a table, so it remembers across restarts.
pub struct SimulatedGateway {
    db: DatabaseConnection,
    /// On SQLite the ledger's writes queue for the one write lock in process, as the
    /// saga's follow-up work (ADR 0033), instead of in SQLite's busy handler, which
    /// sleeps while this process hands the lock from writer to writer.
    gate: WriteGate,
}

/// Transient failures `tok_flaky` produces per key before it succeeds.
const FLAKY_FAILURES: i32 = 2;

impl SimulatedGateway {
    pub fn new(db: DatabaseConnection, gate: WriteGate) -> Self {
        Self { db, gate }
    }

    fn reference(prefix: &str, key: &str) -> String {
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, key.as_bytes()).simple();
        format!("{prefix}_{id}")
    }

    async fn record(
        &self,
        key: &str,
        operation: &str,
        outcome: &str,
        reference: &str,
        amount: Money,
        attempts: i32,
    ) -> anyhow::Result<()> {
        use gateway_ledger::Column;
        let row = gateway_ledger::ActiveModel {
            idempotency_key: Set(key.to_owned()),
            operation: Set(operation.to_owned()),
            outcome: Set(outcome.to_owned()),
            reference: Set(reference.to_owned()),
            amount_cents: Set(amount.cents()),
            attempts: Set(attempts),
            updated_at: Set(Utc::now()),
        };
        let changed = [
            Column::Outcome,
            Column::Reference,
            Column::Attempts,
            Column::UpdatedAt,
        ];
        let _gate = self.gate.enter_views().await;
        crate::db::upsert(&self.db, row, [Column::IdempotencyKey], changed).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(
        &self,
        idempotency_key: &str,
        amount: Money,
        token: &str,
    ) -> Result<ChargeOutcome, GatewayError> {
        let previous = gateway_ledger::Entity::find_by_id(idempotency_key.to_owned())
            .one(&self.db)
            .await
            .map_err(anyhow::Error::new)?;
        match previous.as_ref().map(|p| p.outcome.as_str()) {
            Some("SUCCEEDED") => {
                return Ok(ChargeOutcome::Succeeded {
                    charge_id: previous.map(|p| p.reference).unwrap_or_default(),
                });
            }
            Some("DECLINED") => {
                return Ok(ChargeOutcome::Declined {
                    reason: previous.map(|p| p.reference).unwrap_or_default(),
                });
            }
            _ => {}
        }
        let attempts = previous.map_or(0, |p| p.attempts) + 1;
        let charge_id = Self::reference("ch", idempotency_key);
        match token {
            "tok_flaky" if attempts <= FLAKY_FAILURES => {
                self.record(idempotency_key, "charge", "PENDING", "", amount, attempts)
                    .await?;
                Err(GatewayError::Transient(format!(
                    "simulated outage (attempt {attempts})"
                )))
            }
            // A flaky card succeeds once its failures are spent.
            "tok_visa" | "tok_flaky" => {
                self.record(
                    idempotency_key,
                    "charge",
                    "SUCCEEDED",
                    &charge_id,
                    amount,
                    attempts,
                )
                .await?;
                Ok(ChargeOutcome::Succeeded { charge_id })
            }
            other => {
                let reason = if other == "tok_decline" {
                    "card declined".to_owned()
                } else {
                    "invalid payment token".to_owned()
                };
                self.record(
                    idempotency_key,
                    "charge",
                    "DECLINED",
                    &reason,
                    amount,
                    attempts,
                )
                .await?;
                Ok(ChargeOutcome::Declined { reason })
            }
        }
    }

    async fn refund(
        &self,
        idempotency_key: &str,
        _charge_id: &str,
        amount: Money,
    ) -> Result<String, GatewayError> {
        if let Some(previous) = gateway_ledger::Entity::find_by_id(idempotency_key.to_owned())
            .one(&self.db)
            .await
            .map_err(anyhow::Error::new)?
        {
            return Ok(previous.reference);
        }
        let refund_id = Self::reference("re", idempotency_key);
        self.record(
            idempotency_key,
            "refund",
            "SUCCEEDED",
            &refund_id,
            amount,
            1,
        )
        .await?;
        Ok(refund_id)
    }
}
