//! The order saga as a client sees it: after checkout, stock is reserved (all or nothing)
//! and the payment charged, or the order is rejected and compensated. `tok_visa` confirms,
//! `tok_decline` is declined, `tok_flaky` is retried until it succeeds (and charged once),
//! any other token is invalid; too little stock rejects the order with nothing reserved.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::*;

/// Waits until the order is REJECTED with its reservation settled (not RESERVED).
async fn wait_for_rejection(caller: &Caller<'_>, id: &str) -> Value {
    wait_for_order(caller, id, "is rejected and compensated", |order| {
        order["status"] == "REJECTED" && order["reservation"] != "RESERVED"
    })
    .await
}

#[tokio::test]
async fn a_visa_payment_confirms_the_order_and_takes_its_stock() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "4.50", 10).await;
    let mug_id = str_of(&mug["id"]);
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(mug_id, 3).await);

    // Act
    let resp = alice.checkout_with("tok_visa", ADDRESS, None).await;

    // Assert
    let placed = data(&resp)["checkout"]["order"].clone();
    let id = str_of(&placed["id"]);
    let order = wait_for_order_status(&alice, id, &["CONFIRMED"]).await;
    assert_eq!(order["reservation"], "RESERVED");
    assert_eq!(order["payment"], "SUCCEEDED");
    assert_eq!(order["reason"], Value::Null);
    assert_eq!(order["total"], "13.50");
    assert!(
        position(&order["position"]) > position(&data(&resp)["checkout"]["position"]),
        "the saga's events move the view's position: {order:#}"
    );
    wait_for_stock(&admin, mug_id, 7).await;
}

#[tokio::test]
async fn a_confirmed_order_takes_stock_from_every_product_it_contains() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "4.50", 10).await;
    let tee = admin.create_product("TEE-001", "12.00", 4).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 2).await);
    data(&alice.add_to_cart(str_of(&tee["id"]), 4).await);

    // Act
    let id = alice.checkout("tok_visa", ADDRESS).await;

    // Assert
    let order = wait_for_order_status(&alice, &id, &["CONFIRMED"]).await;
    assert_eq!(order["total"], "57.00");
    wait_for_stock(&admin, str_of(&mug["id"]), 8).await;
    wait_for_stock(&admin, str_of(&tee["id"]), 0).await;
    assert_eq!(admin.product(str_of(&tee["id"])).await["inStock"], false);
}

#[tokio::test]
async fn a_declined_payment_rejects_the_order_and_gives_the_stock_back() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "4.50", 10).await;
    let mug_id = str_of(&mug["id"]);
    let alice = app.as_user("alice");

    // Act
    let id = alice.order_one(mug_id, 3, "tok_decline").await;

    // Assert
    let order = wait_for_rejection(&alice, &id).await;
    assert_eq!(order["reservation"], "RELEASED");
    assert_eq!(order["payment"], "DECLINED");
    let reason = str_of(&order["reason"]);
    assert!(reason.contains("declined"), "{order:#}");
    wait_for_stock(&admin, mug_id, 10).await;
    // Given back exactly once: a later write sees 10 + 1.
    let adjusted = admin.adjust_stock(mug_id, 1).await;
    assert_eq!(data(&adjusted)["adjustStock"]["product"]["stock"], 11);
}

#[tokio::test]
async fn a_flaky_payment_is_retried_until_the_order_is_confirmed_and_charged_once() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "4.50", 10).await;
    let mug_id = str_of(&mug["id"]);
    let alice = app.as_user("alice");

    // Act
    let id = alice.order_one(mug_id, 2, "tok_flaky").await;

    // Assert
    let order = wait_for_order_status(&alice, &id, &["CONFIRMED", "REJECTED"]).await;
    assert_eq!(order["status"], "CONFIRMED", "{order:#}");
    assert_eq!(order["payment"], "SUCCEEDED");
    assert_eq!(order["reservation"], "RESERVED");
    let order_position = position(&order["position"]);
    let dashboard = wait_for_dashboard(&admin, "has folded the confirmation", |d| {
        position(&d["position"]) >= order_position
    })
    .await;
    assert_eq!(dashboard["revenue"], "9.00", "charged once: {dashboard:#}");
    wait_for_stock(&admin, mug_id, 8).await;
}

#[tokio::test]
async fn too_little_stock_at_reservation_rejects_the_order_and_reserves_nothing() {
    // Arrange: the stock drops between adding to the cart and checking out.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "4.50", 5).await;
    let mug_id = str_of(&mug["id"]);
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(mug_id, 5).await);
    data(&admin.adjust_stock(mug_id, -3).await);

    // Act
    let id = alice.checkout("tok_visa", ADDRESS).await;

    // Assert
    let order = wait_for_rejection(&alice, &id).await;
    assert_eq!(order["reservation"], "FAILED");
    assert_eq!(order["payment"], "NOT_STARTED");
    assert!(
        str_of(&order["reason"]).contains("insufficient stock"),
        "{order:#}"
    );
    let adjusted = admin.adjust_stock(mug_id, 1).await;
    assert_eq!(
        data(&adjusted)["adjustStock"]["product"]["stock"],
        3,
        "nothing was reserved: 2 + 1"
    );
}

#[tokio::test]
async fn the_reservation_is_all_or_nothing_across_the_lines() {
    // Arrange: enough mugs, too few tees.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "4.50", 10).await;
    let tee = admin.create_product("TEE-001", "12.00", 4).await;
    let (mug_id, tee_id) = (str_of(&mug["id"]), str_of(&tee["id"]));
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(mug_id, 2).await);
    data(&alice.add_to_cart(tee_id, 4).await);
    data(&admin.adjust_stock(tee_id, -1).await);

    // Act
    let id = alice.checkout("tok_visa", ADDRESS).await;

    // Assert
    let order = wait_for_rejection(&alice, &id).await;
    assert_eq!(order["reservation"], "FAILED");
    assert!(
        str_of(&order["reason"]).contains("insufficient stock"),
        "{order:#}"
    );
    let mugs = admin.adjust_stock(mug_id, 1).await;
    assert_eq!(
        data(&mugs)["adjustStock"]["product"]["stock"],
        11,
        "no mug stays reserved"
    );
    let tees = admin.adjust_stock(tee_id, 1).await;
    assert_eq!(data(&tees)["adjustStock"]["product"]["stock"], 4);
}

#[tokio::test]
async fn an_unknown_payment_token_rejects_the_order_as_invalid() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "4.50", 10).await;
    let mug_id = str_of(&mug["id"]);
    let alice = app.as_user("alice");

    // Act
    let id = alice.order_one(mug_id, 2, "tok_counterfeit").await;

    // Assert
    let order = wait_for_rejection(&alice, &id).await;
    assert!(
        str_of(&order["reason"]).contains("invalid payment token"),
        "{order:#}"
    );
    assert_ne!(order["payment"], "SUCCEEDED");
    wait_for_stock(&admin, mug_id, 10).await;
}

#[tokio::test]
async fn a_rejected_order_charges_nothing() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "4.50", 10).await;
    let alice = app.as_user("alice");

    // Act
    let id = alice.order_one(str_of(&mug["id"]), 2, "tok_decline").await;

    // Assert
    let order = wait_for_rejection(&alice, &id).await;
    let order_position = position(&order["position"]);
    let dashboard = wait_for_dashboard(&admin, "has folded the rejection", |d| {
        position(&d["position"]) >= order_position
    })
    .await;
    assert_eq!(dashboard["revenue"], "0.00", "{dashboard:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checkouts_for_the_last_units_confirm_exactly_as_many_as_there_are() {
    // Arrange: twelve customers each hold one of four mugs in their cart.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "2.00", 4).await;
    let mug_id = str_of(&mug["id"]);
    let customers: Vec<_> = (0..12)
        .map(|i| app.as_user(&format!("customer-{i}")))
        .collect();
    for customer in &customers {
        data(&customer.add_to_cart(mug_id, 1).await);
    }

    // Act
    let ids = join_all(
        customers
            .iter()
            .map(|customer| customer.checkout("tok_visa", ADDRESS)),
    )
    .await;

    // Assert
    let mut confirmed = 0;
    let mut rejected = 0;
    for (customer, id) in customers.iter().zip(&ids) {
        let order = wait_for_order_status(customer, id, &["CONFIRMED", "REJECTED"]).await;
        if order["status"] == "CONFIRMED" {
            confirmed += 1;
            assert_eq!(order["reservation"], "RESERVED", "{order:#}");
        } else {
            rejected += 1;
            assert_eq!(order["reservation"], "FAILED", "{order:#}");
            assert!(
                str_of(&order["reason"]).contains("insufficient stock"),
                "{order:#}"
            );
        }
    }
    assert_eq!((confirmed, rejected), (4, 8));
    wait_for_stock(&admin, mug_id, 0).await;
    let listed = admin
        .orders(json!({ "status": "CONFIRMED", "first": 100 }))
        .await;
    assert_eq!(listed["totalCount"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_placed_just_before_a_restart_is_carried_through_after_it() {
    // Arrange
    let mut app = spawn_app().await;
    let mug = app.as_admin().create_product("MUG-001", "4.50", 10).await;
    let mug_id = str_of(&mug["id"]).to_string();
    let id = app
        .as_user("alice")
        .order_one(&mug_id, 2, "tok_flaky")
        .await;

    // Act
    app.restart().await;

    // Assert
    let alice = app.as_user("alice");
    let order = wait_for_order_status(&alice, &id, &["CONFIRMED", "REJECTED"]).await;
    assert_eq!(order["status"], "CONFIRMED", "{order:#}");
    assert_eq!(order["payment"], "SUCCEEDED");
    let admin = app.as_admin();
    wait_for_stock(&admin, &mug_id, 8).await;
    let order_position = position(&order["position"]);
    let dashboard = wait_for_dashboard(&admin, "has folded the confirmation", |d| {
        position(&d["position"]) >= order_position
    })
    .await;
    assert_eq!(dashboard["revenue"], "9.00", "charged once: {dashboard:#}");
}
