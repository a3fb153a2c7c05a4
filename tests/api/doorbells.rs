//! Changes reach every replica (PostgreSQL only; ADR 0013): two or three servers on one
//! database, a subscriber on one, writes through another. They pass whoever folds the
//! views: today every replica runs a relay and they take turns on the checkpoint rows;
//! with one projector per view, the others only hear doorbells.
//!
//! On SQLite the service is one process (a second one on the same file is not a
//! cluster), so these tests return at once there.

use std::time::Instant;

use ordergraph::auth::Role;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::json;

use crate::helpers::*;
use crate::ws_client::{WsClient, pos};

const PRODUCT_UPDATED: &str = "subscription($ids: [UUID!], $after: Position) {
  productUpdated(ids: $ids, after: $after) { id sku stock position }
}";
const CART_UPDATED: &str = "subscription {
  cartUpdated { userId itemCount items { productId quantity } position }
}";
const DASHBOARD_UPDATED: &str = "subscription {
  dashboardUpdated { lowStock(threshold: 3) { sku stock } position }
}";
const EVENTS: &str = "subscription($after: Position) {
  events(after: $after) { position type streamId }
}";

fn on_postgres() -> bool {
    let yes = std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.trim().is_empty());
    if !yes {
        eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
    }
    yes
}

async fn sql(db: &DatabaseConnection, query: &str) -> Vec<sea_orm::QueryResult> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, query))
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// Milliseconds at the given percentile of `samples`.
fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Adjusts `id`'s stock through `writer` `rounds` times, one at a time, and measures how
/// long after each mutation answered `subscriber` (watching `id`) received its position.
async fn delivery_ms(writer: &TestApp, subscriber: &TestApp, id: &str, rounds: usize) -> Vec<f64> {
    let mut ws = WsClient::connect(subscriber, None).await;
    ws.subscribe("p", PRODUCT_UPDATED, json!({ "ids": [id] }))
        .await;
    let first = ws.next_data("p", "productUpdated").await;
    let mut stock = first["stock"].as_i64().expect("a stock");
    let admin = writer.as_admin();
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let resp = admin.adjust_stock(id, 1).await;
        let answered = Instant::now();
        let position = pos(&data(&resp)["adjustStock"]["position"]);
        stock += 1;
        let got = ws
            .next_until("p", "productUpdated", |p| pos(&p["position"]) >= position)
            .await;
        samples.push(answered.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(got["stock"], stock, "{got}");
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_product_updated_subscriber_on_one_replica_receives_changes_made_through_another() {
    if !on_postgres() {
        return;
    }
    // Arrange: two replicas, one product.
    let a = spawn_app().await;
    let b = a.replica().await;
    let product = a.as_admin().create_product("BELL-1", "1.00", 0).await;
    let id = str_of(&product["id"]).to_owned();

    // Act: changes through A, watched on B; and, for comparison, watched on A itself.
    let mut remote = delivery_ms(&a, &b, &id, 40).await;
    let mut local = delivery_ms(&a, &a, &id, 40).await;

    // Assert: every change arrived (delivery_ms checks each state). The figures are
    // printed, not asserted: this machine is shared.
    eprintln!(
        "change delivery after the mutation answered, ms: other replica p50 {:.2} p99 {:.2}; same replica p50 {:.2} p99 {:.2}",
        percentile(&mut remote, 0.5),
        percentile(&mut remote, 0.99),
        percentile(&mut local, 0.5),
        percentile(&mut local, 0.99),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dashboard_subscriber_on_another_replica_sees_low_stock_move_with_a_stock_change() {
    if !on_postgres() {
        return;
    }
    // Arrange: two replicas, a product with plenty, a dashboard subscriber on each.
    let a = spawn_app().await;
    let b = a.replica().await;
    let admin = a.as_admin();
    let product = admin.create_product("LOW-BELL", "1.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    let mut subscribers = Vec::new();
    for app in [&a, &b] {
        let mut ws = WsClient::connect(app, Some(&token("admin", Role::Admin))).await;
        ws.subscribe("d", DASHBOARD_UPDATED, json!({})).await;
        let first = ws.next_data("d", "dashboardUpdated").await;
        assert_eq!(first["lowStock"], json!([]), "{first}");
        subscribers.push(ws);
    }

    // Act and assert: stock changes alone (the dashboard writes no row for them, only
    // announces), through A: down to 2, then to 1. Each time, both subscribers see the
    // low stock at the mutation's position. (One change at a time: `lowStock` is read
    // from the catalog when a frame is sent, so a frame of the first change sent after
    // the second was folded would already show the second's stock.)
    for (delta, stock) in [(-8, 2), (-1, 1)] {
        let resp = admin.adjust_stock(&id, delta).await;
        let at = pos(&data(&resp)["adjustStock"]["position"]);
        for ws in &mut subscribers {
            let seen = ws
                .next_until("d", "dashboardUpdated", |d| pos(&d["position"]) >= at)
                .await;
            assert_eq!(
                seen["lowStock"],
                json!([{ "sku": "LOW-BELL", "stock": stock }]),
                "{seen}"
            );
            assert_eq!(pos(&seen["position"]), at, "{seen}");
        }
    }
    // And the dashboard is not reported behind the stock changes it only announced.
    for app in [&a, &b] {
        let table = app
            .as_admin()
            .gql("{ projections { name lag } }", json!({}))
            .await;
        let dashboard = data(&table)["projections"]
            .as_array()
            .expect("a list")
            .iter()
            .find(|p| p["name"] == "dashboard")
            .cloned()
            .expect("the dashboard's row");
        assert_eq!(dashboard["lag"], 0, "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_missed_a_stock_change_announcement_learns_of_it_from_the_stored_checkpoint()
{
    if !on_postgres() {
        return;
    }
    // Arrange: one replica; stock changes alone, which the dashboard only announces (it
    // writes no row for them), the last one to the low-stock threshold.
    let a = spawn_app().await;
    let admin = a.as_admin();
    let product = admin.create_product("MISSED-BELL", "1.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    admin.adjust_stock(&id, -1).await;
    let resp = admin.adjust_stock(&id, -7).await;
    let at = pos(&data(&resp)["adjustStock"]["position"]);
    let folded = admin.dashboard().await;
    assert_eq!(pos(&folded["position"]), at, "{folded}");

    // Act: a replica that starts now heard none of those doorbells.
    let b = a.replica().await;

    // Assert: its dashboard, and a dashboard subscriber's first figures, are at the last
    // stock change, with its low stock: it read them from what the announcement stored.
    let seen = b.as_admin().dashboard().await;
    assert_eq!(pos(&seen["position"]), at, "{seen}");
    assert_eq!(
        seen["lowStock"],
        json!([{ "sku": "MISSED-BELL", "stock": 2 }]),
        "{seen}"
    );
    let mut ws = WsClient::connect(&b, Some(&token("admin", Role::Admin))).await;
    ws.subscribe("d", DASHBOARD_UPDATED, json!({})).await;
    let first = ws.next_data("d", "dashboardUpdated").await;
    assert_eq!(pos(&first["position"]), at, "{first}");
}

/// Writes through `app` (one stock change after another), then whether a writer hint was
/// heard within `quiet`.
async fn hinted_after_writes(
    app: &TestApp,
    id: &str,
    listener: &mut sea_orm::sqlx::postgres::PgListener,
    quiet: std::time::Duration,
) -> bool {
    let admin = app.as_admin();
    for _ in 0..5 {
        data(&admin.adjust_stock(id, 1).await);
    }
    let mut heard = false;
    while let Ok(note) = tokio::time::timeout(quiet, listener.recv()).await {
        note.expect("the listener's connection stays up");
        heard = true;
    }
    heard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_alone_sends_no_writer_hints_and_starts_when_another_joins() {
    if !on_postgres() {
        return;
    }
    use std::time::Duration;
    // Arrange: one replica, a product, and a listener on the hints' channel.
    let a = spawn_app().await;
    let product = a.as_admin().create_product("HINT-1", "1.00", 0).await;
    let id = str_of(&product["id"]).to_owned();
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect(a.database_url())
        .await
        .expect("a listener");
    listener.listen("og_wake").await.expect("listening");
    let quiet = Duration::from_millis(300);

    // Act and assert: writes through the only replica are not hinted (once it has looked
    // at the cluster, which it does before it is ready, and every heartbeat).
    let started = Instant::now();
    while hinted_after_writes(&a, &id, &mut listener, quiet).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a replica alone still hints its writes after 10 s"
        );
    }

    // A second replica joins: once the first has seen it, its writes are hinted again.
    let _b = a.replica().await;
    let joined = Instant::now();
    while !hinted_after_writes(&a, &id, &mut listener, quiet).await {
        assert!(
            joined.elapsed() < Duration::from_secs(10),
            "no hint 10 s after another replica joined"
        );
    }
}

/// Products, stock, a cart and checkouts (and the saga's events that follow them)
/// through `app`, as shopper `n`.
async fn mixed_load(app: &TestApp, n: usize) {
    let admin = app.as_admin();
    let customer = app.as_user(&format!("shopper-{n}"));
    let mut orders = Vec::new();
    for i in 0..4 {
        let product = admin
            .create_product(&format!("MIX-{n}-{i}"), "3.00", 10)
            .await;
        let id = str_of(&product["id"]).to_owned();
        data(&admin.adjust_stock(&id, 2).await);
        data(&customer.add_to_cart(&id, 1).await);
        if i % 2 == 1 {
            orders.push(customer.checkout("tok_visa", ADDRESS).await);
        }
    }
    for order in &orders {
        wait_for_order_status(&customer, order, &["CONFIRMED"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_events_subscriber_on_another_replica_sees_every_event_once_in_order() {
    if !on_postgres() {
        return;
    }
    // Arrange: three replicas; an `events` subscriber on the third.
    let a = spawn_app().await;
    let b = a.replica().await;
    let c = a.replica().await;
    let mut ws = WsClient::connect(&c, Some(&token("admin", Role::Admin))).await;
    ws.subscribe("e", EVENTS, json!({})).await;

    // Act: a mixed load through A and B at once.
    tokio::join!(
        mixed_load(&a, 1),
        mixed_load(&b, 2),
        mixed_load(&a, 3),
        mixed_load(&b, 4)
    );

    // Assert: the subscriber on C received exactly the log, in order, once.
    let db = Database::connect(a.database_url())
        .await
        .expect("the test database");
    let log: Vec<i64> = sql(&db, "SELECT position FROM events ORDER BY position")
        .await
        .iter()
        .map(|row| row.try_get::<i64>("", "position").expect("a position"))
        .collect();
    let last = *log.last().expect("events were written");
    let mut received = Vec::new();
    while received.last().is_none_or(|p| *p < last) {
        let event = ws.next_data("e", "events").await;
        received.push(pos(&event["position"]));
    }
    assert_eq!(received, log, "the events subscriber on another replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutations_through_each_replica_read_their_own_writes_and_reach_the_others() {
    if !on_postgres() {
        return;
    }
    // Arrange: two replicas; bob watches his cart on A.
    let a = spawn_app().await;
    let b = a.replica().await;
    let product = a.as_admin().create_product("RYW-1", "2.00", 50).await;
    let id = str_of(&product["id"]).to_owned();
    let mut ws = WsClient::connect(&a, Some(&token("bob", Role::Customer))).await;
    ws.subscribe("c", CART_UPDATED, json!({})).await;
    let first = ws.next_data("c", "cartUpdated").await;
    assert_eq!(first["itemCount"], 0);

    // Act and assert: every mutation through B answers with its own write (no
    // CONSISTENCY_TIMEOUT), and A's subscriber sees it, down to the emptied cart.
    let bob = b.as_user("bob");
    for quantity in 1..=5 {
        let resp = bob.set_quantity(&id, quantity).await;
        let resp = if error_code(&resp).is_some() {
            bob.add_to_cart(&id, quantity).await
        } else {
            resp
        };
        let cart = &data(&resp);
        let cart = cart
            .get("setCartItemQuantity")
            .or_else(|| cart.get("addToCart"))
            .expect("a cart payload");
        assert_eq!(cart["cart"]["itemCount"], quantity, "{cart}");
        let seen = ws
            .next_until("c", "cartUpdated", |c| c["itemCount"] == quantity)
            .await;
        assert_eq!(seen["items"][0]["quantity"], quantity);
    }
    let cleared = bob.clear_cart().await;
    assert_eq!(data(&cleared)["clearCart"]["cart"]["itemCount"], 0);
    let emptied = ws
        .next_until("c", "cartUpdated", |c| c["itemCount"] == 0)
        .await;
    assert_eq!(emptied["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listener_connection_killed_by_the_server_misses_no_change() {
    if !on_postgres() {
        return;
    }
    // Arrange: two replicas; every product watched on B.
    let a = spawn_app().await;
    let b = a.replica().await;
    let admin = a.as_admin();
    let mut ids = Vec::new();
    for i in 0..3 {
        let product = admin.create_product(&format!("KILL-{i}"), "1.00", 0).await;
        ids.push(str_of(&product["id"]).to_owned());
    }
    let mut ws = WsClient::connect(&b, None).await;
    ws.subscribe("p", PRODUCT_UPDATED, json!({ "ids": ids }))
        .await;
    for _ in 0..ids.len() {
        ws.next_data("p", "productUpdated").await;
    }
    let db = Database::connect(a.database_url())
        .await
        .expect("the test database");
    let kill = "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity \
                WHERE datname = current_database() AND application_name LIKE 'ordergraph-listener/%'";

    // Act: writes through A while the listeners are killed again and again.
    let mut killed = 0;
    let mut last = 0;
    for round in 0..30 {
        if round % 5 == 0 {
            killed += sql(&db, kill).await.len();
        }
        let resp = admin.adjust_stock(&ids[round % ids.len()], 1).await;
        last = last.max(pos(&data(&resp)["adjustStock"]["position"]));
    }

    // Assert: the listeners were there to kill, and the subscriber got every product to
    // its final stock (10 each), through the re-reads after each reconnection.
    assert!(killed >= 6, "listener connections killed: {killed}");
    let mut stock = std::collections::HashMap::new();
    while stock.len() < ids.len() || stock.values().any(|s| *s < 10) {
        let p = ws.next_data("p", "productUpdated").await;
        stock.insert(
            str_of(&p["id"]).to_owned(),
            p["stock"].as_i64().expect("a stock"),
        );
    }
    assert!(stock.values().all(|s| *s == 10), "{stock:?}");
    // And each replica is listening again (reconnecting takes a moment).
    wait_until("one listener per replica is back", || async {
        let listening = sql(
            &db,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name LIKE 'ordergraph-listener/%'",
        )
        .await;
        (listening.len() == 2).then_some(())
    })
    .await;
    assert!(last > 0);
}

/// `ordergraph projections rebuild <name>` on the test's database.
async fn cli_rebuild(app: &TestApp, name: &str) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordergraph"))
        .args(["projections", "rebuild", name])
        .env("DATABASE_URL", app.database_url())
        .output()
        .await
        .expect("the CLI runs");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the rebuild succeeds: {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_from_the_command_line_reaches_the_subscribers_of_running_servers() {
    if !on_postgres() {
        return;
    }
    // Arrange: two servers; a product watched on each; its row corrupted behind the
    // service's back (the subscribers are not told).
    let a = spawn_app().await;
    let b = a.replica().await;
    let product = a.as_admin().create_product("CLI-RB", "1.00", 7).await;
    let id = str_of(&product["id"]).to_owned();
    let mut watchers = Vec::new();
    for app in [&a, &b] {
        let mut ws = WsClient::connect(app, None).await;
        ws.subscribe("p", PRODUCT_UPDATED, json!({ "ids": [id] }))
            .await;
        assert_eq!(ws.next_data("p", "productUpdated").await["stock"], 7);
        watchers.push(ws);
    }
    let db = Database::connect(a.database_url())
        .await
        .expect("the test database");
    db.execute_unprepared("UPDATE catalog_view SET stock = 999")
        .await
        .expect("the row is corrupted");

    // Act: the rebuild runs in another process.
    let out = cli_rebuild(&a, "catalog").await;

    // Assert: both servers' subscribers receive the rebuilt row.
    assert!(out.contains("catalog: rebuilt"), "{out}");
    for ws in &mut watchers {
        let state = ws.next_data("p", "productUpdated").await;
        assert_eq!(state["stock"], 7, "{state}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_insert_into_the_log_takes_its_transaction_id_before_its_position() {
    if !on_postgres() {
        return;
    }
    // Arrange: the schema as the service migrated it.
    let app = spawn_app().await;
    let db = Database::connect(app.database_url())
        .await
        .expect("the test database");
    let default = sql(
        &db,
        "SELECT column_default FROM information_schema.columns \
         WHERE table_name = 'events' AND column_name = 'position'",
    )
    .await[0]
        .try_get::<String>("", "column_default")
        .expect("events.position has a default");

    // Act and assert: drawing a position the way any INSERT does (the column default)
    // gives the transaction its xid. A bare `nextval` would not: it takes one only on
    // the calls that write the sequence to the WAL, about one in 32.
    for _ in 0..4 {
        let txn = sea_orm::TransactionTrait::begin(&db)
            .await
            .expect("a transaction");
        txn.execute_unprepared(&format!("SELECT {default}"))
            .await
            .expect("the default evaluates");
        let xid = txn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_current_xact_id_if_assigned()::text AS xid",
            ))
            .await
            .expect("the xid can be read")
            .expect("a row")
            .try_get::<Option<String>>("", "xid")
            .expect("text or null");
        assert!(xid.is_some(), "the default {default} took no xid");
        txn.rollback().await.expect("rolled back");
    }

    // And a hand-written insert (no xid taken first, no position given) is folded like
    // any other event: an emptied cart for carol.
    let inserted = sql(
        &db,
        "INSERT INTO events (stream_id, stream_type, version, event_type, event_version, \
         data, metadata, recorded_at) VALUES (gen_random_uuid(), 'cart', 1, 'CartCleared', 1, \
         '{\"user_id\": \"carol\"}', '{}', now()) RETURNING position",
    )
    .await[0]
        .try_get::<i64>("", "position")
        .expect("a position");
    let carol = app.as_user("carol");
    let cart = wait_for_value(
        "carol's cart folds the inserted event",
        || carol.cart(),
        |cart| pos(&cart["position"]) >= inserted,
    )
    .await;
    assert_eq!(cart["itemCount"], 0, "{cart}");
}

/// The reads of the log a replica's `/metrics` counts, of one kind (`horizon`, `page`).
async fn log_reads(app: &TestApp, read: &str) -> u64 {
    let metrics = app.get_text("/metrics").await;
    let line = format!("ordergraph_log_reads_total{{read=\"{read}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

/// Which replica runs which view's projector, once every projector is held and each of
/// `apps` holds `each`: the index in `apps` of each view's holder.
async fn projectors_held(apps: &[&TestApp], each: usize) -> Vec<(String, usize)> {
    let mut nodes = Vec::new();
    for app in apps {
        let resp = app.as_admin().gql("{ cluster { node } }", json!({})).await;
        nodes.push(str_of(&data(&resp)["cluster"]["node"]).to_owned());
    }
    let admin = apps[0].as_admin();
    wait_until("every projector held, as many by each replica", || async {
        let resp = admin
            .gql("{ cluster { units { name holder } } }", json!({}))
            .await;
        let units = data(&resp)["cluster"]["units"].as_array()?.clone();
        let held: Vec<(String, usize)> = units
            .iter()
            .filter_map(|u| {
                let view = u["name"].as_str()?.strip_prefix("projector:")?;
                let holder = nodes
                    .iter()
                    .position(|n| Some(n.as_str()) == u["holder"].as_str())?;
                Some((view.to_owned(), holder))
            })
            .collect();
        let spread = (0..apps.len()).all(|i| held.iter().filter(|(_, h)| *h == i).count() == each);
        (held.len() == 4 && spread).then_some(held)
    })
    .await
}

/// A cart's change concerns the cart view alone: a replica that does not run the cart's
/// projector (it runs two others) is not woken for it, whether it was made there or on
/// another replica, so it does not read the log for it. The replicas poll once a minute
/// here, so every read is one that a commit or a hint caused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_folds_no_view_a_write_reaches_does_not_read_the_log_for_it() {
    if !on_postgres() {
        return;
    }
    // Arrange: one replica takes every projector, a second takes two of them; a product
    // to put in carts.
    let a = spawn_app_with(|s| s.relay_poll_ms = 60_000).await;
    projectors_held(&[&a], 4).await;
    let b = a.replica().await;
    let apps = [&a, &b];
    let held = projectors_held(&apps, 2).await;
    let cart = held
        .iter()
        .find(|(view, _)| view == "cart")
        .expect("held")
        .1;
    let other = 1 - cart;
    let product = a.as_admin().create_product("QUIET-1", "1.00", 100).await;
    let id = str_of(&product["id"]).to_owned();
    // What the start-up and the creation caused has settled.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let reads = || async {
        (
            log_reads(apps[cart], "horizon").await,
            log_reads(apps[other], "horizon").await,
        )
    };
    let before = reads().await;

    // Act: carts filled through each replica.
    for user in 0..20 {
        let app = apps[user % 2];
        let resp = app
            .as_user(&format!("quiet-{user}"))
            .add_to_cart(&id, 1)
            .await;
        assert_eq!(error_code(&resp), None, "{resp}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // Assert: the cart's replica read the horizon for them; the other did not.
    let after = reads().await;
    assert!(
        after.0 - before.0 >= 10,
        "the cart's replica read the horizon {} times for 20 writes",
        after.0 - before.0
    );
    assert!(
        after.1 - before.1 <= 2,
        "a replica that does not fold the cart read the horizon {} times for 20 writes",
        after.1 - before.1
    );
}
