//! The product's write side: the normalized `products` and `product_reviews` tables kept
//! in step with each product stream, the facts other aggregates' commands decide on, and
//! the id of a new product. The catalog mutations parse their input straight into a
//! `ProductCommand` (`graphql::catalog`) and run it as an `Envelope<Product>`.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait, QuerySelect};
use uuid::Uuid;

use super::constraint::{ConstraintExt, Violation};
use super::{CommandContext, WriteModel, upsert};
use crate::domain::Stored;
use crate::domain::cart::ProductFacts;
use crate::domain::product::{Product, ProductEvent, ProductStatus};
use crate::domain::values::{IdempotencyKey, UserId};
use crate::entity::{product_reviews, products};
use crate::error::{AppError, AppResult};

impl WriteModel for Product {
    async fn update_write_tables(
        txn: &DatabaseTransaction,
        stream_id: Uuid,
        state: &Self,
        events: &[ProductEvent],
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let (Some(sku), Some(name), Some(description)) =
            (&state.sku, &state.name, &state.description)
        else {
            return Err(anyhow::anyhow!("product {stream_id} has events but no creation").into());
        };
        let row = products::ActiveModel {
            id: Set(stream_id),
            sku: Set(sku.as_str().to_owned()),
            name: Set(name.as_str().to_owned()),
            description: Set(description.as_str().to_owned()),
            price_cents: Set(state.price.cents()),
            stock: Set(state.stock),
            status: Set(state.status.as_str().to_owned()),
            version: Set(state.version),
            updated_at: Set(now),
        };
        let created = events
            .iter()
            .any(|e| matches!(e, ProductEvent::Created { .. }));
        let written = if created {
            products::Entity::insert(row).exec(txn).await.map(|_| ())
        } else {
            products::Entity::update(row).exec(txn).await.map(|_| ())
        };
        written.map_err(|e| match e.violation() {
            Some(Violation::Unique(_)) => AppError::Conflict(format!(
                "a product with SKU {} already exists",
                sku.as_str()
            )),
            Some(Violation::Check(c)) if c.contains("stock") => {
                AppError::InsufficientStock("stock on hand cannot go below zero".to_owned())
            }
            _ => e.into(),
        })?;

        use product_reviews::Column;
        for event in events {
            if let ProductEvent::Reviewed {
                user_id,
                rating,
                title,
                comment,
                ..
            } = event
            {
                let review = product_reviews::ActiveModel {
                    product_id: Set(stream_id),
                    user_id: Set(user_id.as_str().to_owned()),
                    rating: Set(i16::from(rating.get())),
                    title: Set(title.as_str().to_owned()),
                    comment: Set(comment.as_str().to_owned()),
                    updated_at: Set(now),
                };
                let key = [Column::ProductId, Column::UserId];
                let update = [
                    Column::Rating,
                    Column::Title,
                    Column::Comment,
                    Column::UpdatedAt,
                ];
                upsert(txn, review, key, update).await?;
            }
        }
        Ok(())
    }
}

/// What the handlers of other aggregates may know about a product: its write-table row,
/// read within the command's transaction and share-locked on PostgreSQL until it ends, so
/// that the decision made on it still holds at commit (SQLite has one writer at a time).
pub async fn product_facts(txn: &DatabaseTransaction, id: Uuid) -> AppResult<ProductFacts> {
    Ok(
        match products::Entity::find_by_id(id)
            .lock_shared()
            .one(txn)
            .await?
        {
            Some(p) => ProductFacts::Known {
                status: ProductStatus::parse_stored(&p.status)?,
                stock: p.stock,
            },
            None => ProductFacts::Unknown,
        },
    )
}

/// Namespace of product ids derived from (caller, idempotency key).
const PRODUCT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7267_7261_7068_2d70_726f_6475);

/// The id of the product that `createProduct` creates: the same one for a retry with the
/// same key (`CommandContext::new_stream_id`).
pub fn new_product_id(ctx: &CommandContext) -> Uuid {
    ctx.new_stream_id(&PRODUCT_ID_NAMESPACE)
}

/// The id of the product that `createProduct` by `caller` with `key` creates.
pub fn keyed_product_id(caller: &UserId, key: &IdempotencyKey) -> Uuid {
    super::keyed_id(&PRODUCT_ID_NAMESPACE, caller, key)
}
