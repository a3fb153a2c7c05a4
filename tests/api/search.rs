//! `products(search:)` on its index (ADR 0017) and `totalCount` counted only when asked
//! for: search finds exactly the products whose name, SKU or description holds the text,
//! case-insensitively, whatever the text (short, long, quotes, the index's own syntax),
//! after renames, rebuilds and on a catalog that was there before the index; paging and
//! counting a search work as they do on the whole catalog.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::helpers::*;

/// (sku, name, description) of a small catalog with words in common and texts that mean
/// something to a search engine's query syntax.
const CATALOG: [(&str, &str, &str); 13] = [
    ("MUG-001", "Coffee Mug", "Ceramic, 300 ml"),
    ("MUG-002", "Travel mug", "Steel; keeps coffee hot"),
    ("TEE-001", "T-Shirt", "Organic cotton"),
    ("TEE-002", "Long-sleeve tee", "Cotton and elastane"),
    ("CAP-RED", "Baseball cap", "Red wool"),
    ("CAP-BLU", "Sun hat", "The \"classic\" blue one"),
    ("BAG-010", "Tote bag", "100% cotton canvas, 10 l"),
    ("BAG-011", "Back_pack", "name:value NEAR(a b) OR NOT * ^"),
    ("PEN-XYZ", "Fountain pen", "Café crème ink"),
    ("PEN-ABC", "Ballpoint pen", "Blue ink"),
    ("KEY-000", "Key ring", ""),
    ("BOX-999", "Gift box", "Cardboard, recycled"),
    ("ODD-001", "Odd's \\ tool", "costs $1 ? or $$, E'x'"),
];

/// Texts searched for: short and long, across words, with quotes, wildcards and
/// operators, in any case, and texts that match nothing.
const SEARCHES: [&str; 42] = [
    "m",
    "mu",
    "mug",
    "MUG",
    "mUg-00",
    "coffee",
    "offe",
    "cotton",
    "COTTON C",
    "t-s",
    "-",
    "e",
    "ee",
    "tee",
    "\"classic\"",
    "\"",
    "cla",
    "%",
    "_",
    "back_",
    "name:",
    "near(",
    "or not",
    "*",
    "^",
    "café",
    "crème ink",
    "0",
    "00",
    "001",
    "10 l",
    "zzz",
    "coffee mug ceramic",
    "recycled",
    "'",
    "odd's",
    "\\",
    "s \\ t",
    "$1",
    "? or $$",
    "e'x'",
    "'; drop table catalog_view; --",
];

async fn create(admin: &Caller<'_>, sku: &str, name: &str, description: &str) -> Value {
    let resp = admin
        .gql(
            CREATE_PRODUCT,
            json!({ "input": { "sku": sku, "name": name, "description": description, "price": "5.00", "initialStock": 1 } }),
        )
        .await;
    data(&resp)["createProduct"]["product"].clone()
}

/// Every product of `catalog` whose name, SKU or description holds `text`, ignoring
/// case, in SKU order. (The catalog's non-ASCII letters are searched in their own case:
/// SQLite folds the case of ASCII letters only.)
fn expected(catalog: &[(String, String, String)], text: &str) -> Vec<String> {
    let text = text.to_lowercase();
    let mut found: Vec<String> = catalog
        .iter()
        .filter(|(sku, name, description)| {
            [sku, name, description]
                .iter()
                .any(|s| s.to_lowercase().contains(&text))
        })
        .map(|(sku, _, _)| sku.clone())
        .collect();
    found.sort();
    found
}

fn owned(catalog: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    catalog
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

/// Asserts that every text of `SEARCHES` finds exactly what `expected` says, on one page
/// and in `totalCount`.
async fn assert_searches(caller: &Caller<'_>, catalog: &[(String, String, String)]) {
    for text in SEARCHES {
        let page = caller
            .products(json!({ "first": 100, "search": text }))
            .await;
        let want = expected(catalog, text);
        assert_eq!(skus(&page), want, "search {text:?}");
        assert_eq!(page["totalCount"], want.len(), "search {text:?}: {page}");
    }
}

#[tokio::test]
async fn search_finds_exactly_the_products_that_hold_the_text() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    for (sku, name, description) in CATALOG {
        create(&admin, sku, name, description).await;
    }

    // Act and assert
    assert_searches(&app.anonymous(), &owned(&CATALOG)).await;
}

#[tokio::test]
async fn search_follows_renames_stock_changes_and_discontinued_products() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = create(&admin, "MUG-001", "Coffee Mug", "Ceramic").await;
    let tee = create(&admin, "TEE-001", "T-Shirt", "Organic cotton").await;
    let anonymous = app.anonymous();
    let search = |text: &'static str| {
        let anonymous = &anonymous;
        async move {
            skus(
                &anonymous
                    .products(json!({ "search": text, "includeDiscontinued": true }))
                    .await,
            )
        }
    };

    // Act
    data(
        &admin
            .gql(
                UPDATE_PRODUCT,
                json!({ "input": { "id": mug["id"], "name": "Espresso cup", "description": "Porcelain" } }),
            )
            .await,
    );
    data(&admin.adjust_stock(str_of(&tee["id"]), 5).await);
    data(&admin.discontinue(str_of(&tee["id"])).await);

    // Assert
    assert_eq!(
        search("coffee").await,
        Vec::<String>::new(),
        "the old name is gone"
    );
    assert_eq!(search("ceramic").await, Vec::<String>::new());
    assert_eq!(
        search("espresso").await,
        ["MUG-001"],
        "the new name is found"
    );
    assert_eq!(search("porcelain").await, ["MUG-001"]);
    assert_eq!(search("MUG-0").await, ["MUG-001"], "the SKU is still found");
    assert_eq!(
        search("organic").await,
        ["TEE-001"],
        "a stock change keeps it"
    );
    let hidden = anonymous.products(json!({ "search": "organic" })).await;
    assert_eq!(skus(&hidden), Vec::<String>::new(), "discontinued: hidden");
    assert_eq!(hidden["totalCount"], 0);
}

const PAGE: &str =
    "query($first: Int, $after: String, $last: Int, $before: String, $search: String) {
  products(first: $first, after: $after, last: $last, before: $before, search: $search) {
    edges { cursor node { sku } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    totalCount
  }
}";

#[tokio::test]
async fn a_search_pages_forwards_and_backwards_like_the_whole_catalog() {
    // Arrange: 25 matches among 35 products.
    let app = spawn_app().await;
    let admin = app.as_admin();
    for i in 0..35 {
        let name = if i % 7 == 3 { "Plain" } else { "Striped scarf" };
        create(&admin, &format!("SC-{i:02}"), name, "").await;
    }
    let mut all: Vec<String> = (0..35)
        .filter(|i| i % 7 != 3)
        .map(|i| format!("SC-{i:02}"))
        .collect();
    all.sort();
    assert_eq!(all.len(), 30);
    let anonymous = app.anonymous();
    let page = |vars: Value| {
        let anonymous = &anonymous;
        async move {
            let resp = anonymous.gql(PAGE, vars).await;
            data(&resp)["products"].clone()
        }
    };

    // Act: forwards by 8, then backwards by 8 from the end.
    let mut forwards = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let p = page(json!({ "first": 8, "after": after, "search": "STRIPED" })).await;
        assert_eq!(p["totalCount"], 30, "{p}");
        assert_eq!(p["pageInfo"]["hasPreviousPage"], pages > 0, "{p}");
        forwards.extend(skus(&p));
        pages += 1;
        if p["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = p["pageInfo"]["endCursor"].clone();
        assert!(pages < 10, "paging does not end");
    }
    let mut backwards = Vec::new();
    let mut before = Value::Null;
    loop {
        let p = page(json!({ "last": 8, "before": before, "search": "striped" })).await;
        assert_eq!(p["pageInfo"]["hasNextPage"], !before.is_null(), "{p}");
        let mut chunk = skus(&p);
        chunk.extend(backwards);
        backwards = chunk;
        if p["pageInfo"]["hasPreviousPage"] == false {
            break;
        }
        before = p["pageInfo"]["startCursor"].clone();
    }
    let exact = page(json!({ "first": 30, "search": "striped" })).await;
    let past_the_end =
        page(json!({ "first": 5, "after": exact["pageInfo"]["endCursor"], "search": "striped" }))
            .await;

    // Assert
    assert_eq!(forwards, all);
    assert_eq!(pages, 4, "8 + 8 + 8 + 6");
    assert_eq!(backwards, all);
    assert_eq!(skus(&exact), all);
    assert_eq!(exact["pageInfo"]["hasNextPage"], false, "exactly one page");
    assert_eq!(skus(&past_the_end), Vec::<String>::new());
    assert_eq!(past_the_end["pageInfo"]["hasNextPage"], false);
    assert_eq!(past_the_end["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(past_the_end["totalCount"], 30);
}

/// A search page's statement carries the text and the cursor as literals (ADR 0017): a
/// cursor made up by a client, with quotes, backslashes or SQL in it, pages from where
/// that SKU would sort like any other; a NUL, which no product's text can hold and
/// PostgreSQL refuses in a statement, is the client's mistake (BAD_USER_INPUT), in the
/// text or in a cursor, never UNAVAILABLE or INTERNAL.
#[tokio::test]
async fn made_up_cursors_and_control_characters_in_a_search_are_answered_plainly() {
    use base64::Engine as _;
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    for sku in ["SC-A", "SC-B", "SC-C"] {
        create(&admin, sku, "Striped scarf", "").await;
    }
    let cursor = |value: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("sku:{value}"))
    };
    let anonymous = app.anonymous();

    // Act + Assert: made-up cursors page like real ones, from where they sort (each
    // differs from the SKUs at a letter, so that any collation sorts it the same).
    for (made_up, after) in [
        ("SC-'", vec!["SC-A", "SC-B", "SC-C"]),
        ("SC-A' OR '1'='1", vec!["SC-B", "SC-C"]),
        ("SC-A\\'; DROP TABLE catalog_view; --", vec!["SC-B", "SC-C"]),
        ("SC-B\\x", vec!["SC-C"]),
        ("E'SC-B'", vec!["SC-A", "SC-B", "SC-C"]),
    ] {
        let resp = anonymous
            .gql(
                PAGE,
                json!({ "first": 5, "after": cursor(made_up), "search": "striped" }),
            )
            .await;
        assert_eq!(
            skus(&data(&resp)["products"]),
            after,
            "after {made_up:?}: {resp}"
        );
        let resp = anonymous
            .gql(
                PAGE,
                json!({ "last": 5, "before": cursor(made_up), "search": "striped" }),
            )
            .await;
        let before: Vec<&str> = ["SC-A", "SC-B", "SC-C"]
            .into_iter()
            .filter(|s| !after.contains(s))
            .collect();
        assert_eq!(
            skus(&data(&resp)["products"]),
            before,
            "before {made_up:?}: {resp}"
        );
    }
    for vars in [
        json!({ "first": 5, "search": "str\u{0}iped" }),
        json!({ "first": 5, "search": "\u{7}" }),
        json!({ "first": 5, "after": cursor("SC-A\u{0}"), "search": "striped" }),
        json!({ "first": 5, "after": cursor("SC-A\u{0}") }),
        json!({ "last": 5, "before": cursor("\u{0}"), "search": "striped" }),
    ] {
        let resp = anonymous.gql(PAGE, vars.clone()).await;
        assert_eq!(
            error_code(&resp).as_deref(),
            Some("BAD_USER_INPUT"),
            "{vars}: {resp}"
        );
    }
    // Tabs and newlines are text a description may hold: searched, not refused.
    let resp = anonymous
        .gql(PAGE, json!({ "first": 5, "search": "striped\tscarf\n" }))
        .await;
    assert_eq!(error_code(&resp), None, "{resp}");
}

#[tokio::test]
async fn total_count_is_exact_wherever_it_is_selected_and_optional_otherwise() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    for i in 0..6 {
        admin
            .create_product(&format!("TC-{i}"), "1.00", i % 2)
            .await;
    }
    let gone = admin.create_product("TC-X", "1.00", 1).await;
    data(&admin.discontinue(str_of(&gone["id"])).await);
    let anonymous = app.anonymous();

    // Act
    let without = anonymous
        .gql(
            "{ products(first: 2) { edges { node { sku } } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await;
    let in_a_fragment = anonymous
        .gql(
            "query { products(first: 2, inStockOnly: true) { ...Counted } } fragment Counted on ProductConnection { totalCount }",
            json!({}),
        )
        .await;
    let inline = anonymous
        .gql(
            "{ products(first: 1, includeDiscontinued: true) { ... on ProductConnection { totalCount } } }",
            json!({}),
        )
        .await;
    let aliased = anonymous
        .gql(
            "{ a: products(first: 1, search: \"tc-\") { n: totalCount } b: products(first: 1) { edges { node { sku } } } }",
            json!({}),
        )
        .await;

    // Assert
    let without = &data(&without)["products"];
    assert_eq!(skus(without), ["TC-0", "TC-1"]);
    assert!(without.get("totalCount").is_none());
    assert_eq!(without["pageInfo"]["hasNextPage"], true);
    assert_eq!(
        data(&in_a_fragment)["products"]["totalCount"],
        3,
        "TC-1, 3, 5"
    );
    assert_eq!(data(&inline)["products"]["totalCount"], 7);
    assert_eq!(data(&aliased)["a"]["n"], 6);
    assert_eq!(skus(&data(&aliased)["b"]), ["TC-0"]);
}

/// Creates `CATALOG`, in its order; the products' ids.
async fn create_catalog(admin: &Caller<'_>) -> Vec<String> {
    let mut ids = Vec::new();
    for (sku, name, description) in CATALOG {
        ids.push(str_of(&create(admin, sku, name, description).await["id"]).to_owned());
    }
    ids
}

/// Renames the product `id`.
async fn rename(admin: &Caller<'_>, id: &str, name: &str) {
    data(
        &admin
            .gql(
                UPDATE_PRODUCT,
                json!({ "input": { "id": id, "name": name } }),
            )
            .await,
    );
}

#[tokio::test]
async fn a_rebuild_of_the_catalog_keeps_its_search_right() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let ids = create_catalog(&admin).await;

    // Act: rebuild, then rename a product after the swap.
    let done = crate::rebuild::rebuild(&app, "catalog").await;
    rename(&admin, &ids[0], "Espresso cup").await;

    // Assert
    assert_eq!(done["phase"], "DONE");
    let mut catalog = owned(&CATALOG);
    catalog[0].1 = "Espresso cup".into();
    assert_searches(&app.anonymous(), &catalog).await;
}

#[tokio::test]
async fn the_search_index_is_built_from_a_catalog_that_was_there_before_it() {
    use migration::MigratorTrait as _;

    // Arrange: a database migrated up to the step before the index, with products in
    // its catalog view (written as the relay writes them).
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (url, _guard) = fresh_database_url(dir.path()).await;
    let db = sea_orm::Database::connect(&url).await.expect("connects");
    let steps = migration::Migrator::migrations();
    let before_index = steps
        .iter()
        .position(|m| m.name() == "m20261127_000011_catalog_search")
        .expect("the search index step is listed");
    migration::Migrator::up(&db, Some(before_index as u32))
        .await
        .expect("the steps before the index apply");
    for (i, (sku, name, description)) in CATALOG.iter().enumerate() {
        use ordergraph::read::catalog::catalog_view;
        use sea_orm::{ActiveValue::Set, EntityTrait};
        let row = catalog_view::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            sku: Set(sku.to_string()),
            name: Set(name.to_string()),
            description: Set(description.to_string()),
            price_cents: Set(500),
            stock: Set(1),
            status: Set("ACTIVE".into()),
            review_count: Set(0),
            rating_total: Set(0),
            version: Set(1),
            updated_at: Set(chrono::Utc::now()),
            position: Set(i as i64 + 1),
        };
        catalog_view::Entity::insert(row)
            .exec(&db)
            .await
            .expect("a row is written");
    }
    db.execute_unprepared("SELECT 1").await.expect("still up");
    db.close().await.expect("closes");

    // Act: the service starts on it and applies the index's step.
    let app = spawn_app_with(|s| s.database_url = Some(url.clone())).await;

    // Assert
    assert_searches(&app.anonymous(), &owned(&CATALOG)).await;
}

/// The trigram indexes of `table` and their `gin_pending_list_limit`, as PostgreSQL holds
/// them (index name, limit), in name order.
async fn pending_list_limits(app: &TestApp, table: &str) -> Vec<(String, Option<String>)> {
    let rows = query(
        app,
        &format!(
            "SELECT c.relname::text AS name, \
             (SELECT option_value FROM pg_options_to_table(c.reloptions) \
              WHERE option_name = 'gin_pending_list_limit') AS limit \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_class t ON t.oid = i.indrelid JOIN pg_am a ON a.oid = c.relam \
             WHERE t.relname = '{table}' AND t.relnamespace = 'public'::regnamespace \
             AND a.amname = 'gin' ORDER BY 1"
        ),
    )
    .await;
    rows.iter()
        .map(|r| {
            (
                r.try_get::<String>("", "name").expect("a name"),
                r.try_get::<Option<String>>("", "limit").expect("a limit"),
            )
        })
        .collect()
}

/// The rows of `sql`, read with a connection of its own.
async fn query(app: &TestApp, sql: &str) -> Vec<sea_orm::QueryResult> {
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("connects");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            sql.to_owned(),
        ))
        .await
        .expect("reads");
    db.close().await.expect("closes");
    rows
}

/// Each row of `catalog_search` with the transaction that last wrote it.
async fn search_rows(app: &TestApp) -> Vec<(String, String)> {
    query(
        app,
        "SELECT id::text AS id, xmin::text AS written FROM catalog_search ORDER BY id",
    )
    .await
    .iter()
    .map(|r| {
        (
            r.try_get::<String>("", "id").expect("an id"),
            r.try_get::<String>("", "written").expect("an xmin"),
        )
    })
    .collect()
}

#[tokio::test]
async fn the_trigram_indexes_live_apart_from_the_view_and_stock_changes_leave_them_alone() {
    if std::env::var("TEST_DATABASE_URL").is_err() {
        return; // PostgreSQL's trigram indexes: SQLite has an FTS5 index instead.
    }
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let ids = create_catalog(&admin).await;
    let written = search_rows(&app).await;

    // Act: a stock change of every product, then a rebuild of the view (its rows
    // replaced), then a rename.
    for id in &ids {
        data(&admin.adjust_stock(id, 3).await);
    }
    let after_stock = search_rows(&app).await;
    let done = crate::rebuild::rebuild(&app, "catalog").await;
    let before_rename = search_rows(&app).await;
    rename(&admin, &ids[0], "Espresso cup").await;
    let after_rename = search_rows(&app).await;

    // Assert: the view itself carries no trigram index (a stock change is not HOT: its
    // position is indexed, so each would write every one of them), the search table's
    // keep short pending lists, and its rows are written only when their text changes.
    assert_eq!(done["phase"], "DONE");
    assert_eq!(pending_list_limits(&app, "catalog_view").await, []);
    let limits = pending_list_limits(&app, "catalog_search").await;
    assert_eq!(limits.len(), 3, "{limits:?}");
    for (name, limit) in &limits {
        assert_eq!(limit.as_deref(), Some("64"), "{name}: {limits:?}");
    }
    assert_eq!(written.len(), CATALOG.len());
    assert_eq!(after_stock, written, "stock changes wrote no search row");
    assert_eq!(
        before_rename.len(),
        CATALOG.len(),
        "the rebuild kept every row"
    );
    let renamed = ids[0].clone();
    for ((id, before), (same_id, after)) in before_rename.iter().zip(&after_rename) {
        assert_eq!(id, same_id);
        assert_eq!(
            before != after,
            *id == renamed,
            "{id}: written by the rename only"
        );
    }
    let mut catalog = owned(&CATALOG);
    catalog[0].1 = "Espresso cup".to_owned();
    assert_searches(&app.anonymous(), &catalog).await;
}
