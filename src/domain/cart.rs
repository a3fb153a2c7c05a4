//! The cart aggregate: one stream per user's cart. Owns the lines and their quantities
//! (each 1..=99). Whether a product can be added is decided here from the facts about the
//! product that the command handler looked up at that moment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::product::ProductStatus;
use super::values::{Quantity, UserId};
use super::{Aggregate, WriteTables};

/// Namespace of cart stream ids: one deterministic stream per user.
const CART_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7267_7261_7068_2d63_6172_7473);

/// The id of a user's cart stream.
pub fn cart_stream_id(user: &UserId) -> Uuid {
    Uuid::new_v5(&CART_NAMESPACE, user.as_str().as_bytes())
}

/// What the handler knew about a product when the command was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductFacts {
    Unknown,
    Known { status: ProductStatus, stock: i64 },
}

#[derive(Debug, Clone)]
pub enum CartCommand {
    /// Adds `quantity` units to the line (creating it).
    AddItem {
        user_id: UserId,
        product_id: Uuid,
        product: ProductFacts,
        quantity: Quantity,
    },
    /// Sets the line's quantity; `None` (zero) removes the line.
    SetQuantity {
        user_id: UserId,
        product_id: Uuid,
        product: ProductFacts,
        quantity: Option<Quantity>,
    },
    RemoveItem {
        user_id: UserId,
        product_id: Uuid,
    },
    Clear {
        user_id: UserId,
    },
}

events! {
    /// The cart's events. The `type` tags are persisted identifiers: never rename them.
    pub enum CartEvent {
        /// `quantity` is the line's resulting quantity.
        #[serde(rename = "CartItemAdded")]
        ItemAdded {
            user_id: UserId,
            product_id: Uuid,
            added: u32,
            quantity: u32,
        },
        #[serde(rename = "CartItemQuantityChanged")]
        QuantityChanged {
            user_id: UserId,
            product_id: Uuid,
            quantity: u32,
        },
        #[serde(rename = "CartItemRemoved")]
        ItemRemoved { user_id: UserId, product_id: Uuid },
        #[serde(rename = "CartCleared")]
        Cleared { user_id: UserId },
    }
}

/// What a cart event does to the user's lines: the one reading of the events that the
/// aggregate, the `cart_lines` write table and the cart view each apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineChange {
    /// The product's line now holds `quantity` (an addition or a new quantity).
    Set { product_id: Uuid, quantity: u32 },
    /// The product's line is gone.
    Remove { product_id: Uuid },
    /// Every line is gone.
    Clear,
}

impl CartEvent {
    /// The user whose cart changed, and how its lines changed.
    pub fn change(&self) -> (&UserId, LineChange) {
        match self {
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
            } => (
                user_id,
                LineChange::Set {
                    product_id: *product_id,
                    quantity: *quantity,
                },
            ),
            CartEvent::ItemRemoved {
                user_id,
                product_id,
            } => (
                user_id,
                LineChange::Remove {
                    product_id: *product_id,
                },
            ),
            CartEvent::Cleared { user_id } => (user_id, LineChange::Clear),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    /// NOT_FOUND
    #[error("product {0} not found")]
    UnknownProduct(Uuid),
    /// CONFLICT
    #[error("product {0} is discontinued")]
    Discontinued(Uuid),
    /// INSUFFICIENT_STOCK
    #[error("only {available} of product {product_id} in stock, {requested} requested")]
    InsufficientStock {
        product_id: Uuid,
        available: i64,
        requested: i64,
    },
    /// BAD_USER_INPUT
    #[error("a cart line holds at most {max} units")]
    LineLimit { max: u32 },
    /// NOT_FOUND
    #[error("product {0} is not in the cart")]
    NotInCart(Uuid),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    pub lines: BTreeMap<Uuid, u32>,
    pub version: i64,
}

/// Refuses a line of `requested` units of a product unless it is known, active and has
/// that many units on hand now.
fn ensure_available(
    product_id: Uuid,
    facts: ProductFacts,
    requested: u32,
) -> Result<(), CartError> {
    match facts {
        ProductFacts::Unknown => Err(CartError::UnknownProduct(product_id)),
        ProductFacts::Known {
            status: ProductStatus::Discontinued,
            ..
        } => Err(CartError::Discontinued(product_id)),
        ProductFacts::Known { stock, .. } if i64::from(requested) > stock => {
            Err(CartError::InsufficientStock {
                product_id,
                available: stock,
                requested: i64::from(requested),
            })
        }
        ProductFacts::Known { .. } => Ok(()),
    }
}

impl Aggregate for Cart {
    const STREAM_TYPE: &'static str = "cart";
    type Command = CartCommand;
    type Event = CartEvent;
    type Error = CartError;
    type Tables = WriteTables;

    fn apply(mut self, event: &CartEvent) -> Self {
        self.version += 1;
        match event.change().1 {
            LineChange::Set {
                product_id,
                quantity,
            } => {
                self.lines.insert(product_id, quantity);
            }
            LineChange::Remove { product_id } => {
                self.lines.remove(&product_id);
            }
            LineChange::Clear => self.lines.clear(),
        }
        self
    }

    fn decide(&self, command: CartCommand) -> Result<Vec<CartEvent>, CartError> {
        match command {
            CartCommand::AddItem {
                user_id,
                product_id,
                product,
                quantity,
            } => {
                let current = self.lines.get(&product_id).copied().unwrap_or(0);
                let total = current + quantity.get();
                if total > Quantity::MAX {
                    return Err(CartError::LineLimit { max: Quantity::MAX });
                }
                ensure_available(product_id, product, total)?;
                Ok(vec![CartEvent::ItemAdded {
                    user_id,
                    product_id,
                    added: quantity.get(),
                    quantity: total,
                }])
            }
            CartCommand::SetQuantity {
                user_id,
                product_id,
                product,
                quantity,
            } => match quantity {
                None if self.lines.contains_key(&product_id) => Ok(vec![CartEvent::ItemRemoved {
                    user_id,
                    product_id,
                }]),
                // Setting an absent line to zero already holds: nothing to record.
                None => Ok(vec![]),
                Some(q) if self.lines.get(&product_id) == Some(&q.get()) => Ok(vec![]),
                Some(q) => {
                    ensure_available(product_id, product, q.get())?;
                    if self.lines.contains_key(&product_id) {
                        Ok(vec![CartEvent::QuantityChanged {
                            user_id,
                            product_id,
                            quantity: q.get(),
                        }])
                    } else {
                        Ok(vec![CartEvent::ItemAdded {
                            user_id,
                            product_id,
                            added: q.get(),
                            quantity: q.get(),
                        }])
                    }
                }
            },
            CartCommand::RemoveItem {
                user_id,
                product_id,
            } => {
                if !self.lines.contains_key(&product_id) {
                    return Err(CartError::NotInCart(product_id));
                }
                Ok(vec![CartEvent::ItemRemoved {
                    user_id,
                    product_id,
                }])
            }
            CartCommand::Clear { user_id } => {
                if self.lines.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![CartEvent::Cleared { user_id }])
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

    const P: Uuid = Uuid::from_u128(7);

    fn alice() -> UserId {
        UserId::parse("alice").unwrap()
    }

    fn active(stock: i64) -> ProductFacts {
        ProductFacts::Known {
            status: ProductStatus::Active,
            stock,
        }
    }

    fn add(q: i64, facts: ProductFacts) -> CartCommand {
        CartCommand::AddItem {
            user_id: alice(),
            product_id: P,
            product: facts,
            quantity: Quantity::parse(q).unwrap(),
        }
    }

    fn added(added: u32, quantity: u32) -> CartEvent {
        CartEvent::ItemAdded {
            user_id: alice(),
            product_id: P,
            added,
            quantity,
        }
    }

    #[test]
    fn adding_to_an_existing_line_sums_the_quantities() {
        let events = given::<Cart>(&[added(2, 2)])
            .when(add(3, active(10)))
            .unwrap();
        assert_eq!(events, vec![added(3, 5)]);
    }

    #[test]
    fn adding_more_than_is_on_hand_is_insufficient_stock() {
        let result = given::<Cart>(&[added(2, 2)]).when(add(3, active(4)));
        assert_eq!(
            result,
            Err(CartError::InsufficientStock {
                product_id: P,
                available: 4,
                requested: 5
            })
        );
    }

    #[test]
    fn adding_an_unknown_or_discontinued_product_is_refused() {
        assert_eq!(
            given::<Cart>(&[]).when(add(1, ProductFacts::Unknown)),
            Err(CartError::UnknownProduct(P))
        );
        let discontinued = ProductFacts::Known {
            status: ProductStatus::Discontinued,
            stock: 5,
        };
        assert_eq!(
            given::<Cart>(&[]).when(add(1, discontinued)),
            Err(CartError::Discontinued(P))
        );
    }

    #[test]
    fn a_line_holds_at_most_99_units() {
        assert_eq!(
            given::<Cart>(&[added(98, 98)]).when(add(2, active(1000))),
            Err(CartError::LineLimit { max: 99 })
        );
    }

    #[test]
    fn setting_zero_removes_the_line_and_is_a_no_op_when_absent() {
        let set0 = || CartCommand::SetQuantity {
            user_id: alice(),
            product_id: P,
            product: active(10),
            quantity: None,
        };
        assert_eq!(
            given::<Cart>(&[added(1, 1)]).when(set0()).unwrap(),
            vec![CartEvent::ItemRemoved {
                user_id: alice(),
                product_id: P
            }]
        );
        assert_eq!(given::<Cart>(&[]).when(set0()).unwrap(), vec![]);
    }

    #[test]
    fn removing_a_line_that_is_not_there_is_not_found() {
        let cmd = CartCommand::RemoveItem {
            user_id: alice(),
            product_id: P,
        };
        assert_eq!(given::<Cart>(&[]).when(cmd), Err(CartError::NotInCart(P)));
    }

    #[test]
    fn clearing_an_empty_cart_records_nothing() {
        let cmd = CartCommand::Clear { user_id: alice() };
        assert_eq!(given::<Cart>(&[]).when(cmd).unwrap(), vec![]);
    }
}
