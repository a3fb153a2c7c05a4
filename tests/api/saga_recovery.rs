//! The order saga survives a crash at every step boundary: the service is stopped right
//! there (a fault-injection hook compiled only for tests), restarted on the same
//! database, and every order still reaches exactly one final state with its stock
//! reserved and its payment charged (or refunded) exactly once, also when the crash comes
//! in a retry the saga scheduled after a transient payment error. Plus the oversell race:
//! many checkouts for the last units never sell more than there is.

use futures_util::future::join_all;
use ordergraph::domain::payment::PaymentEvent;
use ordergraph::domain::values::Money;
use ordergraph::entity::{events, gateway_ledger, products};
use ordergraph::process::order_saga::{Boundary, SagaFault};
use ordergraph::write::event_store::{self, EventMetadata};
use ordergraph::write::orders::payment_stream_id;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter, TransactionTrait};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const CHECKOUT: &str = "mutation($token: String!, $key: String!) { checkout(input: {paymentToken: $token, shippingAddress: \"1 Main St\", idempotencyKey: $key}) { position order { id } } }";
const ORDER: &str =
    "query($id: UUID!) { order(id: $id) { id status reservation payment reason total } }";
const CANCEL: &str = "mutation($id: UUID!) { cancelOrder(id: $id, reason: \"changed my mind\") { order { status } } }";

/// What the event log and the gateway's ledger hold for one order.
#[derive(Debug, Default, PartialEq, Eq)]
struct Ledger {
    reserved: usize,
    released: usize,
    charged: usize,
    declined: usize,
    refunded: usize,
    gateway_charges: usize,
    gateway_refunds: usize,
}

async fn ledger(app: &TestApp, order_id: &str) -> Ledger {
    let db = Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    let rows = events::Entity::find()
        .all(&db)
        .await
        .expect("the log is readable");
    let mentions = |row: &events::Model| {
        row.stream_id.to_string() == order_id || row.data["order_id"] == order_id
    };
    let count = |event_type: &str| {
        rows.iter()
            .filter(|r| r.event_type == event_type && mentions(r))
            .count()
    };
    let gateway = gateway_ledger::Entity::find()
        .filter(gateway_ledger::Column::Outcome.eq("SUCCEEDED"))
        .all(&db)
        .await
        .expect("the gateway ledger is readable");
    Ledger {
        reserved: count("ProductStockReserved"),
        released: count("ProductStockReleased"),
        charged: count("PaymentCharged"),
        declined: count("PaymentDeclined"),
        refunded: count("PaymentRefunded"),
        gateway_charges: gateway
            .iter()
            .filter(|g| g.idempotency_key == format!("charge:{order_id}"))
            .count(),
        gateway_refunds: gateway
            .iter()
            .filter(|g| g.idempotency_key == format!("refund:{order_id}"))
            .count(),
    }
}

/// Stock as the catalog view shows it and as the write table holds it.
async fn stock_both_ways(app: &TestApp, product_id: &str) -> (i64, i64) {
    let view = app.anonymous().product(product_id).await["stock"]
        .as_i64()
        .expect("stock is an Int");
    let db = Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    let id = product_id.parse::<Uuid>().expect("a product id is a UUID");
    let row = products::Entity::find_by_id(id)
        .one(&db)
        .await
        .expect("the write table is readable")
        .expect("the product has a write-table row");
    (view, row.stock)
}

async fn order_in(app: &TestApp, id: &str, statuses: &[&str]) -> Value {
    let admin = app.as_admin();
    wait_until(
        &format!("order {id} reaches one of {statuses:?}"),
        || async {
            let resp = admin.gql(ORDER, json!({ "id": id })).await;
            let order = resp["data"]["order"].clone();
            statuses
                .contains(&order["status"].as_str().unwrap_or_default())
                .then_some(order)
        },
    )
    .await
}

async fn order_where(app: &TestApp, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let admin = app.as_admin();
    wait_until(&format!("order {id}: {what}"), || async {
        let resp = admin.gql(ORDER, json!({ "id": id })).await;
        let order = resp["data"]["order"].clone();
        check(&order).then_some(order)
    })
    .await
}

/// Checks out alice's cart with an idempotency key; when the crash cut the answer short,
/// the same request after the restart returns the same order. Says whether it restarted.
async fn checkout_surviving_a_crash(app: &mut TestApp, token: &str) -> (String, bool) {
    let vars = json!({ "token": token, "key": "checkout-1" });
    let resp = app.as_user("alice").gql(CHECKOUT, vars.clone()).await;
    if let Some(id) = resp["data"]["checkout"]["order"]["id"].as_str() {
        return (id.to_owned(), false);
    }
    let _ = app.stopped().await;
    app.restart_with(|s| s.saga_fault = None).await;
    let resp = app.as_user("alice").gql(CHECKOUT, vars).await;
    (
        str_of(&data(&resp)["checkout"]["order"]["id"]).to_owned(),
        true,
    )
}

/// A product with 10 units, 2 of them in alice's cart.
async fn arrange(app: &TestApp) -> String {
    let product = app.as_admin().create_product("CRASH-1", "5.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    data(&app.as_user("alice").add_to_cart(&id, 2).await);
    id
}

async fn crashing_app(at: Boundary) -> TestApp {
    spawn_app_with(|s| {
        s.saga_fault = Some(SagaFault { at });
        // The crash stops the relay too: do not wait long for views that cannot move.
        s.consistency_wait_ms = 2_000;
    })
    .await
}

async fn crash_and_restart(app: &mut TestApp) {
    let ended = app.stopped().await;
    assert!(ended.is_err(), "the injected fault stops the service");
    app.restart_with(|s| s.saga_fault = None).await;
}

async fn a_paid_order_survives_a_crash_at(at: Boundary) {
    a_paid_order_survives_a_crash_with(at, "tok_visa").await;
}

/// With `tok_flaky` the charge succeeds on the third attempt, a retry the saga scheduled
/// (a row in its dead letters): the crash comes in the middle of that retry.
async fn a_paid_order_survives_a_crash_with(at: Boundary, token: &str) {
    // Arrange
    let mut app = crashing_app(at).await;
    let product = arrange(&app).await;

    // Act: check out; the saga dies at the boundary; restart.
    let (order, restarted) = checkout_surviving_a_crash(&mut app, token).await;
    if !restarted {
        // Whether or not the fault has fired yet: wait for it, then restart.
        crash_and_restart(&mut app).await;
    }

    // Assert: confirmed once, stock and money counted once.
    let confirmed = order_in(&app, &order, &["CONFIRMED"]).await;
    assert_eq!(
        (
            confirmed["reservation"].as_str(),
            confirmed["payment"].as_str()
        ),
        (Some("RESERVED"), Some("SUCCEEDED"))
    );
    assert_eq!(stock_both_ways(&app, &product).await, (8, 8));
    let expected = Ledger {
        reserved: 1,
        charged: 1,
        gateway_charges: 1,
        ..Ledger::default()
    };
    assert_eq!(ledger(&app, &order).await, expected);
    let dashboard = app
        .as_admin()
        .gql("{ dashboard { revenue } }", json!({}))
        .await;
    assert_eq!(data(&dashboard)["dashboard"]["revenue"], "10.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_the_reservation_neither_loses_nor_doubles_the_order() {
    a_paid_order_survives_a_crash_at(Boundary::AfterReserve).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_the_gateway_charged_but_before_it_was_recorded_charges_once() {
    a_paid_order_survives_a_crash_at(Boundary::AfterGatewayCharge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_the_charge_was_recorded_with_the_confirmation_changes_nothing_more() {
    a_paid_order_survives_a_crash_at(Boundary::AfterSettle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_in_a_scheduled_retry_after_the_gateway_charged_charges_once() {
    a_paid_order_survives_a_crash_with(Boundary::AfterGatewayCharge, "tok_flaky").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_in_a_scheduled_retry_after_the_charge_was_recorded_changes_nothing_more() {
    a_paid_order_survives_a_crash_with(Boundary::AfterSettle, "tok_flaky").await;
}

async fn a_declined_order_survives_a_crash_at(at: Boundary) {
    // Arrange
    let mut app = crashing_app(at).await;
    let product = arrange(&app).await;

    // Act
    let (order, restarted) = checkout_surviving_a_crash(&mut app, "tok_decline").await;
    if !restarted {
        crash_and_restart(&mut app).await;
    }

    // Assert: rejected once, the stock given back once, nothing charged.
    let rejected = order_where(&app, &order, "rejected with its stock released", |o| {
        o["status"] == "REJECTED" && o["reservation"] == "RELEASED"
    })
    .await;
    assert_eq!(rejected["payment"], "DECLINED");
    assert!(
        str_of(&rejected["reason"]).contains("declined"),
        "{rejected:#}"
    );
    assert_eq!(stock_both_ways(&app, &product).await, (10, 10));
    let expected = Ledger {
        reserved: 1,
        released: 1,
        declined: 1,
        ..Ledger::default()
    };
    assert_eq!(ledger(&app, &order).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_a_decline_was_recorded_with_the_release_releases_nothing_twice() {
    a_declined_order_survives_a_crash_at(Boundary::AfterSettle).await;
}

async fn a_cancelled_paid_order_survives_a_crash_at(at: Boundary) {
    // Arrange: a confirmed order (the fault only lies on the compensation path).
    let mut app = crashing_app(at).await;
    let product = arrange(&app).await;
    let (order, _) = checkout_surviving_a_crash(&mut app, "tok_visa").await;
    order_in(&app, &order, &["CONFIRMED"]).await;

    // Act: cancel; the saga dies while compensating; restart.
    let cancelled = app
        .as_user("alice")
        .gql(CANCEL, json!({ "id": order }))
        .await;
    assert!(
        error_code(&cancelled).is_none()
            || error_code(&cancelled).as_deref() == Some("CONSISTENCY_TIMEOUT"),
        "{cancelled:#}"
    );
    crash_and_restart(&mut app).await;

    // Assert: cancelled, stock back once, refunded once.
    let done = order_where(&app, &order, "released and refunded", |o| {
        o["reservation"] == "RELEASED" && o["payment"] == "REFUNDED"
    })
    .await;
    assert_eq!(done["status"], "CANCELLED");
    assert_eq!(stock_both_ways(&app, &product).await, (10, 10));
    let expected = Ledger {
        reserved: 1,
        released: 1,
        charged: 1,
        refunded: 1,
        gateway_charges: 1,
        gateway_refunds: 1,
        ..Ledger::default()
    };
    assert_eq!(ledger(&app, &order).await, expected);
    // The dashboard folds on its own (ADR 0012), after the orders view perhaps: once it
    // has the cancellation, and the refund that follows the confirmation, the revenue is
    // back to nothing (a refund counted twice, or never, would never get there).
    wait_for_dashboard(
        &app.as_admin(),
        "counts the cancelled order refunded",
        |d| status_count(d, "CANCELLED") == 1 && d["revenue"] == "0.00",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_releasing_a_cancelled_order_still_refunds_once() {
    a_cancelled_paid_order_survives_a_crash_at(Boundary::AfterRelease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_the_gateway_refunded_but_before_it_was_recorded_refunds_once() {
    a_cancelled_paid_order_survives_a_crash_at(Boundary::AfterGatewayRefund).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_the_refund_was_recorded_changes_nothing_more() {
    a_cancelled_paid_order_survives_a_crash_at(Boundary::AfterRecordRefund).await;
}

/// A log written before ADR 0032 recorded the gateway's answer in a transaction of its
/// own, and the confirmation (or the release and rejection) in the next: a crash between
/// the two left an order whose answer is recorded and nothing else. This build finishes
/// it. Arranged as that version would have left it: the saga stops after the gateway
/// answered, and the answer is appended to the payment's stream alone.
async fn an_answer_recorded_alone_is_settled(token: &str) -> (TestApp, String, String) {
    // Arrange: the gateway answered, nothing recorded; then the answer alone.
    let mut app = crashing_app(Boundary::AfterGatewayCharge).await;
    let product = arrange(&app).await;
    let vars = json!({ "token": token, "key": "checkout-1" });
    let _ = app.as_user("alice").gql(CHECKOUT, vars).await;
    let ended = app.stopped().await;
    assert!(ended.is_err(), "the injected fault stops the service");
    let db = Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    let order = events::Entity::find()
        .filter(events::Column::StreamType.eq("order"))
        .one(&db)
        .await
        .expect("the log is readable")
        .expect("the checkout placed an order")
        .stream_id;
    let answer = gateway_ledger::Entity::find_by_id(format!("charge:{order}"))
        .one(&db)
        .await
        .expect("the gateway ledger is readable")
        .expect("the gateway answered the charge");
    let amount = Money::from_cents(answer.amount_cents);
    let event = if token == "tok_visa" {
        PaymentEvent::Charged {
            order_id: order,
            amount,
            charge_id: answer.reference,
        }
    } else {
        PaymentEvent::Declined {
            order_id: order,
            amount,
            reason: "recorded alone".into(),
        }
    };
    let txn = db.begin().await.expect("a transaction begins");
    event_store::append(
        &txn,
        payment_stream_id(order),
        "payment",
        0,
        &[event],
        &EventMetadata::default(),
        chrono::Utc::now(),
    )
    .await
    .expect("the answer is appended");
    txn.commit().await.expect("the answer is committed");

    // Act
    app.restart_with(|s| s.saga_fault = None).await;
    (app, order.to_string(), product)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_charge_recorded_alone_by_an_older_version_is_confirmed_once() {
    let (app, order, product) = an_answer_recorded_alone_is_settled("tok_visa").await;

    // Assert: confirmed, charged once, nothing charged again.
    let confirmed = order_in(&app, &order, &["CONFIRMED"]).await;
    assert_eq!(confirmed["payment"], "SUCCEEDED");
    assert_eq!(stock_both_ways(&app, &product).await, (8, 8));
    let expected = Ledger {
        reserved: 1,
        charged: 1,
        gateway_charges: 1,
        ..Ledger::default()
    };
    assert_eq!(ledger(&app, &order).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decline_recorded_alone_by_an_older_version_releases_the_stock_and_rejects_once() {
    let (app, order, product) = an_answer_recorded_alone_is_settled("tok_decline").await;

    // Assert: rejected for the recorded reason, the stock given back once.
    let rejected = order_where(&app, &order, "rejected with its stock released", |o| {
        o["status"] == "REJECTED" && o["reservation"] == "RELEASED"
    })
    .await;
    assert_eq!(rejected["reason"], "payment declined: recorded alone");
    assert_eq!(stock_both_ways(&app, &product).await, (10, 10));
    let expected = Ledger {
        reserved: 1,
        released: 1,
        declined: 1,
        ..Ledger::default()
    };
    assert_eq!(ledger(&app, &order).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_checkouts_racing_for_the_last_ten_units_sell_exactly_ten() {
    // Arrange: 10 units; 50 customers with one unit each in their cart.
    let app = spawn_app().await;
    let product = app.as_admin().create_product("LAST-10", "3.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    let customers: Vec<String> = (0..50).map(|i| format!("racer-{i}")).collect();
    for c in &customers {
        data(&app.as_user(c).add_to_cart(&id, 1).await);
    }

    // Act: all check out at once.
    let responses = join_all(customers.iter().map(|c| {
        let caller = app.as_user(c);
        async move {
            caller
                .gql(
                    CHECKOUT,
                    json!({ "token": "tok_visa", "key": format!("race-{c}") }),
                )
                .await
        }
    }))
    .await;
    let orders: Vec<String> = responses
        .iter()
        .map(|r| str_of(&data(r)["checkout"]["order"]["id"]).to_owned())
        .collect();

    // Assert: every order settles; exactly ten got a unit, the rest were refused for stock.
    let mut confirmed = 0;
    let mut rejected = 0;
    for order in &orders {
        let settled = order_in(&app, order, &["CONFIRMED", "REJECTED"]).await;
        if settled["status"] == "CONFIRMED" {
            confirmed += 1;
            assert_eq!(settled["reservation"], "RESERVED");
        } else {
            rejected += 1;
            assert_eq!(settled["reservation"], "FAILED");
            assert!(
                str_of(&settled["reason"]).contains("insufficient stock"),
                "{settled:#}"
            );
        }
    }
    assert_eq!((confirmed, rejected), (10, 40));
    assert_eq!(stock_both_ways(&app, &id).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_of_an_order_keeps_the_checkouts_correlation_and_names_its_cause() {
    // Arrange
    let mut app = spawn_app().await;
    let product = arrange(&app).await;

    // Act
    let (order, _) = checkout_surviving_a_crash(&mut app, "tok_visa").await;
    order_in(&app, &order, &["CONFIRMED"]).await;

    // Assert
    let db = Database::connect(app.database_url()).await.unwrap();
    let rows = events::Entity::find().all(&db).await.unwrap();
    let placed = rows
        .iter()
        .find(|r| r.event_type == "OrderPlaced")
        .expect("the order was placed");
    let correlation = placed.metadata["correlationId"].clone();
    assert_eq!(placed.metadata["userId"], "alice");
    assert_eq!(placed.metadata["idempotencyKey"], "checkout-1");
    assert!(str_of(&placed.metadata["causationId"]).starts_with("command:"));
    let cleared = rows
        .iter()
        .find(|r| r.event_type == "CartCleared")
        .expect("checkout emptied the cart");
    assert_eq!(
        cleared.metadata["correlationId"], correlation,
        "one command, one correlation"
    );
    for event_type in [
        "ProductStockReserved",
        "OrderReserved",
        "PaymentCharged",
        "OrderConfirmed",
    ] {
        let row = rows
            .iter()
            .find(|r| r.event_type == event_type)
            .unwrap_or_else(|| panic!("{event_type} was recorded"));
        assert_eq!(row.metadata["correlationId"], correlation, "{event_type}");
        assert_eq!(row.metadata["userId"], "alice", "{event_type}");
        let cause = str_of(&row.metadata["causationId"]);
        let cause_position: i64 = cause
            .strip_prefix("event:")
            .unwrap_or_else(|| panic!("{event_type} names the event that caused it: {cause}"))
            .parse()
            .unwrap();
        assert!(
            cause_position < row.position,
            "{event_type} is caused by an earlier event"
        );
    }
    let _ = product;
}
