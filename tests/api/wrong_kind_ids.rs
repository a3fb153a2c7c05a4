//! Ids of the wrong kind: every id is a UUID, so nothing stops a client from passing an
//! order id where a product id belongs. Whatever the operation and whatever the kind of
//! stream behind the id, the answer is the one for an unknown id (NOT_FOUND, or null or
//! empty where the API documents that), never INTERNAL. That the server logs no error
//! and no backtrace for them is checked on the server process the fuzz test runs (a
//! thread-scoped log capture here lost lines when tests ran in parallel).

use ordergraph::domain::values::{IdempotencyKey, UserId};
use ordergraph::write::cart::cart_stream_id;
use ordergraph::write::catalog::keyed_product_id;
use ordergraph::write::orders::payment_stream_id;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws_client::WsClient;

const PRODUCT_AS_OF: &str = "query($id: UUID!, $at: DateTime!) {
  productAsOf(id: $id, at: $at) { id sku stock version position }
}";
const ORDER_AS_OF: &str = "query($id: UUID!, $at: DateTime!) {
  orderAsOf(id: $id, at: $at) { id userId status version position }
}";
const HISTORY: &str = "query($id: UUID!) {
  history(streamId: $id) { edges { node { streamType version type metadata } } }
}";
const ORDER_UPDATED: &str = "subscription($id: UUID) { orderUpdated(id: $id) { id status } }";
const PRODUCT_UPDATED: &str =
    "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { id stock } }";

/// Every moment of the log is before this one.
const LATER: &str = "2999-01-01T00:00:00Z";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Product,
    Order,
    Cart,
    Payment,
    /// A UUID that names no stream.
    Random,
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Anonymous,
    Admin,
    /// The customer who owns the order and the cart.
    Alice,
    /// Another customer.
    Bob,
}

/// The answer for an id that names nothing the operation could act on.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Error(&'static str),
    /// The field is null: the API documents null for an unknown id.
    Null,
    /// The field is a connection without edges.
    Empty,
}

struct Operation {
    field: &'static str,
    who: Who,
    /// The kind of id it takes; `None` for a stream id of any kind (every kind is
    /// tried, the caller's own being none of them).
    takes: Option<Kind>,
    document: &'static str,
    variables: fn(&str) -> Value,
    answer: Answer,
}

// One row per operation: a table reads better than rustfmt's one argument per line.
#[rustfmt::skip]
fn operations() -> Vec<Operation> {
    use Answer::*;
    use Kind::*;
    use Who::*;
    let op = |field, who, takes, document, variables: fn(&str) -> Value, answer| Operation {
        field, who, takes, document, variables, answer,
    };
    vec![
        op("updateProduct", Admin, Some(Product), UPDATE_PRODUCT,
            |id| json!({ "input": { "id": id, "name": "Renamed" } }), Error("NOT_FOUND")),
        op("adjustStock", Admin, Some(Product), ADJUST_STOCK,
            |id| json!({ "input": { "productId": id, "delta": 1 } }), Error("NOT_FOUND")),
        op("discontinueProduct", Admin, Some(Product), DISCONTINUE_PRODUCT,
            |id| json!({ "id": id }), Error("NOT_FOUND")),
        op("reviewProduct", Alice, Some(Product), REVIEW_PRODUCT,
            |id| json!({ "input": { "productId": id, "rating": 5 } }), Error("NOT_FOUND")),
        op("addToCart", Alice, Some(Product), ADD_TO_CART,
            |id| json!({ "input": { "productId": id, "quantity": 1 } }), Error("NOT_FOUND")),
        op("setCartItemQuantity", Alice, Some(Product), SET_CART_ITEM_QUANTITY,
            |id| json!({ "input": { "productId": id, "quantity": 1 } }), Error("NOT_FOUND")),
        op("removeFromCart", Alice, Some(Product), REMOVE_FROM_CART,
            |id| json!({ "productId": id }), Error("NOT_FOUND")),
        op("product", Anonymous, Some(Product), PRODUCT,
            |id| json!({ "id": id }), Null),
        op("productAsOf", Admin, Some(Product), PRODUCT_AS_OF,
            |id| json!({ "id": id, "at": LATER }), Null),
        op("cancelOrder", Alice, Some(Order), CANCEL_ORDER,
            |id| json!({ "id": id, "reason": "changed my mind" }), Error("NOT_FOUND")),
        op("cancelOrder", Admin, Some(Order), CANCEL_ORDER,
            |id| json!({ "id": id, "reason": "out of stock" }), Error("NOT_FOUND")),
        op("shipOrder", Admin, Some(Order), SHIP_ORDER,
            |id| json!({ "id": id }), Error("NOT_FOUND")),
        op("deliverOrder", Admin, Some(Order), DELIVER_ORDER,
            |id| json!({ "id": id }), Error("NOT_FOUND")),
        op("order", Alice, Some(Order), ORDER,
            |id| json!({ "id": id }), Null),
        op("order", Admin, Some(Order), ORDER,
            |id| json!({ "id": id }), Null),
        op("orderAsOf", Alice, Some(Order), ORDER_AS_OF,
            |id| json!({ "id": id, "at": LATER }), Null),
        op("orderAsOf", Admin, Some(Order), ORDER_AS_OF,
            |id| json!({ "id": id, "at": LATER }), Null),
        // A customer reads the trail of their own cart and orders only; Bob owns none.
        op("history", Bob, None, HISTORY,
            |id| json!({ "id": id }), Empty),
    ]
}

/// What is wrong with `resp` as the answer `expected`, if anything.
fn mismatch(resp: &Value, field: &str, expected: Answer) -> Option<String> {
    let errors = resp.get("errors").filter(|e| !e.is_null());
    let value = &resp["data"][field];
    let ok = match expected {
        Answer::Error(code) => error_code(resp).as_deref() == Some(code) && value.is_null(),
        Answer::Null => errors.is_none() && resp["data"].is_object() && value.is_null(),
        Answer::Empty => errors.is_none() && value["edges"].as_array().is_some_and(Vec::is_empty),
    };
    (!ok).then(|| format!("expected {expected:?}, got {resp}"))
}

#[tokio::test]
async fn an_id_of_the_wrong_kind_is_not_found_by_every_operation() {
    // Arrange: a stream of every kind.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let alice = app.as_user("alice");
    let product = admin.create_product("MUG-001", "4.50", 10).await;
    let product_id = str_of(&product["id"]).to_owned();
    let order_id = alice.order_one(&product_id, 1, "tok_visa").await;
    // Confirmed: the payment has been charged, so the order has a payment stream.
    wait_for_order_status(&alice, &order_id, &["CONFIRMED"]).await;
    let order_uuid: uuid::Uuid = order_id.parse().expect("an order id is a UUID");
    let alice_id = UserId::parse("alice").expect("a valid user id");
    let ids = [
        (Kind::Product, product_id.clone()),
        (Kind::Order, order_id.clone()),
        (Kind::Cart, cart_stream_id(&alice_id).to_string()),
        (Kind::Payment, payment_stream_id(order_uuid).to_string()),
        (Kind::Random, uuid::Uuid::new_v4().to_string()),
    ];
    // Each id is what it says: the audit trail shows its stream's type.
    for (kind, id) in &ids {
        let resp = admin.gql(HISTORY, json!({ "id": id })).await;
        let first = &data(&resp)["history"]["edges"][0]["node"]["streamType"];
        let expected = match kind {
            Kind::Random => Value::Null,
            other => json!(format!("{other:?}").to_lowercase()),
        };
        assert_eq!(first, &expected, "the stream of the {kind:?} id");
    }

    // Act
    let mut wrong = Vec::new();
    for operation in operations() {
        let caller = match operation.who {
            Who::Anonymous => app.anonymous(),
            Who::Admin => app.as_admin(),
            Who::Alice => app.as_user("alice"),
            Who::Bob => app.as_user("bob"),
        };
        for (kind, id) in ids.iter().filter(|(k, _)| operation.takes != Some(*k)) {
            let resp = caller
                .gql(operation.document, (operation.variables)(id))
                .await;
            if let Some(what) = mismatch(&resp, operation.field, operation.answer) {
                wrong.push(format!(
                    "{} as {:?} with a {kind:?} id: {what}",
                    operation.field, operation.who
                ));
            }
        }
    }
    // Subscriptions: `orderUpdated(id)` refuses an unknown order at once; `productUpdated`
    // just has no state to send for an unknown product.
    for who in [Who::Alice, Who::Admin] {
        let token = match who {
            Who::Admin => token("admin", ordergraph::auth::Role::Admin),
            _ => token("alice", ordergraph::auth::Role::Customer),
        };
        let mut client = WsClient::connect(&app, Some(&token)).await;
        for (kind, id) in ids.iter().filter(|(k, _)| *k != Kind::Order) {
            client
                .subscribe("o", ORDER_UPDATED, json!({ "id": id }))
                .await;
            let message = client.recv().await;
            let code = &message["payload"][0]["extensions"]["code"];
            if message["type"] != "error" || code != "NOT_FOUND" {
                wrong.push(format!(
                    "orderUpdated as {who:?} with a {kind:?} id: expected NOT_FOUND, got {message}"
                ));
            }
        }
    }
    let mut client = WsClient::connect(&app, None).await;
    let watched: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    client
        .subscribe("p", PRODUCT_UPDATED, json!({ "ids": watched }))
        .await;
    let current = client.next_data("p", "productUpdated").await;
    data(&admin.adjust_stock(&product_id, 5).await);
    let changed = client
        .next_until("p", "productUpdated", |p| p["stock"] == 14)
        .await;

    // Assert
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(current["id"], product_id.as_str());
    assert_eq!(changed["id"], product_id.as_str());
}

#[tokio::test]
async fn creating_a_product_at_an_id_held_by_another_kind_of_stream_is_a_conflict_that_writes_nothing()
 {
    // Arrange: behind the service's back, a cart stream at the very id that createProduct
    // derives from the admin's idempotency key.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let key = "create-mug";
    let id = keyed_product_id(
        &UserId::parse("admin").expect("a valid user id"),
        &IdempotencyKey::parse(key).expect("a valid key"),
    );
    insert_event(
        &app,
        id,
        "cart",
        "CartCleared",
        json!({ "user_id": "ghost" }),
    )
    .await;

    // Act
    let resp = admin
        .gql(
            CREATE_PRODUCT,
            json!({ "input": {
                "sku": "MUG-001", "name": "Mug", "price": "4.50", "initialStock": 3,
                "idempotencyKey": key,
            }}),
        )
        .await;

    // Assert
    assert_error(&resp, "CONFLICT");
    let trail = admin.gql(HISTORY, json!({ "id": id })).await;
    let types: Vec<&Value> = data(&trail)["history"]["edges"]
        .as_array()
        .expect("edges is a list")
        .iter()
        .map(|e| &e["node"]["type"])
        .collect();
    assert_eq!(types, [&json!("CartCleared")], "the stream is as it was");
    assert_eq!(app.anonymous().products(json!({})).await["totalCount"], 0);
    assert_eq!(admin.product(&id.to_string()).await, Value::Null);
}
