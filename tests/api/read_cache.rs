//! The catalog's reads from memory (ADR 0023): a client never reads a product older than
//! a write it was told of, on the replica that took the write or any other; reads
//! between writes that do not touch the catalog are served from memory.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws_client::pos;

fn on_postgres() -> bool {
    std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.trim().is_empty())
}

/// How many catalog reads `/metrics` counts as `result` ("hit" or "miss") for `read`.
async fn counted(app: &TestApp, read: &str, result: &str) -> u64 {
    let text = app.get_text("/metrics").await;
    let series = format!("ordergraph_read_cache_total{{read=\"{read}\",result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map_or(0, |n| n.trim().parse().expect("a counter is a number"))
}

async fn page(app: &TestApp) -> Value {
    let resp = app.gql(PRODUCTS, json!({ "first": 20 })).await;
    data(&resp)["products"].clone()
}

fn stock_in(page: &Value, id: &str) -> i64 {
    page["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["node"]["id"] == id)
        .and_then(|e| e["node"]["stock"].as_i64())
        .unwrap_or_else(|| panic!("{id} is on the page: {page}"))
}

#[tokio::test]
async fn a_product_and_a_page_read_before_each_write_show_it_right_after() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mut ids = Vec::new();
    for sku in ["RC-A", "RC-B", "RC-C"] {
        let product = admin.create_product(sku, "1.00", 10).await;
        ids.push(str_of(&product["id"]).to_owned());
    }
    let mut stock = [10, 10, 10];
    for round in 0..12 {
        let k = round % 3;
        // Read twice, so the second read is served from memory if anything is.
        for _ in 0..2 {
            assert_eq!(admin.product(&ids[k]).await["stock"], stock[k]);
            assert_eq!(stock_in(&page(&app).await, &ids[k]), stock[k]);
        }
        let delta = round as i64 + 1;
        let resp = admin.adjust_stock(&ids[k], delta).await;
        let at = pos(&data(&resp)["adjustStock"]["position"]);
        stock[k] += delta;
        // Read-your-writes through the cache: the product and the page show the write.
        let product = admin.product(&ids[k]).await;
        assert_eq!(product["stock"], stock[k], "{product}");
        assert_eq!(pos(&product["position"]), at, "{product}");
        assert_eq!(stock_in(&page(&app).await, &ids[k]), stock[k]);
    }
    // The reads between the writes were served from memory.
    assert!(counted(&app, "product", "hit").await >= 12);
    assert!(counted(&app, "page", "hit").await >= 12);
}

#[tokio::test]
async fn reads_between_writes_that_do_not_touch_the_catalog_are_served_from_memory() {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("RC-CART", "1.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    wait_until("a read is served from memory", || async {
        let hits = counted(&app, "product", "hit").await;
        admin.product(&id).await;
        (counted(&app, "product", "hit").await > hits).then_some(())
    })
    .await;
    let before = counted(&app, "product", "hit").await;

    // Cart changes move every view's checkpoint, but write nothing to the catalog.
    let bob = app.as_user("bob");
    for quantity in 1..=3 {
        data(&bob.add_to_cart(&id, quantity).await);
        assert_eq!(admin.product(&id).await["stock"], 10);
    }

    assert_eq!(counted(&app, "product", "hit").await, before + 3);
}

#[tokio::test]
async fn with_the_cache_off_every_read_goes_to_the_database() {
    let app = spawn_app_with(|s| s.read_cache_rows = 0).await;
    let admin = app.as_admin();
    let product = admin.create_product("RC-OFF", "1.00", 4).await;
    let id = str_of(&product["id"]).to_owned();
    for _ in 0..3 {
        assert_eq!(admin.product(&id).await["stock"], 4);
        page(&app).await;
    }
    admin.adjust_stock(&id, 1).await;
    assert_eq!(admin.product(&id).await["stock"], 5);
    assert_eq!(counted(&app, "product", "hit").await, 0);
    assert_eq!(counted(&app, "page", "hit").await, 0);
    assert_eq!(counted(&app, "payload", "hit").await, 0);
}

/// An `adjustStock` answer shows the product at `stock`, at the write's own position.
fn assert_answers_with_the_write(resp: &Value, stock: i64, round: usize) {
    let payload = &data(resp)["adjustStock"];
    assert_eq!(
        payload["product"]["stock"], stock,
        "round {round}: {payload}"
    );
    assert_eq!(
        pos(&payload["product"]["position"]),
        pos(&payload["position"]),
        "round {round}: {payload}"
    );
}

#[tokio::test]
async fn a_mutations_payload_is_the_row_its_fold_wrote_not_an_older_copy() {
    // Arrange: a product held in memory at stock 10.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let product = admin.create_product("RC-PAYLOAD", "1.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    let hits = counted(&app, "payload", "hit").await;
    let mut stock = 10;
    for (round, delta) in [4, -3, 7, -1].into_iter().enumerate() {
        held(&app, &admin, &id).await;
        // Act: a stock change, then a renaming, each answered with its product.
        let resp = admin.adjust_stock(&id, delta).await;
        stock += delta;

        // Assert: the payload is the write (not the copy held before it), at its
        // position.
        assert_answers_with_the_write(&resp, stock, round);
        let name = format!("Renamed {round}");
        let resp = app
            .as_admin()
            .gql(
                UPDATE_PRODUCT,
                json!({ "input": { "id": id, "name": name } }),
            )
            .await;
        let payload = &data(&resp)["updateProduct"];
        assert_eq!(payload["product"]["name"], name.as_str(), "{payload}");
        assert_eq!(payload["product"]["stock"], stock, "{payload}");
    }
    // The payloads came from the copies this process's folds kept of the rows they wrote.
    // (On PostgreSQL the doorbell of a fold can reach this process before the fold's own
    // commit returns, and moves the epoch past its copy: then the payload is read from
    // the database, as exact. So not every one.)
    let served = counted(&app, "payload", "hit").await - hits;
    if on_postgres() {
        assert!(served >= 1, "no payload was served from memory");
    } else {
        assert_eq!(served, 8, "every payload was served from memory");
    }
}

/// Two replicas on one database: A, and B serving the API only (so A folds the catalog,
/// and B learns of its folds by their doorbells).
async fn folding_and_api_only() -> (TestApp, TestApp) {
    let a = spawn_app().await;
    let b = a
        .replica_with(|s| s.roles = "api".parse().expect("a role"))
        .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_reads_a_change_folded_on_another_once_it_has_heard_of_it() {
    if !on_postgres() {
        return;
    }
    // Arrange: two replicas, B serving the API only (so A folds the catalog, and B
    // learns of its folds by their doorbells); the product and a page read on B, twice
    // (held in memory).
    let (a, b) = folding_and_api_only().await;
    let product = a.as_admin().create_product("RC-REPLICA", "1.00", 5).await;
    let id = str_of(&product["id"]).to_owned();
    let on_b = b.as_admin();
    // B may read the folded row before it hears of the fold: that copy is stored under
    // the epoch before the doorbell and never served. Read until one is.
    wait_until("B serves the product from memory", || async {
        let hits = counted(&b, "product", "hit").await;
        let stock = on_b.product(&id).await["stock"].clone();
        (stock == 5 && counted(&b, "product", "hit").await > hits).then_some(())
    })
    .await;
    page(&b).await;
    page(&b).await;

    for (delta, stock) in [(2, 7), (-3, 4), (10, 14)] {
        // Act: a write through A, whichever replica folds the catalog.
        let resp = a.as_admin().adjust_stock(&id, delta).await;
        let at = pos(&data(&resp)["adjustStock"]["position"]);

        // Assert: B's product and page come to show it (a copy B held is dropped when
        // B hears of the fold), and never go back.
        let seen = wait_until("B shows the write", || async {
            let product = on_b.product(&id).await;
            (pos(&product["position"]) >= at).then_some(product)
        })
        .await;
        assert_eq!(seen["stock"], stock, "{seen}");
        assert_eq!(stock_in(&page(&b).await, &id), stock);
        assert_eq!(on_b.product(&id).await["stock"], stock);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_does_not_fold_answers_with_the_row_the_doorbell_carried() {
    if !on_postgres() {
        return;
    }
    // Arrange: B serves the API only, so A folds every write B takes, and B hears of
    // each fold by its doorbell, which carries the rows it wrote.
    let (a, b) = folding_and_api_only().await;
    let product = a.as_admin().create_product("RC-CARRIED", "1.00", 10).await;
    let id = str_of(&product["id"]).to_owned();
    let on_b = b.as_admin();
    let hits = counted(&b, "payload", "hit").await;
    let mut stock = 10;
    for (round, delta) in [3, -1, 5, 2].into_iter().enumerate() {
        // Act: a write through B.
        let resp = on_b.adjust_stock(&id, delta).await;
        stock += delta;

        // Assert: its answer is the write, at its position.
        assert_answers_with_the_write(&resp, stock, round);
        assert_eq!(on_b.product(&id).await["stock"], stock, "round {round}");
    }
    // B answered from the rows the doorbells carried (its poll of the stored checkpoints
    // can get to a fold first, and then B reads the row: so not every time).
    assert!(
        counted(&b, "payload", "hit").await > hits,
        "no answer on B came from a doorbell's rows"
    );
}

/// Reads `id` until one is served from memory (a copy read before a fold was heard of is
/// never served), and says the hits counted then.
async fn held(app: &TestApp, client: &Caller<'_>, id: &str) -> u64 {
    wait_until("the product is served from memory", || async {
        let hits = counted(app, "product", "hit").await;
        client.product(id).await;
        let now = counted(app, "product", "hit").await;
        (now > hits).then_some(now)
    })
    .await
}

#[tokio::test]
async fn a_write_drops_only_the_copy_of_the_product_it_changed() {
    // Arrange: two products, each held in memory.
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mut ids = Vec::new();
    for sku in ["RC-KEEP", "RC-MOVE"] {
        let product = admin.create_product(sku, "1.00", 10).await;
        ids.push(str_of(&product["id"]).to_owned());
    }
    let (kept, moved) = (&ids[0], &ids[1]);
    held(&app, &admin, moved).await;
    held(&app, &admin, kept).await;

    for (round, delta) in [3, -2, 5].into_iter().enumerate() {
        // Act: a write of the other product.
        let resp = admin.adjust_stock(moved, delta).await;
        let at = pos(&data(&resp)["adjustStock"]["position"]);

        // Assert: the written product reads its write (the copy held before is gone;
        // the one its fold kept may serve it); the other is still served from memory,
        // unchanged.
        let product = admin.product(moved).await;
        assert_eq!(pos(&product["position"]), at, "round {round}: {product}");
        let hits = counted(&app, "product", "hit").await;
        assert_eq!(admin.product(kept).await["stock"], 10);
        assert_eq!(
            counted(&app, "product", "hit").await,
            hits + 1,
            "round {round}"
        );
    }
    assert_eq!(admin.product(moved).await["stock"], 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_drops_only_the_copy_of_the_product_another_folded() {
    if !on_postgres() {
        return;
    }
    // Arrange: B serves the API only and learns of A's folds by their doorbells, which
    // name the rows they changed.
    let (a, b) = folding_and_api_only().await;
    let mut ids = Vec::new();
    for sku in ["RC-R-KEEP", "RC-R-MOVE"] {
        let product = a.as_admin().create_product(sku, "1.00", 10).await;
        ids.push(str_of(&product["id"]).to_owned());
    }
    let (kept, moved) = (&ids[0], &ids[1]);
    let on_b = b.as_admin();
    // B's poll of the stored checkpoints (every 500 ms) can see a fold before its
    // doorbell does, and then drops every copy (it does not know which rows moved): a
    // few rounds, of which at least one must keep the other product's copy.
    let mut kept_in_memory = 0;
    for (round, stock) in [14, 18, 22].into_iter().enumerate() {
        held(&b, &on_b, moved).await;
        held(&b, &on_b, kept).await;

        // Act: a write of one product through A.
        let resp = a.as_admin().adjust_stock(moved, 4).await;
        let at = pos(&data(&resp)["adjustStock"]["position"]);

        // Assert: B comes to show the write, and still serves the other product, from
        // memory unless its poll got there first.
        let seen = wait_until("B shows the write", || async {
            let product = on_b.product(moved).await;
            (pos(&product["position"]) >= at).then_some(product)
        })
        .await;
        assert_eq!(seen["stock"], stock, "round {round}: {seen}");
        let hits = counted(&b, "product", "hit").await;
        assert_eq!(on_b.product(kept).await["stock"], 10);
        kept_in_memory += counted(&b, "product", "hit").await - hits;
    }
    assert!(
        kept_in_memory >= 1,
        "no round kept the other product in memory"
    );
}
