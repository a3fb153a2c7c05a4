//! The catalog's write side as an admin sees it: createProduct, updateProduct, adjustStock,
//! discontinueProduct; validation of their input; versions and positions.

use serde_json::{Value, json};

use crate::helpers::*;

fn create_input(sku: &str, name: &str, price: &str, stock: i64) -> Value {
    json!({ "input": {
        "sku": sku,
        "name": name,
        "description": "A test product",
        "price": price,
        "initialStock": stock,
    }})
}

/// Every product, discontinued ones included.
async fn total_products(app: &TestApp) -> i64 {
    app.anonymous()
        .products(json!({ "includeDiscontinued": true }))
        .await["totalCount"]
        .as_i64()
        .expect("totalCount is an Int")
}

#[tokio::test]
async fn creating_a_product_returns_it_at_version_one_with_its_own_position() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .gql(
            CREATE_PRODUCT,
            create_input("MUG-001", "Coffee mug", "19.9", 5),
        )
        .await;

    // Assert
    let payload = &data(&resp)["createProduct"];
    let product = &payload["product"];
    assert_eq!(product["sku"], "MUG-001");
    assert_eq!(product["name"], "Coffee mug");
    assert_eq!(product["description"], "A test product");
    assert_eq!(product["price"], "19.90");
    assert_eq!(product["stock"], 5);
    assert_eq!(product["inStock"], true);
    assert_eq!(product["status"], "ACTIVE");
    assert_eq!(product["version"], 1);
    assert_eq!(product["reviewCount"], 0);
    assert!(product["averageRating"].is_null(), "{product:#}");
    assert!(uuid::Uuid::parse_str(str_of(&product["id"])).is_ok());
    assert!(
        chrono::DateTime::parse_from_rfc3339(str_of(&product["updatedAt"])).is_ok(),
        "updatedAt is RFC 3339: {product:#}"
    );
    assert_eq!(product["position"], payload["position"]);
    assert!(position(&payload["position"]) > 0);
}

#[tokio::test]
async fn a_created_product_can_be_read_anonymously_by_id() {
    // Arrange
    let app = spawn_app().await;
    let created = app.as_admin().create_product("MUG-001", "12.50", 3).await;

    // Act
    let product = app.anonymous().product(str_of(&created["id"])).await;

    // Assert
    assert_eq!(product, created);
}

#[tokio::test]
async fn an_unknown_product_id_reads_as_null() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let product = app
        .anonymous()
        .product(&uuid::Uuid::new_v4().to_string())
        .await;

    // Assert
    assert!(product.is_null(), "{product:#}");
}

#[tokio::test]
async fn money_is_always_serialized_with_two_decimal_places() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();

    // Act
    let whole = admin.create_product("A-1", "20", 1).await;
    let one_place = admin.create_product("A-2", "19.9", 1).await;
    let two_places = admin.create_product("A-3", "0.05", 1).await;

    // Assert
    assert_eq!(whole["price"], "20.00");
    assert_eq!(one_place["price"], "19.90");
    assert_eq!(two_places["price"], "0.05");
}

#[tokio::test]
async fn a_price_with_more_than_two_decimal_places_is_rejected() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .gql(CREATE_PRODUCT, create_input("A-1", "Thing", "19.999", 1))
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn a_negative_price_is_rejected() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .gql(CREATE_PRODUCT, create_input("A-1", "Thing", "-1.00", 1))
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn a_price_that_is_not_a_number_is_rejected() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .gql(CREATE_PRODUCT, create_input("A-1", "Thing", "cheap", 1))
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn creating_a_product_with_a_duplicate_sku_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let first = admin.create_product("MUG-001", "10.00", 1).await;

    // Act
    let resp = admin
        .gql(
            CREATE_PRODUCT,
            create_input("MUG-001", "Another mug", "11.00", 2),
        )
        .await;

    // Assert
    assert_error(&resp, "CONFLICT");
    assert_eq!(total_products(&app).await, 1);
    assert_eq!(admin.product(str_of(&first["id"])).await, first);
}

#[tokio::test]
async fn an_empty_name_is_rejected() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .gql(CREATE_PRODUCT, create_input("A-1", "", "1.00", 1))
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn an_empty_sku_is_rejected() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .gql(CREATE_PRODUCT, create_input("", "Thing", "1.00", 1))
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn a_negative_initial_stock_is_rejected() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .gql(CREATE_PRODUCT, create_input("A-1", "Thing", "1.00", -1))
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn a_name_of_two_hundred_characters_is_accepted_and_one_more_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();

    // Act
    let at_limit = admin
        .gql(
            CREATE_PRODUCT,
            create_input("A-1", &"n".repeat(200), "1.00", 1),
        )
        .await;
    let over_limit = admin
        .gql(
            CREATE_PRODUCT,
            create_input("A-2", &"n".repeat(201), "1.00", 1),
        )
        .await;

    // Assert
    assert_eq!(
        data(&at_limit)["createProduct"]["product"]["name"]
            .as_str()
            .map(str::len),
        Some(200)
    );
    assert_error(&over_limit, "BAD_USER_INPUT");
    assert_eq!(total_products(&app).await, 1);
}

#[tokio::test]
async fn a_description_longer_than_five_thousand_characters_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let mut input = create_input("A-1", "Thing", "1.00", 1);
    input["input"]["description"] = json!("d".repeat(5001));

    // Act
    let resp = app.as_admin().gql(CREATE_PRODUCT, input).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn updating_a_product_changes_only_the_given_fields_and_bumps_its_version() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 4).await;
    let id = str_of(&created["id"]);

    // Act
    let resp = admin
        .gql(
            UPDATE_PRODUCT,
            json!({ "input": { "id": id, "name": "Big mug" } }),
        )
        .await;

    // Assert
    let payload = &data(&resp)["updateProduct"];
    let updated = &payload["product"];
    assert_eq!(updated["name"], "Big mug");
    assert_eq!(updated["price"], "10.00");
    assert_eq!(updated["description"], created["description"]);
    assert_eq!(updated["stock"], 4);
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["position"], payload["position"]);
    assert!(position(&payload["position"]) > position(&created["position"]));
    assert_eq!(admin.product(id).await, *updated);
}

#[tokio::test]
async fn updating_the_price_and_description_shows_them_in_the_payload() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 4).await;

    // Act
    let resp = admin
        .gql(
            UPDATE_PRODUCT,
            json!({ "input": { "id": created["id"], "price": "12.5", "description": "Now bigger" } }),
        )
        .await;

    // Assert
    let updated = &data(&resp)["updateProduct"]["product"];
    assert_eq!(updated["price"], "12.50");
    assert_eq!(updated["description"], "Now bigger");
    assert_eq!(updated["name"], created["name"]);
}

#[tokio::test]
async fn updating_a_product_with_a_bad_price_is_rejected_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 4).await;

    // Act
    let resp = admin
        .gql(
            UPDATE_PRODUCT,
            json!({ "input": { "id": created["id"], "price": "1.001" } }),
        )
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(admin.product(str_of(&created["id"])).await, created);
}

#[tokio::test]
async fn updating_an_unknown_product_is_not_found() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .gql(
            UPDATE_PRODUCT,
            json!({ "input": { "id": uuid::Uuid::new_v4(), "name": "Ghost" } }),
        )
        .await;

    // Assert
    assert_error(&resp, "NOT_FOUND");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn adjusting_stock_adds_and_removes_units() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 2).await;
    let id = str_of(&created["id"]);

    // Act
    let added = admin.adjust_stock(id, 5).await;
    let removed = admin.adjust_stock(id, -3).await;

    // Assert
    let added = &data(&added)["adjustStock"];
    assert_eq!(added["product"]["stock"], 7);
    assert_eq!(added["product"]["version"], 2);
    assert_eq!(added["product"]["position"], added["position"]);
    let removed = &data(&removed)["adjustStock"];
    assert_eq!(removed["product"]["stock"], 4);
    assert_eq!(removed["product"]["version"], 3);
    assert_eq!(admin.product(id).await["stock"], 4);
}

#[tokio::test]
async fn removing_the_last_units_leaves_the_product_out_of_stock() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 2).await;

    // Act
    let resp = admin.adjust_stock(str_of(&created["id"]), -2).await;

    // Assert
    let product = &data(&resp)["adjustStock"]["product"];
    assert_eq!(product["stock"], 0);
    assert_eq!(product["inStock"], false);
}

#[tokio::test]
async fn adjusting_stock_below_zero_is_insufficient_stock_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 2).await;
    let id = str_of(&created["id"]);

    // Act
    let resp = admin.adjust_stock(id, -3).await;

    // Assert
    assert_error(&resp, "INSUFFICIENT_STOCK");
    let product = admin.product(id).await;
    assert_eq!(product["stock"], 2);
    assert_eq!(product["version"], 1);
}

#[tokio::test]
async fn adjusting_stock_by_zero_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 2).await;
    let id = str_of(&created["id"]);

    // Act
    let resp = admin.adjust_stock(id, 0).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(admin.product(id).await["version"], 1);
}

#[tokio::test]
async fn adjusting_stock_of_an_unknown_product_is_not_found() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .adjust_stock(&uuid::Uuid::new_v4().to_string(), 5)
        .await;

    // Assert
    assert_error(&resp, "NOT_FOUND");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn adjusting_stock_at_the_current_expected_version_succeeds() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 2).await;

    // Act
    let resp = admin
        .gql(
            ADJUST_STOCK,
            json!({ "input": { "productId": created["id"], "delta": 3, "reason": "restock", "expectedVersion": 1 } }),
        )
        .await;

    // Assert
    let product = &data(&resp)["adjustStock"]["product"];
    assert_eq!(product["stock"], 5);
    assert_eq!(product["version"], 2);
}

#[tokio::test]
async fn adjusting_stock_at_a_stale_expected_version_is_a_conflict_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 2).await;
    let id = str_of(&created["id"]);
    data(&admin.adjust_stock(id, 1).await);

    // Act
    let resp = admin
        .gql(
            ADJUST_STOCK,
            json!({ "input": { "productId": id, "delta": 3, "reason": "restock", "expectedVersion": 1 } }),
        )
        .await;

    // Assert
    assert_error(&resp, "CONFLICT");
    let product = admin.product(id).await;
    assert_eq!(product["stock"], 3);
    assert_eq!(product["version"], 2);
}

#[tokio::test]
async fn discontinuing_a_product_marks_it_discontinued() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 2).await;
    let id = str_of(&created["id"]);

    // Act
    let resp = admin.discontinue(id).await;

    // Assert
    let payload = &data(&resp)["discontinueProduct"];
    assert_eq!(payload["product"]["status"], "DISCONTINUED");
    assert_eq!(payload["product"]["version"], 2);
    assert_eq!(payload["product"]["position"], payload["position"]);
    assert_eq!(
        app.anonymous().product(id).await["status"],
        "DISCONTINUED",
        "product(id) still returns a discontinued product"
    );
}

#[tokio::test]
async fn discontinuing_an_unknown_product_is_not_found() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .discontinue(&uuid::Uuid::new_v4().to_string())
        .await;

    // Assert
    assert_error(&resp, "NOT_FOUND");
}

#[tokio::test]
async fn the_product_version_counts_the_events_on_its_stream() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 2).await;
    let id = str_of(&created["id"]);

    // Act
    data(
        &admin
            .gql(
                UPDATE_PRODUCT,
                json!({ "input": { "id": id, "price": "11.00" } }),
            )
            .await,
    );
    data(&admin.adjust_stock(id, 1).await);
    data(&admin.adjust_stock(id, -1).await);
    data(&admin.discontinue(id).await);

    // Assert
    assert_eq!(created["version"], 1);
    assert_eq!(admin.product(id).await["version"], 5);
}

#[tokio::test]
async fn positions_strictly_increase_with_each_mutation() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mut positions = Vec::new();

    // Act
    let a = admin.create_product("A-1", "1.00", 10).await;
    positions.push(position(&a["position"]));
    let b = admin.create_product("B-1", "2.00", 10).await;
    positions.push(position(&b["position"]));
    let a_id = str_of(&a["id"]);
    let resp = admin
        .gql(
            UPDATE_PRODUCT,
            json!({ "input": { "id": a_id, "name": "Renamed" } }),
        )
        .await;
    positions.push(position(&data(&resp)["updateProduct"]["position"]));
    let resp = admin.adjust_stock(a_id, 2).await;
    positions.push(position(&data(&resp)["adjustStock"]["position"]));
    let resp = app.as_user("alice").add_to_cart(a_id, 1).await;
    positions.push(position(&data(&resp)["addToCart"]["position"]));
    let resp = app.as_user("bob").review(a_id, 4).await;
    positions.push(position(&data(&resp)["reviewProduct"]["position"]));
    let resp = admin.discontinue(str_of(&b["id"])).await;
    positions.push(position(&data(&resp)["discontinueProduct"]["position"]));

    // Assert
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions must strictly increase: {positions:?}"
    );
}
