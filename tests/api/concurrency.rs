//! Concurrent writers: optimistic concurrency on expectedVersion, stock that never goes below
//! zero under a burst of decrements, unique SKUs, no lost cart updates, and idempotent retries
//! racing each other.

use futures_util::future::join_all;
use sea_orm::EntityTrait as _;
use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_adjustments_at_the_same_expected_version_let_exactly_one_through() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("MUG-001", "1.00", 10).await;
    let id = &product["id"];
    let adjust = |delta: i64| {
        admin.gql(
            ADJUST_STOCK,
            json!({ "input": { "productId": id, "delta": delta, "reason": "race", "expectedVersion": 1 } }),
        )
    };

    // Act
    let (a, b) = tokio::join!(adjust(1), adjust(2));

    // Assert
    let codes = [error_code(&a), error_code(&b)];
    assert!(
        codes.contains(&None) && codes.contains(&Some("CONFLICT".to_string())),
        "one succeeds, the other is a CONFLICT: {a:#} {b:#}"
    );
    let winner = if error_code(&a).is_none() { &a } else { &b };
    let read = admin.product(str_of(id)).await;
    assert_eq!(read["version"], 2);
    assert_eq!(
        read["stock"],
        data(winner)["adjustStock"]["product"]["stock"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_decrements_of_a_stock_of_twenty_leave_exactly_zero() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("MUG-001", "1.00", 20).await;
    let id = str_of(&product["id"]);

    // Act
    let responses = join_all((0..32).map(|_| admin.adjust_stock(id, -1))).await;

    // Assert
    let succeeded = responses.iter().filter(|r| error_code(r).is_none()).count();
    let insufficient = responses
        .iter()
        .filter(|r| error_code(r).as_deref() == Some("INSUFFICIENT_STOCK"))
        .count();
    let others: Vec<_> = responses
        .iter()
        .filter(|r| !matches!(error_code(r).as_deref(), None | Some("INSUFFICIENT_STOCK")))
        .collect();
    assert!(others.is_empty(), "unexpected outcomes: {others:#?}");
    assert_eq!(succeeded, 20);
    assert_eq!(insufficient, 12);
    for resp in responses.iter().filter(|r| error_code(r).is_none()) {
        let stock = data(resp)["adjustStock"]["product"]["stock"]
            .as_i64()
            .expect("stock is an Int");
        assert!(stock >= 0, "{resp:#}");
    }
    let read = admin.product(id).await;
    assert_eq!(read["stock"], 0);
    assert_eq!(read["inStock"], false);
    assert_eq!(read["version"], 21);
    // The normalized write table agrees with the view.
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .unwrap();
    let row = ordergraph::entity::products::Entity::find_by_id(id.parse::<uuid::Uuid>().unwrap())
        .one(&db)
        .await
        .unwrap()
        .expect("the product has a write-table row");
    assert_eq!((row.stock, row.version), (0, 21));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_the_same_sku_create_one_product() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let create = |n: usize| {
        admin.gql(
            CREATE_PRODUCT,
            json!({ "input": { "sku": "MUG-001", "name": format!("Mug {n}"), "description": "", "price": "1.00", "initialStock": 1 } }),
        )
    };

    // Act
    let responses = join_all((0..8).map(create)).await;

    // Assert
    let codes: Vec<_> = responses.iter().map(error_code).collect();
    assert_eq!(codes.iter().filter(|c| c.is_none()).count(), 1, "{codes:?}");
    assert!(
        codes.iter().flatten().all(|code| code == "CONFLICT"),
        "the losers are CONFLICTs: {responses:#?}"
    );
    let listing = app.anonymous().products(json!({})).await;
    assert_eq!(listing["totalCount"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_additions_to_one_cart_lose_no_update() {
    // Arrange
    let app = spawn_app().await;
    let product = app.as_admin().create_product("MUG-001", "1.00", 50).await;
    let id = str_of(&product["id"]);
    let alice = app.as_user("alice");

    // Act
    let responses = join_all((0..10).map(|_| alice.add_to_cart(id, 1))).await;

    // Assert
    let codes: Vec<_> = responses.iter().map(error_code).collect();
    assert!(
        codes.iter().flatten().all(|code| code == "CONFLICT"),
        "an addition either succeeds or is a CONFLICT: {responses:#?}"
    );
    let succeeded = codes.iter().filter(|c| c.is_none()).count();
    assert!(succeeded >= 1, "{responses:#?}");
    let cart = alice.cart().await;
    let quantity = cart_line(&cart, id).expect("a line")["quantity"].clone();
    assert_eq!(quantity, succeeded, "{cart:#}");
    assert_eq!(cart["itemCount"], succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_with_one_idempotency_key_write_once_and_agree() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("MUG-001", "1.00", 10).await;
    let id = str_of(&product["id"]);
    let retry = || {
        admin.gql(
            ADJUST_STOCK,
            json!({ "input": { "productId": id, "delta": 5, "reason": "restock", "idempotencyKey": "restock-1" } }),
        )
    };

    // Act
    let responses = join_all((0..8).map(|_| retry())).await;

    // Assert
    let positions: Vec<_> = responses
        .iter()
        .map(|r| data(r)["adjustStock"]["position"].clone())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] == w[1]),
        "every retry returns the first payload: {positions:?}"
    );
    let read = admin.product(id).await;
    assert_eq!(read["stock"], 15);
    assert_eq!(read["version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_add_to_cart_racing_the_last_unit_away_is_refused_or_comes_first_in_the_log() {
    // Arrange: products with one unit each, and as many customers.
    let app = spawn_app().await;
    let admin = app.as_admin();
    for round in 0..20 {
        let product = admin
            .create_product(&format!("MUG-{round:03}"), "1.00", 1)
            .await;
        let id = str_of(&product["id"]);
        let customer = app.as_user(&format!("customer-{round}"));

        // Act: the customer adds the unit while an admin takes it out of stock.
        let (added, taken) = tokio::join!(customer.add_to_cart(id, 1), admin.adjust_stock(id, -1));

        // Assert: the cart was decided on the stock as it was when the line was written,
        // so a line that got in precedes the adjustment that emptied the stock.
        let taken_at = position(&data(&taken)["adjustStock"]["position"]);
        match error_code(&added) {
            None => {
                let added_at = position(&data(&added)["addToCart"]["position"]);
                assert!(
                    added_at < taken_at,
                    "round {round}: the line was added at {added_at}, after the stock ran out at {taken_at}"
                );
            }
            Some(code) => assert_eq!(code, "INSUFFICIENT_STOCK", "round {round}: {added:#}"),
        }
    }
}
