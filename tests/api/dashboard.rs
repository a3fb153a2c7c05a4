//! The admin's dashboard: orders by status (all seven, zeros included), revenue as exact
//! decimals (confirmed minus refunded), orders placed today, low stock, and the position of
//! the figures; and who may see it.

use serde_json::{Value, json};

use crate::helpers::*;

/// A confirmed order of `quantity` units of one product by `user`; returns its id.
async fn confirmed_order(app: &TestApp, user: &str, product_id: &str, quantity: i64) -> String {
    let customer = app.as_user(user);
    let id = customer.order_one(product_id, quantity, "tok_visa").await;
    wait_for_order_status(&customer, &id, &["CONFIRMED"]).await;
    id
}

/// Waits until the dashboard has folded everything up to the order's current position.
async fn dashboard_after(admin: &Caller<'_>, order_id: &str) -> Value {
    let order = admin.order(order_id).await;
    let order_position = position(&order["position"]);
    wait_for_dashboard(admin, &format!("reaches position {order_position}"), |d| {
        position(&d["position"]) >= order_position
    })
    .await
}

/// The `(sku, stock)` pairs of a `lowStock` list.
fn low_stock(list: &Value) -> Vec<(String, i64)> {
    list.as_array()
        .unwrap_or_else(|| panic!("lowStock is a list: {list}"))
        .iter()
        .map(|p| {
            (
                str_of(&p["sku"]).to_string(),
                p["stock"].as_i64().expect("stock is an Int"),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_fresh_dashboard_lists_every_status_at_zero_and_no_revenue() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let dashboard = app.as_admin().dashboard().await;

    // Assert
    let statuses: Vec<&str> = dashboard["ordersByStatus"]
        .as_array()
        .expect("ordersByStatus is a list")
        .iter()
        .map(|entry| str_of(&entry["status"]))
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    let mut expected = ORDER_STATUSES.to_vec();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "every status once: {dashboard:#}");
    for status in ORDER_STATUSES {
        assert_eq!(status_count(&dashboard, status), 0, "{status}");
    }
    assert_eq!(dashboard["revenue"], "0.00");
    assert_eq!(dashboard["ordersToday"], 0);
    assert_eq!(dashboard["lowStock"], json!([]));
    position(&dashboard["position"]);
}

#[tokio::test]
async fn two_confirmed_orders_add_up_to_the_exact_revenue() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "12.50", 10).await;
    let tee = admin.create_product("TEE-001", "7.25", 10).await;
    confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;

    // Act
    let last = confirmed_order(&app, "bob", str_of(&tee["id"]), 1).await;

    // Assert
    let dashboard = dashboard_after(&admin, &last).await;
    assert_eq!(dashboard["revenue"], "19.75");
    assert_eq!(status_count(&dashboard, "CONFIRMED"), 2);
    assert_eq!(status_count(&dashboard, "PENDING"), 0);
    assert_eq!(status_count(&dashboard, "RESERVED"), 0);
    assert_eq!(dashboard["ordersToday"], 2);
}

#[tokio::test]
async fn cancelling_a_confirmed_order_takes_its_refund_off_the_revenue() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "12.50", 10).await;
    let tee = admin.create_product("TEE-001", "7.25", 10).await;
    confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;
    let refunded = confirmed_order(&app, "bob", str_of(&tee["id"]), 1).await;
    wait_for_dashboard(&admin, "shows both sales", |d| d["revenue"] == "19.75").await;

    // Act
    data(
        &app.as_user("bob")
            .cancel_order(&refunded, "changed my mind")
            .await,
    );

    // Assert
    wait_for_order(&admin, &refunded, "is refunded", |o| {
        o["payment"] == "REFUNDED"
    })
    .await;
    let dashboard = dashboard_after(&admin, &refunded).await;
    assert_eq!(dashboard["revenue"], "12.50");
    assert_eq!(status_count(&dashboard, "CANCELLED"), 1);
    assert_eq!(status_count(&dashboard, "CONFIRMED"), 1);
    assert_eq!(dashboard["ordersToday"], 2);
}

#[tokio::test]
async fn revenue_is_exact_over_many_small_amounts() {
    // Arrange: ten orders of 0.10, which binary floating point would not sum to 1.00.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let sweet = admin.create_product("SWEET-01", "0.10", 100).await;
    let mut last = String::new();

    // Act
    for i in 0..10 {
        last = confirmed_order(&app, &format!("customer-{i}"), str_of(&sweet["id"]), 1).await;
    }

    // Assert
    let dashboard = dashboard_after(&admin, &last).await;
    assert_eq!(dashboard["revenue"], "1.00");
    assert_eq!(status_count(&dashboard, "CONFIRMED"), 10);
}

#[tokio::test]
async fn rejected_orders_are_counted_but_earn_nothing() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "12.50", 10).await;
    confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;
    let bob = app.as_user("bob");

    // Act
    let rejected = bob.order_one(str_of(&mug["id"]), 1, "tok_decline").await;

    // Assert
    wait_for_order(&bob, &rejected, "is rejected and released", |o| {
        o["status"] == "REJECTED" && o["reservation"] == "RELEASED"
    })
    .await;
    let dashboard = dashboard_after(&admin, &rejected).await;
    assert_eq!(dashboard["revenue"], "12.50");
    assert_eq!(status_count(&dashboard, "REJECTED"), 1);
    assert_eq!(status_count(&dashboard, "CONFIRMED"), 1);
    assert_eq!(dashboard["ordersToday"], 2);
}

#[tokio::test]
async fn shipping_and_delivering_move_the_counts_and_keep_the_revenue() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "12.50", 10).await;
    let mug_id = str_of(&mug["id"]);
    let shipped = confirmed_order(&app, "alice", mug_id, 1).await;
    let delivered = confirmed_order(&app, "bob", mug_id, 1).await;

    // Act
    data(&admin.ship_order(&shipped).await);
    data(&admin.ship_order(&delivered).await);
    data(&admin.deliver_order(&delivered).await);

    // Assert
    dashboard_after(&admin, &shipped).await;
    let dashboard = dashboard_after(&admin, &delivered).await;
    assert_eq!(status_count(&dashboard, "SHIPPED"), 1);
    assert_eq!(status_count(&dashboard, "DELIVERED"), 1);
    assert_eq!(status_count(&dashboard, "CONFIRMED"), 0);
    assert_eq!(dashboard["revenue"], "25.00");
}

#[tokio::test]
async fn the_dashboard_position_reaches_the_position_of_the_last_order_event() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "1.00", 10).await;
    let before = position(&admin.dashboard().await["position"]);

    // Act
    let id = confirmed_order(&app, "alice", str_of(&mug["id"]), 1).await;

    // Assert
    let order_position = position(&admin.order(&id).await["position"]);
    let dashboard = wait_for_dashboard(&admin, "reaches the order's position", |d| {
        position(&d["position"]) >= order_position
    })
    .await;
    assert!(position(&dashboard["position"]) > before);
    assert_eq!(status_count(&dashboard, "CONFIRMED"), 1);
}

/// Waits until `lowStock(threshold)` lists exactly `expected` (SKU, stock), in that order;
/// returns the list.
async fn wait_for_low_stock(admin: &Caller<'_>, threshold: i64, expected: &[(&str, i64)]) -> Value {
    let expected: Vec<(String, i64)> = expected
        .iter()
        .map(|(sku, stock)| ((*sku).to_string(), *stock))
        .collect();
    wait_for_value(
        &format!("lowStock({threshold}) is {expected:?}"),
        || async move {
            let resp = admin
                .gql(DASHBOARD_LOW_STOCK, json!({ "threshold": threshold }))
                .await;
            data(&resp)["dashboard"]["lowStock"].clone()
        },
        |list| low_stock(list) == expected,
    )
    .await
}

/// Active products of several stocks, and a discontinued one with little stock.
async fn stock_levels(admin: &Caller<'_>) {
    admin.create_product("PLENTY-1", "1.00", 50).await;
    admin.create_product("SIX-0001", "1.00", 6).await;
    admin.create_product("FIVE-001", "1.00", 5).await;
    admin.create_product("NONE-001", "1.00", 0).await;
    admin.create_product("THREE-01", "1.00", 3).await;
    let gone = admin.create_product("GONE-001", "1.00", 1).await;
    data(&admin.discontinue(str_of(&gone["id"])).await);
}

#[tokio::test]
async fn low_stock_lists_active_products_at_or_below_five_fewest_first() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    stock_levels(&admin).await;
    let expected = vec![
        ("NONE-001".to_string(), 0),
        ("THREE-01".to_string(), 3),
        ("FIVE-001".to_string(), 5),
    ];

    // Act
    let dashboard = wait_for_dashboard(&admin, "lists the low products", |d| {
        low_stock(&d["lowStock"]) == expected
    })
    .await;

    // Assert
    assert_eq!(low_stock(&dashboard["lowStock"]), expected);
}

#[tokio::test]
async fn low_stock_takes_a_threshold() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    stock_levels(&admin).await;

    // Act
    let zero = wait_for_low_stock(&admin, 0, &[("NONE-001", 0)]).await;
    let ten = wait_for_low_stock(
        &admin,
        10,
        &[
            ("NONE-001", 0),
            ("THREE-01", 3),
            ("FIVE-001", 5),
            ("SIX-0001", 6),
        ],
    )
    .await;
    let hundred = wait_for_low_stock(
        &admin,
        100,
        &[
            ("NONE-001", 0),
            ("THREE-01", 3),
            ("FIVE-001", 5),
            ("SIX-0001", 6),
            ("PLENTY-1", 50),
        ],
    )
    .await;

    // Assert: each list was exactly as expected (the waits above), of active products only.
    assert_eq!(low_stock(&zero).len(), 1);
    assert_eq!(low_stock(&ten).len(), 4);
    for product in hundred.as_array().expect("a list") {
        assert_eq!(product["status"], "ACTIVE");
    }
}

#[tokio::test]
async fn a_negative_low_stock_threshold_is_bad_user_input() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_admin()
        .gql(DASHBOARD_LOW_STOCK, json!({ "threshold": -1 }))
        .await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
}

#[tokio::test]
async fn confirmed_orders_bring_a_product_into_low_stock() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "1.00", 8).await;
    wait_for_low_stock(&admin, 5, &[]).await;

    // Act
    confirmed_order(&app, "alice", str_of(&mug["id"]), 4).await;

    // Assert
    let list = wait_for_low_stock(&admin, 5, &[("MUG-001", 4)]).await;
    assert_eq!(list[0]["status"], "ACTIVE");
}

#[tokio::test]
async fn who_may_see_the_dashboard() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let anonymous = app.anonymous().gql(DASHBOARD, json!({})).await;
    let customer = app.as_user("alice").gql(DASHBOARD, json!({})).await;
    let admin = app.as_admin().gql(DASHBOARD, json!({})).await;

    // Assert
    assert_error(&anonymous, "UNAUTHENTICATED");
    assert_error(&customer, "FORBIDDEN");
    assert_eq!(data(&admin)["dashboard"]["revenue"], "0.00");
}
