//! The catalog area: products (read from the catalog view), reviews, and the admin's
//! catalog mutations, whose inputs are parsed straight into a `ProductCommand`
//! (`into_command`).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use super::error::IntoGraphql;
use super::live::{Live, by_position, live, uuids};
use super::scalars::{Decimal, Position};
use super::{Cursor, PageInfo, admin, page_size, services, signed_in, stored, written};
use crate::domain::product::{self, ProductCommand};
use crate::domain::values::{
    Comment, Description, Money, ProductName, Rating, Reason, ReviewTitle, Sku, StockDelta,
    StockLevel,
};
use crate::error::{AppError, AppResult};
use crate::read::cache::PageKey;
use crate::read::catalog::{self as view, CatalogFilter, CatalogProjection, catalog_view};
use crate::read::live::{LiveState, Positioned, Watch};
use crate::write::catalog::new_product_id;
use crate::write::idempotency::{Fingerprint, request_hash};
use crate::write::{CommandContext, Envelope, Outcome};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "product::ProductStatus")]
pub enum ProductStatus {
    Active,
    Discontinued,
}

/// A product as the catalog view shows it.
pub struct Product(pub catalog_view::Model);

#[Object]
impl Product {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    /// Global id (`Product:<id>`), for Relay's `Node` interface and `node(id:)`.
    pub(crate) async fn node_id(&self) -> async_graphql::ID {
        super::node::NodeKind::Product.global_id(self.0.id)
    }
    /// Stock keeping unit, unique in the catalog.
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Current unit price.
    async fn price(&self) -> Decimal {
        Decimal(Money::from_cents(self.0.price_cents))
    }
    /// Units on hand.
    async fn stock(&self) -> i64 {
        self.0.stock
    }
    /// Whether at least one unit is on hand.
    async fn in_stock(&self) -> bool {
        self.0.stock > 0
    }
    async fn status(&self) -> async_graphql::Result<ProductStatus> {
        stored::<product::ProductStatus, _>(&self.0.status).gql()
    }
    /// Mean of the users' ratings (1 to 5); null without reviews.
    async fn average_rating(&self) -> Option<f64> {
        (self.0.review_count > 0).then(|| self.0.rating_total as f64 / self.0.review_count as f64)
    }
    /// Number of users who reviewed the product (one review per user).
    async fn review_count(&self) -> i64 {
        self.0.review_count
    }
    /// Version of the product's event stream (number of events).
    async fn version(&self) -> i64 {
        self.0.version
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Position of the last event folded into this view.
    async fn position(&self) -> Position {
        Position(self.0.position)
    }
}

#[derive(SimpleObject)]
pub struct ProductEdge {
    pub node: Product,
    pub cursor: String,
}

#[derive(SimpleObject)]
pub struct ProductConnection {
    pub edges: Vec<ProductEdge>,
    pub page_info: PageInfo,
    /// Number of products matching the filters, on all pages.
    pub total_count: i64,
}

/// Every mutation returns the log position of its last event and the affected read model,
/// read once the projection has reached that position (read-your-writes).
#[derive(SimpleObject)]
pub struct ProductPayload {
    pub position: Position,
    pub product: Product,
}

fn encode_cursor(sku: &str) -> String {
    Cursor::encode("sku", sku)
}

fn decode_cursor(cursor: &str) -> AppResult<String> {
    Cursor::decode("sku", cursor)
}

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// One product from the catalog view; null when unknown. Public.
    async fn product(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Option<Product>> {
        let s = services(ctx).gql()?;
        // The epoch before the read: a copy read in it is served until the product changes.
        let epoch = s.checkpoints.epoch(view::NAME);
        if let Some(held) = s.catalog_cache.product(id) {
            return Ok(held.map(Product));
        }
        let row = view::find(&s.views, id)
            .await
            .map_err(AppError::from)
            .gql()?;
        s.catalog_cache.keep_product(epoch, id, row.clone());
        Ok(row.map(Product))
    }

    /// Catalog view in SKU order, Relay cursor pagination. Public. Forwards: `first`
    /// (at most 100) products after the cursor `after`; backwards: `last` (at most 100)
    /// products before the cursor `before` (given `last` or `before`, `first` is not
    /// used). Discontinued products are hidden unless includeDiscontinued. `search`
    /// matches name, SKU or description, case-insensitively.
    #[graphql(
        complexity = "5 + last.or(first).unwrap_or(20).clamp(0, 100) as usize * child_complexity"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(20)")] first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        search: Option<String>,
        #[graphql(default_with = "Some(false)")] in_stock_only: Option<bool>,
        #[graphql(default_with = "Some(false)")] include_discontinued: Option<bool>,
    ) -> async_graphql::Result<ProductConnection> {
        async {
            let s = services(ctx)?;
            let after = after.as_deref().map(decode_cursor).transpose()?;
            let before = before.as_deref().map(decode_cursor).transpose()?;
            // Explicit nulls mean the defaults.
            let bound = match (last, &before) {
                (None, None) => view::PageBound::First {
                    n: page_size(first.unwrap_or(20))?,
                    after: after.as_deref(),
                },
                _ if after.is_some() => {
                    return Err(AppError::BadUserInput(
                        "after goes with first, and before with last: send one pair".into(),
                    ));
                }
                _ => view::PageBound::Last {
                    n: page_size(last.unwrap_or(20))?,
                    before: before.as_deref(),
                },
            };
            if search.as_ref().is_some_and(|q| q.chars().count() > 200) {
                return Err(AppError::BadUserInput(
                    "search: at most 200 characters".into(),
                ));
            }
            // No product's text holds one (`domain::values`), and PostgreSQL refuses a
            // NUL in a statement: such a search is the client's mistake, said as such.
            if search
                .as_deref()
                .is_some_and(crate::domain::values::has_control_characters)
            {
                return Err(AppError::BadUserInput(
                    "search: must not contain control characters".into(),
                ));
            }
            let filter = CatalogFilter {
                search,
                in_stock_only: in_stock_only.unwrap_or(false),
                include_discontinued: include_discontinued.unwrap_or(false),
            };
            // Counting reads every match: only for a query that selects the count.
            let count = ctx.look_ahead().field("totalCount").exists();
            // The epoch before the read: a copy read in it is served only while it holds.
            let epoch = s.checkpoints.epoch(view::NAME);
            let key = PageKey::new(&filter, &bound, count);
            let page = match s.catalog_cache.page(epoch, &key) {
                Some(held) => held,
                None => {
                    let page = Arc::new(view::page(&s.views, &filter, bound, count).await?);
                    s.catalog_cache.keep_page(epoch, key, page.clone());
                    page
                }
            };
            let start_cursor = page.items.first().map(|p| encode_cursor(&p.sku));
            let end_cursor = page.items.last().map(|p| encode_cursor(&p.sku));
            Ok(ProductConnection {
                edges: page
                    .items
                    .iter()
                    .map(|p| ProductEdge {
                        cursor: encode_cursor(&p.sku),
                        node: Product(p.clone()),
                    })
                    .collect(),
                page_info: PageInfo {
                    has_next_page: page.has_next_page,
                    has_previous_page: page.has_previous_page,
                    start_cursor,
                    end_cursor,
                },
                total_count: i64::try_from(page.total_count).unwrap_or(i64::MAX),
            })
        }
        .await
        .gql()
    }
}

#[derive(InputObject)]
pub struct CreateProductInput {
    pub sku: String,
    pub name: String,
    #[graphql(default_with = "Some(String::new())")]
    pub description: Option<String>,
    pub price: Decimal,
    #[graphql(default = 0)]
    pub initial_stock: i64,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateProductInput {
    pub id: Uuid,
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Decimal>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct AdjustStockInput {
    pub product_id: Uuid,
    /// Units to add (positive) or remove (negative); never zero.
    pub delta: i64,
    pub reason: Option<String>,
    /// Refuse with CONFLICT unless the product's stream is at this version.
    pub expected_version: Option<i64>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct ReviewProductInput {
    pub product_id: Uuid,
    /// 1 to 5.
    pub rating: i64,
    /// A headline, up to 120 characters.
    #[graphql(default_with = "Some(String::new())")]
    pub title: Option<String>,
    #[graphql(default_with = "Some(String::new())")]
    pub comment: Option<String>,
    pub idempotency_key: Option<String>,
}

impl CreateProductInput {
    /// The command, each field parsed at its type, for a new product stream (the same one
    /// for a retry with the same key).
    pub(crate) fn into_command(
        self,
        ctx: &CommandContext,
    ) -> AppResult<Envelope<product::Product>> {
        let command = ProductCommand::Create {
            sku: Sku::parse(&self.sku)?,
            name: ProductName::parse(&self.name)?,
            description: Description::parse(self.description.as_deref().unwrap_or(""))?,
            price: self.price.0,
            initial_stock: StockLevel::parse(self.initial_stock)?,
        };
        let request = Fingerprint::default().fields(&command).hash()?;
        let id = new_product_id(ctx);
        Ok(Envelope::new("createProduct", id, request, command))
    }
}

impl UpdateProductInput {
    /// The command, each given field parsed at its type.
    pub(crate) fn into_command(self) -> AppResult<Envelope<product::Product>> {
        let command = ProductCommand::Update {
            name: self.name.as_deref().map(ProductName::parse).transpose()?,
            description: self
                .description
                .as_deref()
                .map(Description::parse)
                .transpose()?,
            price: self.price.map(|p| p.0),
        };
        let request = Fingerprint::default().field("id", &self.id);
        let request = request.fields(&command).hash()?;
        Ok(Envelope::new("updateProduct", self.id, request, command))
    }
}

impl AdjustStockInput {
    /// The command, each field parsed at its type.
    pub(crate) fn into_command(self) -> AppResult<Envelope<product::Product>> {
        if self.expected_version.is_some_and(|v| v < 0) {
            return Err(AppError::BadUserInput(
                "expectedVersion must not be negative".into(),
            ));
        }
        let command = ProductCommand::AdjustStock {
            delta: StockDelta::parse(self.delta)?,
            reason: self.reason.as_deref().map(Reason::parse).transpose()?,
        };
        let request = Fingerprint::default()
            .field("product_id", &self.product_id)
            .fields(&command)
            .field("expected_version", &self.expected_version)
            .hash()?;
        let envelope = Envelope::new("adjustStock", self.product_id, request, command);
        Ok(envelope.expecting(self.expected_version))
    }
}

impl ReviewProductInput {
    /// The caller's review, each field parsed at its type.
    pub(crate) fn into_command(
        self,
        ctx: &CommandContext,
    ) -> AppResult<Envelope<product::Product>> {
        let command = ProductCommand::Review {
            user_id: ctx.user_id.clone(),
            rating: Rating::parse(self.rating)?,
            title: ReviewTitle::parse(self.title.as_deref().unwrap_or(""))?,
            comment: Comment::parse(self.comment.as_deref().unwrap_or(""))?,
        };
        let request = Fingerprint::default().field("product_id", &self.product_id);
        let request = request.fields(&command).hash()?;
        Ok(Envelope::new(
            "reviewProduct",
            self.product_id,
            request,
            command,
        ))
    }
}

/// `discontinueProduct`: its request is the product's id.
pub(crate) fn discontinue(id: Uuid) -> Envelope<product::Product> {
    let request = request_hash(&id);
    Envelope::new(
        "discontinueProduct",
        id,
        request,
        ProductCommand::Discontinue,
    )
}

/// Reads the product view once it has caught up with a command's outcome: from the copy
/// this replica's fold kept of the row it wrote when there is one (fresh, it is at least
/// as new as the outcome: `CatalogCache::payload`), else from the database.
async fn product_payload(ctx: &Context<'_>, outcome: Outcome) -> AppResult<ProductPayload> {
    let cache = services(ctx)?.catalog_cache.clone();
    let product = written(ctx, view::NAME, "product", &outcome, |db, id| async move {
        match cache.payload(id) {
            Some(row) => Ok(Some(row)),
            None => view::find(db, id).await,
        }
    })
    .await?;
    Ok(ProductPayload {
        position: Position(outcome.position),
        product: Product(product),
    })
}

command_mutations! {
    pub struct CatalogMutation -> ProductPayload, read by product_payload {
        /// Admin: adds a product to the catalog. The SKU must be unique.
        command create_product(input: CreateProductInput) by admin, key in input => {
            |_, cx| input.into_command(cx)
        }

        /// Admin: changes name, description or price; omitted fields stay as they are.
        command update_product(input: UpdateProductInput) by admin, key in input => {
            |_, _| input.into_command()
        }

        /// Add (positive delta) or remove (negative delta) units on hand; emits ProductStockUpdated. Stock never goes below zero.
        command adjust_stock(input: AdjustStockInput) by admin, key in input => {
            |_, _| input.into_command()
        }

        /// Admin: takes a product off sale. It stays readable by id but leaves the catalog list.
        /// With `idempotencyKey`, a retry returns the first payload and changes nothing.
        command discontinue_product(
            id: Uuid,
            idempotency_key: Option<String>,
        ) by admin, key idempotency_key => {
            |_, _| Ok(discontinue(id))
        }

        /// Signed-in user: rates a product 1 to 5. One review per user and product; a second
        /// one replaces the first.
        command review_product(input: ReviewProductInput) by signed_in, key in input => {
            |_, cx| input.into_command(cx)
        }
    }
}

/// Most product ids one `productUpdated` may watch.
pub const MAX_WATCHED_IDS: usize = 100;

#[derive(Default)]
pub struct CatalogSubscription;

#[Subscription]
impl CatalogSubscription {
    /// Catalog changes (stock, price, rating, status). Public. Emits each watched
    /// product's current state first, then every change. Without `ids` every product is
    /// watched: no state is sent first, unless `after` is given, in which case every
    /// product changed after it is sent first. Resume with `after` = the last `position`
    /// received.
    async fn product_updated(
        &self,
        ctx: &Context<'_>,
        ids: Option<Vec<Uuid>>,
        after: Option<Position>,
    ) -> async_graphql::Result<Live<Product>> {
        if ids.as_ref().is_some_and(|ids| ids.len() > MAX_WATCHED_IDS) {
            return Err(AppError::BadUserInput(format!(
                "ids: at most {MAX_WATCHED_IDS} products per subscription"
            )))
            .gql();
        }
        live(ctx, ProductWatch { ids }, after, Product).gql()
    }
}

struct ProductWatch {
    ids: Option<Vec<Uuid>>,
}

#[async_trait::async_trait]
impl Watch for ProductWatch {
    type View = CatalogProjection;

    fn keys(&self) -> Option<Vec<String>> {
        self.ids
            .as_ref()
            .map(|ids| ids.iter().map(Uuid::to_string).collect())
    }

    async fn current(
        &self,
        db: &DatabaseConnection,
        _checkpoint: i64,
    ) -> Result<Option<Positioned<Self>>, DbErr> {
        match &self.ids {
            Some(ids) => Ok(Some(by_position(view::find_many(db, ids).await?, |p| {
                p.position
            }))),
            None => Ok(None),
        }
    }

    async fn changed(
        &self,
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Positioned<Self>, DbErr> {
        let rows = view::changed(db, self.ids.as_deref(), after, upto, limit).await?;
        Ok(by_position(rows, |p| p.position))
    }

    async fn rows(
        &self,
        db: &DatabaseConnection,
        keys: &BTreeSet<String>,
        _upto: i64,
    ) -> Result<Positioned<Self>, DbErr> {
        let ids: Vec<Uuid> = uuids(keys)
            .filter(|id| self.ids.as_ref().is_none_or(|ids| ids.contains(id)))
            .collect();
        Ok(by_position(view::find_many(db, &ids).await?, |p| {
            p.position
        }))
    }

    fn accepts(&self, row: &LiveState<Self>) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&row.id))
    }
}
