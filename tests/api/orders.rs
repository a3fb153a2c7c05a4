//! Orders as a client sees them: checkout turns the cart into an order priced from the
//! catalog (and its errors change nothing), idempotent checkout, cancellation with
//! compensation, the admin's ship/deliver transitions and the CONFLICTs of illegal ones,
//! `order` and `orders` visibility and paging, and the authorization of every order
//! operation for anonymous, the owner, another customer and an admin.

use serde_json::{Value, json};

use crate::helpers::*;

/// A mutation payload's order, checking read-your-writes: for `cancelOrder`, `shipOrder`
/// and `deliverOrder`, whose events are all on the order's stream, the order view has
/// reached (at least) the mutation's position; the saga may have moved it further already.
/// `checkout`'s last event is on the cart's stream (the cart emptied), which the order view
/// does not fold, so there the view only has to show the placed order.
#[track_caller]
fn payload_order(resp: &Value, field: &str) -> Value {
    let payload = &data(resp)[field];
    let order_position = position(&payload["order"]["position"]);
    let payload_position = position(&payload["position"]);
    if field == "checkout" {
        assert!(
            order_position > 0 && payload["order"]["version"].as_i64() >= Some(1),
            "the payload's order is the placed order: {resp:#}"
        );
    } else {
        assert!(
            order_position >= payload_position,
            "the payload's order is read at or after the mutation's position: {resp:#}"
        );
    }
    payload["order"].clone()
}

/// The order line of `sku`.
#[track_caller]
fn order_line<'a>(order: &'a Value, sku: &str) -> &'a Value {
    order["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("order.lines is a list: {order:#}"))
        .iter()
        .find(|line| line["sku"] == sku)
        .unwrap_or_else(|| panic!("the order has a line for {sku}: {order:#}"))
}

/// A customer's order of one product that the saga has CONFIRMED; returns its id.
async fn confirmed_order(app: &TestApp, user: &str, product_id: &str, quantity: i64) -> String {
    let customer = app.as_user(user);
    let id = customer.order_one(product_id, quantity, "tok_visa").await;
    wait_for_order_status(&customer, &id, &["CONFIRMED"]).await;
    id
}

/// A customer's order of one product that the saga has REJECTED (payment declined).
async fn rejected_order(app: &TestApp, user: &str, product_id: &str) -> String {
    let customer = app.as_user(user);
    let id = customer.order_one(product_id, 1, "tok_decline").await;
    wait_for_order_status(&customer, &id, &["REJECTED"]).await;
    id
}

/// The number of orders the admin sees in total.
async fn all_orders_count(app: &TestApp) -> Value {
    app.as_admin().orders(json!({})).await["totalCount"].clone()
}

// Checkout.

#[tokio::test]
async fn checkout_turns_the_cart_into_an_order_priced_from_the_catalog() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "19.90", 10).await;
    let tee = admin.create_product("TEE-001", "0.05", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 2).await);
    data(&alice.add_to_cart(str_of(&tee["id"]), 3).await);

    // Act
    let resp = alice.checkout_with("tok_visa", ADDRESS, None).await;

    // Assert
    let order = payload_order(&resp, "checkout");
    assert_eq!(order["userId"], "alice");
    assert!(
        ["PENDING", "RESERVED", "CONFIRMED"].contains(&str_of(&order["status"])),
        "a new order is PENDING or already further along the saga: {order:#}"
    );
    assert_eq!(order["shippingAddress"], ADDRESS);
    assert_eq!(order["total"], "39.95");
    assert_eq!(
        order["lines"].as_array().map(Vec::len),
        Some(2),
        "{order:#}"
    );
    let mug_line = order_line(&order, "MUG-001");
    assert_eq!(mug_line["productId"], mug["id"]);
    assert_eq!(mug_line["name"], mug["name"]);
    assert_eq!(mug_line["unitPrice"], "19.90");
    assert_eq!(mug_line["quantity"], 2);
    assert_eq!(mug_line["lineTotal"], "39.80");
    let tee_line = order_line(&order, "TEE-001");
    assert_eq!(tee_line["productId"], tee["id"]);
    assert_eq!(tee_line["unitPrice"], "0.05");
    assert_eq!(tee_line["quantity"], 3);
    assert_eq!(tee_line["lineTotal"], "0.15");
    assert!(
        order["version"].as_i64().is_some_and(|v| v >= 1),
        "{order:#}"
    );
}

#[tokio::test]
async fn the_cart_is_empty_after_checkout() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "5.00", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 2).await);

    // Act
    alice.checkout("tok_visa", ADDRESS).await;

    // Assert
    let cart = alice.cart().await;
    assert_eq!(cart["items"], json!([]), "{cart:#}");
    assert_eq!(cart["itemCount"], 0);
    assert_eq!(cart["total"], "0.00");
}

#[tokio::test]
async fn the_order_query_shows_the_order_the_checkout_payload_showed() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "5.00", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 2).await);
    let from_payload = payload_order(
        &alice.checkout_with("tok_visa", ADDRESS, None).await,
        "checkout",
    );

    // Act
    let order = alice.order(str_of(&from_payload["id"])).await;

    // Assert
    for field in [
        "id",
        "userId",
        "lines",
        "total",
        "shippingAddress",
        "placedAt",
    ] {
        assert_eq!(order[field], from_payload[field], "{field}");
    }
    assert!(position(&order["position"]) >= position(&from_payload["position"]));
}

#[tokio::test]
async fn lines_are_priced_at_the_catalog_price_of_the_moment_of_checkout() {
    // Arrange: the price changes while the product sits in the cart.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 2).await);
    data(
        &admin
            .gql(
                UPDATE_PRODUCT,
                json!({ "input": { "id": mug["id"], "price": "6.25" } }),
            )
            .await,
    );

    // Act
    let order = payload_order(
        &alice.checkout_with("tok_visa", ADDRESS, None).await,
        "checkout",
    );

    // Assert
    let line = order_line(&order, "MUG-001");
    assert_eq!(line["unitPrice"], "6.25");
    assert_eq!(line["lineTotal"], "12.50");
    assert_eq!(order["total"], "12.50");
}

#[tokio::test]
async fn a_later_price_change_does_not_reprice_a_placed_order() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let alice = app.as_user("alice");
    let id = alice.order_one(str_of(&mug["id"]), 2, "tok_visa").await;
    wait_for_order_status(&alice, &id, &["CONFIRMED"]).await;

    // Act
    data(
        &admin
            .gql(
                UPDATE_PRODUCT,
                json!({ "input": { "id": mug["id"], "price": "99.00" } }),
            )
            .await,
    );

    // Assert
    let order = alice.order(&id).await;
    assert_eq!(order_line(&order, "MUG-001")["unitPrice"], "5.00");
    assert_eq!(order["total"], "10.00");
}

#[tokio::test]
async fn checking_out_an_empty_cart_is_bad_user_input_and_places_no_order() {
    // Arrange
    let app = spawn_app().await;
    let alice = app.as_user("alice");

    // Act
    let resp = alice.checkout_with("tok_visa", ADDRESS, None).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(alice.orders(json!({})).await["totalCount"], 0);
    assert_eq!(all_orders_count(&app).await, 0);
}

#[tokio::test]
async fn checking_out_with_a_blank_address_is_bad_user_input_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "5.00", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 2).await);
    let cart_before = alice.cart().await;

    // Act
    let resp = alice.checkout_with("tok_visa", "   ", None).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(alice.cart().await, cart_before);
    assert_eq!(all_orders_count(&app).await, 0);
    assert_eq!(
        app.as_admin().product(str_of(&mug["id"])).await["stock"],
        10
    );
}

/// Issue, point 3: prices up to 999 999 999 999.99 and 99 units are accepted, but an
/// order totalling 10^12 or more was committed and then could not be read back, which
/// stopped the views and the saga for good. Such a checkout is refused before anything is
/// written, and the largest total that is accepted goes all the way through.
#[tokio::test]
async fn checking_out_an_order_totalling_a_trillion_is_bad_user_input_and_writes_nothing() {
    use ordergraph::entity::events;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    // Arrange: a product at half a trillion, two of them in the cart.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let gold = admin.create_product("GOLD-1", "500000000000.00", 10).await;
    let gold_id = str_of(&gold["id"]);
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(gold_id, 2).await);
    let cart_before = alice.cart().await;
    assert_eq!(cart_before["total"], "1000000000000.00");

    // Act
    let resp = alice.checkout_with("tok_visa", ADDRESS, None).await;

    // Assert: refused, naming the bound; no order, no event, the cart as it was.
    assert_error(&resp, "BAD_USER_INPUT");
    assert!(error_message(&resp).contains("999999999999.99"), "{resp:#}");
    assert_eq!(alice.cart().await, cart_before);
    assert_eq!(all_orders_count(&app).await, 0);
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    let placed = events::Entity::find()
        .filter(events::Column::EventType.eq("OrderPlaced"))
        .count(&db)
        .await
        .expect("the log is readable");
    assert_eq!(placed, 0, "nothing was written");

    // The highest total that is accepted is placed, read back, charged and counted.
    data(&alice.set_quantity(gold_id, 1).await);
    let id = alice.checkout("tok_visa", ADDRESS).await;
    let order = wait_for_order_status(&alice, &id, &["CONFIRMED"]).await;
    assert_eq!(order["total"], "500000000000.00");
    let order_position = position(&order["position"]);
    let dashboard = wait_for_dashboard(&admin, "has folded the confirmation", |d| {
        position(&d["position"]) >= order_position
    })
    .await;
    assert_eq!(dashboard["revenue"], "500000000000.00");
}

#[tokio::test]
async fn checking_out_a_cart_with_a_discontinued_product_is_a_conflict_naming_its_sku() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let tee = admin.create_product("TEE-042", "7.00", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 1).await);
    data(&alice.add_to_cart(str_of(&tee["id"]), 1).await);
    data(&admin.discontinue(str_of(&tee["id"])).await);
    let cart_before = alice.cart().await;

    // Act
    let resp = alice.checkout_with("tok_visa", ADDRESS, None).await;

    // Assert
    assert_error(&resp, "CONFLICT");
    assert!(
        error_message(&resp).contains("TEE-042"),
        "the message names the discontinued SKU: {resp:#}"
    );
    assert_eq!(alice.cart().await, cart_before);
    assert_eq!(all_orders_count(&app).await, 0);
}

#[tokio::test]
async fn an_anonymous_checkout_is_unauthenticated() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .anonymous()
        .checkout_with("tok_visa", ADDRESS, None)
        .await;

    // Assert
    assert_error(&resp, "UNAUTHENTICATED");
    assert_eq!(all_orders_count(&app).await, 0);
}

#[tokio::test]
async fn retrying_a_checkout_with_the_same_key_returns_the_same_order() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "5.00", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 2).await);
    let first = alice
        .checkout_with("tok_visa", ADDRESS, Some("checkout-1"))
        .await;

    // Act
    let retry = alice
        .checkout_with("tok_visa", ADDRESS, Some("checkout-1"))
        .await;

    // Assert
    let (first, retry) = (&data(&first)["checkout"], &data(&retry)["checkout"]);
    assert_eq!(retry["order"]["id"], first["order"]["id"]);
    assert_eq!(retry["position"], first["position"]);
    assert_eq!(alice.orders(json!({})).await["totalCount"], 1);
    let id = str_of(&first["order"]["id"]);
    wait_for_order_status(&alice, id, &["CONFIRMED"]).await;
    wait_for_stock(&alice, str_of(&mug["id"]), 8).await;
}

#[tokio::test]
async fn reusing_a_checkout_key_with_another_input_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "5.00", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 2).await);
    data(
        &alice
            .checkout_with("tok_visa", ADDRESS, Some("checkout-1"))
            .await,
    );
    data(&alice.add_to_cart(str_of(&mug["id"]), 1).await);

    // Act
    let resp = alice
        .checkout_with("tok_visa", "2 Other Road", Some("checkout-1"))
        .await;

    // Assert
    assert_error(&resp, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(alice.orders(json!({})).await["totalCount"], 1);
    let cart = alice.cart().await;
    assert_eq!(cart["itemCount"], 1, "the new cart is untouched: {cart:#}");
}

// Cancellation.

#[tokio::test]
async fn cancelling_a_confirmed_order_releases_its_stock_and_refunds_the_payment() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let mug_id = str_of(&mug["id"]);
    let id = confirmed_order(&app, "alice", mug_id, 3).await;
    wait_for_stock(&admin, mug_id, 7).await;
    let alice = app.as_user("alice");

    // Act
    let resp = alice.cancel_order(&id, "changed my mind").await;

    // Assert
    let cancelled = payload_order(&resp, "cancelOrder");
    assert_eq!(cancelled["id"], id.as_str());
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["reason"], "changed my mind");
    let order = wait_for_order(&alice, &id, "is released and refunded", |o| {
        o["reservation"] == "RELEASED" && o["payment"] == "REFUNDED"
    })
    .await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["reason"], "changed my mind");
    wait_for_stock(&admin, mug_id, 10).await;
    // Released exactly once: a later write sees 10 + 1, not more.
    let adjusted = admin.adjust_stock(mug_id, 1).await;
    assert_eq!(data(&adjusted)["adjustStock"]["product"]["stock"], 11);
}

#[tokio::test]
async fn an_admin_can_cancel_a_customers_confirmed_order() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;

    // Act
    let resp = admin.cancel_order(&id, "fraud suspected").await;

    // Assert
    let cancelled = payload_order(&resp, "cancelOrder");
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["userId"], "alice");
    let order = wait_for_order(&admin, &id, "is refunded", |o| {
        o["payment"] == "REFUNDED" && o["reservation"] == "RELEASED"
    })
    .await;
    assert_eq!(order["reason"], "fraud suspected");
    wait_for_stock(&admin, str_of(&mug["id"]), 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_right_after_checkout_ends_cancelled_with_nothing_held_or_charged() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let mug_id = str_of(&mug["id"]);
    let alice = app.as_user("alice");
    let id = alice.order_one(mug_id, 4, "tok_visa").await;

    // Act: races the saga, which may be anywhere between PENDING and CONFIRMED.
    let resp = alice.cancel_order(&id, "too slow").await;

    // Assert
    assert_eq!(payload_order(&resp, "cancelOrder")["status"], "CANCELLED");
    let order = wait_for_order(&alice, &id, "holds no stock and no money", |o| {
        o["reservation"] != "RESERVED" && o["payment"] != "SUCCEEDED"
    })
    .await;
    assert_eq!(order["status"], "CANCELLED");
    wait_for_stock(&admin, mug_id, 10).await;
    // A later order goes through the same saga: by the time it is confirmed, the cancelled
    // one has had every chance to (wrongly) reserve or charge after all.
    let bob = app.as_user("bob");
    let later = bob.order_one(mug_id, 1, "tok_visa").await;
    wait_for_order_status(&bob, &later, &["CONFIRMED"]).await;
    let order = alice.order(&id).await;
    assert_eq!(order["status"], "CANCELLED", "{order:#}");
    assert_ne!(order["reservation"], "RESERVED", "{order:#}");
    assert_ne!(order["payment"], "SUCCEEDED", "{order:#}");
    wait_for_stock(&admin, mug_id, 9).await;
}

#[tokio::test]
async fn another_customer_cancelling_an_order_gets_not_found_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "5.00", 10).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;

    // Act
    let resp = app.as_user("mallory").cancel_order(&id, "mine now").await;

    // Assert
    assert_error(&resp, "NOT_FOUND");
    let order = app.as_user("alice").order(&id).await;
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["payment"], "SUCCEEDED");
}

#[tokio::test]
async fn cancelling_an_unknown_order_is_not_found() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_user("alice")
        .cancel_order(&uuid::Uuid::new_v4().to_string(), "no such order")
        .await;

    // Assert
    assert_error(&resp, "NOT_FOUND");
}

#[tokio::test]
async fn cancelling_a_shipped_order_is_a_conflict_naming_the_status() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;
    data(&admin.ship_order(&id).await);

    // Act
    let resp = app.as_user("alice").cancel_order(&id, "too late").await;

    // Assert
    assert_error(&resp, "CONFLICT");
    assert!(
        error_message(&resp).contains("cannot cancel an order that is SHIPPED"),
        "{resp:#}"
    );
    assert_eq!(admin.order(&id).await["status"], "SHIPPED");
}

#[tokio::test]
async fn not_even_an_admin_can_cancel_a_delivered_order() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;
    data(&admin.ship_order(&id).await);
    data(&admin.deliver_order(&id).await);

    // Act
    let resp = admin.cancel_order(&id, "too late").await;

    // Assert
    assert_error(&resp, "CONFLICT");
    assert!(
        error_message(&resp).contains("cannot cancel an order that is DELIVERED"),
        "{resp:#}"
    );
    let order = admin.order(&id).await;
    assert_eq!(order["status"], "DELIVERED");
    assert_eq!(order["payment"], "SUCCEEDED");
}

#[tokio::test]
async fn cancelling_an_order_twice_is_a_conflict_and_refunds_once() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let mug_id = str_of(&mug["id"]);
    let id = confirmed_order(&app, "alice", mug_id, 2).await;
    let alice = app.as_user("alice");
    data(&alice.cancel_order(&id, "first").await);

    // Act
    let resp = alice.cancel_order(&id, "second").await;

    // Assert
    assert_error(&resp, "CONFLICT");
    assert!(
        error_message(&resp).contains("cannot cancel an order that is CANCELLED"),
        "{resp:#}"
    );
    let order = wait_for_order(&alice, &id, "is refunded", |o| {
        o["payment"] == "REFUNDED" && o["reservation"] == "RELEASED"
    })
    .await;
    assert_eq!(order["reason"], "first");
    wait_for_stock(&admin, mug_id, 10).await;
    let adjusted = admin.adjust_stock(mug_id, 1).await;
    assert_eq!(data(&adjusted)["adjustStock"]["product"]["stock"], 11);
}

#[tokio::test]
async fn cancelling_a_rejected_order_is_a_conflict_naming_the_status() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "5.00", 10).await;
    let id = rejected_order(&app, "alice", str_of(&mug["id"])).await;

    // Act
    let resp = app.as_user("alice").cancel_order(&id, "never mind").await;

    // Assert
    assert_error(&resp, "CONFLICT");
    assert!(
        error_message(&resp).contains("cannot cancel an order that is REJECTED"),
        "{resp:#}"
    );
    assert_eq!(app.as_user("alice").order(&id).await["status"], "REJECTED");
}

// Shipping and delivery.

#[tokio::test]
async fn an_admin_ships_a_confirmed_order_and_then_delivers_it() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;

    // Act
    let shipped = admin.ship_order(&id).await;
    let delivered = admin.deliver_order(&id).await;

    // Assert
    let shipped = payload_order(&shipped, "shipOrder");
    assert_eq!(shipped["status"], "SHIPPED");
    let delivered = payload_order(&delivered, "deliverOrder");
    assert_eq!(delivered["status"], "DELIVERED");
    assert!(position(&delivered["position"]) > position(&shipped["position"]));
    let order = app.as_user("alice").order(&id).await;
    assert_eq!(order["status"], "DELIVERED");
    assert_eq!(order["payment"], "SUCCEEDED");
    assert_eq!(order["reservation"], "RESERVED");
}

#[tokio::test]
async fn shipping_a_rejected_order_is_a_conflict_naming_the_status() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let id = rejected_order(&app, "alice", str_of(&mug["id"])).await;

    // Act
    let resp = admin.ship_order(&id).await;

    // Assert
    assert_error(&resp, "CONFLICT");
    assert!(
        error_message(&resp).contains("cannot ship an order that is REJECTED"),
        "{resp:#}"
    );
    assert_eq!(admin.order(&id).await["status"], "REJECTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shipping_an_order_the_saga_has_not_confirmed_yet_is_a_conflict_naming_the_status() {
    // Arrange: `tok_flaky` keeps the order PENDING or RESERVED through two retried charges,
    // so the ship most likely arrives before the confirmation. When the saga wins the race
    // anyway, the ship is legal and must succeed.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let alice = app.as_user("alice");
    let id = alice.order_one(str_of(&mug["id"]), 1, "tok_flaky").await;

    // Act
    let resp = admin.ship_order(&id).await;

    // Assert
    match error_code(&resp) {
        None => assert_eq!(payload_order(&resp, "shipOrder")["status"], "SHIPPED"),
        Some(code) => {
            assert_eq!(code, "CONFLICT", "{resp:#}");
            let message = error_message(&resp);
            assert!(
                message.contains("cannot ship an order that is PENDING")
                    || message.contains("cannot ship an order that is RESERVED"),
                "{resp:#}"
            );
            let order = wait_for_order_status(&alice, &id, &["CONFIRMED"]).await;
            assert_eq!(order["payment"], "SUCCEEDED");
        }
    }
}

#[tokio::test]
async fn delivering_a_confirmed_order_that_was_not_shipped_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;

    // Act
    let resp = admin.deliver_order(&id).await;

    // Assert
    assert_error(&resp, "CONFLICT");
    assert!(
        error_message(&resp).contains("cannot deliver an order that is CONFIRMED"),
        "{resp:#}"
    );
    assert_eq!(admin.order(&id).await["status"], "CONFIRMED");
}

#[tokio::test]
async fn shipping_an_order_twice_is_a_conflict_naming_the_status() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;
    data(&admin.ship_order(&id).await);

    // Act
    let resp = admin.ship_order(&id).await;

    // Assert
    assert_error(&resp, "CONFLICT");
    assert!(
        error_message(&resp).contains("cannot ship an order that is SHIPPED"),
        "{resp:#}"
    );
}

#[tokio::test]
async fn shipping_or_delivering_a_cancelled_order_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "5.00", 10).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;
    data(&app.as_user("alice").cancel_order(&id, "no").await);

    // Act
    let ship = admin.ship_order(&id).await;
    let deliver = admin.deliver_order(&id).await;

    // Assert
    assert_error(&ship, "CONFLICT");
    assert!(
        error_message(&ship).contains("cannot ship an order that is CANCELLED"),
        "{ship:#}"
    );
    assert_error(&deliver, "CONFLICT");
    assert!(
        error_message(&deliver).contains("cannot deliver an order that is CANCELLED"),
        "{deliver:#}"
    );
}

#[tokio::test]
async fn shipping_an_unknown_order_is_not_found() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .ship_order(&uuid::Uuid::new_v4().to_string())
        .await;

    // Assert
    assert_error(&resp, "NOT_FOUND");
}

// Reading one order.

#[tokio::test]
async fn an_unknown_order_is_null() {
    // Arrange
    let app = spawn_app().await;
    let unknown = uuid::Uuid::new_v4().to_string();

    // Act
    let for_customer = app.as_user("alice").order(&unknown).await;
    let for_admin = app.as_admin().order(&unknown).await;

    // Assert
    assert_eq!(for_customer, Value::Null);
    assert_eq!(for_admin, Value::Null);
}

#[tokio::test]
async fn another_customers_order_is_null_without_an_error() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "5.00", 10).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;

    // Act
    let resp = app.as_user("mallory").gql(ORDER, json!({ "id": id })).await;

    // Assert
    assert_eq!(data(&resp)["order"], Value::Null, "{resp:#}");
}

// Listing orders.

/// Places `count` confirmed orders for `user`, one unit each; returns their ids oldest first.
async fn confirmed_orders(
    app: &TestApp,
    user: &str,
    product_id: &str,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(confirmed_order(app, user, product_id, 1).await);
    }
    ids
}

#[tokio::test]
async fn a_customers_orders_are_listed_newest_first() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let mut ids = confirmed_orders(&app, "alice", str_of(&mug["id"]), 3).await;

    // Act
    let connection = app.as_user("alice").orders(json!({})).await;

    // Assert
    ids.reverse();
    assert_eq!(order_ids(&connection), ids);
    assert_eq!(connection["totalCount"], 3);
    assert_eq!(connection["pageInfo"]["hasNextPage"], false);
    for edge in connection["edges"].as_array().expect("edges") {
        assert_eq!(edge["node"]["userId"], "alice");
    }
}

#[tokio::test]
async fn paging_through_orders_visits_each_exactly_once() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let mut ids = confirmed_orders(&app, "alice", str_of(&mug["id"]), 5).await;
    let alice = app.as_user("alice");

    // Act
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let page = alice.orders(json!({ "first": 2, "after": after })).await;
        pages += 1;
        assert_eq!(page["totalCount"], 5, "{page:#}");
        seen.extend(order_ids(&page));
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
        assert!(pages < 10, "paging does not end: {page:#}");
    }

    // Assert
    ids.reverse();
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn the_end_cursor_is_the_cursor_of_the_last_edge() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    confirmed_orders(&app, "alice", str_of(&mug["id"]), 3).await;

    // Act
    let page = app.as_user("alice").orders(json!({ "first": 2 })).await;

    // Assert
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["pageInfo"]["endCursor"], page["edges"][1]["cursor"]);
}

#[tokio::test]
async fn customers_see_only_their_own_orders() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let mug_id = str_of(&mug["id"]);
    let alice_ids = confirmed_orders(&app, "alice", mug_id, 2).await;
    confirmed_orders(&app, "bob", mug_id, 1).await;

    // Act
    let connection = app.as_user("alice").orders(json!({})).await;

    // Assert
    assert_eq!(connection["totalCount"], 2);
    let mut seen = order_ids(&connection);
    seen.sort();
    let mut expected = alice_ids;
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_customer_asking_for_another_users_orders_is_forbidden() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    confirmed_orders(&app, "bob", str_of(&mug["id"]), 1).await;

    // Act
    let resp = app
        .as_user("alice")
        .gql(ORDERS, json!({ "userId": "bob" }))
        .await;

    // Assert
    assert_error(&resp, "FORBIDDEN");
}

#[tokio::test]
async fn a_customer_may_name_their_own_user_id() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let mug_id = str_of(&mug["id"]);
    let ids = confirmed_orders(&app, "alice", mug_id, 1).await;
    confirmed_orders(&app, "bob", mug_id, 1).await;

    // Act
    let connection = app
        .as_user("alice")
        .orders(json!({ "userId": "alice" }))
        .await;

    // Assert
    assert_eq!(order_ids(&connection), ids);
    assert_eq!(connection["totalCount"], 1);
}

#[tokio::test]
async fn an_admin_sees_every_users_orders_or_one_users() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let mug_id = str_of(&mug["id"]);
    let alice_ids = confirmed_orders(&app, "alice", mug_id, 2).await;
    let bob_ids = confirmed_orders(&app, "bob", mug_id, 1).await;
    let admin = app.as_admin();

    // Act
    let all = admin.orders(json!({})).await;
    let bobs = admin.orders(json!({ "userId": "bob" })).await;

    // Assert
    let mut expected: Vec<String> = alice_ids.into_iter().chain(bob_ids.clone()).collect();
    expected.reverse();
    assert_eq!(order_ids(&all), expected);
    assert_eq!(all["totalCount"], 3);
    assert_eq!(order_ids(&bobs), bob_ids);
    assert_eq!(bobs["totalCount"], 1);
}

#[tokio::test]
async fn orders_can_be_filtered_by_status() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let mug_id = str_of(&mug["id"]);
    let confirmed = confirmed_orders(&app, "alice", mug_id, 2).await;
    let rejected = rejected_order(&app, "alice", mug_id).await;
    let alice = app.as_user("alice");

    // Act
    let only_rejected = alice.orders(json!({ "status": "REJECTED" })).await;
    let only_confirmed = alice.orders(json!({ "status": "CONFIRMED" })).await;
    let only_shipped = alice.orders(json!({ "status": "SHIPPED" })).await;

    // Assert
    assert_eq!(order_ids(&only_rejected), vec![rejected]);
    assert_eq!(only_rejected["totalCount"], 1);
    let mut expected = confirmed;
    expected.reverse();
    assert_eq!(order_ids(&only_confirmed), expected);
    assert_eq!(only_confirmed["totalCount"], 2);
    assert_eq!(order_ids(&only_shipped), Vec::<String>::new());
    assert_eq!(only_shipped["totalCount"], 0);
}

#[tokio::test]
async fn a_page_size_outside_zero_to_one_hundred_is_bad_user_input() {
    // Arrange
    let app = spawn_app().await;
    let alice = app.as_user("alice");

    // Act
    let negative = alice.gql(ORDERS, json!({ "first": -1 })).await;
    let too_many = alice.gql(ORDERS, json!({ "first": 101 })).await;
    let zero = alice.gql(ORDERS, json!({ "first": 0 })).await;
    let hundred = alice.gql(ORDERS, json!({ "first": 100 })).await;

    // Assert
    assert_error(&negative, "BAD_USER_INPUT");
    assert_error(&too_many, "BAD_USER_INPUT");
    assert_eq!(data(&zero)["orders"]["edges"], json!([]));
    assert_eq!(data(&hundred)["orders"]["edges"], json!([]));
}

#[tokio::test]
async fn a_first_of_zero_still_counts_the_matching_orders() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    confirmed_orders(&app, "alice", str_of(&mug["id"]), 2).await;

    // Act
    let page = app.as_user("alice").orders(json!({ "first": 0 })).await;

    // Assert
    assert_eq!(page["edges"], json!([]));
    assert_eq!(page["totalCount"], 2);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
}

#[tokio::test]
async fn a_malformed_cursor_is_bad_user_input() {
    // Arrange
    let app = spawn_app().await;
    let alice = app.as_user("alice");

    // Act
    let garbage = alice.gql(ORDERS, json!({ "after": "not a cursor" })).await;
    let base64_garbage = alice.gql(ORDERS, json!({ "after": "Zm9vYmFy" })).await;

    // Assert
    assert_error(&garbage, "BAD_USER_INPUT");
    assert_error(&base64_garbage, "BAD_USER_INPUT");
}

// The authorization of every order operation: anonymous, the owner, another customer, admin.

#[tokio::test]
async fn who_may_check_out() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let mug_id = str_of(&mug["id"]);
    let (alice, admin) = (app.as_user("alice"), app.as_admin());
    data(&alice.add_to_cart(mug_id, 1).await);
    data(&admin.add_to_cart(mug_id, 1).await);

    // Act
    let anonymous = app
        .anonymous()
        .checkout_with("tok_visa", ADDRESS, None)
        .await;
    let customer = alice.checkout_with("tok_visa", ADDRESS, None).await;
    let as_admin = admin.checkout_with("tok_visa", ADDRESS, None).await;

    // Assert
    assert_error(&anonymous, "UNAUTHENTICATED");
    assert_eq!(payload_order(&customer, "checkout")["userId"], "alice");
    assert_eq!(payload_order(&as_admin, "checkout")["userId"], "admin");
}

#[tokio::test]
async fn who_may_read_an_order() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;
    let vars = json!({ "id": id });

    // Act
    let anonymous = app.anonymous().gql(ORDER, vars.clone()).await;
    let owner = app.as_user("alice").gql(ORDER, vars.clone()).await;
    let other = app.as_user("mallory").gql(ORDER, vars.clone()).await;
    let admin = app.as_admin().gql(ORDER, vars).await;

    // Assert
    assert_error(&anonymous, "UNAUTHENTICATED");
    assert_eq!(data(&owner)["order"]["id"], id.as_str());
    assert_eq!(data(&other)["order"], Value::Null);
    assert_eq!(data(&admin)["order"]["id"], id.as_str());
    assert_eq!(data(&admin)["order"]["userId"], "alice");
}

#[tokio::test]
async fn who_may_list_orders() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let ids = confirmed_orders(&app, "alice", str_of(&mug["id"]), 1).await;

    // Act
    let anonymous = app.anonymous().gql(ORDERS, json!({})).await;
    let owner = app.as_user("alice").gql(ORDERS, json!({})).await;
    let other = app.as_user("mallory").gql(ORDERS, json!({})).await;
    let other_naming_owner = app
        .as_user("mallory")
        .gql(ORDERS, json!({ "userId": "alice" }))
        .await;
    let admin = app.as_admin().gql(ORDERS, json!({})).await;

    // Assert
    assert_error(&anonymous, "UNAUTHENTICATED");
    assert_eq!(order_ids(&data(&owner)["orders"]), ids);
    assert_eq!(data(&other)["orders"]["totalCount"], 0);
    assert_error(&other_naming_owner, "FORBIDDEN");
    assert_eq!(order_ids(&data(&admin)["orders"]), ids);
}

#[tokio::test]
async fn who_may_cancel_an_order() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let mug_id = str_of(&mug["id"]);
    let owners = confirmed_order(&app, "alice", mug_id, 1).await;
    let for_admin = confirmed_order(&app, "alice", mug_id, 1).await;

    // Act
    let anonymous = app.anonymous().cancel_order(&owners, "x").await;
    let other = app.as_user("mallory").cancel_order(&owners, "x").await;
    let owner = app.as_user("alice").cancel_order(&owners, "x").await;
    let admin = app.as_admin().cancel_order(&for_admin, "x").await;

    // Assert
    assert_error(&anonymous, "UNAUTHENTICATED");
    assert_error(&other, "NOT_FOUND");
    assert_eq!(payload_order(&owner, "cancelOrder")["status"], "CANCELLED");
    assert_eq!(payload_order(&admin, "cancelOrder")["status"], "CANCELLED");
}

#[tokio::test]
async fn who_may_ship_an_order() {
    // Arrange
    let app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;

    // Act
    let anonymous = app.anonymous().ship_order(&id).await;
    let owner = app.as_user("alice").ship_order(&id).await;
    let other = app.as_user("mallory").ship_order(&id).await;
    let admin = app.as_admin().ship_order(&id).await;

    // Assert
    assert_error(&anonymous, "UNAUTHENTICATED");
    assert_error(&owner, "FORBIDDEN");
    assert_error(&other, "FORBIDDEN");
    assert_eq!(payload_order(&admin, "shipOrder")["status"], "SHIPPED");
}

#[tokio::test]
async fn who_may_deliver_an_order() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "1.00", 50).await;
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;
    data(&admin.ship_order(&id).await);

    // Act
    let anonymous = app.anonymous().deliver_order(&id).await;
    let owner = app.as_user("alice").deliver_order(&id).await;
    let other = app.as_user("mallory").deliver_order(&id).await;
    let as_admin = admin.deliver_order(&id).await;

    // Assert
    assert_error(&anonymous, "UNAUTHENTICATED");
    assert_error(&owner, "FORBIDDEN");
    assert_error(&other, "FORBIDDEN");
    assert_eq!(
        payload_order(&as_admin, "deliverOrder")["status"],
        "DELIVERED"
    );
}

/// Behind the service's back: sets column `column` of order `id`'s view row to `value`.
async fn corrupt_order_view(app: &TestApp, id: &str, column: &str, value: Value) {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            format!("UPDATE order_view SET {column} = $1 WHERE id = $2")
        }
        _ => format!("UPDATE order_view SET {column} = ? WHERE id = ?"),
    };
    let id = uuid::Uuid::parse_str(id).expect("an order id is a UUID");
    let value: sea_orm::Value = match value {
        Value::String(s) => s.into(),
        other => other.into(),
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [value, id.into()],
    ))
    .await
    .expect("the view row is updated");
}

#[tokio::test]
async fn an_order_status_the_service_does_not_know_is_an_internal_error_not_pending() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 5).await;
    let id = confirmed_order(&app, "alice", str_of(&product["id"]), 1).await;
    corrupt_order_view(&app, &id, "status", json!("LOST")).await;

    // Act
    let resp = app.as_user("alice").gql(ORDER, json!({ "id": id })).await;

    // Assert
    assert_error(&resp, "INTERNAL");
    assert_eq!(
        resp["errors"][0]["path"],
        json!(["order", "status"]),
        "{resp:#}"
    );
}

#[tokio::test]
async fn order_lines_the_service_cannot_read_are_an_internal_error_not_an_empty_list() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 5).await;
    let id = confirmed_order(&app, "alice", str_of(&product["id"]), 1).await;
    corrupt_order_view(&app, &id, "lines", json!({ "nonsense": true })).await;

    // Act
    let resp = app.as_user("alice").gql(ORDER, json!({ "id": id })).await;

    // Assert
    assert_error(&resp, "INTERNAL");
    assert_eq!(
        resp["errors"][0]["path"],
        json!(["order", "lines"]),
        "{resp:#}"
    );
}

/// The checkpoint the orders projection has stored (it moves with each write of its view).
async fn stored_orders_checkpoint(app: &TestApp) -> i64 {
    use sea_orm::EntityTrait as _;
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    ordergraph::entity::projection_checkpoints::Entity::find_by_id("orders".to_owned())
        .one(&db)
        .await
        .expect("the checkpoints are readable")
        .map_or(0, |c| c.position)
}

#[tokio::test]
async fn a_stock_adjustment_opens_no_transaction_on_the_order_view() {
    // Arrange: an order in the view, folded up to its confirmation.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("MUG-001", "1.00", 5).await;
    let product_id = str_of(&product["id"]);
    confirmed_order(&app, "alice", product_id, 1).await;
    let before = stored_orders_checkpoint(&app).await;

    // Act: a stock adjustment, an event of a product stream the order view folds.
    let adjusted =
        position(&data(&admin.adjust_stock(product_id, 3).await)["adjustStock"]["position"]);
    wait_until("every projection has passed the adjustment", || async {
        let resp = admin.gql("{ projections { position } }", json!({})).await;
        data(&resp)["projections"]
            .as_array()
            .is_some_and(|all| all.iter().all(|p| position(&p["position"]) >= adjusted))
            .then_some(())
    })
    .await;

    // Assert: the order view was not written, not even its checkpoint.
    assert!(before > 0);
    assert_eq!(stored_orders_checkpoint(&app).await, before);
}
