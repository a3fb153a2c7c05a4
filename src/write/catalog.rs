//! Catalog commands: create, update, adjust stock, discontinue, review. Each keeps the
//! normalized `products` and `product_reviews` tables in step with the product stream.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait, QuerySelect};
use serde::Serialize;
use uuid::Uuid;

use super::constraint::{ConstraintExt, Violation};
use super::idempotency::request_hash;
use super::{CommandContext, Envelope, Outcome, WriteModel, Writer};
use crate::domain::Stored;
use crate::domain::cart::ProductFacts;
use crate::domain::product::{Product, ProductCommand, ProductEvent, ProductStatus};
use crate::domain::values::{
    Comment, Description, IdempotencyKey, Money, ProductName, Rating, Reason, ReviewTitle, Sku,
    StockDelta, StockLevel, UserId,
};
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
                product_reviews::Entity::insert(review)
                    .on_conflict(
                        OnConflict::columns([
                            product_reviews::Column::ProductId,
                            product_reviews::Column::UserId,
                        ])
                        .update_columns([
                            product_reviews::Column::Rating,
                            product_reviews::Column::Title,
                            product_reviews::Column::Comment,
                            product_reviews::Column::UpdatedAt,
                        ])
                        .to_owned(),
                    )
                    .exec(txn)
                    .await?;
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

#[derive(Debug, Clone, Serialize)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: ProductName,
    pub description: Description,
    pub price: Money,
    pub initial_stock: StockLevel,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProductChanges {
    pub id: Uuid,
    pub name: Option<ProductName>,
    pub description: Option<Description>,
    pub price: Option<Money>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StockAdjustment {
    pub product_id: Uuid,
    pub delta: StockDelta,
    pub reason: Option<Reason>,
    pub expected_version: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub product_id: Uuid,
    pub rating: Rating,
    pub title: ReviewTitle,
    pub comment: Comment,
}

impl Writer {
    pub async fn create_product(
        &self,
        ctx: &CommandContext,
        input: NewProduct,
    ) -> AppResult<Outcome> {
        let request_hash = request_hash(&input);
        // A retried create must land on the same stream: derive the id from the key when
        // there is one; otherwise a fresh, time-ordered id.
        let stream_id = match &ctx.idempotency_key {
            Some(key) => keyed_product_id(&ctx.user_id, key),
            None => Uuid::now_v7(),
        };
        self.execute(
            ctx,
            Envelope::<Product> {
                operation: "createProduct",
                request_hash,
                stream_id,
                expected_version: None,
                command: ProductCommand::Create {
                    sku: input.sku,
                    name: input.name,
                    description: input.description,
                    price: input.price,
                    initial_stock: input.initial_stock,
                },
            },
        )
        .await
    }

    pub async fn update_product(
        &self,
        ctx: &CommandContext,
        input: ProductChanges,
    ) -> AppResult<Outcome> {
        self.execute(
            ctx,
            Envelope::<Product> {
                operation: "updateProduct",
                request_hash: request_hash(&input),
                stream_id: input.id,
                expected_version: None,
                command: ProductCommand::Update {
                    name: input.name,
                    description: input.description,
                    price: input.price,
                },
            },
        )
        .await
    }

    pub async fn adjust_stock(
        &self,
        ctx: &CommandContext,
        input: StockAdjustment,
    ) -> AppResult<Outcome> {
        self.execute(
            ctx,
            Envelope::<Product> {
                operation: "adjustStock",
                request_hash: request_hash(&input),
                stream_id: input.product_id,
                expected_version: input.expected_version,
                command: ProductCommand::AdjustStock {
                    delta: input.delta,
                    reason: input.reason,
                },
            },
        )
        .await
    }

    pub async fn discontinue_product(&self, ctx: &CommandContext, id: Uuid) -> AppResult<Outcome> {
        self.execute(
            ctx,
            Envelope::<Product> {
                operation: "discontinueProduct",
                request_hash: request_hash(&id),
                stream_id: id,
                expected_version: None,
                command: ProductCommand::Discontinue,
            },
        )
        .await
    }

    pub async fn review_product(&self, ctx: &CommandContext, input: Review) -> AppResult<Outcome> {
        self.execute(
            ctx,
            Envelope::<Product> {
                operation: "reviewProduct",
                request_hash: request_hash(&input),
                stream_id: input.product_id,
                expected_version: None,
                command: ProductCommand::Review {
                    user_id: ctx.user_id.clone(),
                    rating: input.rating,
                    title: input.title,
                    comment: input.comment,
                },
            },
        )
        .await
    }
}

/// Namespace of product ids derived from (caller, idempotency key).
const PRODUCT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7267_7261_7068_2d70_726f_6475);

/// The id of the product that `createProduct` by `caller` with `key` creates.
pub fn keyed_product_id(caller: &UserId, key: &IdempotencyKey) -> Uuid {
    Uuid::new_v5(
        &PRODUCT_ID_NAMESPACE,
        format!("{caller}\u{0}{}", key.as_str()).as_bytes(),
    )
}
