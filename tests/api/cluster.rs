//! Several real server processes on one PostgreSQL database (ADR 0012): the units of
//! work (one projector per view, the saga's partitions) are shared fairly, move when their
//! holder is killed or frozen, and a frozen holder that wakes up does nothing it no longer
//! owns. On SQLite, what must be refused is refused. The cluster tests skip on SQLite.

pub(crate) mod chaos;
pub(crate) mod harness;
mod postgres_restart;

use std::time::{Duration, Instant};

use ordergraph::auth::Role;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws_client::pos;
use harness::{Cluster, held_by, holders};

/// Generous bounds: the machine running the tests is shared and slow. The figures are
/// printed; the bounds only catch what never happens.
const FAILOVER_BOUND: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, for at most `limit`.
pub(crate) async fn within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until every unit is held, as `replica` sees the cluster; returns the answer.
async fn all_units_held(cluster: &Cluster, replica: usize) -> Value {
    within("every unit is held", Duration::from_secs(30), || async {
        let seen = cluster.replicas[replica].cluster().await?;
        holders(&seen)
            .iter()
            .all(|(_, holder)| holder.is_some())
            .then_some(seen)
    })
    .await
}

/// Creates a product through `replica` (as admin); returns its id.
async fn create_product(cluster: &Cluster, replica: usize, sku: &str, stock: i64) -> String {
    let resp = cluster.replicas[replica]
        .admin(
            CREATE_PRODUCT,
            json!({ "input": {
                "sku": sku, "name": sku, "description": sku, "price": "2.50", "initialStock": stock,
            }}),
        )
        .await;
    str_of(&data(&resp)["createProduct"]["product"]["id"]).to_owned()
}

/// `user` buys one unit of `product` through `replica`; returns the order id.
async fn buy_one(cluster: &Cluster, replica: usize, user: &str, product: &str) -> String {
    let r = &cluster.replicas[replica];
    let added = r
        .gql_as(
            user,
            Role::Customer,
            ADD_TO_CART,
            json!({ "input": { "productId": product, "quantity": 1 } }),
        )
        .await;
    data(&added);
    let placed = r
        .gql_as(
            user,
            Role::Customer,
            CHECKOUT,
            json!({ "input": { "paymentToken": "tok_visa", "shippingAddress": ADDRESS } }),
        )
        .await;
    str_of(&data(&placed)["checkout"]["order"]["id"]).to_owned()
}

/// The orders' statuses as `replica` shows them to an admin.
async fn statuses(cluster: &Cluster, replica: usize, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let resp = cluster.replicas[replica]
            .admin(ORDER, json!({ "id": id }))
            .await;
        out.push(
            data(&resp)["order"]["status"]
                .as_str()
                .unwrap_or("?")
                .to_owned(),
        );
    }
    out
}

/// Waits until every order is CONFIRMED, as `replica` shows them.
async fn all_confirmed(cluster: &Cluster, replica: usize, ids: &[String], limit: Duration) {
    within("every order is CONFIRMED", limit, || async {
        let seen = statuses(cluster, replica, ids).await;
        seen.iter().all(|s| s == "CONFIRMED").then_some(())
    })
    .await;
}

/// Orders charged more than once: payment streams with more than one charge event.
pub(crate) async fn charged_twice(cluster: &Cluster) -> i64 {
    use sea_orm::ConnectionTrait;
    let db = cluster.db().await;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT COUNT(*) AS n FROM (SELECT stream_id FROM events \
             WHERE event_type = 'PaymentCharged' GROUP BY stream_id HAVING COUNT(*) > 1) twice",
        ))
        .await
        .expect("the events can be read")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("a count")
}

#[tokio::test]
async fn three_replicas_share_the_units_fairly() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };

    // Every unit held, and each replica at or under its share: 4 projectors over 3
    // replicas is at most 2 each, 8 saga partitions at most 3 each (so each replica runs
    // at least 2 partitions: 3 + 3 + 2).
    let seen = within(
        "the units are balanced",
        Duration::from_secs(30),
        || async {
            let seen = cluster.replicas[0].cluster().await?;
            let all_held = holders(&seen).iter().all(|(_, h)| h.is_some());
            let balanced = cluster.replicas.iter().all(|r| {
                let held = held_by(&seen, &r.node);
                let projectors = held.iter().filter(|u| u.starts_with("projector:")).count();
                let partitions = held.iter().filter(|u| u.starts_with("saga:")).count();
                projectors <= 2 && (2..=3).contains(&partitions)
            });
            // A replica records its roles after its first claims (which must not wait for
            // a commit): until then it shows none, and counts for every kind.
            let registered = seen["nodes"]
                .as_array()?
                .iter()
                .all(|n| n["roles"].as_array().is_some_and(|r| !r.is_empty()));
            (all_held && balanced && registered).then_some(seen)
        },
    )
    .await;

    assert_eq!(holders(&seen).len(), 12, "{seen:#}");
    let alive: Vec<&Value> = seen["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["alive"] == true)
        .collect();
    assert_eq!(alive.len(), 3, "{seen:#}");
    for node in alive {
        assert_eq!(
            node["roles"],
            json!(["api", "projector", "saga", "publisher"]),
            "{seen:#}"
        );
    }
    // Every replica answers the same: the cluster is read from the database.
    let other = cluster.replicas[2].cluster().await.expect("an answer");
    assert_eq!(holders(&other), holders(&seen));
    // Each replica says how many it holds.
    let metrics = cluster.replicas[1].http_get("/metrics").await;
    assert!(
        metrics.contains("ordergraph_cluster_units_held{node=\"replica-1\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn each_replica_reports_how_far_it_serves_and_a_write_shows_on_all_of_them() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    all_units_held(&cluster, 0).await;
    let product = create_product(&cluster, 1, "SERVING-1", 5).await;
    let adjusted = cluster.replicas[2]
        .admin(
            ADJUST_STOCK,
            json!({ "input": { "productId": product, "delta": 1 } }),
        )
        .await;
    let written = pos(&data(&adjusted)["adjustStock"]["position"]);

    // Every replica, whichever folds the views, reports a position at or past the write,
    // its lag behind the horizon it knows, and when it said so (every second).
    let seen = within(
        "every replica serves the write",
        Duration::from_secs(30),
        || async {
            let seen = cluster.replicas[0].cluster().await?;
            let nodes = seen["nodes"].as_array()?.clone();
            let alive: Vec<&Value> = nodes.iter().filter(|n| n["alive"] == true).collect();
            let caught_up = alive.len() == 3
                && alive.iter().all(|n| {
                    n["serving"]["position"]
                        .as_str()
                        .and_then(|p| p.parse::<i64>().ok())
                        .is_some_and(|p| p >= written)
                });
            caught_up.then_some(seen)
        },
    )
    .await;
    for node in seen["nodes"].as_array().expect("nodes") {
        let serving = &node["serving"];
        assert!(
            serving["lag"].as_i64().is_some_and(|lag| lag >= 0),
            "{seen:#}"
        );
        assert!(serving["reportedAt"].is_string(), "{seen:#}");
    }

    // The command line shows the same: a line per replica, alive, with how far it serves.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordergraph"))
        .args(["projections", "status"])
        .env("DATABASE_URL", &cluster.database_url)
        .env("ORDERGRAPH_JWT_SECRET", JWT_SECRET)
        .output()
        .await
        .expect("the CLI runs");
    let text = String::from_utf8_lossy(&output.stdout);
    for replica in &cluster.replicas {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{} ", replica.node)))
            .unwrap_or_else(|| panic!("a line for {}:\n{text}", replica.node));
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[1], "yes", "{line}");
        let serving: i64 = columns[3].parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(serving >= written, "{line}");
    }
}

#[tokio::test]
async fn thirty_two_clients_on_one_hot_product_over_three_replicas_never_conflict() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    all_units_held(&cluster, 0).await;
    let product = create_product(&cluster, 0, "HOT-1", 0).await;
    const CLIENTS: usize = 32;
    const WRITES: usize = 8;

    // Without an `expectedVersion`, a lost race is decided again: writers of the same
    // stream queue on its advisory lock across processes, so none is refused.
    let cluster = &cluster;
    let answers = futures_util::future::join_all((0..CLIENTS).map(|client| {
        let product = product.clone();
        async move {
            let replica = &cluster.replicas[client % 3];
            let mut answers = Vec::new();
            for _ in 0..WRITES {
                answers.push(
                    replica
                        .admin(
                            ADJUST_STOCK,
                            json!({ "input": { "productId": product, "delta": 1 } }),
                        )
                        .await,
                );
            }
            answers
        }
    }))
    .await;
    let refused: Vec<&Value> = answers
        .iter()
        .flatten()
        .filter(|a| a.get("errors").is_some())
        .collect();
    assert!(
        refused.is_empty(),
        "{} refused: {refused:#?}",
        refused.len()
    );

    // Every write counted once: the stock is the sum, on every replica (each read its own
    // writes already; the others' may still be on their way there).
    let total = i64::try_from(CLIENTS * WRITES).expect("small");
    for replica in &cluster.replicas {
        within(
            &format!("{} shows every write", replica.node),
            Duration::from_secs(10),
            || async {
                let read = replica
                    .admin(
                        "query($id: UUID!) { product(id: $id) { stock } }",
                        json!({ "id": product }),
                    )
                    .await;
                let p = &data(&read)["product"];
                (p["stock"].as_i64() == Some(total)).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn killing_the_holder_of_a_projector_lets_the_views_advance_again_within_seconds() {
    let Some(mut cluster) = Cluster::start(3).await else {
        return;
    };
    let seen = all_units_held(&cluster, 0).await;
    let holder = holders(&seen)
        .into_iter()
        .find(|(unit, _)| unit == "projector:catalog")
        .and_then(|(_, holder)| holder)
        .expect("the catalog projector is held");
    let victim = cluster.by_node(&holder);
    let survivor = (victim + 1) % 3;
    let product = create_product(&cluster, survivor, "KILL-1", 1).await;

    // Act: kill -9 the catalog's projector, then change the product through a survivor.
    let killed_at = Instant::now();
    cluster.replicas[victim].kill9().await;
    let adjusted = cluster.replicas[survivor]
        .admin(
            ADJUST_STOCK,
            json!({ "input": { "productId": product, "delta": 41 } }),
        )
        .await;

    // Assert: the mutation read its own write (the view advanced on another replica),
    // and the catalog's projector has a new holder.
    assert_eq!(
        data(&adjusted)["adjustStock"]["product"]["stock"],
        42,
        "{adjusted:#}"
    );
    let took = killed_at.elapsed();
    println!("views advanced again {took:?} after kill -9 of the catalog projector's holder");
    assert!(took < FAILOVER_BOUND, "{took:?}");
    let after = all_units_held(&cluster, survivor).await;
    let new_holder = holders(&after)
        .into_iter()
        .find(|(unit, _)| unit == "projector:catalog")
        .and_then(|(_, holder)| holder);
    assert!(new_holder.is_some_and(|h| h != holder), "{after:#}");
}

#[tokio::test]
async fn a_frozen_saga_holder_loses_its_partitions_within_its_lease_and_never_charges_after_waking()
{
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let seen = all_units_held(&cluster, 0).await;
    // The replica with the most saga partitions (the others must take them over).
    let frozen = cluster
        .replicas
        .iter()
        .enumerate()
        .max_by_key(|(_, r)| {
            held_by(&seen, &r.node)
                .iter()
                .filter(|u| u.starts_with("saga:"))
                .count()
        })
        .map(|(i, _)| i)
        .expect("three replicas");
    let node = cluster.replicas[frozen].node.clone();
    let its_partitions: Vec<String> = held_by(&seen, &node)
        .into_iter()
        .filter(|u| u.starts_with("saga:"))
        .collect();
    assert!(!its_partitions.is_empty(), "{seen:#}");
    let survivor = (frozen + 1) % 3;
    let product = create_product(&cluster, survivor, "FREEZE-1", 1_000).await;

    // Act: freeze it.
    let frozen_at = Instant::now();
    cluster.replicas[frozen].freeze();

    // Assert: its partitions moved within the lease and a margin…
    within(
        "the frozen replica's partitions have new holders",
        Duration::from_secs(30),
        || async {
            let now = cluster.replicas[survivor].cluster().await?;
            its_partitions
                .iter()
                .all(|unit| {
                    holders(&now)
                        .iter()
                        .any(|(u, h)| u == unit && h.as_deref().is_some_and(|h| h != node))
                })
                .then_some(())
        },
    )
    .await;
    let took = frozen_at.elapsed();
    println!("the partitions of a frozen replica moved {took:?} after SIGSTOP (lease 3 s)");
    assert!(took < FAILOVER_BOUND, "{took:?}");

    // …and 16 orders checked out through the two others meanwhile (their ids fall in
    // every partition, the frozen one's too) all confirm.
    let mut orders = Vec::new();
    for i in 0..16 {
        let through = if i % 2 == 0 {
            survivor
        } else {
            (frozen + 2) % 3
        };
        orders.push(buy_one(&cluster, through, &format!("buyer-{i}"), &product).await);
    }
    all_confirmed(&cluster, survivor, &orders, Duration::from_secs(30)).await;

    // Act: wake it up, and check out more.
    cluster.replicas[frozen].thaw();
    for i in 16..24 {
        orders.push(buy_one(&cluster, frozen, &format!("buyer-{i}"), &product).await);
    }
    all_confirmed(&cluster, frozen, &orders, Duration::from_secs(30)).await;

    // Assert: it knew its lease was gone before doing anything: it stopped every unit and
    // connected again; nothing was charged twice, and every unit has one holder.
    let log = cluster.replicas[frozen].log_text();
    assert!(
        log.contains("cluster lease lost"),
        "the woken replica fenced itself:\n{log}"
    );
    assert_eq!(
        charged_twice(&cluster).await,
        0,
        "an order was charged twice"
    );
    let last = all_units_held(&cluster, frozen).await;
    assert_eq!(holders(&last).len(), 12);
}

#[tokio::test]
async fn checkouts_through_three_replicas_all_confirm() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    all_units_held(&cluster, 0).await;
    let product = create_product(&cluster, 0, "SPREAD-1", 1_000).await;

    // Act: 24 customers, 8 through each of the three at the same time.
    let buying = (0..3).map(|replica| {
        let cluster = &cluster;
        let product = product.clone();
        async move {
            let mut orders = Vec::new();
            for i in 0..8 {
                let user = format!("spread-{replica}-{i}");
                orders.push(buy_one(cluster, replica, &user, &product).await);
            }
            orders
        }
    });
    let orders: Vec<String> = futures_util::future::join_all(buying)
        .await
        .into_iter()
        .flatten()
        .collect();

    // Assert: every order confirmed (seen from each replica), each charged once, and the
    // stock went down by exactly one per order.
    for replica in 0..3 {
        all_confirmed(&cluster, replica, &orders, Duration::from_secs(30)).await;
    }
    assert_eq!(charged_twice(&cluster).await, 0);
    let stock = cluster.replicas[1]
        .admin(PRODUCT, json!({ "id": product }))
        .await;
    assert_eq!(data(&stock)["product"]["stock"], 1_000 - 24, "{stock:#}");
}

#[tokio::test]
async fn an_api_only_replica_claims_nothing_and_still_reads_its_own_writes() {
    let Some(mut cluster) = Cluster::new().await else {
        return;
    };
    cluster.add(1, &[]).await;
    cluster.add(1, &[("ORDERGRAPH_ROLES", "api")]).await;
    let seen = within(
        "both replicas are in the cluster",
        Duration::from_secs(30),
        || async {
            let seen = all_units_held(&cluster, 1).await;
            let listed = seen["nodes"]
                .as_array()?
                .iter()
                // Alive, with their roles recorded (a lease connection shows before its row).
                .filter(|n| {
                    n["alive"] == true && n["roles"].as_array().is_some_and(|r| !r.is_empty())
                })
                .count();
            (listed == 2).then_some(seen)
        },
    )
    .await;

    // The worker holds every unit; the API replica none, and it says what it is.
    assert_eq!(held_by(&seen, "replica-0").len(), 12, "{seen:#}");
    assert!(held_by(&seen, "replica-1").is_empty(), "{seen:#}");
    let api = seen["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == "replica-1")
        .cloned()
        .expect("the API replica is listed");
    assert_eq!(api["roles"], json!(["api"]));
    assert_eq!(api["alive"], true);

    // A mutation on the API replica reads its own write, folded by the other.
    let product = create_product(&cluster, 1, "API-ONLY-1", 3).await;
    let read = cluster.replicas[1]
        .admin(PRODUCT, json!({ "id": product }))
        .await;
    assert_eq!(data(&read)["product"]["stock"], 3);
    // It is ready: every unit is held by someone, and its checkpoints are fresh.
    within(
        "the API replica is ready",
        Duration::from_secs(15),
        || async {
            let status = cluster.replicas[1].http_status("/readyz").await;
            (status == 200).then_some(())
        },
    )
    .await;
    // Still nothing held by it a moment later (it never claims).
    let later = cluster.replicas[0].cluster().await.expect("an answer");
    assert!(held_by(&later, "replica-1").is_empty(), "{later:#}");
}

#[tokio::test]
async fn postgres_without_a_jwt_secret_is_refused_with_a_clear_message() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordergraph"))
        .arg("serve")
        .env_remove("ORDERGRAPH_JWT_SECRET")
        .env("DATABASE_URL", &cluster.database_url)
        .env("ORDERGRAPH_BIND", "127.0.0.1:0")
        .output()
        .await
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(text.contains("set ORDERGRAPH_JWT_SECRET"), "{text}");
    let token = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordergraph"))
        .args(["token", "--sub", "alice", "--role", "admin"])
        .env_remove("ORDERGRAPH_JWT_SECRET")
        .env("DATABASE_URL", &cluster.database_url)
        .output()
        .await
        .expect("the binary runs");
    assert!(!token.status.success());
    assert!(String::from_utf8_lossy(&token.stderr).contains("set ORDERGRAPH_JWT_SECRET"));
}

#[tokio::test]
async fn on_sqlite_roles_other_than_everything_are_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let settings = ordergraph::config::Settings {
        bind: "127.0.0.1:0".parse().expect("an address"),
        database_url: Some(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("roles.db").display()
        )),
        data_dir: dir.path().to_path_buf(),
        jwt_secret: Some(secrecy::SecretString::from(JWT_SECRET.to_string())),
        roles: "api".parse().expect("a role"),
        ..ordergraph::config::Settings::default()
    };
    let error = ordergraph::Application::build(settings)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("needs PostgreSQL"),
        "{error:#}"
    );
}

#[tokio::test]
async fn a_second_process_on_the_same_sqlite_file_is_refused_and_the_first_serves_on() {
    // Arrange: one server process on a SQLite file.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let serve = |log: &str| {
        let out = std::fs::File::create(dir.path().join(log)).expect("a log file");
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ordergraph"))
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env("ORDERGRAPH_DATA_DIR", dir.path())
            .env("ORDERGRAPH_BIND", "127.0.0.1:0")
            .env("ORDERGRAPH_JWT_SECRET", JWT_SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts")
    };
    let mut first = serve("first.log");
    within(
        "the first process serves",
        Duration::from_secs(60),
        || async {
            let log = std::fs::read_to_string(dir.path().join("first.log")).unwrap_or_default();
            log.contains("serving GraphQL on").then_some(())
        },
    )
    .await;

    // Act: a second process on the same data directory.
    let second = serve("second.log")
        .wait_with_output()
        .await
        .expect("the second process ends");

    // Assert: refused, saying why; the first one still runs.
    assert!(!second.status.success());
    let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default();
    assert!(
        log.contains("another ordergraph process is serving"),
        "{log}"
    );
    assert!(
        first.try_wait().expect("a status").is_none(),
        "the first still serves"
    );
    first.start_kill().expect("stopped");
}
