//! What Relay needs of the schema (ADR 0011): `PageInfo` with all four fields, backward
//! pagination of `products` (`last`/`before`), and the `Node` interface with
//! `node(id:)`/`nodes(ids:)` under the same authorization as each object's own query.

use serde_json::{Value, json};

use crate::helpers::*;

const PAGE: &str = "query($first: Int, $after: String, $last: Int, $before: String) {
  products(first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { sku } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}";

const NODE: &str = "query($id: ID!) {
  node(id: $id) { __typename nodeId ... on Product { id sku } ... on Order { id userId } }
}";

async fn page(app: &TestApp, args: Value) -> Value {
    let resp = app.gql(PAGE, args).await;
    data(&resp)["products"].clone()
}

fn flags(page: &Value) -> (bool, bool) {
    let info = &page["pageInfo"];
    (
        info["hasPreviousPage"].as_bool().expect("hasPreviousPage"),
        info["hasNextPage"].as_bool().expect("hasNextPage"),
    )
}

/// The start and end cursors are those of the first and last edges.
fn assert_cursors_bound_the_edges(page: &Value) {
    let edges = page["edges"].as_array().expect("edges");
    assert_eq!(
        page["pageInfo"]["startCursor"], edges[0]["cursor"],
        "{page}"
    );
    assert_eq!(
        page["pageInfo"]["endCursor"],
        edges[edges.len() - 1]["cursor"],
        "{page}"
    );
}

async fn five_products(app: &TestApp) {
    for sku in ["E", "C", "A", "D", "B"] {
        app.as_admin()
            .create_product(&format!("R-{sku}"), "1.00", 1)
            .await;
    }
}

#[tokio::test]
async fn paging_backwards_with_last_and_before_visits_every_product_in_sku_order() {
    // Arrange
    let app = spawn_app().await;
    five_products(&app).await;

    // Act
    let last = page(&app, json!({ "last": 2 })).await;
    let middle = page(
        &app,
        json!({ "last": 2, "before": last["pageInfo"]["startCursor"] }),
    )
    .await;
    let first = page(
        &app,
        json!({ "last": 2, "before": middle["pageInfo"]["startCursor"] }),
    )
    .await;

    // Assert
    assert_eq!(skus(&last), ["R-D", "R-E"]);
    assert_eq!(flags(&last), (true, false));
    assert_eq!(skus(&middle), ["R-B", "R-C"]);
    assert_eq!(flags(&middle), (true, true));
    assert_eq!(skus(&first), ["R-A"]);
    assert_eq!(flags(&first), (false, true));
    for p in [&last, &middle, &first] {
        assert_cursors_bound_the_edges(p);
    }
}

#[tokio::test]
async fn a_forward_page_says_whether_products_precede_its_cursor() {
    let app = spawn_app().await;
    five_products(&app).await;

    let first = page(&app, json!({ "first": 2 })).await;
    let second = page(
        &app,
        json!({ "first": 2, "after": first["pageInfo"]["endCursor"] }),
    )
    .await;

    assert_eq!(
        (skus(&first), flags(&first)),
        (vec!["R-A".to_owned(), "R-B".to_owned()], (false, true))
    );
    assert_eq!(
        (skus(&second), flags(&second)),
        (vec!["R-C".to_owned(), "R-D".to_owned()], (true, true))
    );
    assert_cursors_bound_the_edges(&second);
    // A forward cursor pages backwards too: the same index, read in reverse.
    let back = page(
        &app,
        json!({ "last": 5, "before": second["pageInfo"]["startCursor"] }),
    )
    .await;
    assert_eq!(skus(&back), ["R-A", "R-B"]);
    assert_eq!(flags(&back), (false, true));
}

#[tokio::test]
async fn an_empty_page_has_no_cursors() {
    let app = spawn_app().await;
    let empty = page(&app, json!({ "last": 3 })).await;
    assert_eq!(empty["edges"], json!([]));
    assert_eq!(
        empty["pageInfo"],
        json!({ "hasNextPage": false, "hasPreviousPage": false, "startCursor": null, "endCursor": null })
    );
}

#[tokio::test]
async fn mixing_the_directions_or_a_page_over_one_hundred_is_refused() {
    let app = spawn_app().await;
    five_products(&app).await;
    let first = page(&app, json!({ "first": 1 })).await;
    let cursor = &first["pageInfo"]["endCursor"];

    for args in [
        json!({ "last": 1, "after": cursor }),
        json!({ "before": cursor, "after": cursor }),
        json!({ "last": 101 }),
        json!({ "last": -1 }),
        json!({ "last": 1, "before": "not a cursor" }),
    ] {
        let resp = app.gql(PAGE, args.clone()).await;
        assert_error(&resp, "BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn node_refetches_a_product_by_its_global_id_for_anyone() {
    let app = spawn_app().await;
    let product = app.as_admin().create_product("NODE-1", "1.00", 1).await;
    let id = str_of(&product["id"]);

    let listed = app
        .gql("{ products { edges { node { nodeId } } } }", json!({}))
        .await;
    let node_id = data(&listed)["products"]["edges"][0]["node"]["nodeId"].clone();
    assert_eq!(node_id, format!("Product:{id}"));

    let node = app.gql(NODE, json!({ "id": node_id })).await;
    assert_eq!(
        data(&node)["node"],
        json!({ "__typename": "Product", "nodeId": node_id, "id": id, "sku": "NODE-1" })
    );
}

#[tokio::test]
async fn node_shows_an_order_exactly_to_those_whom_order_shows_it() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("NODE-2", "1.00", 5).await;
    let alice = app.as_user("alice");
    let id = alice.order_one(str_of(&product["id"]), 1, "tok_visa").await;
    let node_id = format!("Order:{id}");
    let order_query = "query($id: UUID!) { order(id: $id) { id } }";

    // Act / Assert: the owner and an admin see it, through both fields.
    for caller in [app.as_user("alice"), app.as_admin()] {
        let node = caller.gql(NODE, json!({ "id": node_id })).await;
        assert_eq!(data(&node)["node"]["userId"], "alice", "{node}");
        assert_eq!(data(&node)["node"]["nodeId"], node_id.as_str());
    }
    // Another customer: null from both.
    let bob = app.as_user("bob");
    let by_node = bob.gql(NODE, json!({ "id": node_id })).await;
    let by_order = bob.gql(order_query, json!({ "id": id })).await;
    assert_eq!(
        (&data(&by_node)["node"], &data(&by_order)["order"]),
        (&Value::Null, &Value::Null)
    );
    // Anonymous: the same error from both.
    let by_node = app.gql(NODE, json!({ "id": node_id })).await;
    let by_order = app.gql(order_query, json!({ "id": id })).await;
    assert_error(&by_node, "UNAUTHENTICATED");
    assert_error(&by_order, "UNAUTHENTICATED");
}

#[tokio::test]
async fn nodes_answers_each_id_in_order_and_is_bounded() {
    let app = spawn_app().await;
    let a = app.as_admin().create_product("NODES-A", "1.00", 1).await;
    let b = app.as_admin().create_product("NODES-B", "1.00", 1).await;
    let unknown = format!("Product:{}", uuid::Uuid::now_v7());
    let ids = json!([
        format!("Product:{}", str_of(&b["id"])),
        unknown,
        format!("Product:{}", str_of(&a["id"]))
    ]);

    let resp = app
        .gql(
            "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Product { sku } } }",
            json!({ "ids": ids }),
        )
        .await;
    assert_eq!(
        data(&resp)["nodes"],
        json!([{ "sku": "NODES-B" }, null, { "sku": "NODES-A" }])
    );

    let too_many: Vec<String> = (0..101).map(|_| unknown.clone()).collect();
    let resp = app
        .gql(
            "query($ids: [ID!]!) { nodes(ids: $ids) { nodeId } }",
            json!({ "ids": too_many }),
        )
        .await;
    assert_error(&resp, "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_malformed_node_id_is_bad_user_input() {
    let app = spawn_app().await;
    for id in [
        "Cart:alice".to_owned(),
        uuid::Uuid::now_v7().to_string(),
        "Product:x".to_owned(),
    ] {
        let resp = app.gql(NODE, json!({ "id": id })).await;
        assert_error(&resp, "BAD_USER_INPUT");
    }
}
