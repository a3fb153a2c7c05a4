//! Cart commands: add, set quantity (decided on the product as it is in the command's own
//! transaction), remove, clear. One stream per user's cart; each keeps the normalized
//! `cart_lines` table in step with it.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use super::catalog::product_facts;
use super::constraint::{ConstraintExt, Violation};
use super::idempotency::request_hash;
use super::{Command, CommandContext, Envelope, Outcome, TxError, UnitOfWork, WriteModel, upsert};
use crate::domain::cart::{Cart, CartCommand, CartEvent, LineChange, ProductFacts};
use crate::domain::values::{Quantity, UserId};
use crate::entity::cart_lines;
use crate::error::{AppError, AppResult};

pub use crate::domain::cart::cart_stream_id;

impl WriteModel for Cart {
    async fn update_write_tables(
        txn: &DatabaseTransaction,
        _stream_id: Uuid,
        _state: &Self,
        events: &[CartEvent],
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        use cart_lines::Column;
        for event in events {
            let (user_id, change) = event.change();
            let written = match change {
                LineChange::Set {
                    product_id,
                    quantity,
                } => {
                    let line = cart_lines::ActiveModel {
                        user_id: Set(user_id.as_str().to_owned()),
                        product_id: Set(product_id),
                        quantity: Set(i32::try_from(quantity).unwrap_or(i32::MAX)),
                        updated_at: Set(now),
                    };
                    let key = [Column::UserId, Column::ProductId];
                    upsert(txn, line, key, [Column::Quantity, Column::UpdatedAt]).await
                }
                LineChange::Remove { product_id } => cart_lines::Entity::delete_many()
                    .filter(Column::UserId.eq(user_id.as_str()))
                    .filter(Column::ProductId.eq(product_id))
                    .exec(txn)
                    .await
                    .map(|_| ()),
                LineChange::Clear => cart_lines::Entity::delete_many()
                    .filter(Column::UserId.eq(user_id.as_str()))
                    .exec(txn)
                    .await
                    .map(|_| ()),
            };
            written.map_err(|e| match e.violation() {
                Some(Violation::ForeignKey(_)) => {
                    AppError::NotFound("the product does not exist".to_owned())
                }
                _ => AppError::from(e),
            })?;
        }
        Ok(())
    }
}

/// `addToCart` and `setCartItemQuantity`: cart commands decided on what the product is
/// *now*. Its facts are read inside the command's transaction, again at each attempt (a
/// retry after a lost race must not decide on what the first attempt saw), with a shared
/// row lock on PostgreSQL, and the command queues behind the product's writers of this
/// process: no stock change commits between the read and the decision, and one that
/// commits after it also comes after it in the log.
///
/// Serialized, it is the request's fingerprint: the product and the quantity (0 to remove).
#[derive(Serialize)]
pub struct CartLineCommand {
    #[serde(skip)]
    operation: &'static str,
    #[serde(skip)]
    user_id: UserId,
    product_id: Uuid,
    /// `None` only for set-quantity (removes the line, whatever the product is).
    #[serde(serialize_with = "zero_for_none")]
    quantity: Option<Quantity>,
    /// Adds `quantity` to the line (true) or sets the line to it (false).
    #[serde(skip)]
    add: bool,
}

fn zero_for_none<S: serde::Serializer>(q: &Option<Quantity>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u32(q.map_or(0, Quantity::get))
}

impl CartLineCommand {
    /// `addToCart`: adds `quantity` units to the caller's line of the product.
    pub fn add(ctx: &CommandContext, product_id: Uuid, quantity: Quantity) -> Self {
        Self {
            operation: "addToCart",
            user_id: ctx.user_id.clone(),
            product_id,
            quantity: Some(quantity),
            add: true,
        }
    }

    /// `setCartItemQuantity`: sets the caller's line of the product; `None` removes it.
    pub fn set(ctx: &CommandContext, product_id: Uuid, quantity: Option<Quantity>) -> Self {
        Self {
            operation: "setCartItemQuantity",
            user_id: ctx.user_id.clone(),
            product_id,
            quantity,
            add: false,
        }
    }
}

impl Command for CartLineCommand {
    fn operation(&self) -> &'static str {
        self.operation
    }

    fn request_hash(&self) -> String {
        request_hash(self)
    }

    fn streams(&self) -> Vec<Uuid> {
        vec![cart_stream_id(&self.user_id), self.product_id]
    }

    async fn run(&self, uow: &mut UnitOfWork) -> Result<Outcome, TxError> {
        let product = match self.quantity {
            Some(_) => product_facts(uow.txn(), self.product_id).await?,
            None => ProductFacts::Unknown,
        };
        let user_id = self.user_id.clone();
        let product_id = self.product_id;
        let command = match (self.add, self.quantity) {
            (true, Some(quantity)) => CartCommand::AddItem {
                user_id,
                product_id,
                product,
                quantity,
            },
            (_, quantity) => CartCommand::SetQuantity {
                user_id,
                product_id,
                product,
                quantity,
            },
        };
        let cart = uow
            .handle::<Cart>(cart_stream_id(&self.user_id), command, None)
            .await?;
        Ok(cart.outcome())
    }
}

/// `removeFromCart` and `clearCart`: a command on the caller's cart alone, its request
/// fingerprinted as `request`.
pub fn cart_command(
    ctx: &CommandContext,
    operation: &'static str,
    request: &impl Serialize,
    command: CartCommand,
) -> Envelope<Cart> {
    Envelope::new(
        operation,
        cart_stream_id(&ctx.user_id),
        request_hash(request),
        command,
    )
}
