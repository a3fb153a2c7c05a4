//! Chaos: three replicas under a mixed load — stock adjustments with idempotency keys,
//! checkouts, `events` and `productUpdated` subscribers on every replica — while the
//! holders of units of work are killed (`kill -9`, then replaced) or frozen (`SIGSTOP`
//! past their lease, then woken) at random moments, a dozen times. Clients behave as
//! behind a load balancer: a request that gets no answer is sent again, with the same
//! idempotency key, to another replica; a subscriber whose socket ends resumes on another
//! replica from the last position it received.
//!
//! Afterwards, the checker: every acknowledged write is in the log once, every view equals
//! a replay (`verifyProjection`), every `events` subscriber saw every position of the log
//! once and in order, every `productUpdated` subscriber ended at the final stock, every
//! order is CONFIRMED, none was charged twice. A replica that folded or charged after its
//! lease had expired would show in one of those (a counter folded twice, a second charge).
//!
//! The run is seeded (`CHAOS_SEED`, printed) so that a failure can be replayed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ordergraph::auth::Role;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;

use super::harness::{CLUSTER, Cluster, holders};
use super::{charged_twice, within};
use crate::helpers::*;
use crate::ws_client::pos;

/// The lease of every replica here: short, so that a frozen holder's units move soon.
const LEASE_MS: u64 = 1_500;
const FAULTS: usize = 12;
const WRITERS: usize = 6;
const BUYERS: usize = 3;
/// How long a client waits for one answer before it tries another replica.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The replicas a client may use now: a load balancer's pool, by address.
#[derive(Clone, Default)]
pub(crate) struct Pool(Arc<Mutex<Vec<String>>>);

impl Pool {
    pub(crate) fn pick(&self, turn: usize) -> Option<String> {
        let pool = self.0.lock().expect("the pool");
        (!pool.is_empty()).then(|| pool[turn % pool.len()].clone())
    }

    pub(crate) fn add(&self, address: &str) {
        self.0.lock().expect("the pool").push(address.to_owned());
    }

    pub(crate) fn remove(&self, address: &str) {
        self.0.lock().expect("the pool").retain(|a| a != address);
    }
}

/// A GraphQL client behind the pool: sends the request to one replica after another until
/// one answers (an idempotency key in `variables` makes the retries safe).
pub(crate) struct Client {
    http: reqwest::Client,
    pool: Pool,
    token: String,
    turn: usize,
    /// The answers `UNAVAILABLE` it sent again.
    pub(crate) unavailable: usize,
}

impl Client {
    pub(crate) fn new(pool: &Pool, sub: &str, role: Role, turn: usize) -> Self {
        Client {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("an HTTP client"),
            pool: pool.clone(),
            token: token(sub, role),
            turn,
            unavailable: 0,
        }
    }

    pub(crate) async fn send(&mut self, query: &str, variables: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.turn += 1;
            if let Some(address) = self.pool.pick(self.turn) {
                let sent = self
                    .http
                    .post(format!("{address}/graphql"))
                    .bearer_auth(&self.token)
                    .json(&json!({ "query": query, "variables": variables }))
                    .send()
                    .await;
                if let Ok(response) = sent
                    && let Ok(body) = response.json::<Value>().await
                {
                    // The database was out of reach: the request may or may not have
                    // taken effect, and the same request (idempotency key) is safe again.
                    if error_code(&body).as_deref() != Some("UNAVAILABLE") {
                        return body;
                    }
                    self.unavailable += 1;
                }
            }
            assert!(Instant::now() < deadline, "no replica answered {query}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether an answer acknowledges the write: its data, or CONSISTENCY_TIMEOUT (written,
/// not yet shown).
pub(crate) fn acknowledged(answer: &Value) -> bool {
    match error_code(answer).as_deref() {
        None => true,
        Some("CONSISTENCY_TIMEOUT") => true,
        Some(_) => false,
    }
}

/// What a subscriber received, across every replica it was connected to.
#[derive(Default)]
pub(crate) struct Received {
    /// `events`: every position, in the order received.
    pub(crate) positions: Vec<i64>,
    /// `productUpdated`: the last stock of each product.
    pub(crate) stock: BTreeMap<String, i64>,
    /// The last position received (where a reconnect resumes).
    pub(crate) last: Option<i64>,
    pub(crate) reconnects: usize,
    /// The error a replica ended the subscription with (none should): the replica's
    /// address and the message. The subscriber stops there.
    pub(crate) failed: Option<(String, Value)>,
}

/// A subscriber that resumes on another replica whenever its socket ends, until `stop`.
pub(crate) async fn subscriber(
    pool: Pool,
    query: &'static str,
    variables: Value,
    field: &'static str,
    got: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
    turn: usize,
) {
    let token = token("admin", Role::Admin);
    let mut turn = turn;
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let Some(address) = pool.pick(turn) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let url = format!("{}/graphql", address.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().expect("a ws URL");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().expect("a header"),
        );
        let connected =
            tokio::time::timeout(REQUEST_TIMEOUT, tokio_tungstenite::connect_async(request)).await;
        let Ok(Ok((mut socket, _))) = connected else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut vars = variables.clone();
        if let Some(after) = got.lock().expect("received").last {
            vars["after"] = json!(after.to_string());
        }
        let hello = [
            json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }),
            json!({ "type": "subscribe", "id": "s", "payload": { "query": query, "variables": vars } }),
        ];
        let mut sent = true;
        for message in hello {
            sent &= socket
                .send(Message::Text(message.to_string().into()))
                .await
                .is_ok();
        }
        got.lock().expect("received").reconnects += 1;
        while sent && !stop.load(Ordering::Relaxed) {
            // A frozen replica says nothing: after a while, try another.
            let frame = tokio::time::timeout(Duration::from_secs(3), socket.next()).await;
            let text = match frame {
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(_))) => continue,
                Err(_) => {
                    if pool.0.lock().expect("the pool").contains(&address) {
                        continue;
                    }
                    break;
                }
                Ok(None | Some(Err(_))) => break,
            };
            let message: Value = serde_json::from_str(text.as_str()).expect("JSON");
            match message["type"].as_str() {
                Some("ping") => {
                    let _ = socket
                        .send(Message::Text(json!({ "type": "pong" }).to_string().into()))
                        .await;
                }
                Some("next") => {
                    let item = &message["payload"]["data"][field];
                    assert!(item.is_object(), "{message}");
                    let position = pos(&item["position"]);
                    let mut got = got.lock().expect("received");
                    if field == "events" {
                        got.positions.push(position);
                    } else {
                        got.stock.insert(
                            str_of(&item["id"]).to_owned(),
                            item["stock"].as_i64().expect("a stock"),
                        );
                    }
                    got.last = Some(got.last.map_or(position, |l| l.max(position)));
                }
                Some("error") => {
                    // Kept for `check`, which fails at once and shows the replica's log: a
                    // panic here, in a task of its own, would only show as a timeout.
                    got.lock().expect("received").failed = Some((address.clone(), message));
                    return;
                }
                _ => {}
            }
        }
    }
}

/// What a writer did: its product, its acknowledged adjustments, the answers refused,
/// the answers `UNAVAILABLE` sent again.
pub(crate) type Written = (String, i64, Vec<Value>, usize);
/// What a buyer did: its orders, the answers refused, the answers `UNAVAILABLE` sent again.
pub(crate) type Bought = (Vec<String>, Vec<Value>, usize);

/// `n` writers behind `pool` until `stop`: `adjustStock(+1)` on `products` (in turn), each
/// with its own idempotency key (`<tag>-w<writer>-<n>`), retried on another replica when
/// no answer comes.
pub(crate) fn spawn_writers(
    pool: &Pool,
    stop: &Arc<AtomicBool>,
    products: &[String],
    n: usize,
    tag: &str,
) -> Vec<tokio::task::JoinHandle<Written>> {
    (0..n)
        .map(|w| {
            let (pool, stop) = (pool.clone(), stop.clone());
            let (product, tag) = (products[w % products.len()].clone(), tag.to_owned());
            tokio::spawn(async move {
                let mut client = Client::new(&pool, "admin", Role::Admin, w);
                let (mut acked, mut refused) = (0_i64, Vec::new());
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let answer = client
                        .send(
                            ADJUST_STOCK,
                            json!({ "input": {
                                "productId": product, "delta": 1, "idempotencyKey": format!("{tag}-w{w}-{n}"),
                            }}),
                        )
                        .await;
                    if acknowledged(&answer) {
                        acked += 1;
                    } else {
                        refused.push(answer);
                    }
                }
                (product, acked, refused, client.unavailable)
            })
        })
        .collect()
}

/// `n` buyers behind `pool` until `stop` (users `<tag>-buyer-<b>`): each adds one of
/// `product` to its cart and checks out, again and again, with idempotency keys.
pub(crate) fn spawn_buyers(
    pool: &Pool,
    stop: &Arc<AtomicBool>,
    product: &str,
    n: usize,
    tag: &str,
) -> Vec<tokio::task::JoinHandle<Bought>> {
    (0..n)
        .map(|b| {
            let (pool, stop, product) = (pool.clone(), stop.clone(), product.to_owned());
            let user = format!("{tag}-buyer-{b}");
            tokio::spawn(async move {
                let mut client = Client::new(&pool, &user, Role::Customer, b);
                let (mut orders, mut refused) = (Vec::new(), Vec::new());
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let added = client
                        .send(
                            ADD_TO_CART,
                            json!({ "input": {
                                "productId": product, "quantity": 1,
                                "idempotencyKey": format!("{user}-add-{n}"),
                            }}),
                        )
                        .await;
                    if !acknowledged(&added) {
                        refused.push(added);
                        continue;
                    }
                    let placed = client
                        .send(
                            CHECKOUT,
                            json!({ "input": {
                                "paymentToken": "tok_visa", "shippingAddress": ADDRESS,
                                "idempotencyKey": format!("{user}-checkout-{n}"),
                            }}),
                        )
                        .await;
                    match placed["data"]["checkout"]["order"]["id"].as_str() {
                        Some(id) => orders.push(id.to_owned()),
                        None if acknowledged(&placed) => {}
                        None => refused.push(placed),
                    }
                }
                (orders, refused, client.unavailable)
            })
        })
        .collect()
}

/// A mixed load behind a pool until [`Load::finish`]: writers adjusting `written`, buyers
/// buying `bought`.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<Written>>,
    buyers: Vec<tokio::task::JoinHandle<Bought>>,
}

/// What a load did, every answer accounted for.
pub(crate) struct Done {
    /// Acknowledged adjustments per product: its stock now.
    pub(crate) expected: BTreeMap<String, i64>,
    pub(crate) orders: Vec<String>,
}

impl Load {
    pub(crate) fn start(
        pool: &Pool,
        (written, writers): (&[String], usize),
        (bought, buyers): (&str, usize),
        tag: &str,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        Load {
            writers: spawn_writers(pool, &stop, written, writers, tag),
            buyers: spawn_buyers(pool, &stop, bought, buyers, tag),
            stop,
        }
    }

    /// Stops the load and collects what it did; no answer may have been refused, and
    /// every writer and buyer must have got something through.
    pub(crate) async fn finish(self) -> Done {
        self.stop.store(true, Ordering::Relaxed);
        let (mut expected, mut orders) = (BTreeMap::new(), Vec::new());
        let (mut refused, mut unavailable) = (Vec::new(), 0);
        for writer in self.writers {
            let (product, acked, mut r, u) = writer.await.expect("a writer");
            *expected.entry(product).or_default() += acked;
            refused.append(&mut r);
            unavailable += u;
        }
        for buyer in self.buyers {
            let (mut o, mut r, u) = buyer.await.expect("a buyer");
            orders.append(&mut o);
            refused.append(&mut r);
            unavailable += u;
        }
        assert!(refused.is_empty(), "refused: {refused:#?}");
        assert!(
            expected.values().all(|&n| n > 0) && !orders.is_empty(),
            "the load ran"
        );
        println!(
            "{} acknowledged adjustments, {} orders, {unavailable} answers UNAVAILABLE sent again",
            expected.values().sum::<i64>(),
            orders.len(),
        );
        Done { expected, orders }
    }
}

/// `events` and `productUpdated` (of `watched`) subscribers behind a pool, `n` of each,
/// each resuming on another replica when its socket ends.
pub(crate) struct Subscribers {
    feeds: Vec<Arc<Mutex<Received>>>,
    watchers: Vec<Arc<Mutex<Received>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Subscribers {
    pub(crate) fn start(pool: &Pool, n: usize, watched: &[String]) -> Subscribers {
        let stop = Arc::new(AtomicBool::new(false));
        let (mut feeds, mut watchers, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            for (query, variables, field, into) in [
                (EVENTS_SUB, json!({}), "events", &mut feeds),
                (
                    PRODUCTS_SUB,
                    json!({ "ids": watched }),
                    "productUpdated",
                    &mut watchers,
                ),
            ] {
                let got = Arc::new(Mutex::new(Received::default()));
                tasks.push(tokio::spawn(subscriber(
                    pool.clone(),
                    query,
                    variables,
                    field,
                    got.clone(),
                    stop.clone(),
                    i,
                )));
                into.push(got);
            }
        }
        Subscribers {
            feeds,
            watchers,
            stop,
            tasks,
        }
    }

    /// Waits (at most `limit` each) until every `events` subscriber has reached the end
    /// of `log` and every `productUpdated` subscriber shows the stocks of `expected`; then
    /// stops them, and each `events` subscriber must have seen `log` exactly: every
    /// position once, in order.
    ///
    /// A subscription a replica ended with an error fails the check at once, with that
    /// replica's log (`cluster`).
    pub(crate) async fn check(
        self,
        log: &[i64],
        expected: &BTreeMap<String, i64>,
        limit: Duration,
        cluster: &Cluster,
    ) {
        let head = *log.last().expect("events");
        let all: Vec<_> = self.feeds.iter().chain(&self.watchers).collect();
        let no_failure = || {
            for got in &all {
                if let Some((address, message)) = &got.lock().expect("received").failed {
                    panic!(
                        "a subscription on {address} failed: {message}\n{}",
                        log_of(cluster, address)
                    );
                }
            }
        };
        for (i, feed) in self.feeds.iter().enumerate() {
            within(
                &format!("events subscriber {i} reaches the head {head}"),
                limit,
                || async {
                    no_failure();
                    (feed.lock().expect("feed").last >= Some(head)).then_some(())
                },
            )
            .await;
        }
        for (i, watcher) in self.watchers.iter().enumerate() {
            within(
                &format!("productUpdated subscriber {i} ends at the final stock"),
                limit,
                || async {
                    no_failure();
                    (&watcher.lock().expect("watcher").stock == expected).then_some(())
                },
            )
            .await;
        }
        no_failure();
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.abort();
        }
        for (i, feed) in self.feeds.iter().enumerate() {
            let feed = feed.lock().expect("feed");
            let seen: Vec<i64> = feed
                .positions
                .iter()
                .copied()
                .filter(|&p| p <= head)
                .collect();
            assert_eq!(
                seen, log,
                "events subscriber {i} (resumed {} times) saw the log as it is",
                feed.reconnects
            );
        }
    }
}

/// Every acknowledged adjustment of `done` is in the log once (a product's stock is their
/// count) and every order it placed is CONFIRMED, as read behind `pool`.
pub(crate) async fn settled(pool: &Pool, done: &Done) {
    let read = |query: &'static str, id: String| async move {
        Client::new(pool, "admin", Role::Admin, 0)
            .send(query, json!({ "id": id }))
            .await
    };
    for (product, count) in &done.expected {
        within(
            &format!("product {product} shows every acknowledged write"),
            Duration::from_secs(30),
            || async {
                let answer = read(
                    "query($id: UUID!) { product(id: $id) { stock } }",
                    product.clone(),
                )
                .await;
                (answer["data"]["product"]["stock"].as_i64() == Some(*count)).then_some(())
            },
        )
        .await;
    }
    for order in &done.orders {
        within(
            &format!("order {order} is CONFIRMED"),
            Duration::from_secs(60),
            || async {
                let answer = read(
                    "query($id: UUID!) { order(id: $id) { status } }",
                    order.clone(),
                )
                .await;
                (answer["data"]["order"]["status"] == "CONFIRMED").then_some(())
            },
        )
        .await;
    }
}

/// Every view behind `client` equals a replay of the log (`verifyProjection`).
pub(crate) async fn views_verify(client: &mut Client, what: &str) {
    for view in ["catalog", "cart", "orders", "dashboard"] {
        let report = client
            .send(
                "mutation($name: String!) { verifyProjection(name: $name) { ok differences } }",
                json!({ "name": view }),
            )
            .await;
        assert_eq!(
            data(&report)["verifyProjection"]["ok"],
            true,
            "{what}, {view}: {report:#}"
        );
    }
}

/// Creates the products a load needs through `admin`: two written to (stock 0), one
/// bought (ample stock). Their ids.
pub(crate) async fn load_products(admin: &mut Client, tag: &str) -> (Vec<String>, String) {
    let mut products = Vec::new();
    for (sku, stock) in [("A", 0), ("B", 0), ("BUY", 1_000_000)] {
        let sku = format!("{tag}-{sku}");
        let created = admin
            .send(
                CREATE_PRODUCT,
                json!({ "input": {
                    "sku": sku, "name": sku, "description": sku, "price": "1.00",
                    "initialStock": stock, "idempotencyKey": sku,
                }}),
            )
            .await;
        products.push(str_of(&data(&created)["createProduct"]["product"]["id"]).to_owned());
    }
    let bought = products.pop().expect("three products");
    (products, bought)
}

pub(crate) const EVENTS_SUB: &str =
    "subscription($after: Position) { events(after: $after) { position } }";
pub(crate) const PRODUCTS_SUB: &str = "subscription($ids: [UUID!], $after: Position) { productUpdated(ids: $ids, after: $after) { id stock position } }";

#[tokio::test]
async fn kills_and_freezes_of_the_unit_holders_under_load_lose_nothing_and_double_nothing() {
    let Some(mut cluster) = Cluster::new().await else {
        return;
    };
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0f0c_1a05);
    println!("chaos seed {seed} (CHAOS_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let lease = LEASE_MS.to_string();
    let env = [("ORDERGRAPH_LEASE_MS", lease.as_str())];
    cluster.add(3, &env).await;
    let pool = Pool::default();
    for replica in &cluster.replicas {
        pool.add(&replica.address);
    }
    let mut admin = Client::new(&pool, "admin", Role::Admin, 0);
    within("every unit is held", Duration::from_secs(30), || async {
        let seen = cluster.replicas[0].cluster().await?;
        holders(&seen)
            .iter()
            .all(|(_, h)| h.is_some())
            .then_some(())
    })
    .await;

    // Arrange: two products written to, one bought; an `events` and a `productUpdated`
    // subscriber per replica; the load.
    let (written, bought) = load_products(&mut admin, "CHAOS").await;
    let subscribers = Subscribers::start(&pool, 3, &written);
    let load = Load::start(&pool, (&written, WRITERS), (&bought, BUYERS), "chaos");

    // The faults: kill -9 or freeze the holder of a random unit, a dozen times.
    let mut faults = Vec::new();
    while faults.len() < FAULTS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_200))).await;
        let seen = admin.send(CLUSTER, json!({})).await;
        let Some(units) = seen["data"]["cluster"]["units"].as_array() else {
            continue;
        };
        let held: Vec<(String, String)> = units
            .iter()
            .filter_map(|u| {
                Some((
                    u["name"].as_str()?.to_owned(),
                    u["holder"].as_str()?.to_owned(),
                ))
            })
            .collect();
        if held.is_empty() {
            continue;
        }
        let (unit, holder) = held[rng.random_range(0..held.len())].clone();
        let victim = cluster.by_node(&holder);
        let address = cluster.replicas[victim].address.clone();
        pool.remove(&address);
        if rng.random_bool(0.5) {
            faults.push(format!("kill -9 {holder} (holding {unit})"));
            cluster.replicas[victim].kill9().await;
            cluster.add(1, &env).await;
            pool.add(&cluster.replicas.last().expect("the new replica").address);
        } else {
            faults.push(format!("SIGSTOP {holder} (holding {unit})"));
            cluster.replicas[victim].freeze();
            tokio::time::sleep(Duration::from_millis(LEASE_MS + 700)).await;
            cluster.replicas[victim].thaw();
            pool.add(&address);
        }
    }
    println!("faults: {faults:#?}");

    // The checker.
    let done = load.finish().await;
    lost_nothing(&cluster, &pool, &done, subscribers).await;
}

/// The chaos checker, after `done`: every acknowledged adjustment is in the log once and
/// every order is CONFIRMED (the saga's partitions moved with their holders), none charged
/// twice, every view equals a replay of the log, and every subscriber saw it all.
pub(crate) async fn lost_nothing(
    cluster: &Cluster,
    pool: &Pool,
    done: &Done,
    subscribers: Subscribers,
) {
    settled(pool, done).await;
    assert_eq!(
        charged_twice(cluster).await,
        0,
        "an order was charged twice"
    );
    views_verify(
        &mut Client::new(pool, "admin", Role::Admin, 0),
        "the cluster",
    )
    .await;
    let log = log_positions(cluster).await;
    subscribers
        .check(&log, &done.expected, Duration::from_secs(30), cluster)
        .await;
}

/// The log of the replica serving `address` (the last 200 lines), to show with a failure.
pub(crate) fn log_of(cluster: &Cluster, address: &str) -> String {
    match cluster.replicas.iter().find(|r| r.address == address) {
        Some(replica) => {
            let text = replica.log_text();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(200)..].join("\n");
            format!(
                "--- log of {} ({address}), last lines ---\n{tail}",
                replica.node
            )
        }
        None => format!("(no replica of this cluster serves {address})"),
    }
}

/// Every position in the log, in order.
pub(crate) async fn log_positions(cluster: &Cluster) -> Vec<i64> {
    use sea_orm::ConnectionTrait;
    let db = cluster.db().await;
    db.query_all_raw(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        "SELECT position FROM events ORDER BY position",
    ))
    .await
    .expect("the log can be read")
    .iter()
    .map(|row| row.try_get::<i64>("", "position").expect("a position"))
    .collect()
}
