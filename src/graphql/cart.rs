//! The cart area: the caller's own cart (read from the cart view, priced from the catalog
//! view) and the cart mutations, each input parsed straight into its command. Every
//! operation here needs a signed-in user.

use async_graphql::{Context, InputObject, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::catalog::Product;
use super::error::IntoGraphql;
use super::live::{Live, live};
use super::scalars::{Decimal, Position};
use super::{services, signed_in};
use crate::domain::cart::{self, CartCommand};
use crate::domain::values::{Money, Quantity};
use crate::error::{AppError, AppResult};
use crate::read::cart::{self as view, CartLine, CartProjection, CartRead};
use crate::read::live::OneKey;
use crate::write::cart::{CartLineCommand, cart_command};
use crate::write::{CommandContext, Envelope, Outcome};

/// A user's cart.
pub struct Cart(pub(crate) CartRead);

#[Object]
impl Cart {
    async fn user_id(&self) -> &str {
        &self.0.user_id
    }
    /// Lines in the order they were first added.
    async fn items(&self) -> Vec<CartItem<'_>> {
        self.0.lines.iter().map(CartItem).collect()
    }
    /// Total number of units over all lines.
    async fn item_count(&self) -> i64 {
        self.0.lines.iter().map(|l| i64::from(l.quantity)).sum()
    }
    /// Sum of the line totals at current catalog prices.
    async fn total(&self) -> Decimal {
        // Saturating: a cart may hold more than an order may total (checkout refuses
        // it), and a plain sum of many lines at the highest price would overflow.
        Decimal(Money::from_cents(
            self.0
                .lines
                .iter()
                .fold(0i64, |sum, l| sum.saturating_add(line_total(l).cents())),
        ))
    }
    /// When the cart last changed; null for a cart never used.
    async fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.0.updated_at
    }
    /// Position of the last cart event folded into this view ("0" for a cart never used).
    async fn position(&self) -> Position {
        Position(self.0.position)
    }
}

fn unit_price(line: &CartLine) -> Money {
    Money::from_cents(line.product.as_ref().map_or(0, |p| p.price_cents))
}

fn line_total(line: &CartLine) -> Money {
    unit_price(line).times(i64::from(line.quantity))
}

/// One line of a cart, priced from the catalog.
pub struct CartItem<'a>(&'a CartLine);

#[Object]
impl CartItem<'_> {
    /// The product as the catalog shows it now.
    async fn product(&self) -> Option<Product> {
        self.0.product.clone().map(Product)
    }
    async fn product_id(&self) -> Uuid {
        self.0.product_id
    }
    async fn name(&self) -> &str {
        self.0.product.as_ref().map_or("", |p| p.name.as_str())
    }
    /// Current catalog price of one unit.
    async fn unit_price(&self) -> Decimal {
        Decimal(unit_price(self.0))
    }
    async fn quantity(&self) -> i32 {
        self.0.quantity
    }
    /// unitPrice × quantity.
    async fn line_total(&self) -> Decimal {
        Decimal(line_total(self.0))
    }
}

/// Every mutation returns the log position of its last event and the affected read model,
/// read once the projection has reached that position (read-your-writes).
#[derive(SimpleObject)]
pub struct CartPayload {
    pub position: Position,
    pub cart: Cart,
}

#[derive(InputObject)]
pub struct CartItemInput {
    pub product_id: Uuid,
    pub quantity: i64,
    pub idempotency_key: Option<String>,
}

#[derive(Default)]
pub struct CartQuery;

#[Object]
impl CartQuery {
    /// The caller's own cart (empty cart when none yet). Requires a signed-in user.
    async fn cart(&self, ctx: &Context<'_>) -> async_graphql::Result<Cart> {
        async {
            let caller = signed_in(ctx)?;
            let s = services(ctx)?;
            Ok(Cart(view::find(&s.views, caller.user_id.as_str()).await?))
        }
        .await
        .gql()
    }
}

async fn cart_payload(ctx: &Context<'_>, outcome: Outcome) -> AppResult<CartPayload> {
    let s = services(ctx)?;
    let caller = signed_in(ctx)?;
    let read = async { Ok(view::find(&s.views, caller.user_id.as_str()).await?) };
    let cart = s.read_written(view::NAME, &outcome, read).await?;
    Ok(CartPayload {
        position: Position(outcome.position),
        cart: Cart(cart),
    })
}

impl CartItemInput {
    /// `addToCart`: the quantity parsed at its type (1 to 99).
    pub(crate) fn into_add(self, ctx: &CommandContext) -> AppResult<CartLineCommand> {
        let quantity = Quantity::parse(self.quantity)?;
        Ok(CartLineCommand::add(ctx, self.product_id, quantity))
    }

    /// `setCartItemQuantity`: the quantity parsed at its type, 0 removing the line.
    pub(crate) fn into_set(self, ctx: &CommandContext) -> AppResult<CartLineCommand> {
        let quantity = match self.quantity {
            0 => None,
            n if n < 0 => {
                return Err(AppError::BadUserInput(
                    "quantity: must be between 0 and 99".into(),
                ));
            }
            n => Some(Quantity::parse(n)?),
        };
        Ok(CartLineCommand::set(ctx, self.product_id, quantity))
    }
}

/// `removeFromCart`: its request is the product's id.
pub(crate) fn remove_item(ctx: &CommandContext, product_id: Uuid) -> Envelope<cart::Cart> {
    let user_id = ctx.user_id.clone();
    let remove = CartCommand::RemoveItem {
        user_id,
        product_id,
    };
    cart_command(ctx, "removeFromCart", &product_id, remove)
}

/// `clearCart`: its request is empty.
pub(crate) fn clear(ctx: &CommandContext) -> Envelope<cart::Cart> {
    let user_id = ctx.user_id.clone();
    cart_command(ctx, "clearCart", &(), CartCommand::Clear { user_id })
}

command_mutations! {
    pub struct CartMutation -> CartPayload, read by cart_payload {
        /// Adds units of a product to the caller's cart (1 to 99 per line, no more than on hand).
        command add_to_cart(input: CartItemInput) by signed_in, key in input => {
            |_, cx| input.into_add(cx)
        }

        /// Sets the quantity of a line; 0 removes it.
        command set_cart_item_quantity(input: CartItemInput) by signed_in, key in input => {
            |_, cx| input.into_set(cx)
        }

        /// Removes a line from the caller's cart; NOT_FOUND when it is not there.
        /// With `idempotencyKey`, a retry returns the first payload and changes nothing.
        command remove_from_cart(
            product_id: Uuid,
            idempotency_key: Option<String>,
        ) by signed_in, key idempotency_key => {
            |_, cx| Ok(remove_item(cx, product_id))
        }

        /// Empties the caller's cart. With `idempotencyKey`, a retry returns the first payload and changes nothing.
        command clear_cart(idempotency_key: Option<String>) by signed_in, key idempotency_key => {
            |_, cx| Ok(clear(cx))
        }
    }
}

#[derive(Default)]
pub struct CartSubscription;

#[Subscription]
impl CartSubscription {
    /// The caller's cart: current state first, then every change.
    async fn cart_updated(
        &self,
        ctx: &Context<'_>,
        after: Option<Position>,
    ) -> async_graphql::Result<Live<Cart>> {
        let caller = signed_in(ctx).gql()?;
        let watch = OneKey::<CartProjection>::new(caller.user_id.to_string());
        live(ctx, watch, after, Cart).gql()
    }
}
