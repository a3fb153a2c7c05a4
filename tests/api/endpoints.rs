//! The endpoints around the API: GraphiQL (and the introspection query it sends) and the
//! Prometheus metrics.

use serde_json::json;

use crate::helpers::{data, spawn_app};

/// The introspection query of graphql-js `getIntrospectionQuery()`, as GraphiQL sends it.
const INTROSPECTION: &str = r#"query IntrospectionQuery { __schema { queryType { name } mutationType { name } subscriptionType { name } types { ...FullType } directives { name description locations args { ...InputValue } } } }
fragment FullType on __Type { kind name description fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason } inputFields { ...InputValue } interfaces { ...TypeRef } enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } possibleTypes { ...TypeRef } }
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }"#;

#[tokio::test]
async fn the_standard_introspection_query_is_answered() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.gql(INTROSPECTION, json!({})).await;

    // Assert
    let types = data(&resp)["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "Product"));
    assert_eq!(data(&resp)["__schema"]["mutationType"]["name"], "Mutation");
}

#[tokio::test]
async fn introspection_deeper_than_graphql_js_16_asks_is_answered() {
    // Arrange: graphql-js 16's standard query is 15 levels deep, and graphql-js 17 lets
    // tools ask for longer `ofType` chains (`typeDepth`). Four fields, 15 `ofType`s and
    // a leaf: 20 levels, the limit.
    let app = spawn_app().await;
    let mut type_ref = "kind name".to_owned();
    for _ in 0..15 {
        type_ref = format!("kind name ofType {{ {type_ref} }}");
    }
    let query = format!("{{ __schema {{ types {{ fields {{ type {{ {type_ref} }} }} }} }} }}");

    // Act
    let resp = app.gql(&query, json!({})).await;

    // Assert
    assert!(data(&resp)["__schema"]["types"].is_array(), "{resp}");
}

#[tokio::test]
async fn every_projection_failure_gauge_is_present_at_zero_while_nothing_has_failed() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a body");

    // Assert: an absent series would read as "no data", not as healthy.
    for projection in ["catalog", "cart", "orders", "dashboard"] {
        assert!(
            text.contains(&format!(
                r#"ordergraph_projection_failed{{projection="{projection}"}} 0"#
            )),
            "{projection}: {text}"
        );
    }
}

#[tokio::test]
async fn metrics_count_commands_by_outcome_and_show_each_projection_position() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let create = r#"mutation { createProduct(input: {sku: "MET-1", name: "Metered", price: "1.00"}) { position } }"#;
    let created = admin.gql(create, json!({})).await;
    let position = crate::helpers::position(&data(&created)["createProduct"]["position"]);
    let refused = admin.gql(create, json!({})).await;
    assert_eq!(
        crate::helpers::error_code(&refused).as_deref(),
        Some("CONFLICT")
    );

    // Act
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Assert
    assert!(
        text.contains(r#"ordergraph_commands_total{operation="createProduct",outcome="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"ordergraph_commands_total{operation="createProduct",outcome="conflict"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"ordergraph_projection_position{{projection="catalog"}} {position}"#
        )),
        "{text}"
    );
}
