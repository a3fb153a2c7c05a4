//! The public catalog listing `products(...)`: a Relay connection ordered by SKU, with
//! cursor paging, search, the in-stock filter and discontinued products hidden by default.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn products_are_listed_by_sku_ascending() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    for sku in ["C-300", "A-100", "B-200"] {
        admin.create_product(sku, "1.00", 1).await;
    }

    // Act
    let page = app.anonymous().products(json!({})).await;

    // Assert
    assert_eq!(skus(&page), ["A-100", "B-200", "C-300"]);
    assert_eq!(page["totalCount"], 3);
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn an_empty_catalog_is_an_empty_connection() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let page = app.anonymous().products(json!({})).await;

    // Assert
    assert_eq!(page["edges"], json!([]));
    assert_eq!(page["totalCount"], 0);
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn paging_with_the_end_cursor_visits_every_product_exactly_once() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mut expected = Vec::new();
    for i in (0..7).rev() {
        let sku = format!("SKU-{i:02}");
        admin.create_product(&sku, "1.00", 1).await;
        expected.push(sku);
    }
    expected.sort();
    let anonymous = app.anonymous();

    // Act
    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut after = serde_json::Value::Null;
    loop {
        let page = anonymous
            .products(json!({ "first": 3, "after": after }))
            .await;
        assert_eq!(
            page["totalCount"], 7,
            "totalCount counts every match: {page:#}"
        );
        let page_skus = skus(&page);
        page_sizes.push(page_skus.len());
        seen.extend(page_skus);
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
        assert!(
            after.is_string(),
            "a page with a next page has an endCursor: {page:#}"
        );
        assert!(page_sizes.len() < 10, "paging does not terminate: {seen:?}");
    }

    // Assert
    assert_eq!(seen, expected);
    assert_eq!(page_sizes, [3, 3, 1]);
}

#[tokio::test]
async fn each_edge_cursor_resumes_right_after_its_node() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    for sku in ["A-1", "B-1", "C-1", "D-1"] {
        admin.create_product(sku, "1.00", 1).await;
    }
    let anonymous = app.anonymous();
    let all = anonymous.products(json!({})).await;
    let second_cursor = all["edges"][1]["cursor"].clone();

    // Act
    let rest = anonymous
        .products(json!({ "first": 10, "after": second_cursor }))
        .await;

    // Assert
    assert_eq!(skus(&rest), ["C-1", "D-1"]);
}

#[tokio::test]
async fn the_default_page_size_is_twenty() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    for i in 0..21 {
        admin
            .create_product(&format!("SKU-{i:02}"), "1.00", 1)
            .await;
    }

    // Act
    let page = app.anonymous().products(json!({})).await;

    // Assert
    assert_eq!(skus(&page).len(), 20);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["totalCount"], 21);
}

#[tokio::test]
async fn first_zero_and_first_one_hundred_are_accepted() {
    // Arrange
    let app = spawn_app().await;
    app.as_admin().create_product("A-1", "1.00", 1).await;
    let anonymous = app.anonymous();

    // Act
    let zero = anonymous.products(json!({ "first": 0 })).await;
    let hundred = anonymous.products(json!({ "first": 100 })).await;

    // Assert
    assert_eq!(zero["edges"], json!([]));
    assert_eq!(zero["totalCount"], 1);
    assert_eq!(skus(&hundred), ["A-1"]);
}

#[tokio::test]
async fn first_outside_zero_to_one_hundred_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let anonymous = app.anonymous();

    for first in [-1, 101, 1_000_000] {
        // Act
        let resp = anonymous.gql(PRODUCTS, json!({ "first": first })).await;

        // Assert
        assert_error(&resp, "BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn a_malformed_cursor_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    app.as_admin().create_product("A-1", "1.00", 1).await;

    // Act
    let resp = app
        .gql(PRODUCTS, json!({ "first": 5, "after": "garbage" }))
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
}

#[tokio::test]
async fn search_matches_name_sku_and_description_case_insensitively() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    for (sku, name, description) in [
        ("MUG-001", "Coffee Mug", "Ceramic, 300 ml"),
        ("TEE-001", "T-Shirt", "Organic cotton"),
        ("CAP-RED", "Baseball cap", "Red wool"),
    ] {
        let resp = admin
            .gql(
                CREATE_PRODUCT,
                json!({ "input": { "sku": sku, "name": name, "description": description, "price": "5.00", "initialStock": 1 } }),
            )
            .await;
        data(&resp);
    }
    let anonymous = app.anonymous();

    // Act
    let by_name = anonymous.products(json!({ "search": "mug" })).await;
    let by_sku = anonymous.products(json!({ "search": "tee-0" })).await;
    let by_description = anonymous.products(json!({ "search": "COTTON" })).await;
    let in_the_middle = anonymous.products(json!({ "search": "aseBAL" })).await;
    let nothing = anonymous.products(json!({ "search": "zzz" })).await;

    // Assert
    assert_eq!(skus(&by_name), ["MUG-001"]);
    assert_eq!(skus(&by_sku), ["TEE-001"]);
    assert_eq!(skus(&by_description), ["TEE-001"]);
    assert_eq!(skus(&in_the_middle), ["CAP-RED"]);
    assert_eq!(skus(&nothing), Vec::<String>::new());
    assert_eq!(nothing["totalCount"], 0);
}

#[tokio::test]
async fn search_treats_sql_wildcards_as_plain_characters() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    for (sku, name) in [("A-1", "100% cotton tee"), ("B-1", "Plain tee")] {
        let resp = admin
            .gql(
                CREATE_PRODUCT,
                json!({ "input": { "sku": sku, "name": name, "description": "", "price": "5.00", "initialStock": 1 } }),
            )
            .await;
        data(&resp);
    }
    let anonymous = app.anonymous();

    // Act
    let percent = anonymous.products(json!({ "search": "%" })).await;
    let underscore = anonymous.products(json!({ "search": "_" })).await;

    // Assert
    assert_eq!(skus(&percent), ["A-1"]);
    assert_eq!(skus(&underscore), Vec::<String>::new());
}

#[tokio::test]
async fn total_count_counts_every_match_not_just_the_page() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    for i in 0..5 {
        admin.create_product(&format!("MUG-{i}"), "1.00", 1).await;
    }
    admin.create_product("TEE-1", "1.00", 1).await;

    // Act
    let page = app
        .anonymous()
        .products(json!({ "first": 2, "search": "mug" }))
        .await;

    // Assert
    assert_eq!(skus(&page), ["MUG-0", "MUG-1"]);
    assert_eq!(page["totalCount"], 5);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
}

#[tokio::test]
async fn in_stock_only_hides_products_without_stock() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    admin.create_product("A-1", "1.00", 3).await;
    let empty = admin.create_product("B-1", "1.00", 0).await;
    let anonymous = app.anonymous();

    // Act
    let in_stock = anonymous.products(json!({ "inStockOnly": true })).await;
    let all = anonymous.products(json!({ "inStockOnly": false })).await;
    data(&admin.adjust_stock(str_of(&empty["id"]), 1).await);
    let restocked = anonymous.products(json!({ "inStockOnly": true })).await;

    // Assert
    assert_eq!(skus(&in_stock), ["A-1"]);
    assert_eq!(in_stock["totalCount"], 1);
    assert_eq!(skus(&all), ["A-1", "B-1"]);
    assert_eq!(skus(&restocked), ["A-1", "B-1"]);
}

#[tokio::test]
async fn discontinued_products_are_hidden_unless_asked_for() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    admin.create_product("A-1", "1.00", 3).await;
    let gone = admin.create_product("B-1", "1.00", 3).await;
    data(&admin.discontinue(str_of(&gone["id"])).await);
    let anonymous = app.anonymous();

    // Act
    let default = anonymous.products(json!({})).await;
    let with_discontinued = anonymous
        .products(json!({ "includeDiscontinued": true }))
        .await;
    let by_id = anonymous.product(str_of(&gone["id"])).await;

    // Assert
    assert_eq!(skus(&default), ["A-1"]);
    assert_eq!(default["totalCount"], 1);
    assert_eq!(skus(&with_discontinued), ["A-1", "B-1"]);
    assert_eq!(with_discontinued["totalCount"], 2);
    assert_eq!(by_id["status"], "DISCONTINUED");
}

#[tokio::test]
async fn the_listing_shows_the_current_state_of_each_product() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("A-1", "1.00", 3).await;
    let id = str_of(&created["id"]);
    data(
        &admin
            .gql(
                UPDATE_PRODUCT,
                json!({ "input": { "id": id, "name": "Renamed", "price": "2.5" } }),
            )
            .await,
    );
    data(&admin.adjust_stock(id, 4).await);

    // Act
    let page = app.anonymous().products(json!({})).await;

    // Assert
    let node = &page["edges"][0]["node"];
    assert_eq!(node["id"], id);
    assert_eq!(node["name"], "Renamed");
    assert_eq!(node["price"], "2.50");
    assert_eq!(node["stock"], 7);
    assert_eq!(node["inStock"], true);
    assert_eq!(node["status"], "ACTIVE");
}
