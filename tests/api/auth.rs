//! Who may do what: anonymous callers read the catalog only; any bad token is
//! UNAUTHENTICATED; customers may review and use their cart but not run admin mutations.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::*;

/// One request per mutation, each valid apart from who sends it, and whether it is
/// admin-only. Discontinuing comes last so that the cart mutations before it can succeed.
fn every_mutation(product_id: &str) -> Vec<(&'static str, Value, bool)> {
    vec![
        (
            CREATE_PRODUCT,
            json!({ "input": { "sku": "NEW-1", "name": "New", "description": "", "price": "1.00", "initialStock": 1 } }),
            true,
        ),
        (
            UPDATE_PRODUCT,
            json!({ "input": { "id": product_id, "name": "Renamed" } }),
            true,
        ),
        (
            ADJUST_STOCK,
            json!({ "input": { "productId": product_id, "delta": 1, "reason": "x" } }),
            true,
        ),
        (
            REVIEW_PRODUCT,
            json!({ "input": { "productId": product_id, "rating": 5 } }),
            false,
        ),
        (
            ADD_TO_CART,
            json!({ "input": { "productId": product_id, "quantity": 1 } }),
            false,
        ),
        (
            SET_CART_ITEM_QUANTITY,
            json!({ "input": { "productId": product_id, "quantity": 2 } }),
            false,
        ),
        (REMOVE_FROM_CART, json!({ "productId": product_id }), false),
        (CLEAR_CART, json!({}), false),
        (DISCONTINUE_PRODUCT, json!({ "id": product_id }), true),
    ]
}

/// Asserts every mutation and the `cart` query are refused with UNAUTHENTICATED for `caller`,
/// and that the product is untouched afterwards.
async fn assert_unauthenticated(app: &TestApp, caller: Caller<'_>) {
    let product = app.as_admin().create_product("MUG-001", "1.00", 5).await;
    let id = str_of(&product["id"]);

    for (query, variables, _) in every_mutation(id) {
        let resp = caller.gql(query, variables).await;
        assert_error(&resp, "UNAUTHENTICATED");
    }
    let resp = caller.gql(CART, json!({})).await;
    assert_error(&resp, "UNAUTHENTICATED");

    assert_eq!(app.anonymous().product(id).await, product);
    let listing = app
        .anonymous()
        .products(json!({ "includeDiscontinued": true }))
        .await;
    assert_eq!(listing["totalCount"], 1);
}

#[tokio::test]
async fn anonymous_callers_can_read_the_catalog() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 5).await;

    // Act
    let one = app.gql(PRODUCT, json!({ "id": product["id"] })).await;
    let many = app.gql(PRODUCTS, json!({})).await;

    // Assert
    assert_eq!(data(&one)["product"]["sku"], "MUG-001");
    assert_eq!(data(&many)["products"]["totalCount"], 1);
}

#[tokio::test]
async fn anonymous_callers_cannot_mutate_or_read_a_cart() {
    // Arrange
    let app = spawn_app().await;

    // Act + Assert
    assert_unauthenticated(&app, app.anonymous()).await;
}

#[tokio::test]
async fn an_expired_token_is_unauthenticated() {
    // Arrange
    let app = spawn_app().await;

    // Act + Assert
    assert_unauthenticated(&app, app.with_token(expired_token("alice"))).await;
}

#[tokio::test]
async fn a_garbage_token_is_unauthenticated() {
    // Arrange
    let app = spawn_app().await;

    // Act + Assert
    assert_unauthenticated(&app, app.with_token("garbage.not.ajwt")).await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_unauthenticated() {
    // Arrange
    let app = spawn_app().await;

    // Act + Assert
    assert_unauthenticated(&app, app.with_token(wrong_secret_token("mallory"))).await;
}

#[tokio::test]
async fn an_unsigned_token_is_unauthenticated() {
    // Arrange
    let app = spawn_app().await;
    let encode = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let now = unix_now();
    let unsigned = format!(
        "{}.{}.",
        encode(json!({ "alg": "none", "typ": "JWT" })),
        encode(json!({ "sub": "mallory", "role": "admin", "iat": now, "exp": now + 3600 })),
    );

    // Act + Assert
    assert_unauthenticated(&app, app.with_token(unsigned)).await;
}

#[tokio::test]
async fn a_token_with_an_unknown_role_is_unauthenticated() {
    // Arrange
    let app = spawn_app().await;
    let now = unix_now();
    let token = sign_claims(
        &json!({ "sub": "mallory", "role": "superuser", "iat": now, "exp": now + 3600 }),
        JWT_SECRET,
    );

    // Act + Assert
    assert_unauthenticated(&app, app.with_token(token)).await;
}

#[tokio::test]
async fn a_token_signed_by_hand_with_the_right_secret_is_accepted() {
    // Arrange
    let app = spawn_app().await;
    let now = unix_now();
    let token = sign_claims(
        &json!({ "sub": "carol", "role": "customer", "iat": now, "exp": now + 3600 }),
        JWT_SECRET,
    );

    // Act
    let cart = app.with_token(token).cart().await;

    // Assert
    assert_eq!(cart["userId"], "carol");
}

#[tokio::test]
async fn a_customer_cannot_run_admin_mutations() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 5).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");

    let admin_only = every_mutation(id).into_iter().filter(|m| m.2);
    for (query, variables, _) in admin_only {
        // Act
        let resp = alice.gql(query, variables).await;

        // Assert
        assert_error(&resp, "FORBIDDEN");
    }
    assert_eq!(app.anonymous().product(id).await, product);
    let listing = app
        .anonymous()
        .products(json!({ "includeDiscontinued": true }))
        .await;
    assert_eq!(listing["totalCount"], 1);
}

#[tokio::test]
async fn a_customer_can_review_and_use_their_cart() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 5).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");

    // Act
    let review = alice.review(id, 4).await;
    let add = alice.add_to_cart(id, 1).await;
    let set = alice.set_quantity(id, 2).await;
    let remove = alice.remove_from_cart(id).await;
    let clear = alice.clear_cart().await;

    // Assert
    for resp in [review, add, set, remove, clear] {
        data(&resp);
    }
}

#[tokio::test]
async fn an_admin_can_run_every_catalog_and_cart_mutation() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("MUG-001", "1.00", 5).await;
    let id = str_of(&product["id"]);

    for (query, variables, _) in every_mutation(id) {
        // Act
        let resp = admin.gql(query, variables).await;

        // Assert
        data(&resp);
    }
}

/// Claims for bob as a customer, with `extra` merged in.
fn bob_claims(extra: Value) -> Value {
    let mut claims = json!({ "sub": "bob", "role": "customer", "exp": unix_now() + 600 });
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    claims
}

#[tokio::test]
async fn a_token_with_only_sub_role_and_exp_is_accepted() {
    // The README promises sub, role and exp; iat is optional.
    let app = spawn_app().await;
    let token = sign_claims(&bob_claims(json!({})), JWT_SECRET);

    let resp = app.with_token(token).gql(CART, json!({})).await;

    assert!(data(&resp)["cart"].is_object(), "{resp}");
}

#[tokio::test]
async fn a_token_not_valid_yet_is_unauthenticated() {
    let app = spawn_app().await;
    let early = sign_claims(&bob_claims(json!({ "nbf": unix_now() + 300 })), JWT_SECRET);
    let due = sign_claims(&bob_claims(json!({ "nbf": unix_now() - 1 })), JWT_SECRET);

    let refused = app.with_token(early).gql(CART, json!({})).await;
    let accepted = app.with_token(due).gql(CART, json!({})).await;

    assert_error(&refused, "UNAUTHENTICATED");
    assert!(
        error_message(&refused).contains("not valid yet"),
        "{refused}"
    );
    assert!(data(&accepted)["cart"].is_object(), "{accepted}");
}

#[tokio::test]
async fn a_token_valid_for_longer_than_the_configured_maximum_is_unauthenticated() {
    let app = spawn_app_with(|s| s.max_token_lifetime_secs = Some(3_600)).await;
    let now = unix_now();
    let long = sign_claims(
        &bob_claims(json!({ "iat": now, "exp": now + 7_200 })),
        JWT_SECRET,
    );
    // Without iat, what is left of its life counts.
    let long_without_iat = sign_claims(&bob_claims(json!({ "exp": now + 7_200 })), JWT_SECRET);
    let short = sign_claims(
        &bob_claims(json!({ "iat": now, "exp": now + 600 })),
        JWT_SECRET,
    );

    for token in [long, long_without_iat] {
        let resp = app.with_token(token).gql(CART, json!({})).await;
        assert_error(&resp, "UNAUTHENTICATED");
        assert!(error_message(&resp).contains("longer than"), "{resp}");
    }
    let resp = app.with_token(short).gql(CART, json!({})).await;
    assert!(data(&resp)["cart"].is_object(), "{resp}");
}
