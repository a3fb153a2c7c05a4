//! Cart commands: add, set quantity, remove, clear. One stream per user's cart; each keeps
//! the normalized `cart_lines` table in step with it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use super::catalog::product_facts;
use super::constraint::{ConstraintExt, Violation};
use super::idempotency::request_hash;
use super::{Command, CommandContext, Envelope, Outcome, TxError, UnitOfWork, WriteModel, Writer};
use crate::domain::cart::{Cart, CartCommand, CartEvent, ProductFacts};
use crate::domain::values::{Quantity, UserId};
use crate::entity::cart_lines;
use crate::error::{AppError, AppResult};

/// Namespace of cart stream ids: one deterministic stream per user.
const CART_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7267_7261_7068_2d63_6172_7473);

/// The id of a user's cart stream.
pub fn cart_stream_id(user: &UserId) -> Uuid {
    Uuid::new_v5(&CART_NAMESPACE, user.as_str().as_bytes())
}

impl WriteModel for Cart {
    async fn update_write_tables(
        txn: &DatabaseTransaction,
        _stream_id: Uuid,
        _state: &Self,
        events: &[CartEvent],
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        for event in events {
            let written = match event {
                CartEvent::ItemAdded {
                    user_id,
                    product_id,
                    quantity,
                    ..
                }
                | CartEvent::QuantityChanged {
                    user_id,
                    product_id,
                    quantity,
                } => cart_lines::Entity::insert(cart_lines::ActiveModel {
                    user_id: Set(user_id.as_str().to_owned()),
                    product_id: Set(*product_id),
                    quantity: Set(i32::try_from(*quantity).unwrap_or(i32::MAX)),
                    updated_at: Set(now),
                })
                .on_conflict(
                    OnConflict::columns([
                        cart_lines::Column::UserId,
                        cart_lines::Column::ProductId,
                    ])
                    .update_columns([cart_lines::Column::Quantity, cart_lines::Column::UpdatedAt])
                    .to_owned(),
                )
                .exec(txn)
                .await
                .map(|_| ()),
                CartEvent::ItemRemoved {
                    user_id,
                    product_id,
                } => cart_lines::Entity::delete_many()
                    .filter(cart_lines::Column::UserId.eq(user_id.as_str()))
                    .filter(cart_lines::Column::ProductId.eq(*product_id))
                    .exec(txn)
                    .await
                    .map(|_| ()),
                CartEvent::Cleared { user_id } => cart_lines::Entity::delete_many()
                    .filter(cart_lines::Column::UserId.eq(user_id.as_str()))
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

#[derive(Debug, Clone, Serialize)]
pub struct CartLineInput {
    pub product_id: Uuid,
    /// 0 only for set-quantity (removes the line).
    pub quantity: u32,
}

/// `addToCart` and `setCartItemQuantity`: cart commands decided on what the product is
/// *now*. Its facts are read inside the command's transaction, again at each attempt (a
/// retry after a lost race must not decide on what the first attempt saw), with a shared
/// row lock on PostgreSQL, and the command queues behind the product's writers of this
/// process: no stock change commits between the read and the decision, and one that
/// commits after it also comes after it in the log.
struct CartLineCommand {
    operation: &'static str,
    user_id: UserId,
    product_id: Uuid,
    /// `None` only for set-quantity (removes the line, whatever the product is).
    quantity: Option<Quantity>,
    /// Adds `quantity` to the line (true) or sets the line to it (false).
    add: bool,
}

impl Command for CartLineCommand {
    fn operation(&self) -> &'static str {
        self.operation
    }

    fn request_hash(&self) -> String {
        request_hash(&CartLineInput {
            product_id: self.product_id,
            quantity: self.quantity.map_or(0, Quantity::get),
        })
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

impl Writer {
    pub async fn add_to_cart(
        &self,
        ctx: &CommandContext,
        product_id: Uuid,
        quantity: Quantity,
    ) -> AppResult<Outcome> {
        self.execute(
            ctx,
            CartLineCommand {
                operation: "addToCart",
                user_id: ctx.user_id.clone(),
                product_id,
                quantity: Some(quantity),
                add: true,
            },
        )
        .await
    }

    pub async fn set_cart_item_quantity(
        &self,
        ctx: &CommandContext,
        product_id: Uuid,
        quantity: Option<Quantity>,
    ) -> AppResult<Outcome> {
        self.execute(
            ctx,
            CartLineCommand {
                operation: "setCartItemQuantity",
                user_id: ctx.user_id.clone(),
                product_id,
                quantity,
                add: false,
            },
        )
        .await
    }

    pub async fn remove_from_cart(
        &self,
        ctx: &CommandContext,
        product_id: Uuid,
    ) -> AppResult<Outcome> {
        self.execute(
            ctx,
            Envelope::<Cart> {
                operation: "removeFromCart",
                request_hash: request_hash(&product_id),
                stream_id: cart_stream_id(&ctx.user_id),
                expected_version: None,
                command: CartCommand::RemoveItem {
                    user_id: ctx.user_id.clone(),
                    product_id,
                },
            },
        )
        .await
    }

    pub async fn clear_cart(&self, ctx: &CommandContext) -> AppResult<Outcome> {
        self.execute(
            ctx,
            Envelope::<Cart> {
                operation: "clearCart",
                request_hash: request_hash(&()),
                stream_id: cart_stream_id(&ctx.user_id),
                expected_version: None,
                command: CartCommand::Clear {
                    user_id: ctx.user_id.clone(),
                },
            },
        )
        .await
    }
}
