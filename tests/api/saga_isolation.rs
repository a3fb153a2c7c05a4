//! One order never holds up the others (issue, point 4): a payment that fails
//! transiently is retried later, not in place, so the orders behind it are not delayed.

use futures_util::future::join_all;
use ordergraph::entity::{events, gateway_ledger};
use sea_orm::{ColumnTrait, Database, DatabaseConnection, EntityTrait, QueryFilter};

use crate::helpers::*;

async fn database(app: &TestApp) -> DatabaseConnection {
    Database::connect(app.database_url())
        .await
        .expect("the test database is reachable")
}

/// Issue, point 4: the saga retried a transient gateway error in place, so one order with
/// a flaky payment held up every order behind it. Now a transient error schedules that
/// order's next attempt and the saga goes on: an order with a working card, placed after
/// twenty flaky ones, is confirmed before most of them, and each of those is still
/// confirmed and charged exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_placed_after_twenty_flaky_payments_is_confirmed_before_most_of_them() {
    // Arrange: retries far enough apart that the visa order is placed while the flaky
    // ones wait for theirs (the assertions are on the order of events, not on time).
    let app = spawn_app_with(|s| {
        s.saga_retry_initial_ms = 1_000;
        s.saga_retry_max_ms = 2_000;
    })
    .await;
    let admin = app.as_admin();
    let mug = admin.create_product("MUG-001", "2.00", 100).await;
    let mug_id = str_of(&mug["id"]).to_owned();
    let flaky: Vec<String> = (0..20).map(|i| format!("flaky-{i}")).collect();
    for customer in flaky.iter().map(String::as_str).chain(["visa"]) {
        data(&app.as_user(customer).add_to_cart(&mug_id, 1).await);
    }

    // Act: twenty checkouts with a flaky card, then one with a card that works.
    let app_ref = &app;
    let flaky_orders = join_all(flaky.iter().map(|customer| async move {
        app_ref
            .as_user(customer)
            .checkout("tok_flaky", ADDRESS)
            .await
    }))
    .await;
    let visa = app.as_user("visa").checkout("tok_visa", ADDRESS).await;

    // Assert: the visa order's confirmation comes before most of the flaky ones'.
    let visa_confirmed = wait_for_order_status(&admin, &visa, &["CONFIRMED"]).await;
    let visa_at = position(&visa_confirmed["position"]);
    let mut confirmed_after = 0;
    for order in &flaky_orders {
        let confirmed = wait_for_order_status(&admin, order, &["CONFIRMED", "REJECTED"]).await;
        assert_eq!(confirmed["status"], "CONFIRMED", "{confirmed:#}");
        assert_eq!(confirmed["payment"], "SUCCEEDED");
        if position(&confirmed["position"]) > visa_at {
            confirmed_after += 1;
        }
    }
    assert!(
        confirmed_after >= 15,
        "only {confirmed_after} of 20 flaky orders were confirmed after the visa order"
    );
    // Each flaky order was charged once, on its third attempt, and recorded once.
    let db = database(&app).await;
    for order in &flaky_orders {
        let key = format!("charge:{order}");
        let charge = gateway_ledger::Entity::find_by_id(key.clone())
            .one(&db)
            .await
            .expect("the gateway ledger is readable")
            .unwrap_or_else(|| panic!("{key} reached the gateway"));
        assert_eq!((charge.outcome.as_str(), charge.attempts), ("SUCCEEDED", 3));
        let recorded = events::Entity::find()
            .filter(events::Column::EventType.eq("PaymentCharged"))
            .all(&db)
            .await
            .expect("the log is readable")
            .into_iter()
            .filter(|e| e.data["order_id"] == order.as_str())
            .count();
        assert_eq!(recorded, 1, "{order} is charged once");
    }
    wait_for_stock(&admin, &mug_id, 79).await;
}
