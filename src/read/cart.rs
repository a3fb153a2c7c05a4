//! The cart view: per user, a table of the items added to their own cart
//! (`cart_view_items`) and a header row (`cart_view`: version, position). Lines are priced
//! from the catalog view when read, so a price change shows in every cart.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use super::catalog::catalog_view;
use super::view::{self, LiveView};
use super::{ChangeKey, Projection, ViewTable, catalog};
use crate::domain::Aggregate;
use crate::domain::cart::{Cart, CartEvent, LineChange};
use crate::entity::events;
use crate::log::codec::decode_row;
use crate::log::reader::Wanted;

/// The `cart_view` table. The header row of each user's cart: its version and position.
pub mod cart_view {
    crate::entity::table! {
        "cart_view" {
            #[sea_orm(primary_key, auto_increment = false)]
            pub user_id: String,
            pub version: i64,
            pub updated_at: DateTimeUtc,
            pub position: i64,
        }
    }
}

/// The `cart_view_items` table. The items of each user's cart, one row per product.
pub mod cart_view_items {
    crate::entity::table! {
        "cart_view_items" {
            #[sea_orm(primary_key, auto_increment = false)]
            pub user_id: String,
            #[sea_orm(primary_key, auto_increment = false)]
            pub product_id: Uuid,
            pub quantity: i32,
            pub added_position: i64,
        }
    }
}

pub const NAME: &str = "cart";

pub struct CartProjection;

#[async_trait::async_trait]
impl Projection for CartProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [ViewTable] {
        &[
            ViewTable {
                name: "cart_view",
                key: &["user_id"],
                change_key: ChangeKey::Column("user_id"),
            },
            ViewTable {
                name: "cart_view_items",
                key: &["user_id", "product_id"],
                change_key: ChangeKey::Column("user_id"),
            },
        ]
    }

    fn wants(&self) -> &'static [Wanted] {
        const { &[Wanted::all(Cart::STREAM_TYPE)] }
    }

    async fn fold(
        &self,
        txn: &DatabaseTransaction,
        row: &events::Model,
    ) -> Result<Option<String>, DbErr> {
        let event: CartEvent = decode_row(row)?;
        let (user_id, change) = event.change();
        let user_id = user_id.as_str().to_owned();
        match change {
            LineChange::Set {
                product_id,
                quantity,
            } => {
                use cart_view_items::Column;
                let item = cart_view_items::ActiveModel {
                    user_id: Set(user_id.clone()),
                    product_id: Set(product_id),
                    quantity: Set(i32::try_from(quantity).unwrap_or(i32::MAX)),
                    added_position: Set(row.position),
                };
                let key = [Column::UserId, Column::ProductId];
                crate::db::upsert(txn, item, key, [Column::Quantity]).await?;
            }
            LineChange::Remove { product_id } => {
                cart_view_items::Entity::delete_many()
                    .filter(cart_view_items::Column::UserId.eq(user_id.clone()))
                    .filter(cart_view_items::Column::ProductId.eq(product_id))
                    .exec(txn)
                    .await?;
            }
            LineChange::Clear => {
                cart_view_items::Entity::delete_many()
                    .filter(cart_view_items::Column::UserId.eq(user_id.clone()))
                    .exec(txn)
                    .await?;
            }
        }
        let header = cart_view::ActiveModel {
            user_id: Set(user_id.clone()),
            version: Set(row.version),
            updated_at: Set(row.recorded_at),
            position: Set(row.position),
        };
        let changed = [
            cart_view::Column::Version,
            cart_view::Column::UpdatedAt,
            cart_view::Column::Position,
        ];
        crate::db::upsert(txn, header, [cart_view::Column::UserId], changed).await?;
        Ok(Some(user_id))
    }
}

#[async_trait::async_trait]
impl LiveView for CartProjection {
    const NAME: &'static str = NAME;
    type State = CartRead;

    /// Every user has a cart (an empty one at position 0 before their first change).
    async fn load(
        db: &DatabaseConnection,
        key: &str,
        _position: i64,
    ) -> Result<Option<(i64, Self::State)>, DbErr> {
        let cart = find(db, key).await?;
        Ok(Some((cart.position, cart)))
    }

    /// By the header: it stays when the cart is emptied (at the emptying event's
    /// position), so a cleared cart is read like any other change.
    async fn moved(
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Vec<(i64, String)>, DbErr> {
        use cart_view::Column;
        view::moved::<String, _>(db, Column::UserId, Column::Position, after, upto, limit).await
    }
}

/// One line of a cart as read: the view's quantity, priced from the catalog view.
#[derive(Debug, Clone)]
pub struct CartLine {
    pub product_id: Uuid,
    pub quantity: i32,
    /// The catalog row; `None` only if the catalog view lacks the product.
    pub product: Option<catalog_view::Model>,
}

#[derive(Debug, Clone)]
pub struct CartRead {
    pub user_id: String,
    pub lines: Vec<CartLine>,
    pub updated_at: Option<DateTime<Utc>>,
    pub position: i64,
}

/// A user's cart, read in one snapshot: header, lines and their products (three queries,
/// whatever its size).
pub async fn find(db: &DatabaseConnection, user_id: &str) -> Result<CartRead, DbErr> {
    let txn = super::begin_snapshot(db).await?;
    let cart = find_in(&txn, user_id).await;
    txn.commit().await?;
    cart
}

async fn find_in<C: ConnectionTrait>(db: &C, user_id: &str) -> Result<CartRead, DbErr> {
    let header = cart_view::Entity::find_by_id(user_id.to_owned())
        .one(db)
        .await?;
    let items = cart_view_items::Entity::find()
        .filter(cart_view_items::Column::UserId.eq(user_id))
        .order_by_asc(cart_view_items::Column::AddedPosition)
        .all(db)
        .await?;
    let ids: Vec<Uuid> = items.iter().map(|i| i.product_id).collect();
    let mut products: HashMap<Uuid, catalog_view::Model> = catalog::find_many(db, &ids)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    Ok(CartRead {
        user_id: user_id.to_owned(),
        lines: items
            .into_iter()
            .map(|i| CartLine {
                product_id: i.product_id,
                quantity: i.quantity,
                product: products.remove(&i.product_id),
            })
            .collect(),
        updated_at: header.as_ref().map(|h| h.updated_at),
        position: header.map_or(0, |h| h.position),
    })
}
