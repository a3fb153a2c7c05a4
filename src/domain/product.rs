//! The product aggregate: one stream per product. Owns price, stock on hand (never below
//! zero), status and reviews (one per user; a second replaces the first).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::{
    Comment, Description, Money, ProductName, Rating, Reason, ReviewTitle, Sku, StockDelta,
    StockLevel, UserId,
};
use super::{Aggregate, WriteTables};

stored! {
    pub enum ProductStatus as "product status" {
        #[default]
        Active = "ACTIVE",
        Discontinued = "DISCONTINUED",
    }
}

/// Serialized only for the idempotency fingerprint of a request (`write::idempotency`):
/// untagged, a variant is its fields, and so the catalog mutations' requests are
/// fingerprinted as they were before they were parsed straight into commands. Who asks
/// is not part of it (a key belongs to one caller anyway).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ProductCommand {
    Create {
        sku: Sku,
        name: ProductName,
        description: Description,
        price: Money,
        initial_stock: StockLevel,
    },
    Update {
        name: Option<ProductName>,
        description: Option<Description>,
        price: Option<Money>,
    },
    AdjustStock {
        delta: StockDelta,
        reason: Option<Reason>,
    },
    Discontinue,
    Review {
        #[serde(skip)]
        user_id: UserId,
        rating: Rating,
        title: ReviewTitle,
        comment: Comment,
    },
    /// Inventory: hold `quantity` units for an order. Idempotent per order.
    Reserve {
        order_id: Uuid,
        quantity: i64,
    },
    /// Inventory: give back what an order holds. Idempotent per order.
    Release {
        order_id: Uuid,
    },
}

events! {
    /// The product's events. The `type` tags are persisted identifiers: never rename them.
    pub enum ProductEvent {
        #[serde(rename = "ProductCreated")]
        Created {
            sku: Sku,
            name: ProductName,
            description: Description,
            price: Money,
            stock: i64,
        },
        /// Only the fields that changed are present.
        #[serde(rename = "ProductUpdated")]
        Updated {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            name: Option<ProductName>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            description: Option<Description>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            price: Option<Money>,
        },
        /// Carries the resulting `stock` so views never recompute it.
        #[serde(rename = "ProductStockUpdated")]
        StockUpdated {
            delta: i64,
            stock: i64,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            reason: Option<Reason>,
        },
        #[serde(rename = "ProductDiscontinued")]
        Discontinued {},
        /// Carries the resulting totals so views never recompute them.
        #[serde(rename = "ProductReviewed")]
        Reviewed {
            user_id: UserId,
            rating: Rating,
            /// Since v2 (v1 reviews are upcast with an empty title).
            title: ReviewTitle,
            comment: Comment,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            replaced_rating: Option<Rating>,
            review_count: i64,
            rating_total: i64,
        },
        /// Inventory: units held for an order; `stock` is what remains on hand.
        #[serde(rename = "ProductStockReserved")]
        StockReserved {
            order_id: Uuid,
            quantity: i64,
            stock: i64,
        },
        /// Inventory: an order's units returned; `stock` is what is on hand after.
        #[serde(rename = "ProductStockReleased")]
        StockReleased {
            order_id: Uuid,
            quantity: i64,
            stock: i64,
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    /// NOT_FOUND
    #[error("product not found")]
    NotFound,
    /// CONFLICT
    #[error("product already exists")]
    AlreadyExists,
    /// CONFLICT
    #[error("product is discontinued")]
    Discontinued,
    /// INSUFFICIENT_STOCK
    #[error("insufficient stock: {available} on hand, cannot remove {requested}")]
    InsufficientStock { available: i64, requested: i64 },
    /// BAD_USER_INPUT
    #[error("stock would exceed the maximum of {max}")]
    StockOverflow { max: i64 },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub exists: bool,
    pub sku: Option<Sku>,
    pub name: Option<ProductName>,
    pub description: Option<Description>,
    pub price: Money,
    pub stock: i64,
    pub status: ProductStatus,
    pub reviews: BTreeMap<UserId, Rating>,
    /// Units held per order (inventory reservations not yet released).
    pub reservations: BTreeMap<Uuid, i64>,
    /// Orders whose reservation was released (a release is final).
    pub released: std::collections::BTreeSet<Uuid>,
    pub version: i64,
}

impl Product {
    fn ensure_active(&self) -> Result<(), ProductError> {
        if !self.exists {
            return Err(ProductError::NotFound);
        }
        if self.status == ProductStatus::Discontinued {
            return Err(ProductError::Discontinued);
        }
        Ok(())
    }
}

impl Aggregate for Product {
    const STREAM_TYPE: &'static str = "product";
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;
    type Tables = WriteTables;

    fn apply(mut self, event: &ProductEvent) -> Self {
        self.version += 1;
        match event {
            ProductEvent::Created {
                sku,
                name,
                description,
                price,
                stock,
            } => {
                self.exists = true;
                self.sku = Some(sku.clone());
                self.name = Some(name.clone());
                self.description = Some(description.clone());
                self.price = *price;
                self.stock = *stock;
            }
            ProductEvent::Updated {
                name,
                description,
                price,
            } => {
                if let Some(n) = name {
                    self.name = Some(n.clone());
                }
                if let Some(d) = description {
                    self.description = Some(d.clone());
                }
                if let Some(p) = price {
                    self.price = *p;
                }
            }
            ProductEvent::StockUpdated { stock, .. } => self.stock = *stock,
            ProductEvent::Discontinued {} => self.status = ProductStatus::Discontinued,
            ProductEvent::Reviewed {
                user_id, rating, ..
            } => {
                self.reviews.insert(user_id.clone(), *rating);
            }
            ProductEvent::StockReserved {
                order_id,
                quantity,
                stock,
            } => {
                self.reservations.insert(*order_id, *quantity);
                self.stock = *stock;
            }
            ProductEvent::StockReleased {
                order_id, stock, ..
            } => {
                self.reservations.remove(order_id);
                self.released.insert(*order_id);
                self.stock = *stock;
            }
        }
        self
    }

    fn decide(&self, command: ProductCommand) -> Result<Vec<ProductEvent>, ProductError> {
        match command {
            ProductCommand::Create {
                sku,
                name,
                description,
                price,
                initial_stock,
            } => {
                if self.exists {
                    return Err(ProductError::AlreadyExists);
                }
                Ok(vec![ProductEvent::Created {
                    sku,
                    name,
                    description,
                    price,
                    stock: initial_stock.get(),
                }])
            }
            ProductCommand::Update {
                name,
                description,
                price,
            } => {
                self.ensure_active()?;
                // Only what actually changes is recorded; an update that changes nothing
                // emits nothing (and so is naturally idempotent).
                let name = name.filter(|n| Some(n) != self.name.as_ref());
                let description = description.filter(|d| Some(d) != self.description.as_ref());
                let price = price.filter(|p| *p != self.price);
                if name.is_none() && description.is_none() && price.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![ProductEvent::Updated {
                    name,
                    description,
                    price,
                }])
            }
            ProductCommand::AdjustStock { delta, reason } => {
                if !self.exists {
                    return Err(ProductError::NotFound);
                }
                let stock = self.stock + delta.get();
                if stock < 0 {
                    return Err(ProductError::InsufficientStock {
                        available: self.stock,
                        requested: -delta.get(),
                    });
                }
                if stock > super::values::MAX_STOCK {
                    return Err(ProductError::StockOverflow {
                        max: super::values::MAX_STOCK,
                    });
                }
                Ok(vec![ProductEvent::StockUpdated {
                    delta: delta.get(),
                    stock,
                    reason,
                }])
            }
            ProductCommand::Discontinue => {
                self.ensure_active()?;
                Ok(vec![ProductEvent::Discontinued {}])
            }
            command @ (ProductCommand::Reserve { .. } | ProductCommand::Release { .. }) => {
                self.decide_inventory(command)
            }
            ProductCommand::Review {
                user_id,
                rating,
                title,
                comment,
            } => {
                self.ensure_active()?;
                let replaced_rating = self.reviews.get(&user_id).copied();
                let total: i64 = self.reviews.values().map(|r| i64::from(r.get())).sum();
                let (review_count, rating_total) = match replaced_rating {
                    Some(old) => (
                        self.reviews.len() as i64,
                        total - i64::from(old.get()) + i64::from(rating.get()),
                    ),
                    None => (
                        self.reviews.len() as i64 + 1,
                        total + i64::from(rating.get()),
                    ),
                };
                Ok(vec![ProductEvent::Reviewed {
                    user_id,
                    rating,
                    title,
                    comment,
                    replaced_rating,
                    review_count,
                    rating_total,
                }])
            }
        }
    }

    fn version(&self) -> i64 {
        self.version
    }
}

impl Product {
    /// Inventory decisions, kept apart from the catalog ones above for legibility.
    fn decide_inventory(&self, command: ProductCommand) -> Result<Vec<ProductEvent>, ProductError> {
        match command {
            ProductCommand::Reserve { order_id, quantity } => {
                if !self.exists {
                    return Err(ProductError::NotFound);
                }
                // Idempotent: a retried step finds its reservation already made (or
                // already released, which it must not undo).
                if self.reservations.contains_key(&order_id) || self.released.contains(&order_id) {
                    return Ok(vec![]);
                }
                if self.status == ProductStatus::Discontinued {
                    return Err(ProductError::Discontinued);
                }
                if quantity > self.stock {
                    return Err(ProductError::InsufficientStock {
                        available: self.stock,
                        requested: quantity,
                    });
                }
                Ok(vec![ProductEvent::StockReserved {
                    order_id,
                    quantity,
                    stock: self.stock - quantity,
                }])
            }
            ProductCommand::Release { order_id } => match self.reservations.get(&order_id) {
                Some(&quantity) => Ok(vec![ProductEvent::StockReleased {
                    order_id,
                    quantity,
                    stock: self.stock + quantity,
                }]),
                None => Ok(vec![]),
            },
            _ => Ok(vec![]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DomainEvent;
    use crate::domain::testing::given;

    fn created(stock: i64) -> ProductEvent {
        ProductEvent::Created {
            sku: Sku::parse("TEE-1").unwrap(),
            name: ProductName::parse("Tee").unwrap(),
            description: Description::parse("").unwrap(),
            price: Money::parse_str("p", "10.00").unwrap(),
            stock,
        }
    }

    /// An update of the product of `created` that names its name again (unchanged) and
    /// the price `price`.
    fn update(price: &str) -> ProductCommand {
        ProductCommand::Update {
            name: Some(ProductName::parse("Tee").unwrap()),
            description: None,
            price: Some(Money::parse_str("p", price).unwrap()),
        }
    }

    fn review(user: &str, rating: i64) -> ProductCommand {
        ProductCommand::Review {
            user_id: UserId::parse(user).unwrap(),
            rating: Rating::parse(rating).unwrap(),
            title: ReviewTitle::parse("").unwrap(),
            comment: Comment::parse("").unwrap(),
        }
    }

    #[test]
    fn creating_a_new_product_records_its_initial_stock() {
        let events = given::<Product>(&[])
            .when(ProductCommand::Create {
                sku: Sku::parse("TEE-1").unwrap(),
                name: ProductName::parse("Tee").unwrap(),
                description: Description::parse("").unwrap(),
                price: Money::parse_str("p", "10").unwrap(),
                initial_stock: StockLevel::parse(3).unwrap(),
            })
            .unwrap();
        assert_eq!(events, vec![created(3)]);
    }

    #[test]
    fn creating_an_existing_product_is_refused() {
        let cmd = ProductCommand::Create {
            sku: Sku::parse("TEE-1").unwrap(),
            name: ProductName::parse("Tee").unwrap(),
            description: Description::parse("").unwrap(),
            price: Money::parse_str("p", "10").unwrap(),
            initial_stock: StockLevel::parse(3).unwrap(),
        };
        assert_eq!(
            given::<Product>(&[created(0)]).when(cmd),
            Err(ProductError::AlreadyExists)
        );
    }

    /// `command`, asking for 3 units of a product with 2 on hand, is refused as such.
    fn refused_three_of_two(command: ProductCommand) {
        let result = given::<Product>(&[created(2)]).when(command);
        let refused = ProductError::InsufficientStock {
            available: 2,
            requested: 3,
        };
        assert_eq!(result, Err(refused));
    }

    #[test]
    fn stock_never_goes_below_zero() {
        refused_three_of_two(ProductCommand::AdjustStock {
            delta: StockDelta::parse(-3).unwrap(),
            reason: None,
        });
    }

    #[test]
    fn adjusting_stock_carries_the_resulting_level() {
        let events = given::<Product>(&[created(2)])
            .when(ProductCommand::AdjustStock {
                delta: StockDelta::parse(-2).unwrap(),
                reason: None,
            })
            .unwrap();
        assert_eq!(
            events,
            vec![ProductEvent::StockUpdated {
                delta: -2,
                stock: 0,
                reason: None
            }]
        );
    }

    #[test]
    fn adjusting_stock_of_an_unknown_product_is_not_found() {
        let result = given::<Product>(&[]).when(ProductCommand::AdjustStock {
            delta: StockDelta::parse(1).unwrap(),
            reason: None,
        });
        assert_eq!(result, Err(ProductError::NotFound));
    }

    #[test]
    fn an_update_that_changes_nothing_emits_nothing() {
        let events = given::<Product>(&[created(0)])
            .when(update("10.00"))
            .unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn an_update_records_only_changed_fields() {
        let events = given::<Product>(&[created(0)])
            .when(update("12.50"))
            .unwrap();
        assert_eq!(
            events,
            vec![ProductEvent::Updated {
                name: None,
                description: None,
                price: Some(Money::parse_str("p", "12.50").unwrap())
            }]
        );
    }

    #[test]
    fn a_discontinued_product_cannot_be_discontinued_again_or_reviewed() {
        let g = || given::<Product>(&[created(0), ProductEvent::Discontinued {}]);
        assert_eq!(
            g().when(ProductCommand::Discontinue),
            Err(ProductError::Discontinued)
        );
        assert_eq!(
            g().when(review("alice", 5)),
            Err(ProductError::Discontinued)
        );
    }

    #[test]
    fn a_second_review_by_the_same_user_replaces_the_first() {
        let mut product = given::<Product>(&[created(0)]);
        let mut history = vec![created(0)];
        for (user, rating) in [("alice", 5), ("bob", 2)] {
            let events = product.when(review(user, rating)).unwrap();
            history.extend(events);
            product = given::<Product>(&history);
        }
        let events = product.when(review("alice", 1)).unwrap();
        match &events[..] {
            [
                ProductEvent::Reviewed {
                    replaced_rating,
                    review_count,
                    rating_total,
                    ..
                },
            ] => {
                assert_eq!(*replaced_rating, Some(Rating::parse(5).unwrap()));
                assert_eq!((*review_count, *rating_total), (2, 3));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_reservation_holds_stock_once_per_order_and_a_release_returns_it_once() {
        let order = Uuid::from_u128(1);
        let reserve = || ProductCommand::Reserve {
            order_id: order,
            quantity: 3,
        };
        let events = given::<Product>(&[created(5)]).when(reserve()).unwrap();
        let reserved = ProductEvent::StockReserved {
            order_id: order,
            quantity: 3,
            stock: 2,
        };
        assert_eq!(events, vec![reserved.clone()]);
        // Again for the same order: nothing more is held.
        assert_eq!(
            given::<Product>(&[created(5), reserved.clone()]).when(reserve()),
            Ok(vec![])
        );
        let released = given::<Product>(&[created(5), reserved.clone()])
            .when(ProductCommand::Release { order_id: order })
            .unwrap();
        let release_event = ProductEvent::StockReleased {
            order_id: order,
            quantity: 3,
            stock: 5,
        };
        assert_eq!(released, vec![release_event.clone()]);
        let after = [created(5), reserved, release_event];
        assert_eq!(
            given::<Product>(&after).when(ProductCommand::Release { order_id: order }),
            Ok(vec![])
        );
        // A late retry of the reservation must not hold the stock again.
        assert_eq!(given::<Product>(&after).when(reserve()), Ok(vec![]));
    }

    #[test]
    fn a_reservation_beyond_the_stock_on_hand_is_refused() {
        refused_three_of_two(ProductCommand::Reserve {
            order_id: Uuid::from_u128(1),
            quantity: 3,
        });
    }

    #[test]
    fn event_type_tags_are_the_persisted_names() {
        let value = serde_json::to_value(ProductEvent::Discontinued {}).unwrap();
        assert_eq!(value["type"], "ProductDiscontinued");
        let value = serde_json::to_value(created(1)).unwrap();
        assert_eq!(value["type"], created(1).event_type());
    }
}
