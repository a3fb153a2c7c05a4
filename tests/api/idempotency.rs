//! Idempotency keys: a retry with the same key, caller and input returns the first attempt's
//! payload and writes nothing new, also across a restart, also when the retries run at the
//! same time (on one server or on two); the same key with another input is
//! IDEMPOTENCY_KEY_REUSED; keys are scoped per caller. Every mutation takes a key.

use futures_util::future::join_all;
use ordergraph::domain::values::UserId;
use ordergraph::write::cart::cart_stream_id;
use serde_json::{Value, json};

use crate::helpers::*;

// The order's version is not selected: the saga moves a cancelled order on (it releases
// the stock), so a retry's view may be newer than the first answer's.
const CANCEL_ORDER_KEYED: &str = "mutation($id: UUID!, $reason: String, $key: String) {
  cancelOrder(id: $id, reason: $reason, idempotencyKey: $key) { position order { id status } }
}";
const SHIP_ORDER_KEYED: &str = "mutation($id: UUID!, $key: String) {
  shipOrder(id: $id, idempotencyKey: $key) { position order { id status } }
}";
const DELIVER_ORDER_KEYED: &str = "mutation($id: UUID!, $key: String) {
  deliverOrder(id: $id, idempotencyKey: $key) { position order { id status } }
}";
const DISCONTINUE_PRODUCT_KEYED: &str = "mutation($id: UUID!, $key: String) {
  discontinueProduct(id: $id, idempotencyKey: $key) { position product { id status version } }
}";
const REMOVE_FROM_CART_KEYED: &str = "mutation($productId: UUID!, $key: String) {
  removeFromCart(productId: $productId, idempotencyKey: $key) { position cart { userId itemCount position } }
}";
const CLEAR_CART_KEYED: &str = "mutation($key: String) {
  clearCart(idempotencyKey: $key) { position cart { userId itemCount position } }
}";
const HISTORY: &str = "query($id: UUID!) {
  history(streamId: $id, first: 100) { edges { node { version type metadata } } }
}";

/// How many events of stream `stream` carry idempotency key `key`, as the audit trail shows.
async fn events_with_key(app: &TestApp, stream: &str, key: &str) -> usize {
    let resp = app.as_admin().gql(HISTORY, json!({ "id": stream })).await;
    data(&resp)["history"]["edges"]
        .as_array()
        .expect("edges is a list")
        .iter()
        .filter(|e| e["node"]["metadata"]["idempotencyKey"] == key)
        .count()
}

/// The stream of a user's cart.
fn cart_of(user: &str) -> String {
    cart_stream_id(&UserId::parse(user).expect("a valid user id")).to_string()
}

/// Sends the same request ten times at once; asserts that every one succeeds with the same
/// `position`; returns the payload (`data.<field>`).
async fn ten_at_once(caller: &Caller<'_>, field: &str, document: &str, variables: Value) -> Value {
    // Ten connections open first, so the ten requests reach the server together rather
    // than one TCP handshake apart.
    join_all((0..10).map(|_| caller.gql("{ __typename }", json!({})))).await;
    let responses = join_all((0..10).map(|_| caller.gql(document, variables.clone()))).await;
    let failed: Vec<&Value> = responses
        .iter()
        .filter(|r| error_code(r).is_some())
        .collect();
    assert!(
        failed.is_empty(),
        "every duplicate of {field} succeeds: {failed:#?}"
    );
    let first = data(&responses[0])[field].clone();
    for resp in &responses {
        assert_eq!(
            data(resp)[field]["position"],
            first["position"],
            "every duplicate of {field} answers the first payload's position"
        );
    }
    first
}

fn create_with_key(sku: &str, key: &str) -> Value {
    json!({ "input": {
        "sku": sku, "name": "Mug", "description": "", "price": "4.50", "initialStock": 10,
        "idempotencyKey": key,
    }})
}

fn adjust_with_key(product_id: &Value, delta: i64, key: &str) -> Value {
    json!({ "input": {
        "productId": product_id, "delta": delta, "reason": "restock", "idempotencyKey": key,
    }})
}

fn add_with_key(product_id: &Value, quantity: i64, key: &str) -> Value {
    json!({ "input": { "productId": product_id, "quantity": quantity, "idempotencyKey": key } })
}

#[tokio::test]
async fn retrying_create_product_with_the_same_key_returns_the_first_payload() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let first = admin
        .gql(CREATE_PRODUCT, create_with_key("MUG-001", "create-1"))
        .await;

    // Act
    let retry = admin
        .gql(CREATE_PRODUCT, create_with_key("MUG-001", "create-1"))
        .await;

    // Assert
    assert_eq!(data(&retry), data(&first));
    let listing = app.anonymous().products(json!({})).await;
    assert_eq!(listing["totalCount"], 1);
}

#[tokio::test]
async fn retrying_adjust_stock_with_the_same_key_applies_it_once() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("MUG-001", "4.50", 10).await;
    let first = admin
        .gql(ADJUST_STOCK, adjust_with_key(&product["id"], 5, "adjust-1"))
        .await;

    // Act
    let retry = admin
        .gql(ADJUST_STOCK, adjust_with_key(&product["id"], 5, "adjust-1"))
        .await;

    // Assert
    assert_eq!(
        data(&retry)["adjustStock"]["position"],
        data(&first)["adjustStock"]["position"]
    );
    let read = admin.product(str_of(&product["id"])).await;
    assert_eq!(read["stock"], 15);
    assert_eq!(read["version"], 2);
}

#[tokio::test]
async fn retrying_add_to_cart_with_the_same_key_adds_once() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "4.50", 10).await;
    let alice = app.as_user("alice");
    let first = alice
        .gql(ADD_TO_CART, add_with_key(&product["id"], 2, "add-1"))
        .await;

    // Act
    let retry = alice
        .gql(ADD_TO_CART, add_with_key(&product["id"], 2, "add-1"))
        .await;

    // Assert
    assert_eq!(data(&retry), data(&first));
    let cart = alice.cart().await;
    assert_eq!(cart["itemCount"], 2);
    assert_eq!(cart["total"], "9.00");
}

#[tokio::test]
async fn a_retry_after_a_restart_returns_the_first_payload_and_writes_nothing() {
    // Arrange
    let mut app = spawn_app().await;
    let (created, adjusted) = {
        let admin = app.as_admin();
        let created = admin
            .gql(CREATE_PRODUCT, create_with_key("MUG-001", "create-1"))
            .await;
        let id = data(&created)["createProduct"]["product"]["id"].clone();
        let adjusted = admin
            .gql(ADJUST_STOCK, adjust_with_key(&id, -3, "adjust-1"))
            .await;
        (data(&created).clone(), data(&adjusted).clone())
    };
    let id = created["createProduct"]["product"]["id"].clone();

    // Act
    app.restart().await;
    let admin = app.as_admin();
    let created_again = admin
        .gql(CREATE_PRODUCT, create_with_key("MUG-001", "create-1"))
        .await;
    let adjusted_again = admin
        .gql(ADJUST_STOCK, adjust_with_key(&id, -3, "adjust-1"))
        .await;

    // Assert
    let created_again = &data(&created_again)["createProduct"];
    assert_eq!(
        created_again["position"],
        created["createProduct"]["position"]
    );
    assert_eq!(created_again["product"]["id"], id);
    assert_eq!(
        data(&adjusted_again)["adjustStock"]["position"],
        adjusted["adjustStock"]["position"]
    );
    let read = admin.product(str_of(&id)).await;
    assert_eq!(read["stock"], 7);
    assert_eq!(read["version"], 2);
    let listing = app.anonymous().products(json!({})).await;
    assert_eq!(listing["totalCount"], 1);
}

#[tokio::test]
async fn state_written_before_a_restart_is_served_after_it() {
    // Arrange
    let mut app = spawn_app().await;
    let (product, cart) = {
        let product = app.as_admin().create_product("MUG-001", "4.50", 10).await;
        let alice = app.as_user("alice");
        data(&alice.add_to_cart(str_of(&product["id"]), 2).await);
        (product, alice.cart().await)
    };

    // Act
    app.restart().await;

    // Assert
    assert_eq!(
        app.anonymous().product(str_of(&product["id"])).await,
        product
    );
    assert_eq!(app.as_user("alice").cart().await, cart);
}

#[tokio::test]
async fn the_same_key_with_a_different_input_is_rejected_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("MUG-001", "4.50", 10).await;
    data(
        &admin
            .gql(ADJUST_STOCK, adjust_with_key(&product["id"], 5, "adjust-1"))
            .await,
    );

    // Act
    let resp = admin
        .gql(ADJUST_STOCK, adjust_with_key(&product["id"], 6, "adjust-1"))
        .await;

    // Assert
    assert_error(&resp, "IDEMPOTENCY_KEY_REUSED");
    let read = admin.product(str_of(&product["id"])).await;
    assert_eq!(read["stock"], 15);
    assert_eq!(read["version"], 2);
}

#[tokio::test]
async fn reusing_a_create_key_for_another_product_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    data(
        &admin
            .gql(CREATE_PRODUCT, create_with_key("MUG-001", "create-1"))
            .await,
    );

    // Act
    let resp = admin
        .gql(CREATE_PRODUCT, create_with_key("TEE-001", "create-1"))
        .await;

    // Assert
    assert_error(&resp, "IDEMPOTENCY_KEY_REUSED");
    let listing = app.anonymous().products(json!({})).await;
    assert_eq!(skus(&listing), ["MUG-001"]);
}

#[tokio::test]
async fn the_same_key_used_by_another_user_is_independent() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "4.50", 10).await;
    let alice = app.as_user("alice");
    let bob = app.as_user("bob");
    let alices = alice
        .gql(ADD_TO_CART, add_with_key(&product["id"], 1, "same-key"))
        .await;

    // Act
    let bobs = bob
        .gql(ADD_TO_CART, add_with_key(&product["id"], 1, "same-key"))
        .await;

    // Assert
    let alices = &data(&alices)["addToCart"];
    let bobs = &data(&bobs)["addToCart"];
    assert_ne!(bobs["position"], alices["position"]);
    assert_eq!(bobs["cart"]["userId"], "bob");
    assert_eq!(bobs["cart"]["itemCount"], 1);
    assert_eq!(bob.cart().await["itemCount"], 1);
    assert_eq!(alice.cart().await["itemCount"], 1);
}

#[tokio::test]
async fn the_same_key_with_another_input_from_another_user_is_not_a_reuse() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "4.50", 10).await;
    data(
        &app.as_user("alice")
            .gql(ADD_TO_CART, add_with_key(&product["id"], 1, "same-key"))
            .await,
    );

    // Act
    let resp = app
        .as_user("bob")
        .gql(ADD_TO_CART, add_with_key(&product["id"], 3, "same-key"))
        .await;

    // Assert
    assert_eq!(data(&resp)["addToCart"]["cart"]["itemCount"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_of_every_mutation_get_the_first_payload_and_write_once() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let alice = app.as_user("alice");
    let bob = app.as_user("bob");
    let carol = app.as_user("carol");
    let scarce = admin.create_product("SCARCE", "1.00", 2).await;
    let scarce_id = str_of(&scarce["id"]).to_owned();
    let stocked = admin.create_product("STOCKED", "1.00", 50).await;
    let stocked_id = str_of(&stocked["id"]).to_owned();

    // Act and assert, one mutation after another, each sent ten times at once with a key.
    // A duplicate that decided after the first committed would be refused: the product
    // exists, the stock or the line is gone, the order has moved on.
    let created = ten_at_once(
        &admin,
        "createProduct",
        CREATE_PRODUCT,
        create_with_key("NEW-001", "k-create"),
    )
    .await;
    let new_id = str_of(&created["product"]["id"]).to_owned();
    assert_eq!(events_with_key(&app, &new_id, "k-create").await, 1);

    ten_at_once(
        &admin,
        "updateProduct",
        UPDATE_PRODUCT,
        json!({ "input": { "id": new_id, "price": "5.00", "idempotencyKey": "k-update" } }),
    )
    .await;
    assert_eq!(events_with_key(&app, &new_id, "k-update").await, 1);

    let adjusted = ten_at_once(
        &admin,
        "adjustStock",
        ADJUST_STOCK,
        adjust_with_key(&json!(new_id), -10, "k-adjust"),
    )
    .await;
    assert_eq!(adjusted["product"]["stock"], 0);
    assert_eq!(events_with_key(&app, &new_id, "k-adjust").await, 1);

    ten_at_once(
        &bob,
        "reviewProduct",
        REVIEW_PRODUCT,
        json!({ "input": { "productId": new_id, "rating": 4, "idempotencyKey": "k-review" } }),
    )
    .await;
    assert_eq!(events_with_key(&app, &new_id, "k-review").await, 1);

    let discontinued = ten_at_once(
        &admin,
        "discontinueProduct",
        DISCONTINUE_PRODUCT_KEYED,
        json!({ "id": new_id, "key": "k-discontinue" }),
    )
    .await;
    assert_eq!(discontinued["product"]["status"], "DISCONTINUED");
    assert_eq!(events_with_key(&app, &new_id, "k-discontinue").await, 1);

    // All the stock of a product in one line: a second addition would exceed it.
    let added = ten_at_once(
        &alice,
        "addToCart",
        ADD_TO_CART,
        add_with_key(&json!(scarce_id), 2, "k-add"),
    )
    .await;
    assert_eq!(added["cart"]["itemCount"], 2);
    assert_eq!(events_with_key(&app, &cart_of("alice"), "k-add").await, 1);

    ten_at_once(
        &alice,
        "setCartItemQuantity",
        SET_CART_ITEM_QUANTITY,
        add_with_key(&json!(scarce_id), 1, "k-set"),
    )
    .await;
    assert_eq!(events_with_key(&app, &cart_of("alice"), "k-set").await, 1);

    let removed = ten_at_once(
        &alice,
        "removeFromCart",
        REMOVE_FROM_CART_KEYED,
        json!({ "productId": scarce_id, "key": "k-remove" }),
    )
    .await;
    assert_eq!(removed["cart"]["itemCount"], 0);
    assert_eq!(
        events_with_key(&app, &cart_of("alice"), "k-remove").await,
        1
    );

    data(&carol.add_to_cart(&stocked_id, 1).await);
    ten_at_once(
        &carol,
        "clearCart",
        CLEAR_CART_KEYED,
        json!({ "key": "k-clear" }),
    )
    .await;
    assert_eq!(events_with_key(&app, &cart_of("carol"), "k-clear").await, 1);

    data(&alice.add_to_cart(&stocked_id, 1).await);
    let placed = ten_at_once(
        &alice,
        "checkout",
        CHECKOUT,
        json!({ "input": {
            "paymentToken": "tok_visa", "shippingAddress": ADDRESS, "idempotencyKey": "k-checkout",
        }}),
    )
    .await;
    let shipped_id = str_of(&placed["order"]["id"]).to_owned();
    assert_eq!(events_with_key(&app, &shipped_id, "k-checkout").await, 1);
    assert_eq!(
        events_with_key(&app, &cart_of("alice"), "k-checkout").await,
        1
    );
    wait_for_order_status(&admin, &shipped_id, &["CONFIRMED"]).await;

    ten_at_once(
        &admin,
        "shipOrder",
        SHIP_ORDER_KEYED,
        json!({ "id": shipped_id, "key": "k-ship" }),
    )
    .await;
    assert_eq!(events_with_key(&app, &shipped_id, "k-ship").await, 1);

    ten_at_once(
        &admin,
        "deliverOrder",
        DELIVER_ORDER_KEYED,
        json!({ "id": shipped_id, "key": "k-deliver" }),
    )
    .await;
    assert_eq!(events_with_key(&app, &shipped_id, "k-deliver").await, 1);

    let cancelled_id = alice.order_one(&stocked_id, 1, "tok_visa").await;
    wait_for_order_status(&alice, &cancelled_id, &["CONFIRMED"]).await;
    let cancelled = ten_at_once(
        &alice,
        "cancelOrder",
        CANCEL_ORDER_KEYED,
        json!({ "id": cancelled_id, "reason": "changed my mind", "key": "k-cancel" }),
    )
    .await;
    assert_eq!(cancelled["order"]["status"], "CANCELLED");
    assert_eq!(events_with_key(&app, &cancelled_id, "k-cancel").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_sent_to_two_replicas_get_the_first_payload_and_write_once() {
    // Arrange: two servers on one database, each with its own write gate, so only the
    // database orders their writes.
    let app = spawn_app().await;
    let replica = app.replica().await;
    let (one, two) = (app.as_admin(), replica.as_admin());
    // Open the connections first, so that the requests reach the servers together.
    join_all((0..10usize).map(|n| {
        let caller = if n.is_multiple_of(2) { &one } else { &two };
        caller.gql("{ __typename }", json!({}))
    }))
    .await;
    let send = |n: usize, document: &'static str, variables: Value| {
        let caller = if n.is_multiple_of(2) { &one } else { &two };
        caller.gql(document, variables)
    };

    // Act
    let created =
        join_all((0..10).map(|n| send(n, CREATE_PRODUCT, create_with_key("MUG-001", "k-create"))))
            .await;
    let id = data(&created[0])["createProduct"]["product"]["id"].clone();
    let adjusted =
        join_all((0..10).map(|n| send(n, ADJUST_STOCK, adjust_with_key(&id, -10, "k-adjust"))))
            .await;
    // With an expectedVersion, a duplicate that lost the race on the other server is not
    // decided again: only the key the winner recorded tells its CONFLICT is a retry's.
    let mut restock = adjust_with_key(&id, 4, "k-restock");
    restock["input"]["expectedVersion"] = json!(2);
    let restocked = join_all((0..10).map(|n| send(n, ADJUST_STOCK, restock.clone()))).await;

    // Assert
    let bursts = [
        ("createProduct", &created),
        ("adjustStock", &adjusted),
        ("adjustStock", &restocked),
    ];
    for (field, responses) in bursts {
        let first = &data(&responses[0])[field];
        for resp in responses {
            assert_eq!(
                data(resp)[field]["position"],
                first["position"],
                "every duplicate of {field} answers the first payload: {resp:#}"
            );
            assert_eq!(data(resp)[field]["product"]["id"], id);
        }
    }
    assert_eq!(events_with_key(&app, str_of(&id), "k-create").await, 1);
    assert_eq!(events_with_key(&app, str_of(&id), "k-adjust").await, 1);
    assert_eq!(events_with_key(&app, str_of(&id), "k-restock").await, 1);
    let read = one.product(str_of(&id)).await;
    assert_eq!(
        (read["stock"].clone(), read["version"].clone()),
        (json!(4), json!(3))
    );
}

#[tokio::test]
async fn the_six_mutations_without_an_input_object_replay_a_retry_with_their_key() {
    // Arrange: a cart with two lines, a confirmed order to ship and deliver, another to
    // cancel, a product to discontinue.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let alice = app.as_user("alice");
    let mug = admin.create_product("MUG-001", "4.50", 10).await;
    let mug_id = str_of(&mug["id"]).to_owned();
    let tee = admin.create_product("TEE-001", "9.00", 10).await;
    let tee_id = str_of(&tee["id"]).to_owned();
    let shipped = alice.order_one(&mug_id, 1, "tok_visa").await;
    let cancelled = alice.order_one(&mug_id, 1, "tok_visa").await;
    wait_for_order_status(&alice, &shipped, &["CONFIRMED"]).await;
    wait_for_order_status(&alice, &cancelled, &["CONFIRMED"]).await;
    data(&alice.add_to_cart(&mug_id, 1).await);
    data(&alice.add_to_cart(&tee_id, 1).await);
    let cart = cart_of("alice");
    let retries: [(&Caller<'_>, &str, &str, Value, &str); 6] = [
        (
            &alice,
            "removeFromCart",
            REMOVE_FROM_CART_KEYED,
            json!({ "productId": mug_id, "key": "k-remove" }),
            &cart,
        ),
        (
            &alice,
            "clearCart",
            CLEAR_CART_KEYED,
            json!({ "key": "k-clear" }),
            &cart,
        ),
        (
            &admin,
            "discontinueProduct",
            DISCONTINUE_PRODUCT_KEYED,
            json!({ "id": tee_id, "key": "k-discontinue" }),
            &tee_id,
        ),
        (
            &admin,
            "shipOrder",
            SHIP_ORDER_KEYED,
            json!({ "id": shipped, "key": "k-ship" }),
            &shipped,
        ),
        (
            &admin,
            "deliverOrder",
            DELIVER_ORDER_KEYED,
            json!({ "id": shipped, "key": "k-deliver" }),
            &shipped,
        ),
        (
            &alice,
            "cancelOrder",
            CANCEL_ORDER_KEYED,
            json!({ "id": cancelled, "reason": "changed my mind", "key": "k-cancel" }),
            &cancelled,
        ),
    ];

    for (caller, field, document, variables, stream) in retries {
        // Act: the first attempt, then its retry (say, after a lost response).
        let first = caller.gql(document, variables.clone()).await;
        let retry = caller.gql(document, variables.clone()).await;

        // Assert: the retry answers as the first did (not CONFLICT, not NOT_FOUND) and
        // writes nothing.
        let first = &data(&first)[field];
        let retry = &data(&retry)[field];
        assert_eq!(retry, first, "{field}");
        let key = variables["key"].as_str().expect("a key");
        assert_eq!(
            events_with_key(&app, stream, key).await,
            1,
            "{field} wrote once"
        );
    }
}

#[tokio::test]
async fn the_keys_of_the_six_mutations_refuse_another_input() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let alice = app.as_user("alice");
    let mug = admin.create_product("MUG-001", "4.50", 10).await;
    let mug_id = str_of(&mug["id"]).to_owned();
    let tee = admin.create_product("TEE-001", "9.00", 10).await;
    let tee_id = str_of(&tee["id"]).to_owned();
    let order = alice.order_one(&mug_id, 1, "tok_visa").await;
    wait_for_order_status(&alice, &order, &["CONFIRMED"]).await;
    data(&alice.add_to_cart(&mug_id, 1).await);
    data(&alice.add_to_cart(&tee_id, 1).await);
    data(
        &alice
            .gql(
                REMOVE_FROM_CART_KEYED,
                json!({ "productId": mug_id, "key": "k-remove" }),
            )
            .await,
    );
    data(
        &admin
            .gql(
                DISCONTINUE_PRODUCT_KEYED,
                json!({ "id": tee_id, "key": "k-discontinue" }),
            )
            .await,
    );
    data(
        &alice
            .gql(
                CANCEL_ORDER_KEYED,
                json!({ "id": order, "reason": "too slow", "key": "k-cancel" }),
            )
            .await,
    );

    // Act
    let reused = [
        alice
            .gql(
                REMOVE_FROM_CART_KEYED,
                json!({ "productId": tee_id, "key": "k-remove" }),
            )
            .await,
        alice
            .gql(CLEAR_CART_KEYED, json!({ "key": "k-remove" }))
            .await,
        admin
            .gql(
                DISCONTINUE_PRODUCT_KEYED,
                json!({ "id": mug_id, "key": "k-discontinue" }),
            )
            .await,
        alice
            .gql(
                CANCEL_ORDER_KEYED,
                json!({ "id": order, "reason": "another reason", "key": "k-cancel" }),
            )
            .await,
    ];

    // Assert
    for resp in &reused {
        assert_error(resp, "IDEMPOTENCY_KEY_REUSED");
    }
    assert_eq!(
        cart_line(&alice.cart().await, &tee_id).expect("still there")["quantity"],
        1
    );
    assert_eq!(admin.product(&mug_id).await["status"], "ACTIVE");
}
