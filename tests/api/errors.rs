//! Bad requests of every kind: each answers JSON with `errors[0].extensions.code`, never a
//! plain-text 500, and a rejected mutation leaves the state as it was.

use serde_json::{Value, json};

use crate::helpers::*;

async fn total_products(app: &TestApp) -> i64 {
    app.anonymous()
        .products(json!({ "includeDiscontinued": true }))
        .await["totalCount"]
        .as_i64()
        .expect("totalCount is an Int")
}

fn create_input(name: &str) -> Value {
    json!({ "input": {
        "sku": "MUG-001", "name": name, "description": "", "price": "1.00", "initialStock": 1,
    }})
}

#[tokio::test]
async fn an_invalid_uuid_in_a_variable_is_bad_user_input() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.gql(PRODUCT, json!({ "id": "not-a-uuid" })).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
}

#[tokio::test]
async fn an_invalid_uuid_literal_is_bad_user_input() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .gql(r#"{ product(id: "not-a-uuid") { id } }"#, json!({}))
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
}

#[tokio::test]
async fn an_invalid_uuid_in_a_mutation_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 5).await;
    let alice = app.as_user("alice");

    // Act
    let resp = alice
        .gql(
            ADD_TO_CART,
            json!({ "input": { "productId": "12345", "quantity": 1 } }),
        )
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(alice.cart().await["items"], json!([]));
    assert_eq!(
        app.anonymous().product(str_of(&product["id"])).await,
        product
    );
}

#[tokio::test]
async fn an_unknown_field_is_bad_user_input() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .gql("{ products { edges { node { colour } } } }", json!({}))
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_syntax_error_is_bad_user_input() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.gql("{ products { edges ", json!({})).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_variable_of_the_wrong_type_is_bad_user_input() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.gql(PRODUCTS, json!({ "first": "ten" })).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_missing_required_input_field_is_bad_user_input_and_creates_nothing() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .gql(
            CREATE_PRODUCT,
            json!({ "input": { "sku": "MUG-001", "name": "Mug" } }),
        )
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn a_malformed_json_body_is_a_400_with_a_json_error() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let (status, body) = app.post_raw("{not json", None).await;

    // Assert
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "body: {body}");
    let body: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("the error body is JSON ({e}): {body}"));
    assert!(body["errors"][0]["message"].is_string(), "{body:#}");
    assert_error(&body, "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_body_that_is_not_a_graphql_request_is_a_json_error() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let (status, body) = app.post_raw(r#"{"hello": "world"}"#, None).await;

    // Assert
    assert!(
        status.is_client_error() || status.is_success(),
        "HTTP {status}: {body}"
    );
    let body: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("the error body is JSON ({e}): {body}"));
    assert_error(&body, "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_rejected_with_a_json_error_and_creates_nothing() {
    // Arrange
    let app = spawn_app().await;
    let admin_token = token("admin", ordergraph::auth::Role::Admin);
    let body = json!({
        "query": CREATE_PRODUCT,
        "variables": create_input(&"x".repeat(10 * 1024 * 1024)),
    })
    .to_string();

    // Act
    let (status, text) = app.post_raw(body, Some(&admin_token)).await;

    // Assert
    assert!(
        status == reqwest::StatusCode::PAYLOAD_TOO_LARGE
            || status.is_success()
            || status == reqwest::StatusCode::BAD_REQUEST,
        "HTTP {status}: {text:.500}"
    );
    let resp: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("HTTP {status}: the error body is JSON ({e}): {text:.500}"));
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn a_name_of_ten_kilobytes_is_rejected_and_creates_nothing() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .gql(CREATE_PRODUCT, create_input(&"x".repeat(10 * 1024)))
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(total_products(&app).await, 0);
}

#[tokio::test]
async fn a_query_nested_deeper_than_the_limit_is_refused_naming_the_limit_and_its_depth() {
    // Arrange: 3 fields, 20 `ofType`s and a leaf: 24 levels.
    let app = spawn_app().await;
    let mut selection = "name".to_string();
    for _ in 0..20 {
        selection = format!("ofType {{ {selection} }}");
    }
    let query =
        format!(r#"{{ __type(name: "Product") {{ fields {{ type {{ {selection} }} }} }} }}"#);

    // Act
    let resp = app.gql(&query, json!({})).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    let message = resp["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("24 levels") && message.contains("at most 20"),
        "the error names the query's depth and the limit: {message}"
    );
}

#[tokio::test]
async fn a_query_over_the_complexity_limit_is_refused_naming_the_limit_and_its_complexity() {
    // Arrange: 100 products of 3 fields, 7 times over, plus the connections: over 2000.
    let app = spawn_app().await;
    let aliases: String = (0..7)
        .map(|i| format!(" p{i}: products(first: 100) {{ edges {{ node {{ id sku name }} }} }}"))
        .collect();
    let query = format!("{{{aliases} }}");

    // Act
    let resp = app.gql(&query, json!({})).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    let message = resp["errors"][0]["message"].as_str().unwrap_or_default();
    let complexity: usize = message
        .split("complexity is ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the error names the query's complexity: {message}"));
    assert!(complexity > 2000, "{message}");
    assert!(
        message.contains("at most 2000"),
        "the error names the limit: {message}"
    );
}

#[tokio::test]
async fn a_syntax_error_is_one_line_that_says_what_was_expected_and_where() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.gql("{ products { edges {", json!({})).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    let error = &resp["errors"][0];
    let message = error["message"].as_str().unwrap_or_default();
    assert!(!message.contains('\n'), "one line: {message:?}");
    assert!(
        message.starts_with("syntax error at line 1, column ") && message.contains("expected"),
        "{message:?}"
    );
    assert_eq!(error["locations"][0]["line"], 1, "{error}");
}

#[tokio::test]
async fn a_query_within_the_depth_limit_is_answered() {
    // Arrange
    let app = spawn_app().await;
    let query = r#"{ __type(name: "Product") { fields { type { ofType { ofType { name } } } } } }"#;

    // Act
    let resp = app.gql(query, json!({})).await;

    // Assert
    assert!(data(&resp)["__type"]["fields"].is_array(), "{resp:#}");
}

#[tokio::test]
async fn every_error_names_its_code() {
    // Arrange
    let app = spawn_app().await;
    let alice = app.as_user("alice");
    let requests = [
        ("{ nope }", json!({})),
        ("query($id: UUID!) { product(id: $id) { id } }", json!({})),
        (
            "mutation { clearCart { position } } query Q { cart { total } }",
            json!({}),
        ),
    ];

    for (query, variables) in requests {
        // Act
        let resp = alice.gql(query, variables).await;

        // Assert
        assert!(
            error_code(&resp).is_some(),
            "every error carries extensions.code: {resp:#}"
        );
    }
    let unknown_operation = alice
        .post_json(&json!({ "query": "query A { cart { total } }", "operationName": "B" }))
        .await;
    assert!(
        error_code(&unknown_operation).is_some(),
        "every error carries extensions.code: {unknown_operation:#}"
    );
}
