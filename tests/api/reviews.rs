//! reviewProduct: one review per user and product, a second one replaces the first, and the
//! product's averageRating / reviewCount follow.

use serde_json::json;

use crate::helpers::*;

fn rating(product: &serde_json::Value) -> Option<f64> {
    product["averageRating"].as_f64()
}

#[tokio::test]
async fn a_product_without_reviews_has_no_average_rating() {
    // Arrange
    let app = spawn_app().await;
    let created = app.as_admin().create_product("MUG-001", "10.00", 1).await;

    // Act
    let product = app.anonymous().product(str_of(&created["id"])).await;

    // Assert
    assert!(product["averageRating"].is_null(), "{product:#}");
    assert_eq!(product["reviewCount"], 0);
}

#[tokio::test]
async fn a_review_shows_in_the_payload_at_its_own_position() {
    // Arrange
    let app = spawn_app().await;
    let created = app.as_admin().create_product("MUG-001", "10.00", 1).await;

    // Act
    let resp = app.as_user("alice").review(str_of(&created["id"]), 4).await;

    // Assert
    let payload = &data(&resp)["reviewProduct"];
    assert_eq!(rating(&payload["product"]), Some(4.0));
    assert_eq!(payload["product"]["reviewCount"], 1);
    assert_eq!(payload["product"]["position"], payload["position"]);
}

#[tokio::test]
async fn a_second_review_by_the_same_user_replaces_the_first() {
    // Arrange
    let app = spawn_app().await;
    let created = app.as_admin().create_product("MUG-001", "10.00", 1).await;
    let id = str_of(&created["id"]);
    let alice = app.as_user("alice");
    let bob = app.as_user("bob");

    // Act
    data(&alice.review(id, 5).await);
    let after_bob = bob.review(id, 2).await;
    let after_alice_again = alice.review(id, 1).await;

    // Assert
    let product = &data(&after_bob)["reviewProduct"]["product"];
    assert_eq!(rating(product), Some(3.5));
    assert_eq!(product["reviewCount"], 2);
    let product = &data(&after_alice_again)["reviewProduct"]["product"];
    assert_eq!(rating(product), Some(1.5));
    assert_eq!(product["reviewCount"], 2);
    let read = app.anonymous().product(id).await;
    assert_eq!(rating(&read), Some(1.5));
    assert_eq!(read["reviewCount"], 2);
}

#[tokio::test]
async fn an_admin_may_review_a_product() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let created = admin.create_product("MUG-001", "10.00", 1).await;

    // Act
    let resp = admin.review(str_of(&created["id"]), 3).await;

    // Assert
    assert_eq!(rating(&data(&resp)["reviewProduct"]["product"]), Some(3.0));
}

#[tokio::test]
async fn ratings_outside_one_to_five_are_rejected_and_change_nothing() {
    // Arrange
    let app = spawn_app().await;
    let created = app.as_admin().create_product("MUG-001", "10.00", 1).await;
    let id = str_of(&created["id"]);
    let alice = app.as_user("alice");

    // Act
    let zero = alice.review(id, 0).await;
    let six = alice.review(id, 6).await;

    // Assert
    assert_error(&zero, "BAD_USER_INPUT");
    assert_error(&six, "BAD_USER_INPUT");
    let product = app.anonymous().product(id).await;
    assert_eq!(product["reviewCount"], 0);
    assert_eq!(product["version"], created["version"]);
}

#[tokio::test]
async fn the_extreme_ratings_one_and_five_are_accepted() {
    // Arrange
    let app = spawn_app().await;
    let created = app.as_admin().create_product("MUG-001", "10.00", 1).await;
    let id = str_of(&created["id"]);

    // Act
    let one = app.as_user("alice").review(id, 1).await;
    let five = app.as_user("bob").review(id, 5).await;

    // Assert
    data(&one);
    assert_eq!(rating(&data(&five)["reviewProduct"]["product"]), Some(3.0));
}

#[tokio::test]
async fn reviewing_an_unknown_product_is_not_found() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .as_user("alice")
        .gql(
            REVIEW_PRODUCT,
            json!({ "input": { "productId": uuid::Uuid::new_v4(), "rating": 4 } }),
        )
        .await;

    // Assert
    assert_error(&resp, "NOT_FOUND");
}

#[tokio::test]
async fn a_second_review_by_the_same_user_replaces_the_title_in_the_write_table() {
    // Arrange
    let app = spawn_app().await;
    let created = app.as_admin().create_product("MUG-001", "10.00", 1).await;
    let id = str_of(&created["id"]);
    let alice = app.as_user("alice");
    let review = |rating: i64, title: &str| {
        alice.gql(
            REVIEW_PRODUCT,
            json!({ "input": { "productId": id, "rating": rating, "title": title, "comment": "ok" } }),
        )
    };
    data(&review(5, "Lovely mug").await);

    // Act
    data(&review(2, "Chipped after a week").await);

    // Assert: the normalized table holds the second review whole, title included.
    use sea_orm::EntityTrait as _;
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    let rows = ordergraph::entity::product_reviews::Entity::find()
        .all(&db)
        .await
        .expect("the reviews are readable");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].rating, 2);
    assert_eq!(rows[0].title, "Chipped after a week");
}
