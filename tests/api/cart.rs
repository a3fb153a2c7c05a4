//! The signed-in user's own cart: adding, setting, removing, clearing; totals priced from the
//! current catalog; validation against the catalog (unknown, discontinued, stock, 99 per line).

use serde_json::{Value, json};

use crate::helpers::*;

/// The response's cart payload, checking read-your-writes: the cart is read at the position
/// of the mutation that produced it.
#[track_caller]
fn payload_cart(resp: &Value, field: &str) -> Value {
    let payload = &data(resp)[field];
    assert_eq!(
        payload["cart"]["position"], payload["position"],
        "the payload's cart is read at the mutation's position: {resp:#}"
    );
    payload["cart"].clone()
}

#[tokio::test]
async fn a_new_user_has_an_empty_cart() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let cart = app.as_user("alice").cart().await;

    // Assert
    assert_eq!(cart["userId"], "alice");
    assert_eq!(cart["items"], json!([]));
    assert_eq!(cart["itemCount"], 0);
    assert_eq!(cart["total"], "0.00");
}

#[tokio::test]
async fn adding_a_product_shows_it_in_the_payload_priced_from_the_catalog() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "19.9", 10).await;
    let id = str_of(&product["id"]);

    // Act
    let resp = app.as_user("alice").add_to_cart(id, 2).await;

    // Assert
    let cart = payload_cart(&resp, "addToCart");
    assert_eq!(cart["userId"], "alice");
    assert_eq!(cart["itemCount"], 2);
    assert_eq!(cart["total"], "39.80");
    let line = cart_line(&cart, id).expect("the cart has the product's line");
    assert_eq!(line["name"], product["name"]);
    assert_eq!(line["unitPrice"], "19.90");
    assert_eq!(line["quantity"], 2);
    assert_eq!(line["lineTotal"], "39.80");
    assert_eq!(line["product"]["id"], id);
    assert_eq!(line["product"]["stock"], 10);
}

#[tokio::test]
async fn the_cart_query_shows_what_the_payload_showed() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "5.00", 10).await;
    let alice = app.as_user("alice");
    let resp = alice.add_to_cart(str_of(&product["id"]), 3).await;
    let from_payload = payload_cart(&resp, "addToCart");

    // Act
    let cart = alice.cart().await;

    // Assert
    assert_eq!(cart, from_payload);
}

#[tokio::test]
async fn adding_the_same_product_twice_adds_to_the_existing_line() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "2.50", 10).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(id, 2).await);

    // Act
    let resp = alice.add_to_cart(id, 3).await;

    // Assert
    let cart = payload_cart(&resp, "addToCart");
    assert_eq!(cart["items"].as_array().map(Vec::len), Some(1), "{cart:#}");
    assert_eq!(cart_line(&cart, id).expect("a line")["quantity"], 5);
    assert_eq!(cart["itemCount"], 5);
    assert_eq!(cart["total"], "12.50");
}

#[tokio::test]
async fn item_count_and_total_sum_over_every_line() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "19.90", 10).await;
    let tee = admin.create_product("TEE-001", "0.05", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 2).await);

    // Act
    let resp = alice.add_to_cart(str_of(&tee["id"]), 3).await;

    // Assert
    let cart = payload_cart(&resp, "addToCart");
    assert_eq!(cart["items"].as_array().map(Vec::len), Some(2), "{cart:#}");
    assert_eq!(cart["itemCount"], 5);
    assert_eq!(cart["total"], "39.95");
    assert_eq!(
        cart_line(&cart, str_of(&tee["id"])).expect("a line")["lineTotal"],
        "0.15"
    );
}

#[tokio::test]
async fn setting_a_quantity_replaces_the_line_quantity() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 10).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(id, 2).await);

    // Act
    let resp = alice.set_quantity(id, 7).await;

    // Assert
    let cart = payload_cart(&resp, "setCartItemQuantity");
    assert_eq!(cart_line(&cart, id).expect("a line")["quantity"], 7);
    assert_eq!(cart["itemCount"], 7);
    assert_eq!(cart["total"], "7.00");
}

#[tokio::test]
async fn setting_a_quantity_of_zero_removes_the_line() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "1.00", 10).await;
    let tee = admin.create_product("TEE-001", "2.00", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 2).await);
    data(&alice.add_to_cart(str_of(&tee["id"]), 1).await);

    // Act
    let resp = alice.set_quantity(str_of(&mug["id"]), 0).await;

    // Assert
    let cart = payload_cart(&resp, "setCartItemQuantity");
    assert!(cart_line(&cart, str_of(&mug["id"])).is_none(), "{cart:#}");
    assert_eq!(cart["itemCount"], 1);
    assert_eq!(cart["total"], "2.00");
    assert_eq!(alice.cart().await, cart);
}

#[tokio::test]
async fn setting_a_negative_quantity_is_rejected_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 10).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(id, 2).await);

    // Act
    let resp = alice.set_quantity(id, -1).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(
        cart_line(&alice.cart().await, id).expect("a line")["quantity"],
        2
    );
}

#[tokio::test]
async fn removing_a_product_removes_its_line() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 10).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(id, 2).await);

    // Act
    let resp = alice.remove_from_cart(id).await;

    // Assert
    let cart = payload_cart(&resp, "removeFromCart");
    assert_eq!(cart["items"], json!([]));
    assert_eq!(cart["itemCount"], 0);
    assert_eq!(cart["total"], "0.00");
}

#[tokio::test]
async fn removing_a_product_that_is_not_in_the_cart_is_not_found() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "1.00", 10).await;
    let tee = admin.create_product("TEE-001", "1.00", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 1).await);
    let before = alice.cart().await;

    // Act
    let resp = alice.remove_from_cart(str_of(&tee["id"])).await;

    // Assert
    assert_error(&resp, "NOT_FOUND");
    assert_eq!(alice.cart().await, before);
}

#[tokio::test]
async fn clearing_the_cart_empties_it() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "1.00", 10).await;
    let tee = admin.create_product("TEE-001", "1.00", 10).await;
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(str_of(&mug["id"]), 1).await);
    data(&alice.add_to_cart(str_of(&tee["id"]), 4).await);

    // Act
    let resp = alice.clear_cart().await;

    // Assert
    let cart = payload_cart(&resp, "clearCart");
    assert_eq!(cart["items"], json!([]));
    assert_eq!(cart["itemCount"], 0);
    assert_eq!(cart["total"], "0.00");
    assert_eq!(alice.cart().await["items"], json!([]));
}

#[tokio::test]
async fn the_cart_total_follows_the_current_catalog_price() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("MUG-001", "10.00", 10).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(id, 3).await);

    // Act
    data(
        &admin
            .gql(
                UPDATE_PRODUCT,
                json!({ "input": { "id": id, "price": "12.5" } }),
            )
            .await,
    );

    // Assert
    let cart = wait_until("the cart is priced at the new price", || async {
        let cart = alice.cart().await;
        (cart["total"] == "37.50").then_some(cart)
    })
    .await;
    let line = cart_line(&cart, id).expect("a line");
    assert_eq!(line["unitPrice"], "12.50");
    assert_eq!(line["lineTotal"], "37.50");
    assert_eq!(line["product"]["price"], "12.50");
}

#[tokio::test]
async fn adding_an_unknown_product_is_not_found() {
    // Arrange
    let app = spawn_app().await;
    let alice = app.as_user("alice");

    // Act
    let resp = alice
        .add_to_cart(&uuid::Uuid::new_v4().to_string(), 1)
        .await;

    // Assert
    assert_error(&resp, "NOT_FOUND");
    assert_eq!(alice.cart().await["items"], json!([]));
}

#[tokio::test]
async fn adding_a_discontinued_product_to_the_cart_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("MUG-001", "1.00", 10).await;
    let id = str_of(&product["id"]);
    data(&admin.discontinue(id).await);
    let alice = app.as_user("alice");

    // Act
    let resp = alice.add_to_cart(id, 1).await;

    // Assert
    assert_error(&resp, "CONFLICT");
    assert_eq!(alice.cart().await["items"], json!([]));
}

#[tokio::test]
async fn adding_a_quantity_of_zero_or_less_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 10).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");

    // Act
    let zero = alice.add_to_cart(id, 0).await;
    let negative = alice.add_to_cart(id, -2).await;

    // Assert
    assert_error(&zero, "BAD_USER_INPUT");
    assert_error(&negative, "BAD_USER_INPUT");
    assert_eq!(alice.cart().await["items"], json!([]));
}

#[tokio::test]
async fn adding_more_than_the_stock_is_insufficient_stock() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 5).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");

    // Act
    let resp = alice.add_to_cart(id, 6).await;

    // Assert
    assert_error(&resp, "INSUFFICIENT_STOCK");
    assert_eq!(alice.cart().await["items"], json!([]));
}

#[tokio::test]
async fn adding_to_a_line_beyond_the_stock_is_insufficient_stock_and_keeps_the_line() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 5).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(id, 3).await);

    // Act
    let resp = alice.add_to_cart(id, 3).await;

    // Assert
    assert_error(&resp, "INSUFFICIENT_STOCK");
    assert_eq!(
        cart_line(&alice.cart().await, id).expect("a line")["quantity"],
        3
    );
}

#[tokio::test]
async fn adding_exactly_the_stock_is_allowed() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 5).await;
    let id = str_of(&product["id"]);

    // Act
    let resp = app.as_user("alice").add_to_cart(id, 5).await;

    // Assert
    let cart = payload_cart(&resp, "addToCart");
    assert_eq!(cart_line(&cart, id).expect("a line")["quantity"], 5);
}

#[tokio::test]
async fn setting_a_quantity_above_the_stock_is_insufficient_stock() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 5).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");
    data(&alice.add_to_cart(id, 1).await);

    // Act
    let resp = alice.set_quantity(id, 6).await;

    // Assert
    assert_error(&resp, "INSUFFICIENT_STOCK");
    assert_eq!(
        cart_line(&alice.cart().await, id).expect("a line")["quantity"],
        1
    );
}

#[tokio::test]
async fn a_line_is_limited_to_ninety_nine_units() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 500).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");

    // Act
    let at_limit = alice.add_to_cart(id, 99).await;
    let one_more = alice.add_to_cart(id, 1).await;
    let set_over = alice.set_quantity(id, 100).await;

    // Assert
    let cart = payload_cart(&at_limit, "addToCart");
    assert_eq!(cart_line(&cart, id).expect("a line")["quantity"], 99);
    assert_error(&one_more, "BAD_USER_INPUT");
    assert_error(&set_over, "BAD_USER_INPUT");
    assert_eq!(
        cart_line(&alice.cart().await, id).expect("a line")["quantity"],
        99
    );
}

#[tokio::test]
async fn adding_one_hundred_units_at_once_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 500).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");

    // Act
    let resp = alice.add_to_cart(id, 100).await;

    // Assert
    assert_error(&resp, "BAD_USER_INPUT");
    assert_eq!(alice.cart().await["items"], json!([]));
}

#[tokio::test]
async fn carts_are_per_user() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 10).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");
    let bob = app.as_user("bob");
    data(&alice.add_to_cart(id, 2).await);

    // Act
    let bobs_cart = bob.cart().await;
    let bob_clears = bob.clear_cart().await;

    // Assert
    assert_eq!(bobs_cart["userId"], "bob");
    assert_eq!(bobs_cart["items"], json!([]));
    assert_eq!(bobs_cart["total"], "0.00");
    data(&bob_clears);
    let alices_cart = alice.cart().await;
    assert_eq!(cart_line(&alices_cart, id).expect("a line")["quantity"], 2);
}

#[tokio::test]
async fn an_admin_has_a_cart_of_their_own() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("MUG-001", "1.00", 10).await;
    let id = str_of(&product["id"]);

    // Act
    let resp = admin.add_to_cart(id, 1).await;

    // Assert
    let cart = payload_cart(&resp, "addToCart");
    assert_eq!(cart["userId"], "admin");
    assert_eq!(cart["itemCount"], 1);
    assert_eq!(app.as_user("alice").cart().await["items"], json!([]));
}
