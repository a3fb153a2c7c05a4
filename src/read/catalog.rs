//! The catalog view: one denormalized row per product (price, stock, status, review
//! totals, version, position), maintained from the product streams; and its queries.

use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, IdenStatic, Iterable,
    PaginatorTrait, QueryFilter, QueryOrder, QueryResult, QuerySelect, Statement,
};
use uuid::Uuid;

use super::bus::Change;
use super::view::{self, LiveView};
use super::{ChangeKey, FoldedRows, Projection, ViewTable};
use crate::domain::product::{Product, ProductEvent, ProductStatus};
use crate::domain::{Aggregate, Stored};
use crate::entity::events;
use crate::log::codec::decode_row;
use crate::log::reader::Wanted;

/// The `catalog_view` table. One row per product, with its review figures.
pub mod catalog_view {
    crate::entity::table! {
        "catalog_view" {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub sku: String,
            pub name: String,
            pub description: String,
            pub price_cents: i64,
            pub stock: i64,
            pub status: String,
            pub review_count: i64,
            pub rating_total: i64,
            pub version: i64,
            pub updated_at: DateTimeUtc,
            pub position: i64,
        }
    }
}

pub const NAME: &str = "catalog";

pub struct CatalogProjection;

#[async_trait::async_trait]
impl Projection for CatalogProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [ViewTable] {
        &[ViewTable {
            name: "catalog_view",
            key: &["id"],
            change_key: ChangeKey::Column("id"),
        }]
    }

    fn wants(&self) -> &'static [Wanted] {
        const { &[Wanted::all(Product::STREAM_TYPE)] }
    }

    /// Folds a batch with a few statements whatever its length: the events of each
    /// product are merged into one row change first (each event sets only the columns it
    /// names, the last one wins), then the new products are inserted in one statement and
    /// the others updated in one statement per set of columns changed. Under load a
    /// relay's batch holds an event for each of many products, and a statement per event
    /// (a round trip each, in the transaction every read-your-writes waits for) was most
    /// of a fold's time. Every event still announces its change.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        events: &[events::Model],
    ) -> Result<Vec<Change>, DbErr> {
        Ok(self.fold_batch(txn, events, false).await?.0)
    }

    /// The relay's fold also has each row it wrote back (`RETURNING`, in the statements
    /// that write them), for the copies of products kept in memory (ADR 0023, amended).
    async fn apply_keeping(
        &self,
        txn: &DatabaseTransaction,
        events: &[events::Model],
    ) -> Result<(Vec<Change>, FoldedRows), DbErr> {
        let (changes, products) = self.fold_batch(txn, events, true).await?;
        Ok((changes, FoldedRows { products }))
    }
}

impl CatalogProjection {
    /// Folds a batch as [`Projection::apply`] says; with `keep`, also the rows written.
    async fn fold_batch(
        &self,
        txn: &DatabaseTransaction,
        events: &[events::Model],
        keep: bool,
    ) -> Result<(Vec<Change>, Vec<catalog_view::Model>), DbErr> {
        let mut rows: Vec<RowChange> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        let mut changes = Vec::new();
        for row in events.iter().filter(|e| Wanted::any(self.wants(), e)) {
            let event: ProductEvent = decode_row(row)?;
            let created = matches!(event, ProductEvent::Created { .. });
            let at = match index.get(&row.stream_id) {
                // A creation after other events of its product is a broken stream: the
                // relay then folds the batch one event at a time, and stops at it.
                Some(_) if created => {
                    return Err(DbErr::Custom(format!(
                        "product {} is created again at position {}",
                        row.stream_id, row.position
                    )));
                }
                Some(&at) => at,
                None => {
                    index.insert(row.stream_id, rows.len());
                    rows.push(RowChange {
                        view: catalog_view::ActiveModel {
                            id: Set(row.stream_id),
                            ..Default::default()
                        },
                        created,
                    });
                    rows.len() - 1
                }
            };
            fold_event(&mut rows[at].view, row, event);
            changes.push(Change {
                projection: NAME,
                key: row.stream_id.to_string(),
                position: row.position,
            });
        }
        let written = write_rows(txn, rows, keep).await?;
        Ok((changes, written))
    }
}

/// One product's row change in a batch: its new row, or the columns its events set.
struct RowChange {
    view: catalog_view::ActiveModel,
    created: bool,
}

/// Sets the columns `event` (stored as `row`) names on `view`.
fn fold_event(view: &mut catalog_view::ActiveModel, row: &events::Model, event: ProductEvent) {
    view.version = Set(row.version);
    view.updated_at = Set(row.recorded_at);
    view.position = Set(row.position);
    match event {
        ProductEvent::Created {
            sku,
            name,
            description,
            price,
            stock,
        } => {
            view.sku = Set(sku.as_str().to_owned());
            view.name = Set(name.as_str().to_owned());
            view.description = Set(description.as_str().to_owned());
            view.price_cents = Set(price.cents());
            view.stock = Set(stock);
            view.status = Set(ProductStatus::Active.as_str().to_owned());
            view.review_count = Set(0);
            view.rating_total = Set(0);
        }
        ProductEvent::Updated {
            name,
            description,
            price,
        } => {
            if let Some(n) = name {
                view.name = Set(n.as_str().to_owned());
            }
            if let Some(d) = description {
                view.description = Set(d.as_str().to_owned());
            }
            if let Some(p) = price {
                view.price_cents = Set(p.cents());
            }
        }
        ProductEvent::StockUpdated { stock, .. }
        | ProductEvent::StockReserved { stock, .. }
        | ProductEvent::StockReleased { stock, .. } => view.stock = Set(stock),
        ProductEvent::Discontinued {} => {
            view.status = Set(ProductStatus::Discontinued.as_str().to_owned());
        }
        ProductEvent::Reviewed {
            review_count,
            rating_total,
            ..
        } => {
            view.review_count = Set(review_count);
            view.rating_total = Set(rating_total);
        }
    }
}

/// Rows per statement: well under PostgreSQL's 65 535 parameters and SQLite's 32 766.
/// The cart view's batched fold uses it too.
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// Writes a batch's row changes: the new rows in one `INSERT`, the others in one
/// `UPDATE … FROM (VALUES …)` per set of columns changed. An update that finds fewer
/// rows than it names fails as a single update of a missing row does. With `keep`, the
/// statements return every row they wrote, whole, and so does this; otherwise nothing.
async fn write_rows(
    txn: &DatabaseTransaction,
    rows: Vec<RowChange>,
    keep: bool,
) -> Result<Vec<catalog_view::Model>, DbErr> {
    let mut written = Vec::new();
    let (created, updated): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.created);
    for chunk in created.chunks(ROWS_PER_STATEMENT) {
        let insert = catalog_view::Entity::insert_many(chunk.iter().map(|r| r.view.clone()));
        if keep {
            written.extend(insert.exec_with_returning(txn).await?);
        } else {
            insert.exec(txn).await?;
        }
    }
    // Rows grouped by the columns they set (the names, in the table's order).
    let mut groups: Vec<(Vec<&'static str>, Vec<catalog_view::Column>, Vec<_>)> = Vec::new();
    for row in updated {
        let columns: Vec<catalog_view::Column> = catalog_view::Column::iter()
            .filter(|c| c.as_str() != "id" && row.view.get(*c).is_set())
            .collect();
        let names: Vec<&'static str> = columns.iter().map(|c| c.as_str()).collect();
        match groups.iter_mut().find(|(n, _, _)| *n == names) {
            Some((_, _, views)) => views.push(row.view),
            None => groups.push((names, columns, vec![row.view])),
        }
    }
    for (_, columns, views) in groups {
        for chunk in views.chunks(ROWS_PER_STATEMENT) {
            written.extend(update_rows(txn, &columns, chunk, keep).await?);
        }
    }
    Ok(written)
}

/// `UPDATE catalog_view SET c = v.columnN, … FROM (VALUES (id, …), …) AS v WHERE
/// catalog_view.id = v.column1`: both databases name a `VALUES` list's columns
/// `column1`, `column2`, …, and the parameters carry their types. With `keep`, `RETURNING`
/// the rows' columns, unqualified (SQLite's `RETURNING` may not name the `FROM` list's
/// table; `v`'s columns are `columnN`, so no name is ambiguous on PostgreSQL).
async fn update_rows(
    txn: &DatabaseTransaction,
    columns: &[catalog_view::Column],
    views: &[catalog_view::ActiveModel],
    keep: bool,
) -> Result<Vec<catalog_view::Model>, DbErr> {
    let backend = txn.get_database_backend();
    let width = columns.len() + 1;
    let set = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("\"{}\" = \"v\".\"column{}\"", c.as_str(), i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let mut values = Vec::with_capacity(views.len() * width);
    let mut tuples = Vec::with_capacity(views.len());
    for view in views {
        let mut tuple = Vec::with_capacity(width);
        for column in std::iter::once(&catalog_view::Column::Id).chain(columns) {
            let value = view.get(*column).into_value().ok_or_else(|| {
                DbErr::Custom(format!("catalog row change without {}", column.as_str()))
            })?;
            values.push(value);
            tuple.push(match backend {
                DbBackend::Postgres => format!("${}", values.len()),
                _ => "?".to_owned(),
            });
        }
        tuples.push(format!("({})", tuple.join(", ")));
    }
    let mut sql = format!(
        "UPDATE \"catalog_view\" SET {set} FROM (VALUES {}) AS \"v\" \
         WHERE \"catalog_view\".\"id\" = \"v\".\"column1\"",
        tuples.join(", ")
    );
    if !keep {
        let done = txn
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        if done.rows_affected() != views.len() as u64 {
            return Err(DbErr::RecordNotUpdated);
        }
        return Ok(Vec::new());
    }
    let returned = catalog_view::Column::iter()
        .map(|c| format!("\"{}\"", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    sql.push_str(" RETURNING ");
    sql.push_str(&returned);
    let rows = catalog_view::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(backend, sql, values))
        .all(txn)
        .await?;
    if rows.len() != views.len() {
        return Err(DbErr::RecordNotUpdated);
    }
    Ok(rows)
}

#[async_trait::async_trait]
impl LiveView for CatalogProjection {
    const NAME: &'static str = NAME;
    type State = catalog_view::Model;

    async fn load(
        db: &DatabaseConnection,
        key: &str,
        _position: i64,
    ) -> Result<Option<(i64, Self::State)>, DbErr> {
        view::by_id(key, |id| find(db, id), |row| row.position).await
    }

    async fn moved(
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> Result<Vec<(i64, String)>, DbErr> {
        use catalog_view::Column;
        view::moved::<Uuid, _>(db, Column::Id, Column::Position, after, upto, limit).await
    }
}

/// Filters of a catalog page.
#[derive(Debug, Clone, Default)]
pub struct CatalogFilter {
    pub search: Option<String>,
    pub in_stock_only: bool,
    pub include_discontinued: bool,
}

#[derive(Default)]
pub struct CatalogPage {
    /// In SKU order, whichever way the page was read.
    pub items: Vec<catalog_view::Model>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    /// Every match, on all pages; 0 unless counted (`page`'s `count`).
    pub total_count: u64,
}

/// Which page of the catalog: Relay's `first`/`after`, read forwards on the SKU index, or
/// `last`/`before`, read backwards on the same index.
#[derive(Debug, Clone, Copy)]
pub enum PageBound<'a> {
    /// The first `n` products after the SKU `after` (from the start without it).
    First { n: u64, after: Option<&'a str> },
    /// The last `n` products before the SKU `before` (up to the end without it).
    Last { n: u64, before: Option<&'a str> },
}

pub async fn find<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<catalog_view::Model>, DbErr> {
    catalog_view::Entity::find_by_id(id).one(db).await
}

pub async fn find_many<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<Vec<catalog_view::Model>, DbErr> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    catalog_view::Entity::find()
        .filter(catalog_view::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await
}

/// Products whose row is at a position in `(after, upto]` (only `ids` when given), oldest
/// change first, at most `limit`.
pub async fn changed<C: ConnectionTrait>(
    db: &C,
    ids: Option<&[Uuid]>,
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<catalog_view::Model>, DbErr> {
    let mut query = view::moved_rows(catalog_view::Column::Position, after, upto, limit);
    if let Some(ids) = ids {
        query = query.filter(catalog_view::Column::Id.is_in(ids.iter().copied()));
    }
    query.all(db).await
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Up to this many rows found by SQLite's search index, a search page reads them and
/// sorts them by SKU; from this many on, it walks the SKU index (ADR 0017).
const FTS5_FEW: u64 = 2_000;

/// How many rows SQLite's search index finds for `search`, counted up to `FTS5_FEW`.
async fn fts5_candidates<C: ConnectionTrait>(db: &C, search: &str) -> Result<u64, DbErr> {
    let count = Statement::from_sql_and_values(
        DbBackend::Sqlite,
        format!(
            "SELECT count(*) AS n FROM (SELECT 1 FROM catalog_search \
             WHERE catalog_search MATCH ? LIMIT {FTS5_FEW})"
        ),
        [fts5_phrase(search).into()],
    );
    Ok(crate::db::scalar::<i64>(db, count, "n")
        .await?
        .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// `s` as a PostgreSQL string literal, whatever `standard_conforming_strings` says: an
/// escape string (`E'…'`) with its backslashes and quotes escaped.
fn postgres_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `s` as one FTS5 phrase: a string in double quotes, its own double quotes doubled.
/// With the trigram tokenizer a phrase matches wherever `s` is a substring of a column.
fn fts5_phrase(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A statement's error from sqlx, as SeaORM reports one (`error::unavailable` reads it).
fn query_error(e: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Query(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e)))
}

/// Up to this many matches, a PostgreSQL search page reads them all and pages them in
/// memory; from this many on it walks the SKU index (see `few_matches`).
const SEARCH_FEW: u64 = 2_000;

/// A search page on PostgreSQL when the text (`found`: a condition on `catalog_search`)
/// matches at most `SEARCH_FEW` products: their ids and SKUs are read without an order
/// through `catalog_search`'s trigram indexes, sorted by the database (its collation is
/// the cursors'), and only the rows the page needs are looked up in the view, with
/// `filters`: the page's `n + 1` from the cursor, one on the cursor's other side for its
/// flag, and all of them for `totalCount` only when it is asked for. `None` when there
/// are more: then the SKU index walked in order, each row's own text matched, finds a
/// page after reading at most about `n × rows / SEARCH_FEW` rows, so no search reads more
/// than a small share of the catalog.
///
/// Asked for the first page in SKU order directly, the planner guessed from its
/// statistics whether the matches were many (walk the SKU index) or few (the trigram
/// indexes, then sort). For a text like `0990` among 100 000 SKUs it guessed a thousand
/// matches and walked: 141 ms for a page of 21; the search bench's p99 was 420 ms.
async fn few_matches(
    db: &DatabaseConnection,
    found: &str,
    filters: &Condition,
    bound: PageBound<'_>,
    count: bool,
) -> Result<Option<CatalogPage>, DbErr> {
    use sea_orm::QueryTrait as _;
    use sea_orm::sea_query::PostgresQueryBuilder;

    // `f`: the matches' ids and SKUs, from `catalog_search` (the text's trigram indexes).
    // Each is then looked up in the view by its key, in SKU order from the cursor, until
    // the page is full. The lookup is a subquery with a LIMIT, which the planner does not
    // merge into a join: joined plainly, it guessed the matches from the trigrams'
    // statistics (2 020 for a text that matched 20 to 1 120) and hashed them against a
    // scan of the whole view (19 ms at 100 000 products). More than `SEARCH_FEW` found
    // (`n`): nothing is looked up, and the SKU index is walked instead.
    // One row of the view by the key of `f`'s current row, with the other filters.
    let lookup = catalog_view::Entity::find()
        .filter(filters.clone())
        .filter(Expr::cust("\"catalog_view\".\"id\" = \"f\".\"id\""))
        .limit(1)
        .into_query()
        .to_string(PostgresQueryBuilder);
    // The page's side of the cursor, the order it is read in, and the other side. The
    // cursor is a literal too: the statement has no parameter (see below).
    let (side, order, beyond, n) = match bound {
        PageBound::First { n, after } => match after {
            Some(after) => {
                let after = postgres_literal(after);
                (
                    format!("\"f\".\"sku\" > {after}"),
                    "ASC",
                    Some(format!("\"f\".\"sku\" <= {after}")),
                    n,
                )
            }
            None => ("true".to_owned(), "ASC", None, n),
        },
        PageBound::Last { n, before } => match before {
            Some(before) => {
                let before = postgres_literal(before);
                (
                    format!("\"f\".\"sku\" < {before}"),
                    "DESC",
                    Some(format!("\"f\".\"sku\" >= {before}")),
                    n,
                )
            }
            None => ("true".to_owned(), "DESC", None, n),
        },
    };
    let any_beyond = match beyond {
        Some(beyond) => format!(
            "EXISTS (SELECT 1 FROM \"f\" CROSS JOIN LATERAL ({lookup}) AS \"v\" \
             WHERE {beyond} AND \"n\".\"found\" <= {SEARCH_FEW})"
        ),
        None => "false".to_owned(),
    };
    let total = if count {
        format!(
            "(SELECT count(*) FROM \"f\" CROSS JOIN LATERAL ({lookup}) AS \"v\" \
             WHERE \"n\".\"found\" <= {SEARCH_FEW})"
        )
    } else {
        "0::bigint".to_owned()
    };
    let sql = format!(
        "WITH \"f\" AS MATERIALIZED (SELECT \"id\", \"sku\" FROM \"catalog_search\" \
                 WHERE {found} LIMIT {limit}), \
              \"n\" AS MATERIALIZED (SELECT count(*) AS \"found\" FROM \"f\") \
         SELECT \"m\".*, \"n\".\"found\", {any_beyond} AS \"beyond\", {total} AS \"total\" \
         FROM \"n\" LEFT JOIN LATERAL (SELECT \"v\".* FROM \"f\" \
             CROSS JOIN LATERAL ({lookup}) AS \"v\" \
             WHERE {side} AND \"n\".\"found\" <= {SEARCH_FEW} \
             ORDER BY \"f\".\"sku\" {order} LIMIT {rows}) AS \"m\" ON true",
        limit = SEARCH_FEW + 1,
        rows = n + 1,
    );
    // Sent as a simple query: one round trip, parsed and planned once. Its text differs
    // with every search (the pattern is a literal, see `page`), so a prepared statement
    // (sqlx prepares and caches every statement it runs) cost a second round trip to
    // prepare it, a cached plan in the backend, and, once a connection's cache of 100
    // was full, a `Close` of another search's statement.
    let rows: Vec<QueryResult> = sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(sql))
        .fetch_all(db.get_postgres_connection_pool())
        .await
        .map_err(query_error)?
        .into_iter()
        .map(QueryResult::from)
        .collect();
    let Some(first) = rows.first() else {
        return Err(DbErr::RecordNotFound("no answer to a search".into()));
    };
    if u64::try_from(first.try_get::<i64>("", "found")?).unwrap_or(u64::MAX) > SEARCH_FEW {
        return Ok(None);
    }
    let beyond = first.try_get::<bool>("", "beyond")?;
    let total_count = u64::try_from(first.try_get::<i64>("", "total")?).unwrap_or(0);
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        // The one row when no match is on the page's side: `n` alone.
        if row.try_get::<Option<Uuid>>("", "id")?.is_some() {
            items.push(
                <catalog_view::Model as sea_orm::FromQueryResult>::from_query_result(row, "")?,
            );
        }
    }
    let (mut items, more) = super::split_page(items, n);
    let page = match bound {
        PageBound::First { .. } => CatalogPage {
            items,
            has_next_page: more,
            has_previous_page: beyond,
            total_count,
        },
        PageBound::Last { .. } => {
            items.reverse();
            CatalogPage {
                items,
                has_next_page: beyond,
                has_previous_page: more,
                total_count,
            }
        }
    };
    Ok(Some(page))
}

/// One page of the catalog in SKU order, from either end (the Relay cursors are SKUs).
/// Whether products lie beyond the page's far end comes with the page (one more row
/// read); whether any lie beyond the cursor is one indexed lookup of a single row.
///
/// `totalCount` (`count`) is the one figure that costs a read of every match: it is
/// counted only when asked for, and is 0 otherwise (ADR 0017).
pub async fn page(
    db: &DatabaseConnection,
    filter: &CatalogFilter,
    bound: PageBound<'_>,
    count: bool,
) -> Result<CatalogPage, DbErr> {
    let mut cond = Condition::all();
    if !filter.include_discontinued {
        cond = cond.add(catalog_view::Column::Status.eq(ProductStatus::Active.as_str()));
    }
    if filter.in_stock_only {
        cond = cond.add(catalog_view::Column::Stock.gt(0));
    }
    // PostgreSQL: the condition on `catalog_search` of the products whose text matches
    // (found through its trigram indexes), and the other filters (see `few_matches`).
    let mut indexed: Option<(String, Condition)> = None;
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let backend = db.get_database_backend();
        let pattern = escape_like(search);
        let likes = if backend == DbBackend::Postgres {
            // The pattern as a literal, not a parameter: the planner then sees it and
            // picks the trigram indexes for a rare text and the SKU index for a common
            // one. With a parameter, a connection's statement turns generic after five
            // runs, planned for no text in particular: the SKU index, filtered, which
            // reads the whole view for a text that matches nothing.
            let literal = postgres_literal(&pattern);
            let like = |table: &str, col: &str| {
                format!("lower(\"{table}\".\"{col}\") LIKE {literal} ESCAPE E'\\\\'")
            };
            // The view's text is copied to `catalog_search`, which alone carries the
            // trigram indexes, so that a stock change writes none of them (migration
            // `m20261128_000013`); a product's row there is its row here, in every
            // committed state.
            let found = ["name", "sku", "description"].map(|col| like("catalog_search", col));
            let found = format!("({})", found.join(" OR "));
            indexed = Some((found, cond.clone()));
            Condition::any()
                .add(Expr::cust(like("catalog_view", "name")))
                .add(Expr::cust(like("catalog_view", "sku")))
                .add(Expr::cust(like("catalog_view", "description")))
        } else {
            let like = |col: catalog_view::Column| {
                Expr::expr(Func::lower(Expr::col(col)))
                    .like(LikeExpr::new(pattern.clone()).escape('\\'))
            };
            Condition::any()
                .add(like(catalog_view::Column::Name))
                .add(like(catalog_view::Column::Sku))
                .add(like(catalog_view::Column::Description))
        };
        cond = cond.add(likes);
        // SQLite is told where to look: the rows its FTS5 trigram index finds are a
        // superset of the matches (the same substring, case folded at least as far as
        // `lower` and `LIKE` fold it), and the `LIKE`s keep exactly the matches among
        // them. That is quick when they are few; when they are many, walking the SKU
        // index until the page is full is quicker, and its planner would not see it. The
        // index finds nothing shorter than a trigram: such a text walks the SKU index.
        if backend == DbBackend::Sqlite
            && search.chars().count() >= 3
            && fts5_candidates(db, search).await? < FTS5_FEW
        {
            cond = cond.add(Expr::cust_with_values(
                "\"catalog_view\".\"rowid\" IN \
                 (SELECT rowid FROM catalog_search WHERE catalog_search MATCH ?)",
                [fts5_phrase(search)],
            ));
        }
    }
    if let Some((found, filters)) = &indexed
        && let Some(page) = few_matches(db, found, filters, bound, count).await?
    {
        return Ok(page);
    }
    let total_count = if count {
        let counted = match indexed {
            Some((found, filters)) => filters.add(Expr::cust(format!(
                "\"catalog_view\".\"id\" IN (SELECT \"id\" FROM \"catalog_search\" WHERE {found})"
            ))),
            None => cond.clone(),
        };
        catalog_view::Entity::find()
            .filter(counted)
            .count(db)
            .await?
    } else {
        0
    };
    let any = |beyond: Condition| {
        catalog_view::Entity::find()
            .filter(cond.clone())
            .filter(beyond)
            .one(db)
    };
    let sku = catalog_view::Column::Sku;
    let (items, has_next_page, has_previous_page) = match bound {
        PageBound::First { n, after } => {
            let mut query = catalog_view::Entity::find().filter(cond.clone());
            if let Some(after) = after {
                query = query.filter(sku.gt(after));
            }
            let items = query.order_by_asc(sku).limit(n + 1).all(db).await?;
            let (items, has_next_page) = super::split_page(items, n);
            let has_previous_page = match after {
                Some(after) => any(Condition::all().add(sku.lte(after))).await?.is_some(),
                None => false,
            };
            (items, has_next_page, has_previous_page)
        }
        PageBound::Last { n, before } => {
            let mut query = catalog_view::Entity::find().filter(cond.clone());
            if let Some(before) = before {
                query = query.filter(sku.lt(before));
            }
            let items = query.order_by_desc(sku).limit(n + 1).all(db).await?;
            let (mut items, has_previous_page) = super::split_page(items, n);
            items.reverse();
            let has_next_page = match before {
                Some(before) => any(Condition::all().add(sku.gte(before))).await?.is_some(),
                None => false,
            };
            (items, has_next_page, has_previous_page)
        }
    };
    Ok(CatalogPage {
        items,
        has_next_page,
        has_previous_page,
        total_count,
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use sea_orm::TransactionTrait;

    use super::*;
    use crate::db::TestDatabase;
    use crate::domain::values::{Description, Money, ProductName, Sku};
    use crate::log::codec::encode;
    use crate::log::upcast::current_version;

    /// A log of product events as the write side would store it: `products` streams,
    /// each created first, then stock changes, renames, price changes, discontinuations.
    fn random_log(rng: &mut StdRng, products: usize, len: usize) -> Vec<events::Model> {
        let ids: Vec<Uuid> = (0..products).map(|_| Uuid::new_v4()).collect();
        let mut versions = vec![0_i64; products];
        let mut log = Vec::with_capacity(len);
        let now = chrono::Utc::now();
        for position in 1..=len as i64 {
            let p = rng.random_range(0..products);
            let event = if versions[p] == 0 {
                ProductEvent::Created {
                    sku: Sku::parse(&format!("SKU-{p}")).expect("a sku"),
                    name: ProductName::parse(&format!("Product {p}")).expect("a name"),
                    description: Description::parse("").expect("a description"),
                    price: Money::parse_str("price", "9.99").expect("a price"),
                    stock: 10,
                }
            } else {
                match rng.random_range(0..6) {
                    0 => ProductEvent::Updated {
                        name: rng
                            .random_bool(0.5)
                            .then(|| ProductName::parse(&format!("Renamed {position}")))
                            .transpose()
                            .expect("a name"),
                        description: None,
                        price: rng
                            .random_bool(0.5)
                            .then(|| Money::parse_str("price", &format!("{position}.50")))
                            .transpose()
                            .expect("a price"),
                    },
                    1 => ProductEvent::Discontinued {},
                    _ => ProductEvent::StockUpdated {
                        delta: 1,
                        stock: position,
                        reason: None,
                    },
                }
            };
            versions[p] += 1;
            let (event_type, data) = encode(&event).expect("an event encodes");
            log.push(events::Model {
                position,
                stream_id: ids[p],
                stream_type: Product::STREAM_TYPE.to_owned(),
                version: versions[p],
                event_version: current_version(&event_type),
                event_type,
                data,
                metadata: serde_json::json!({}),
                recorded_at: now + chrono::Duration::milliseconds(position),
            });
        }
        log
    }

    async fn fold_in(db: &DatabaseConnection, batches: &[&[events::Model]]) -> Vec<Change> {
        let mut changes = Vec::new();
        for batch in batches {
            let txn = db.begin().await.expect("a transaction");
            changes.extend(CatalogProjection.apply(&txn, batch).await.expect("a fold"));
            txn.commit().await.expect("a commit");
        }
        changes
    }

    async fn rows(db: &DatabaseConnection) -> Vec<catalog_view::Model> {
        catalog_view::Entity::find()
            .order_by_asc(catalog_view::Column::Id)
            .all(db)
            .await
            .expect("the view's rows")
    }

    /// Folding a log in batches of any length (each product's events merged, a statement
    /// per group of columns) leaves the view and announces the changes exactly as
    /// folding it one event at a time does. On PostgreSQL too when `TEST_DATABASE_URL` is
    /// set.
    /// Asserts that `bound`'s page of `filter` is `expected[range]`, with its flags and
    /// count.
    async fn assert_page(
        db: &DatabaseConnection,
        filter: &CatalogFilter,
        bound: PageBound<'_>,
        expected: &[&catalog_view::Model],
        range: std::ops::Range<usize>,
        what: &str,
    ) {
        let got = page(db, filter, bound, true).await.expect("a page");
        let skus = |items: &mut dyn Iterator<Item = &catalog_view::Model>| -> Vec<String> {
            items.map(|r| r.sku.clone()).collect()
        };
        assert_eq!(
            skus(&mut got.items.iter()),
            skus(&mut expected[range.clone()].iter().copied()),
            "{what}"
        );
        assert_eq!(got.has_previous_page, range.start > 0, "{what}");
        assert_eq!(got.has_next_page, range.end < expected.len(), "{what}");
        assert_eq!(got.total_count, expected.len() as u64, "{what}");
    }

    /// Every search page, from the few matches read whole and paged in memory or from
    /// the SKU index walked in order (more than `SEARCH_FEW` matches), is the page of the
    /// matches in SKU order, with its flags and count. On PostgreSQL too when
    /// `TEST_DATABASE_URL` is set.
    #[tokio::test]
    async fn a_search_page_is_the_page_of_its_matches_whichever_way_it_is_read() {
        let test = TestDatabase::new().await;
        let db = &test.db;
        let now = chrono::Utc::now();
        let rows: Vec<catalog_view::Model> = (0..2_300_i64)
            .map(|i| catalog_view::Model {
                id: Uuid::from_u128(i as u128 + 1),
                sku: format!("SR-{i:04}"),
                name: if i % 53 == 0 {
                    format!("Rare common {i}")
                } else {
                    format!("Common {i}")
                },
                description: if i % 7 == 0 {
                    "Kept in a BOX".into()
                } else {
                    String::new()
                },
                price_cents: 100,
                stock: i % 5,
                status: if i % 11 == 0 {
                    "DISCONTINUED"
                } else {
                    "ACTIVE"
                }
                .into(),
                review_count: 0,
                rating_total: 0,
                version: 1,
                updated_at: now,
                position: i + 1,
            })
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            catalog_view::Entity::insert_many(
                chunk.iter().cloned().map(catalog_view::ActiveModel::from),
            )
            .exec(db)
            .await
            .expect("rows inserted");
        }
        let mut rng = StdRng::seed_from_u64(7);
        // Many matches (the walk), few (in memory), a SKU fragment, a text shorter than a
        // trigram, none.
        for text in ["common", "RARE", "sr-01", "box", "0", "zzz"] {
            for (in_stock_only, include_discontinued) in [(false, false), (true, true)] {
                let filter = CatalogFilter {
                    search: Some(text.to_owned()),
                    in_stock_only,
                    include_discontinued,
                };
                let expected: Vec<&catalog_view::Model> = rows
                    .iter()
                    .filter(|r| include_discontinued || r.status == "ACTIVE")
                    .filter(|r| !in_stock_only || r.stock > 0)
                    .filter(|r| {
                        let t = text.to_lowercase();
                        [&r.name, &r.sku, &r.description]
                            .iter()
                            .any(|c| c.to_lowercase().contains(&t))
                    })
                    .collect();
                for _ in 0..4 {
                    let n = rng.random_range(1..30_u64);
                    let at = (!expected.is_empty()).then(|| rng.random_range(0..expected.len()));
                    let cursor = at.map(|i| expected[i].sku.clone());
                    // Forwards, after the cursor (or from the start).
                    let start = at.map_or(0, |i| i + 1);
                    let end = (start + n as usize).min(expected.len());
                    let after = cursor.as_deref();
                    let bound = PageBound::First { n, after };
                    let what = format!("{text}: first {n} after {cursor:?}");
                    assert_page(db, &filter, bound, &expected, start..end, &what).await;
                    // Backwards, before the cursor (or from the end).
                    let end = at.unwrap_or(expected.len());
                    let start = end.saturating_sub(n as usize);
                    let before = cursor.as_deref();
                    let bound = PageBound::Last { n, before };
                    let what = format!("{text}: last {n} before {cursor:?}");
                    assert_page(db, &filter, bound, &expected, start..end, &what).await;
                }
            }
        }
        test.close().await;
    }

    #[tokio::test]
    async fn a_batch_folds_as_its_events_one_at_a_time() {
        let (single_db, batched_db) = (TestDatabase::new().await, TestDatabase::new().await);
        for seed in 0..8_u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let log = random_log(&mut rng, 7, 300);
            let (single, batched) = (&single_db.db, &batched_db.db);
            for db in [single, batched] {
                catalog_view::Entity::delete_many()
                    .exec(db)
                    .await
                    .expect("the view emptied");
            }
            let one_by_one: Vec<&[events::Model]> = log.chunks(1).collect();
            let expected = fold_in(single, &one_by_one).await;

            let mut batches = Vec::new();
            let mut rest = &log[..];
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len().min(120));
                let (batch, after) = rest.split_at(n);
                batches.push(batch);
                rest = after;
            }
            let changes = fold_in(batched, &batches).await;
            assert_eq!(rows(batched).await, rows(single).await, "seed {seed}");
            let keys = |c: &[Change]| {
                c.iter()
                    .map(|c| (c.key.clone(), c.position))
                    .collect::<Vec<_>>()
            };
            assert_eq!(keys(&changes), keys(&expected), "seed {seed}");
        }
        single_db.close().await;
        batched_db.close().await;
    }

    /// An event of a product the view has no row for fails the batch, as a single
    /// update of a missing row does: the relay then stops at that event.
    #[tokio::test]
    async fn a_batch_naming_a_missing_row_fails() {
        let mut rng = StdRng::seed_from_u64(1);
        let log = random_log(&mut rng, 3, 40);
        let test_db = TestDatabase::new().await;
        let db = &test_db.db;
        let created: Vec<&events::Model> = log
            .iter()
            .filter(|e| e.event_type == "ProductCreated")
            .collect();
        let missing = created[0].stream_id;
        let without: Vec<events::Model> = log
            .iter()
            .filter(|e| !(e.stream_id == missing && e.version == 1))
            .cloned()
            .collect();
        let txn = db.begin().await.expect("a transaction");
        let err = CatalogProjection
            .apply(&txn, &without)
            .await
            .expect_err("an update of a missing row fails");
        assert!(matches!(err, DbErr::RecordNotUpdated), "{err}");
        txn.rollback().await.expect("a rollback");
        test_db.close().await;
    }
}
