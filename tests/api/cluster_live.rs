//! `clusterUpdated`, over a real WebSocket: the cluster as the `cluster` query answers it
//! first, then again as it changes, pushed with no query from the client. On PostgreSQL,
//! with real replica processes: a replica killed with `kill -9` shows as not alive, and
//! every unit it held as held by a live replica, within seconds. On SQLite, the one
//! process holding every unit. Admins only, like `cluster`; ended with SERVER_DRAINING
//! when the server shuts down.

use std::collections::BTreeSet;
use std::time::Duration;

use ordergraph::auth::Role;
use serde_json::{Value, json};

use crate::cluster::harness::{CLUSTER, Cluster, held_by, holders, on_postgres};
use crate::helpers::*;
use crate::ws_client::{WsClient, pos};

const CLUSTER_UPDATED: &str = "subscription {
  clusterUpdated {
    node
    nodes { id roles since alive unitsHeld serving { position lag reportedAt } }
    units { name holder since }
  }
}";

/// Generous: the machine running the tests is shared and slow. A failover takes a poll
/// (250 ms) and the subscription's next look (1 s) when all goes well.
const FAILOVER_BOUND: Duration = Duration::from_secs(15);

/// The ids of the nodes of a `Cluster` that are (or are not) alive.
fn nodes(cluster: &Value, alive: bool) -> BTreeSet<String> {
    cluster["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("nodes is a list: {cluster}"))
        .iter()
        .filter(|n| n["alive"] == alive)
        .map(|n| str_of(&n["id"]).to_owned())
        .collect()
}

/// Waits until the units are balanced (every unit held, each of the three replicas at its
/// share: at most 2 of the 4 projectors, 2 or 3 of the 8 saga partitions, so nothing
/// moves any more) and every replica has recorded its roles, as replica 0 answers the
/// `cluster` query; returns that answer.
async fn settled(cluster: &Cluster) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(seen) = cluster.replicas[0].cluster().await {
            let all_held = holders(&seen).iter().all(|(_, h)| h.is_some());
            let each_holds = cluster.replicas.iter().all(|r| {
                let held = held_by(&seen, &r.node);
                let projectors = held.iter().filter(|u| u.starts_with("projector:")).count();
                let partitions = held.iter().filter(|u| u.starts_with("saga:")).count();
                projectors <= 2 && (2..=3).contains(&partitions)
            });
            let registered = seen["nodes"].as_array().is_some_and(|nodes| {
                nodes
                    .iter()
                    .all(|n| n["roles"].as_array().is_some_and(|r| !r.is_empty()))
            });
            if all_held && each_holds && registered {
                return seen;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster did not settle: every unit held, each replica at its share"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cluster_updated_shows_a_killed_replica_gone_and_its_units_held_by_live_replicas() {
    // Arrange: three replicas, every unit held, each replica holding some.
    let Some(mut cluster) = Cluster::start(3).await else {
        return;
    };
    let queried = settled(&cluster).await;
    let (a, b) = (0, 1);
    let url = format!(
        "{}/graphql",
        cluster.replicas[a].address.replacen("http", "ws", 1)
    );
    let mut ws = WsClient::connect_url(&url, Some(&token("ops", Role::Admin))).await;
    ws.subscribe("c", CLUSTER_UPDATED, json!({})).await;

    // The current state first: the one the `cluster` query answers.
    let first = ws.next_data("c", "clusterUpdated").await;
    assert_eq!(
        first["node"],
        cluster.replicas[a].node.as_str(),
        "{first:#}"
    );
    assert_eq!(holders(&first), holders(&queried), "{first:#}");
    let replicas: BTreeSet<String> = cluster.replicas.iter().map(|r| r.node.clone()).collect();
    assert_eq!(nodes(&first, true), replicas, "{first:#}");
    for node in first["nodes"].as_array().expect("nodes") {
        let id = str_of(&node["id"]);
        assert_eq!(
            node["unitsHeld"].as_u64(),
            Some(held_by(&first, id).len() as u64),
            "{first:#}"
        );
        assert!(
            node["serving"]["position"].is_string(),
            "{id} reported how far it serves: {first:#}"
        );
    }
    let victim = cluster.replicas[b].node.clone();
    let orphaned = held_by(&first, &victim);
    assert!(!orphaned.is_empty(), "{victim} holds units: {first:#}");

    // Act: replica B dies at once, its sockets closed by the kernel.
    let killed = std::time::Instant::now();
    cluster.replicas[b].kill9().await;

    // Assert: pushed, with no query: B not alive, and each unit it held held by a live
    // replica (in the same state).
    let failed_over = tokio::time::timeout(
        FAILOVER_BOUND,
        ws.next_until("c", "clusterUpdated", |c| {
            let alive = nodes(c, true);
            nodes(c, false).contains(&victim)
                && holders(c)
                    .iter()
                    .all(|(_, holder)| holder.as_ref().is_some_and(|h| alive.contains(h)))
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("within {FAILOVER_BOUND:?}, {victim} gone and its units taken"));
    println!(
        "clusterUpdated pushed {victim} gone and its units held by live replicas {:?} after kill -9",
        killed.elapsed()
    );
    let alive = nodes(&failed_over, true);
    assert!(!alive.contains(&victim), "{failed_over:#}");
    assert_eq!(alive.len(), 2, "{failed_over:#}");
    let now: Vec<(String, Option<String>)> = holders(&failed_over);
    for unit in &orphaned {
        let holder = now
            .iter()
            .find(|(name, _)| name == unit)
            .and_then(|(_, h)| h.clone());
        assert!(
            holder.as_ref().is_some_and(|h| alive.contains(h)),
            "{unit} is held by a live replica: {failed_over:#}"
        );
    }
    let gone = failed_over["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == victim.as_str())
        .expect("the dead replica is still listed");
    assert_eq!(gone["unitsHeld"], 0, "{failed_over:#}");
}

#[tokio::test]
async fn cluster_updated_first_sends_the_one_process_holding_every_unit() {
    // Arrange
    let app = spawn_app().await;
    let queried = app.as_admin().gql(CLUSTER, json!({})).await;
    let queried = data(&queried)["cluster"].clone();
    let mut ws = WsClient::connect(&app, Some(&token("ops", Role::Admin))).await;

    // Act
    ws.subscribe("c", CLUSTER_UPDATED, json!({})).await;

    // Assert: one replica, alive, holding every unit. On PostgreSQL the same single
    // process claims them on its lease and records its roles and claims just after: the
    // first state may come before, and the later ones are pushed as they change.
    let first = ws.next_data("c", "clusterUpdated").await;
    let settled = |c: &Value| {
        holders(c).iter().all(|(_, h)| h.is_some())
            && c["units"]
                .as_array()
                .is_some_and(|u| u.iter().all(|u| u["since"].is_string()))
            && c["nodes"][0]["roles"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
    };
    let state = if !on_postgres() || settled(&first) {
        first
    } else {
        tokio::time::timeout(
            FAILOVER_BOUND,
            ws.next_until("c", "clusterUpdated", settled),
        )
        .await
        .expect("the one process claims every unit and records its claims")
    };
    let node = str_of(&state["node"]).to_owned();
    let listed = state["nodes"].as_array().expect("nodes");
    assert_eq!(listed.len(), 1, "{state:#}");
    assert_eq!(listed[0]["id"], node.as_str(), "{state:#}");
    assert_eq!(listed[0]["alive"], true, "{state:#}");
    assert_eq!(
        listed[0]["roles"],
        json!(["api", "projector", "saga", "publisher"]),
        "{state:#}"
    );
    let units = holders(&state);
    assert_eq!(
        units.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        holders(&queried)
            .iter()
            .map(|(name, _)| name)
            .collect::<Vec<_>>(),
        "the same units as the query: {state:#}"
    );
    assert!(
        units.iter().any(|(name, _)| name.starts_with("projector:"))
            && units.iter().any(|(name, _)| name.starts_with("saga:")),
        "{state:#}"
    );
    assert!(
        units
            .iter()
            .all(|(_, h)| h.as_deref() == Some(node.as_str())),
        "{state:#}"
    );
    assert_eq!(listed[0]["unitsHeld"].as_u64(), Some(units.len() as u64));
    assert!(
        state["units"]
            .as_array()
            .expect("units")
            .iter()
            .all(|u| u["since"].is_string()),
        "{state:#}"
    );
}

#[tokio::test]
async fn cluster_updated_pushes_a_replica_whose_serving_position_moves() {
    // Arrange
    let app = spawn_app().await;
    let mut ws = WsClient::connect(&app, Some(&token("ops", Role::Admin))).await;
    ws.subscribe("c", CLUSTER_UPDATED, json!({})).await;
    let first = ws.next_data("c", "clusterUpdated").await;
    let node = str_of(&first["node"]).to_owned();
    let serving = |c: &Value| -> Option<i64> {
        c["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["id"] == node.as_str())
            .and_then(|n| n["serving"]["position"].as_str())
            .and_then(|p| p.parse().ok())
    };

    // Act: a write moves every view this process serves.
    let product = app
        .as_admin()
        .create_product("CLUSTER-LIVE", "1.00", 3)
        .await;
    let written = pos(&product["position"]);

    // Assert: pushed, with no query.
    let moved = tokio::time::timeout(
        FAILOVER_BOUND,
        ws.next_until("c", "clusterUpdated", |c| {
            serving(c).is_some_and(|p| p >= written)
        }),
    )
    .await
    .expect("the serving position that moved is pushed");
    assert!(serving(&moved) >= Some(written), "{moved:#}");
}

#[tokio::test]
async fn cluster_updated_is_refused_to_customers_and_anonymous_callers_as_cluster_is() {
    let app = spawn_app().await;
    for (who, token) in [
        ("a customer", Some(token("bob", Role::Customer))),
        ("an anonymous caller", None),
    ] {
        // The code the `cluster` query answers the same caller.
        let mut request = app
            .http
            .post(format!("{}/graphql", app.address))
            .json(&json!({ "query": "{ cluster { node } }" }));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let queried: Value = request
            .send()
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("a JSON body");
        let expected = error_code(&queried).unwrap_or_else(|| panic!("{who}: {queried}"));
        assert!(
            ["FORBIDDEN", "UNAUTHENTICATED"].contains(&expected.as_str()),
            "{who}: {queried}"
        );

        let mut ws = WsClient::connect(&app, token.as_deref()).await;
        ws.subscribe("c", CLUSTER_UPDATED, json!({})).await;
        let refused = ws.recv().await;
        assert_eq!(refused["type"], "error", "{who}: {refused}");
        assert_eq!(
            refused["payload"][0]["extensions"]["code"],
            expected.as_str(),
            "{who}: {refused}"
        );
    }
}

#[tokio::test]
async fn cluster_updated_ends_with_server_draining_when_the_server_shuts_down() {
    let mut app = spawn_app().await;
    let mut ws = WsClient::connect(&app, Some(&token("ops", Role::Admin))).await;
    ws.subscribe("c", CLUSTER_UPDATED, json!({})).await;
    ws.next_data("c", "clusterUpdated").await;

    let (stopped, ended) = tokio::join!(app.shut_down(), ws.recv());

    stopped.expect("the server stops cleanly");
    assert_eq!(ended["type"], "error", "{ended}");
    assert_eq!(ended["id"], "c", "{ended}");
    let error = &ended["payload"][0];
    assert_eq!(error["extensions"]["code"], "SERVER_DRAINING", "{ended}");
    assert!(error["extensions"]["position"].is_string(), "{ended}");
}
