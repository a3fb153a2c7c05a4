//! `/metrics` has what operators expect (issue 15): HTTP and GraphQL latency, errors by
//! code, lag in seconds, the database pool (in use, idle, and the time its acquires
//! waited), the process; and every metric that `deploy/`'s alert rules and dashboard
//! name is exported by a running server.

use std::collections::BTreeSet;

use serde_json::json;

use crate::audit::metrics_text;
use crate::helpers::*;
use crate::ws_client::WsClient;

/// The sample names of an exposition (`name{labels} value` or `name value`).
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every metric name a deploy file mentions.
fn named_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !word(bytes[i - 1]);
        let rest = &text[i..];
        if starts_word && (rest.starts_with("ordergraph_") || rest.starts_with("process_")) {
            let end = rest.bytes().position(|b| !word(b)).unwrap_or(rest.len());
            names.insert(rest[..end].to_owned());
            i += end;
        } else {
            i += 1;
        }
    }
    names
}

/// A server that has answered a little of everything, so that every labelled series
/// exists.
async fn busy_app() -> TestApp {
    let app = spawn_app().await;
    let product = app.as_admin().create_product("METRICS-1", "1.00", 1).await;
    let named = app
        .gql("query Catalog { products { totalCount } }", json!({}))
        .await;
    assert!(named["errors"].is_null(), "{named}");
    let refused = app.gql("{ noSuchField }", json!({})).await;
    assert_error(&refused, "BAD_USER_INPUT");
    let mut client = WsClient::connect(&app, None).await;
    client
        .subscribe(
            "p",
            "subscription($ids: [UUID!]) { productUpdated(ids: $ids) { sku } }",
            json!({ "ids": [product["id"]] }),
        )
        .await;
    client.next_data("p", "productUpdated").await;
    app
}

#[tokio::test]
async fn every_metric_the_alert_rules_and_the_dashboard_name_is_exported() {
    // Arrange
    let app = busy_app().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let rules = std::fs::read_to_string(root.join("prometheus/alerts.yml")).expect("the rules");
    let dashboard =
        std::fs::read_to_string(root.join("grafana/ordergraph.json")).expect("the dashboard");

    // Act
    let exported = exported(&metrics_text(&app).await);

    // Assert
    for (file, text) in [("alerts.yml", &rules), ("ordergraph.json", &dashboard)] {
        let named = named_in(text);
        assert!(named.len() >= 8, "{file} names metrics: {named:?}");
        let missing: Vec<&String> = named.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} names metrics /metrics lacks: {missing:?}\nexported: {exported:?}"
        );
    }
}

#[tokio::test]
async fn latency_errors_pool_and_process_are_exported_with_bounded_labels() {
    let app = busy_app().await;
    let metrics = metrics_text(&app).await;

    for expected in [
        r#"ordergraph_http_request_duration_seconds_count{route="/graphql",method="POST",status="2xx"}"#,
        r#"ordergraph_graphql_operation_duration_seconds_count{type="query",name="Catalog"} 1"#,
        r#"ordergraph_graphql_operation_duration_seconds_count{type="mutation",name="CreateProduct"} 1"#,
        r#"ordergraph_graphql_errors_total{code="BAD_USER_INPUT"} 1"#,
        r#"ordergraph_projection_lag_seconds{projection="catalog"}"#,
        r#"ordergraph_db_pool_connections{pool="database",state="in_use"}"#,
        r#"ordergraph_db_pool_connections{pool="database",state="idle"}"#,
        r#"ordergraph_db_pool_max_connections{pool="database"} 16"#,
        r#"ordergraph_db_pool_acquire_seconds_count{pool="database"}"#,
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_threads ",
    ] {
        assert!(metrics.contains(expected), "missing {expected}:\n{metrics}");
    }
    // The refused document's operation is not labelled, nor is any route the router
    // does not have.
    assert!(!metrics.contains("noSuchField"), "{metrics}");
    let unknown = app
        .http
        .get(app.url("/no/such/path"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(unknown.status(), 404);
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains(r#"route="unmatched",method="GET",status="4xx""#),
        "{metrics}"
    );
    assert!(!metrics.contains("/no/such/path"), "{metrics}");
    assert_eq!(metrics.matches("# EOF").count(), 1, "one end marker");
}

#[tokio::test]
async fn operations_and_errors_over_a_websocket_are_counted_too() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, None).await;
    client
        .send(json!({ "type": "subscribe", "id": "q", "payload": { "query": "query OverWs { __typename }" } }))
        .await;
    assert_eq!(client.next_data("q", "__typename").await, "Query");
    client
        .send(json!({ "type": "subscribe", "id": "e", "payload": { "query": "{ cart { itemCount } }" } }))
        .await;
    // Past the first operation's `complete`.
    let mut refused = client.recv().await;
    while refused["id"] != "e" {
        refused = client.recv().await;
    }
    assert!(refused.to_string().contains("UNAUTHENTICATED"), "{refused}");
    // A subscription lasts as long as its client wants: it is not timed as an operation
    // (its stream resolves each event through the same hook a query executes in).
    let product = app.as_admin().create_product("TIMED-1", "1.00", 1).await;
    client
        .subscribe(
            "s",
            "subscription Watching($ids: [UUID!]) { productUpdated(ids: $ids) { stock } }",
            json!({ "ids": [product["id"]] }),
        )
        .await;
    assert_eq!(client.next_data("s", "productUpdated").await["stock"], 1);

    let metrics = metrics_text(&app).await;
    for expected in [
        r#"ordergraph_graphql_operation_duration_seconds_count{type="query",name="OverWs"} 1"#,
        r#"ordergraph_graphql_errors_total{code="UNAUTHENTICATED"} 1"#,
    ] {
        assert!(metrics.contains(expected), "missing {expected}:\n{metrics}");
    }
    assert!(
        !metrics.contains(r#"type="subscription""#),
        "a subscription is not timed:\n{metrics}"
    );
}

/// The layer `ordergraph serve` installs to measure the pools' acquires
/// (`telemetry::init`). The tests start their servers in this process, where nothing
/// else installs a subscriber; once installed, it measures every test's pools, each in
/// its own server's figures.
fn measure_pool_acquires() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        tracing_subscriber::registry()
            .with(ordergraph::telemetry::pool_acquire_layer())
            .try_init()
            .expect("no other test installs a global subscriber");
    });
}

/// The value of the sample `series` (name and labels) in an exposition.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {series}:\n{metrics}"))
}

/// The count and the sum of the write pool's acquire times.
fn acquires(metrics: &str) -> (f64, f64) {
    (
        sample(
            metrics,
            r#"ordergraph_db_pool_acquire_seconds_count{pool="database"}"#,
        ),
        sample(
            metrics,
            r#"ordergraph_db_pool_acquire_seconds_sum{pool="database"}"#,
        ),
    )
}

#[tokio::test]
async fn an_idle_server_exports_its_pool_with_every_acquire_of_its_start() {
    // Arrange
    measure_pool_acquires();
    let app = spawn_app().await;

    // Act
    let metrics = metrics_text(&app).await;

    // Assert: the pool's figures are there before any request: its connections, and
    // the acquires the start made itself (migrations, checkpoints), every one in the
    // histogram's buckets. A server without a read database has one pool.
    let (count, waited) = acquires(&metrics);
    assert!(count >= 1.0 && waited > 0.0, "{count} {waited}:\n{metrics}");
    assert_eq!(
        sample(
            &metrics,
            r#"ordergraph_db_pool_acquire_seconds_bucket{le="+Inf",pool="database"}"#
        ),
        count
    );
    // The bound OrdergraphDatabaseAcquireSlow names, as the alert spells it.
    sample(
        &metrics,
        r#"ordergraph_db_pool_acquire_seconds_bucket{le="1.0",pool="database"}"#,
    );
    for series in [
        r#"ordergraph_db_pool_connections{pool="database",state="in_use"}"#,
        r#"ordergraph_db_pool_connections{pool="database",state="idle"}"#,
    ] {
        sample(&metrics, series);
    }
    assert!(!metrics.contains("read_database"), "{metrics}");
}

#[tokio::test]
async fn requests_that_wait_for_the_one_connection_of_the_pool_are_counted() {
    // Arrange: a pool of one connection, so that concurrent requests queue for it (and
    // no catalog cache, which would answer repeats of the query without the pool).
    measure_pool_acquires();
    let app = spawn_app_with(|s| {
        s.db_max_connections = 1;
        s.read_cache_rows = 0;
    })
    .await;
    app.as_admin().create_product("POOL-1", "1.00", 1).await;
    let before = metrics_text(&app).await;
    assert_eq!(
        sample(
            &before,
            r#"ordergraph_db_pool_max_connections{pool="database"}"#
        ),
        1.0
    );
    let (count_before, waited_before) = acquires(&before);

    // Act
    const REQUESTS: usize = 20;
    let answers = futures_util::future::join_all(
        (0..REQUESTS).map(|_| app.gql("{ products { totalCount } }", json!({}))),
    )
    .await;

    // Assert: every request was served, each acquire of theirs is in the count (at least
    // one per request) and their time in the sum.
    for answer in &answers {
        assert!(answer["errors"].is_null(), "{answer}");
    }
    let (count_after, waited_after) = acquires(&metrics_text(&app).await);
    assert!(
        count_after >= count_before + REQUESTS as f64,
        "{count_before} -> {count_after}"
    );
    assert!(
        waited_after > waited_before,
        "{waited_before} -> {waited_after}"
    );
}
