//! The HTTP surface around GraphQL: GET for queries only, operationName, health
//! and readiness probes.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn healthz_answers_200() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("the request reaches the server");

    // Assert
    assert_eq!(response.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn readyz_answers_200_when_the_database_and_relay_are_up() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let status = wait_until("/readyz answers 200", || async {
        let response = app.http.get(app.url("/readyz")).send().await.ok()?;
        (response.status() == reqwest::StatusCode::OK).then_some(response.status())
    })
    .await;

    // Assert
    assert_eq!(status, reqwest::StatusCode::OK);
}

#[tokio::test]
async fn a_query_can_be_sent_over_get() {
    // Arrange
    let app = spawn_app().await;
    app.as_admin().create_product("MUG-001", "3.00", 1).await;

    // Act
    let (status, resp) = app
        .gql_get(
            "{ products { totalCount edges { node { sku price } } } }",
            None,
        )
        .await;

    // Assert
    assert_eq!(status, reqwest::StatusCode::OK, "{resp:#}");
    let products = &data(&resp)["products"];
    assert_eq!(products["totalCount"], 1);
    assert_eq!(products["edges"][0]["node"]["sku"], "MUG-001");
    assert_eq!(products["edges"][0]["node"]["price"], "3.00");
}

#[tokio::test]
async fn a_mutation_over_get_is_an_error_and_writes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let admin_token = token("admin", ordergraph::auth::Role::Admin);
    let mutation = r#"mutation { createProduct(input: { sku: "MUG-001", name: "Mug", price: "1.00", initialStock: 1 }) { position } }"#;

    // Act
    let (_status, resp) = app.gql_get(mutation, Some(&admin_token)).await;

    // Assert
    assert!(
        resp["errors"].as_array().is_some_and(|e| !e.is_empty()),
        "a mutation over GET must fail: {resp:#}"
    );
    assert!(error_code(&resp).is_some(), "{resp:#}");
    let products = app
        .anonymous()
        .products(json!({ "includeDiscontinued": true }))
        .await;
    assert_eq!(products["totalCount"], 0);
}

#[tokio::test]
async fn operation_name_selects_the_operation_to_run() {
    // Arrange
    let app = spawn_app().await;
    app.as_admin().create_product("MUG-001", "3.00", 1).await;
    let document = "query Count { products { totalCount } } query Skus { products { edges { node { sku } } } }";

    // Act
    let resp = app
        .anonymous()
        .post_json(&json!({ "query": document, "operationName": "Skus", "variables": {} }))
        .await;

    // Assert
    let products = &data(&resp)["products"];
    assert!(products.get("totalCount").is_none(), "{resp:#}");
    assert_eq!(products["edges"][0]["node"]["sku"], "MUG-001");
}
