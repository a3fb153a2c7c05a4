//! A seeded fuzz test of hostile input against the real server process (the `ordergraph`
//! binary, on its own database): mangled documents, fragment bombs, deep nesting, huge
//! lists, boundary values of every scalar and input field, ids of the wrong kind, Relay
//! node ids (valid, of the wrong kind, malformed), malformed and oversized bodies,
//! batches, hostile WebSocket messages, Server-Sent Events streams over POST and GET —
//! from anonymous callers, customers, admins and bad tokens, several at once.
//!
//! Every answer must come within a bound, never be a 5xx, be GraphQL-shaped JSON whose
//! every error names its `extensions.code` (and never `INTERNAL`: bad input is the
//! client's), the log must hold no panic, no ERROR line and no backtrace, and the
//! server's memory must come back near where it started.
//!
//! The seed is printed; `ORDERGRAPH_FUZZ_SEED=<n>` replays a run and
//! `ORDERGRAPH_FUZZ_SECONDS=<s>` runs longer (CI: the default, under a minute per
//! database).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ordergraph::auth::Role;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{JWT_SECRET, PostgresGuard, fresh_database_url, unix_now};

/// Bound on one answer: a hang, not a speed figure.
const ANSWER_BOUND: Duration = Duration::from_secs(15);
/// The server's default request body limit.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Requests in flight at once.
const WORKERS: usize = 4;

/// The server binary, running on its own database, logging JSON lines to a file.
struct Server {
    // Field order is drop order: the process goes before its database.
    child: tokio::process::Child,
    port: u16,
    pid: u32,
    log: PathBuf,
    _database: Option<PostgresGuard>,
    _data_dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let (database_url, database) = fresh_database_url(data_dir.path()).await;
        let log = data_dir.path().join("server.log");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordergraph"))
            .arg("serve")
            .env("ORDERGRAPH_BIND", "127.0.0.1:0")
            .env("DATABASE_URL", &database_url)
            .env("ORDERGRAPH_DATA_DIR", data_dir.path())
            .env("ORDERGRAPH_JWT_SECRET", JWT_SECRET)
            .env("ORDERGRAPH_LOG_FORMAT", "json")
            .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn")
            .env("RUST_BACKTRACE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        let pid = child.id().expect("a running child has a pid");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let log_path = log.clone();
        // Copy the log to a file (to search it afterwards) and find the bound port.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut file = tokio::fs::File::create(&log_path)
                .await
                .expect("the log file can be created");
            let mut lines = BufReader::new(stderr).lines();
            let mut port_tx = Some(port_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(tx) = port_tx.take_if(|_| line.contains("serving GraphQL")) {
                    let port = serde_json::from_str::<Value>(&line)
                        .ok()
                        .and_then(|v| v["fields"]["address"].as_str().map(str::to_owned))
                        .and_then(|a| a.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()));
                    let _ = tx.send(port);
                }
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
            }
        });
        let port = tokio::time::timeout(Duration::from_secs(60), port_rx)
            .await
            .expect("the server starts within a minute")
            .expect("the server logs its address")
            .expect("the address has a port");
        Self {
            child,
            port,
            pid,
            log,
            _database: database,
            _data_dir: data_dir,
        }
    }

    /// Resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        Self::rss_of(self.pid)()
    }
}

fn mint(sub: &str, role: Role) -> String {
    ordergraph::auth::mint_token(JWT_SECRET, sub, role, Duration::from_secs(3600))
        .expect("a token can be minted")
}

/// Who sends a request.
#[derive(Clone)]
struct Callers {
    tokens: Vec<Option<String>>,
}

impl Callers {
    fn new() -> Self {
        let expired = crate::helpers::sign_claims(
            &json!({ "sub": "eve", "role": "admin", "exp": unix_now() - 10 }),
            JWT_SECRET,
        );
        Self {
            tokens: vec![
                None,
                Some(mint("fuzz-alice", Role::Customer)),
                Some(mint("fuzz-bob", Role::Customer)),
                Some(mint("fuzz-admin", Role::Admin)),
                Some("not-a-token".into()),
                Some(expired),
            ],
        }
    }
}

/// Ids seen so far, of every kind: the fuzzer uses each where another kind is expected.
#[derive(Default)]
struct Ids {
    ids: Vec<String>,
}

/// One generated request.
enum Case {
    Post {
        body: Vec<u8>,
        content_type: &'static str,
    },
    Get {
        query: String,
    },
    WebSocket {
        messages: Vec<String>,
    },
    /// GraphQL over Server-Sent Events (`Accept: text/event-stream`): a POST of `body`,
    /// or a GET with `params` in the query string.
    EventStream {
        body: Option<Vec<u8>>,
        params: Vec<(String, String)>,
    },
}

/// The operations of the API, each with variables to fill.
const OPERATIONS: &[&str] = &[
    "query ($id: UUID!) { product(id: $id) { id sku name description price stock inStock status averageRating reviewCount version updatedAt position } }",
    "query ($first: Int, $after: String, $search: String, $inStock: Boolean, $all: Boolean) { products(first: $first, after: $after, search: $search, inStockOnly: $inStock, includeDiscontinued: $all) { totalCount edges { cursor node { id sku price stock } } pageInfo { hasNextPage endCursor } } }",
    "{ cart { id itemCount total position items { productId name unitPrice quantity lineTotal } } }",
    "query ($id: UUID!) { order(id: $id) { id status total reason lines { productId quantity unitPrice } } }",
    "query ($first: Int, $after: String, $status: OrderStatus, $user: String) { orders(first: $first, after: $after, status: $status, userId: $user) { edges { node { id status total } } pageInfo { hasNextPage endCursor } } }",
    "query ($t: Int) { dashboard { revenue ordersToday ordersByStatus { status count } lowStock(threshold: $t) { id stock } } }",
    "query ($id: UUID!, $first: Int, $after: String) { history(streamId: $id, first: $first, after: $after) { edges { node { position type version eventVersion data metadata recordedAt } } pageInfo { hasNextPage endCursor } } }",
    "query ($id: UUID!, $at: DateTime!) { productAsOf(id: $id, at: $at) { name price stock version } }",
    "query ($user: String, $at: DateTime!) { cartAsOf(userId: $user, at: $at) { itemCount total } }",
    "query ($id: UUID!, $at: DateTime!) { orderAsOf(id: $id, at: $at) { status total } }",
    "{ projections { name position head lag status error } }",
    "mutation ($sku: String!, $name: String!, $d: String, $price: Decimal!, $stock: Int!, $key: String) { createProduct(input: {sku: $sku, name: $name, description: $d, price: $price, initialStock: $stock, idempotencyKey: $key}) { position product { id price stock } } }",
    "mutation ($id: UUID!, $name: String, $d: String, $price: Decimal, $key: String) { updateProduct(input: {id: $id, name: $name, description: $d, price: $price, idempotencyKey: $key}) { position product { id name price } } }",
    "mutation ($id: UUID!, $delta: Int!, $reason: String, $v: Int, $key: String) { adjustStock(input: {productId: $id, delta: $delta, reason: $reason, expectedVersion: $v, idempotencyKey: $key}) { position product { id stock } } }",
    "mutation ($id: UUID!) { discontinueProduct(id: $id) { position product { id status } } }",
    "mutation ($id: UUID!, $rating: Int!, $title: String, $comment: String, $key: String) { reviewProduct(input: {productId: $id, rating: $rating, title: $title, comment: $comment, idempotencyKey: $key}) { position product { averageRating reviewCount } } }",
    "mutation ($id: UUID!, $q: Int!, $key: String) { addToCart(input: {productId: $id, quantity: $q, idempotencyKey: $key}) { position cart { itemCount total } } }",
    "mutation ($id: UUID!, $q: Int!, $key: String) { setCartItemQuantity(input: {productId: $id, quantity: $q, idempotencyKey: $key}) { position cart { itemCount total } } }",
    "mutation ($id: UUID!) { removeFromCart(productId: $id) { position cart { itemCount } } }",
    "mutation { clearCart { position cart { itemCount } } }",
    "mutation ($token: String!, $address: String!, $key: String) { checkout(input: {paymentToken: $token, shippingAddress: $address, idempotencyKey: $key}) { position order { id status total } } }",
    "mutation ($id: UUID!, $reason: String) { cancelOrder(id: $id, reason: $reason) { position order { id status } } }",
    "mutation ($id: UUID!) { shipOrder(id: $id) { position order { id status } } }",
    "mutation ($id: UUID!) { deliverOrder(id: $id) { position order { id status } } }",
    "mutation ($name: String!) { verifyProjection(name: $name) { ok differences } }",
    "query ($nid: ID!) { node(id: $nid) { nodeId ... on Product { sku stock } ... on Order { status total } } }",
    "query ($nids: [ID!]!) { nodes(ids: $nids) { nodeId ... on Product { id } ... on Order { id } } }",
    // Appended: the setup above names operations by index.
    "query ($id: UUID!, $last: Int!) { productTimeline(id: $id, last: $last) { version eventType recordedAt position price stock status } }",
];

/// Subscriptions, for the WebSocket cases.
const SUBSCRIPTIONS: &[&str] = &[
    "subscription ($ids: [UUID!], $after: Position) { productUpdated(ids: $ids, after: $after) { id stock position } }",
    "subscription ($after: Position) { cartUpdated(after: $after) { itemCount position } }",
    "subscription ($id: UUID, $after: Position) { orderUpdated(id: $id, after: $after) { id status position } }",
    "subscription ($after: Position) { dashboardUpdated(after: $after) { revenue } }",
    "subscription ($after: Position, $types: [String!]) { events(after: $after, streamTypes: $types) { position type } }",
    "subscription ($name: String!) { rebuildProgress(name: $name) { phase } }",
    "subscription { projectionsUpdated { name position lag lagMillis status } }",
];

struct Gen {
    rng: StdRng,
}

impl Gen {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// A value at the edge of some scalar, or of the wrong kind.
    fn edge_value(&mut self, ids: &[String]) -> Value {
        let big = self.chance(0.2);
        self.edge_value_sized(ids, big)
    }

    /// `big`: strings and lists of up to 20 000 elements, else at most 200.
    fn edge_value_sized(&mut self, ids: &[String], big: bool) -> Value {
        let strings: &[&str] = &[
            "",
            " ",
            "0",
            "-0",
            "-0.00",
            "0.001",
            "0.01",
            "999999999999.99",
            "1000000000000",
            "999999999999.999",
            "1e12",
            "1E-2",
            "NaN",
            "Infinity",
            "-1",
            "12.5.5",
            "٣",
            "1,00",
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "not-a-uuid",
            "18446744073709551616",
            "9223372036854775807",
            "-9223372036854775808",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "2026-13-40T25:61:61Z",
            "+275760-09-13T00:00:00Z",
            "1970-01-01T00:00:00+14:00",
            "tok_visa",
            "tok_decline",
            "tok_flaky",
            "PENDING",
            "catalog",
            "orders",
            "dashboard",
            "cart",
            "nope",
            "\u{0000}",
            "\u{202e}rtl",
            "<script>",
            "'; DROP TABLE events; --",
            "😀",
            "MTpfOmZvbw",
            "Y2F0YWxvZzp6enp6",
            "%00",
            "\\",
            "\"",
        ];
        match self.rng.random_range(0..12) {
            0 => json!(self.pick(strings)),
            1 => json!(self.pick(&[
                0i64,
                1,
                -1,
                99,
                100,
                101,
                i32::MAX as i64,
                i32::MIN as i64,
                i32::MAX as i64 + 1,
                i64::MAX,
                i64::MIN,
                1 << 53
            ])),
            2 => json!(self.pick(&[0.5f64, -0.0, 1e300, -1e300, 1e-300])),
            3 => json!(self.chance(0.5)),
            4 => Value::Null,
            5 => {
                let n = if big {
                    *self.pick(&[5_000usize, 20_000])
                } else {
                    *self.pick(&[0usize, 1, 200])
                };
                json!(self.pick(&["x", "é", "😀", "\u{7}", " "]).repeat(n))
            }
            6 => {
                let n = if big {
                    10_000
                } else {
                    *self.pick(&[0usize, 1, 100])
                };
                Value::Array(
                    (0..n)
                        .map(|i| json!(format!("{i:08}-0000-0000-0000-000000000000")))
                        .collect(),
                )
            }
            7 => json!({ "a": [1, { "b": null }] }),
            _ if !ids.is_empty() => json!(self.pick(ids)),
            _ => json!(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// Variables for `query`: its `$names` with edge values (sometimes none, sometimes extra).
    fn variables(&mut self, query: &str, ids: &[String]) -> Value {
        self.variables_sized(query, ids, true)
    }

    /// A Relay global id (`<Type>:<uuid>`): of a known object under its own kind or
    /// another, of no object, or malformed (bad type, bad UUID, base64 as other servers
    /// encode theirs, oversized).
    fn node_id(&mut self, ids: &[String]) -> Value {
        use base64::Engine as _;
        let uuid = if ids.is_empty() || self.chance(0.2) {
            uuid::Uuid::new_v4().to_string()
        } else {
            self.pick(ids).clone()
        };
        let kind = *self.pick(&["Product", "Order", "Cart", "Payment", "product", ""]);
        let id = match self.rng.random_range(0..10) {
            0..=4 => format!("{kind}:{uuid}"),
            5 => base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{uuid}")),
            6 => format!("{kind}:{}", &uuid[..uuid.len() / 2]),
            7 => format!("{kind}:{uuid}:{uuid}"),
            8 => format!("{kind}:{}", "f".repeat(self.rng.random_range(0..5_000))),
            _ => match self.edge_value(ids) {
                Value::String(s) => s,
                other => return other,
            },
        };
        json!(id)
    }

    /// Variables, with at most one large value when `big_ok` (a batch has none: fifty
    /// operations of large values would only test the body limit).
    fn variables_sized(&mut self, query: &str, ids: &[String], big_ok: bool) -> Value {
        let mut big_left = big_ok;
        let mut vars = serde_json::Map::new();
        for name in query
            .split('$')
            .skip(1)
            .filter_map(|s| s.split(|c: char| !c.is_alphanumeric()).next())
        {
            if name == "nid" && self.chance(0.9) {
                vars.insert(name.to_owned(), self.node_id(ids));
            } else if name == "nids" && self.chance(0.9) {
                // Around the limit of 100 ids.
                let n = *self.pick(&[0usize, 1, 3, 100, 101]);
                let nids = (0..n).map(|_| self.node_id(ids)).collect();
                vars.insert(name.to_owned(), Value::Array(nids));
            } else if self.chance(0.9) {
                let big = big_left && self.chance(0.2);
                big_left &= !big;
                vars.insert(name.to_owned(), self.edge_value_sized(ids, big));
            }
        }
        if self.chance(0.05) {
            vars.insert("unused".into(), self.edge_value_sized(ids, false));
        }
        Value::Object(vars)
    }

    /// A valid document, mangled a few times.
    fn mangled(&mut self, query: &str) -> String {
        const TOKENS: &[&str] = &[
            "{",
            "}",
            "(",
            ")",
            "[",
            "]",
            "...",
            "... on Query",
            "fragment F on Query { __typename }",
            "...F",
            "$x",
            "@include(if: true)",
            "@skip(if: $x)",
            "@deprecated",
            "\"",
            "\"\"\"",
            "a:",
            "__typename",
            "__schema { types { name } }",
            ",",
            ":",
            "=",
            "!",
            "#",
            "\\u0000",
            "query",
            "mutation",
            "subscription",
            "1e309",
            "-",
            "\u{feff}",
            "\n",
        ];
        let mut q: Vec<char> = query.chars().collect();
        for _ in 0..self.rng.random_range(1..6) {
            let at = self.rng.random_range(0..=q.len());
            match self.rng.random_range(0..3) {
                0 if !q.is_empty() => {
                    let end = (at + self.rng.random_range(1..20)).min(q.len());
                    q.drain(at.min(end)..end);
                }
                1 => {
                    let token = self.pick(TOKENS);
                    q.splice(at..at, token.chars());
                }
                _ => {
                    let start = self.rng.random_range(0..=q.len());
                    let end = (start + self.rng.random_range(1..40)).min(q.len());
                    let copy: Vec<char> = q[start..end].to_vec();
                    let at = at.min(q.len());
                    q.splice(at..at, copy);
                }
            }
        }
        q.into_iter().collect()
    }

    /// Documents built to be expensive: fragment bombs, deep nesting, many aliases,
    /// directives, huge literal lists.
    fn hostile_document(&mut self) -> String {
        match self.rng.random_range(0..7) {
            0 => {
                let levels = self.rng.random_range(5..80);
                let fan = self.rng.random_range(2..6);
                let mut q =
                    format!("query {{ ...F{levels} }}\nfragment F0 on Query {{ __typename }}\n");
                for i in 1..=levels {
                    let body: String = (0..fan)
                        .map(|k| {
                            if self.chance(0.3) {
                                format!(" a{k}: products(first: 100) {{ edges {{ node {{ id }} }} }} ...F{}", i - 1)
                            } else {
                                format!(" ...F{}", i - 1)
                            }
                        })
                        .collect();
                    q.push_str(&format!("fragment F{i} on Query {{{body} }}\n"));
                }
                q
            }
            1 => {
                let depth = *self.pick(&[20usize, 100, 1_000, 50_000]);
                format!(
                    "{{ __type(name: \"Product\") {{ {}name{} }} }}",
                    "fields { type { ".repeat(depth / 2),
                    " } }".repeat(depth / 2)
                )
            }
            2 => {
                let n = *self.pick(&[100usize, 5_000, 40_000]);
                let fields: String = (0..n)
                    .map(|i| format!(" a{i}: products(first: 100) {{ totalCount }}"))
                    .collect();
                format!("{{{fields} }}")
            }
            3 => {
                let n = *self.pick(&[10usize, 1_000, 30_000]);
                format!("{{ __typename{} }}", " @skip(if: false)".repeat(n))
            }
            4 => {
                let n = *self.pick(&[100usize, 10_000, 60_000]);
                let ids: Vec<String> = (0..n)
                    .map(|_| format!("\"{}\"", uuid::Uuid::new_v4()))
                    .collect();
                format!(
                    "subscription {{ productUpdated(ids: [{}]) {{ id }} }}",
                    ids.join(",")
                )
            }
            5 => {
                let depth = *self.pick(&[10usize, 1_000, 100_000]);
                format!(
                    "{{ products(search: {}\"x\"{}) {{ totalCount }} }}",
                    "[".repeat(depth),
                    "]".repeat(depth)
                )
            }
            _ => {
                let n = *self.pick(&[10usize, 2_000, 20_000]);
                let vars: String = (0..n).map(|i| format!("$v{i}: Int ")).collect();
                format!("query ({vars}) {{ __typename }}")
            }
        }
    }

    /// A request for a Server-Sent Events stream: a subscription, a query or a mutation
    /// (mangled or hostile at times), over POST or GET.
    fn event_stream(&mut self, ids: &[String]) -> Case {
        let query = match self.rng.random_range(0..5) {
            0 => self.hostile_document().chars().take(10_000).collect(),
            1 => {
                let q = *self.pick(SUBSCRIPTIONS);
                self.mangled(q)
            }
            2 => (*self.pick(OPERATIONS)).to_owned(),
            _ => (*self.pick(SUBSCRIPTIONS)).to_owned(),
        };
        let variables = self.variables_sized(&query, ids, false);
        if self.chance(0.5) {
            let mut body = json!({ "query": query, "variables": variables });
            if self.chance(0.2) {
                self.persisted_query(&mut body, &query);
            }
            Case::EventStream {
                body: Some(body.to_string().into_bytes()),
                params: Vec::new(),
            }
        } else {
            // Within what a URL carries, percent-encoded (hyper refuses a longer one with
            // 414, and a client cannot even build one past 64 KiB).
            let mut params = vec![("query".to_owned(), query)];
            let variables = variables.to_string();
            match self.rng.random_range(0..4) {
                0 => params.push(("variables".into(), "[not json".into())),
                1 => params.push(("operationName".into(), "Nope".into())),
                _ if variables.len() <= 4_000 => params.push(("variables".into(), variables)),
                _ => {}
            }
            Case::EventStream { body: None, params }
        }
    }

    /// Names `query` by an Apollo persisted-query hash in `body`: its true hash (with or
    /// without the text), a hash of another text, or a malformed extension.
    fn persisted_query(&mut self, body: &mut Value, query: &str) {
        use sha2::Digest as _;
        let hash = format!("{:x}", sha2::Sha256::digest(query.as_bytes()));
        let extension = match self.rng.random_range(0..6) {
            0 => json!({ "version": 1, "sha256Hash": hash }),
            1 => {
                body["query"] = Value::Null;
                json!({ "version": 1, "sha256Hash": hash })
            }
            2 => json!({ "version": 1, "sha256Hash": "0".repeat(64) }),
            3 => json!({ "version": 2, "sha256Hash": hash }),
            4 => json!({ "version": 1, "sha256Hash": self.edge_value(&[]) }),
            _ => self.edge_value(&[]),
        };
        body["extensions"] = json!({ "persistedQuery": extension });
    }

    fn case(&mut self, ids: &[String]) -> Case {
        match self.rng.random_range(0..23) {
            0..=6 => {
                let query = *self.pick(OPERATIONS);
                let query = if self.chance(0.3) {
                    self.mangled(query)
                } else {
                    query.to_owned()
                };
                let variables = self.variables(&query, ids);
                let mut body = json!({ "query": query, "variables": variables });
                if self.chance(0.2) {
                    self.persisted_query(&mut body, &query);
                }
                Case::Post {
                    body: body.to_string().into_bytes(),
                    content_type: "application/json",
                }
            }
            7..=9 => {
                let body = json!({ "query": self.hostile_document() });
                Case::Post {
                    body: body.to_string().into_bytes(),
                    content_type: "application/json",
                }
            }
            10 | 11 => {
                let n = *self.pick(&[0usize, 1, 5, 11, 50]);
                let ops: Vec<Value> = (0..n)
                    .map(|_| {
                        let q = if self.chance(0.2) {
                            self.hostile_document()
                        } else {
                            (*self.pick(OPERATIONS)).to_owned()
                        };
                        let variables = self.variables_sized(&q, ids, false);
                        json!({ "query": q, "variables": variables })
                    })
                    .collect();
                Case::Post {
                    body: Value::Array(ops).to_string().into_bytes(),
                    content_type: "application/json",
                }
            }
            12 | 13 => {
                let body: Vec<u8> = match self.rng.random_range(0..8) {
                    0 => (0..self.rng.random_range(0..4096)).map(|_| self.rng.random()).collect(),
                    1 => b"[]".to_vec(),
                    2 => b"{\"query\": 1}".to_vec(),
                    3 => b"{\"query\": \"{ __typename }\", \"variables\": [], \"operationName\": 5}".to_vec(),
                    4 => format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
                    5 => format!("{{\"query\": \"{{ __typename }}\", \"variables\": {{\"a\": {}}}}}", "[".repeat(5_000) + &"]".repeat(5_000)).into_bytes(),
                    6 => vec![b' '; 2 * 1024 * 1024],
                    _ => b"{\"query\": \"{ __typename }\", \"extensions\": {\"persistedQuery\": {\"version\": 1, \"sha256Hash\": \"x\"}}}".to_vec(),
                };
                let content_type =
                    *self.pick(&["application/json", "text/plain", "application/graphql", ""]);
                Case::Post { body, content_type }
            }
            14..=16 => {
                // Within what a URL carries (hyper refuses a longer one with 414).
                let query = if self.chance(0.5) {
                    self.hostile_document().chars().take(10_000).collect()
                } else {
                    {
                        let q = *self.pick(OPERATIONS);
                        self.mangled(q)
                    }
                };
                Case::Get { query }
            }
            20..=22 => self.event_stream(ids),
            _ => {
                let mut messages =
                    vec![json!({ "type": "connection_init", "payload": {} }).to_string()];
                for i in 0..self.rng.random_range(1..4) {
                    let query = match self.rng.random_range(0..3) {
                        0 => self.hostile_document(),
                        1 => {
                            let q = *self.pick(SUBSCRIPTIONS);
                            self.mangled(q)
                        }
                        _ => (*self.pick(SUBSCRIPTIONS)).to_owned(),
                    };
                    let variables = self.variables(&query, ids);
                    messages.push(match self.rng.random_range(0..6) {
                        0 => "not json".to_owned(),
                        1 => json!({ "type": "subscribe", "id": i.to_string() }).to_string(),
                        2 => json!({ "type": "ping", "payload": self.edge_value(ids) }).to_string(),
                        _ => json!({ "type": "subscribe", "id": i.to_string(), "payload": { "query": query, "variables": variables } }).to_string(),
                    });
                }
                Case::WebSocket { messages }
            }
        }
    }
}

/// What was wrong with an answer, if anything.
fn check_body(status: u16, body: &str) -> Result<(), String> {
    if status >= 500 {
        return Err(format!("a {status}"));
    }
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    let responses: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![&value],
        _ => return Err("neither an object nor an array".into()),
    };
    for response in responses {
        check_errors(response)?;
    }
    Ok(())
}

fn check_errors(response: &Value) -> Result<(), String> {
    let Some(errors) = response.get("errors") else {
        return Ok(());
    };
    for error in errors.as_array().ok_or("errors is not a list")? {
        match error["extensions"]["code"].as_str() {
            None => return Err(format!("an error without a code: {error}")),
            Some("INTERNAL") => return Err(format!("INTERNAL for client input: {error}")),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Sends one case; `Err` says what was wrong.
async fn run(
    http: &reqwest::Client,
    port: u16,
    case: &Case,
    token: Option<&str>,
) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}/graphql");
    match case {
        Case::Post { body, content_type } => {
            let mut request = http.post(&url).body(body.clone());
            if !content_type.is_empty() {
                request = request.header("content-type", *content_type);
            }
            // Past the body limit the server answers 413 and closes without reading the
            // rest, which a client still writing may see as a broken connection.
            exchange(request, token, body.len() > MAX_BODY_BYTES).await
        }
        Case::Get { query } => {
            let url = reqwest::Url::parse_with_params(&url, &[("query", query)])
                .map_err(|e| e.to_string())?;
            exchange(http.get(url), token, false).await
        }
        Case::EventStream { body, params } => {
            let request = match body {
                Some(body) => http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone()),
                None => http
                    .get(reqwest::Url::parse_with_params(&url, params).map_err(|e| e.to_string())?),
            };
            event_stream(request.header("accept", "text/event-stream"), token).await
        }
        Case::WebSocket { messages } => {
            let mut request =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                    format!("ws://127.0.0.1:{port}/graphql"),
                )
                .map_err(|e| e.to_string())?;
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                "graphql-transport-ws".parse().map_err(|_| "header")?,
            );
            let (mut socket, _) = tokio_tungstenite::connect_async(request)
                .await
                .map_err(|e| format!("no handshake: {e}"))?;
            for message in messages {
                if socket.send(Message::text(message.clone())).await.is_err() {
                    break;
                }
            }
            // Read what comes back for a moment: JSON messages with coded errors, or a
            // close with a code.
            let deadline = tokio::time::sleep(Duration::from_millis(300));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    frame = socket.next() => match frame {
                        Some(Ok(Message::Text(text))) => {
                            let value: Value = serde_json::from_str(text.as_str()).map_err(|e| format!("a WebSocket message that is not JSON ({e}): {text}"))?;
                            if value["type"] == "error" {
                                check_errors(&json!({ "errors": value["payload"] }))?;
                            } else if value["type"] == "next" {
                                check_errors(&value["payload"])?;
                            }
                        }
                        Some(Ok(Message::Close(Some(frame)))) => {
                            let code = u16::from(frame.code);
                            if code == 1011 || code < 1000 {
                                return Err(format!("closed with {code}: {}", frame.reason));
                            }
                            break;
                        }
                        Some(Ok(_)) => {}
                        None | Some(Err(_)) => break,
                    }
                }
            }
            let _ = socket.close(None).await;
            Ok(())
        }
    }
}

/// Sends an HTTP request as `token` and checks the answer; a connection the server cut
/// is fine when `may_be_cut`.
async fn exchange(
    mut request: reqwest::RequestBuilder,
    token: Option<&str>,
    may_be_cut: bool,
) -> Result<(), String> {
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(_) if may_be_cut => return Ok(()),
        Err(e) => return Err(format!("no answer: {}", chain(&e))),
    };
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| format!("unreadable body: {e}"))?;
    check_body(status, &body)
}

/// Sends a request for an event stream as `token` and checks what comes back for a
/// moment (a subscription never ends): each `next` event is GraphQL-shaped JSON whose
/// errors have codes; a refusal before the stream is checked as any other answer.
async fn event_stream(
    mut request: reqwest::RequestBuilder,
    token: Option<&str>,
) -> Result<(), String> {
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("no answer: {}", chain(&e)))?;
    let status = response.status().as_u16();
    let is_stream = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    if !is_stream {
        let body = response
            .text()
            .await
            .map_err(|e| format!("unreadable body: {e}"))?;
        return check_body(status, &body);
    }
    if status != 200 {
        return Err(format!("an event stream with status {status}"));
    }
    let mut received = String::new();
    let deadline = tokio::time::sleep(Duration::from_millis(300));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            chunk = response.chunk() => match chunk {
                Ok(Some(bytes)) => received.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) => break,
                Err(e) => return Err(format!("the stream broke: {}", chain(&e))),
            },
        }
    }
    // Only the complete events: the last one may have been cut by the deadline.
    let complete = received
        .rsplit_once("\n\n")
        .map_or("", |(events, _)| events);
    for event in complete.split("\n\n") {
        let mut name = None;
        let mut data = String::new();
        for line in event.lines() {
            if let Some(n) = line.strip_prefix("event:") {
                name = Some(n.trim());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            }
        }
        match name {
            Some("next") => {
                let value: Value = serde_json::from_str(&data)
                    .map_err(|e| format!("a next event that is not JSON ({e}): {data}"))?;
                check_errors(&value)?;
            }
            Some("complete") | None => {}
            Some(other) => return Err(format!("an unknown event {other:?}")),
        }
    }
    Ok(())
}

/// An error with its causes.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn describe(case: &Case) -> String {
    let cut = |s: &str| s.chars().take(300).collect::<String>();
    match case {
        Case::Post { body, content_type } => format!(
            "POST ({content_type}, {} bytes) {}",
            body.len(),
            cut(&String::from_utf8_lossy(body))
        ),
        Case::Get { query } => format!("GET ({} bytes) {}", query.len(), cut(query)),
        Case::WebSocket { messages } => format!("WebSocket {}", cut(&messages.join(" | "))),
        Case::EventStream {
            body: Some(body), ..
        } => format!(
            "SSE POST ({} bytes) {}",
            body.len(),
            cut(&String::from_utf8_lossy(body))
        ),
        Case::EventStream { body: None, params } => {
            format!("SSE GET {}", cut(&format!("{params:?}")))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_requests_never_crash_hang_leak_or_answer_without_a_code() {
    let seed: u64 = std::env::var("ORDERGRAPH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261126);
    let seconds: u64 = std::env::var("ORDERGRAPH_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    eprintln!("fuzz: seed {seed}, {seconds} s (ORDERGRAPH_FUZZ_SEED / ORDERGRAPH_FUZZ_SECONDS)");

    // Arrange: the server, a catalog, a cart and orders whose ids the fuzzer reuses.
    let mut server = Server::start().await;
    // A client keeps idle connections for less time than the server does (its header
    // timeout), as a load balancer must, or it races the server's close.
    let http = reqwest::Client::builder()
        .timeout(ANSWER_BOUND)
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    let callers = Callers::new();
    let ids = Arc::new(Mutex::new(Ids::default()));
    let admin = callers.tokens[3].clone();
    let alice = callers.tokens[1].clone();
    let gql = async |token: &Option<String>, query: &str, variables: Value| -> Value {
        let mut request = http
            .post(format!("http://127.0.0.1:{}/graphql", server.port))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .expect("an answer")
            .json()
            .await
            .expect("JSON")
    };
    for i in 0..5 {
        let r = gql(
            &admin,
            OPERATIONS[11],
            json!({ "sku": format!("FUZZ-{i}"), "name": "Fuzz", "price": "10.00", "stock": 100 }),
        )
        .await;
        let id = r["data"]["createProduct"]["product"]["id"]
            .as_str()
            .expect("created")
            .to_owned();
        gql(&alice, OPERATIONS[16], json!({ "id": id, "q": 1 })).await;
        ids.lock().expect("ids").ids.push(id);
    }
    let cart = gql(&alice, OPERATIONS[2], json!({})).await;
    if let Some(id) = cart["data"]["cart"]["id"].as_str() {
        ids.lock().expect("ids").ids.push(id.to_owned());
    }
    let order = gql(
        &alice,
        OPERATIONS[20],
        json!({ "token": "tok_visa", "address": "1 Main St" }),
    )
    .await;
    if let Some(id) = order["data"]["checkout"]["order"]["id"].as_str() {
        ids.lock().expect("ids").ids.push(id.to_owned());
    }
    // Warm up, then take the memory baseline.
    for _ in 0..200 {
        gql(&None, OPERATIONS[1], json!({ "first": 20 })).await;
    }
    let baseline_kib = server.rss_kib();

    // Act: workers send generated cases until the time is up; a sampler tracks memory.
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let peak_kib = Arc::new(std::sync::atomic::AtomicU64::new(baseline_kib));
    let sampler = {
        let peak = peak_kib.clone();
        let pid = server.pid;
        tokio::spawn(async move {
            let probe = Server::rss_of(pid);
            while Instant::now() < stop_at {
                peak.fetch_max(probe(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let http = http.clone();
        let callers = callers.clone();
        let ids = ids.clone();
        let port = server.port;
        let port_pid = server.pid;
        workers.push(tokio::spawn(async move {
            let mut generator = Gen {
                rng: StdRng::seed_from_u64(seed.wrapping_add(worker as u64)),
            };
            let mut failures = Vec::new();
            let mut slowest: Vec<(Duration, String)> = Vec::new();
            let mut cases = 0u64;
            let mut biggest: (u64, String) = (0, String::new());
            while Instant::now() < stop_at {
                let known = ids.lock().expect("ids").ids.clone();
                let case = generator.case(&known);
                let token = generator.pick(&callers.tokens).clone();
                let started = Instant::now();
                let server_before = Server::rss_of(port_pid)();
                let outcome =
                    tokio::time::timeout(ANSWER_BOUND, run(&http, port, &case, token.as_deref()))
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {ANSWER_BOUND:?}")));
                let took = started.elapsed();
                let grew = Server::rss_of(port_pid)().saturating_sub(server_before);
                if grew > biggest.0 {
                    // Other workers' requests run meanwhile: a hint, not a measurement.
                    biggest = (grew, describe(&case));
                }
                cases += 1;
                // A WebSocket or event stream case listens for a fixed window: not a
                // latency.
                if !matches!(case, Case::WebSocket { .. } | Case::EventStream { .. }) {
                    slowest.push((took, describe(&case)));
                }
                slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
                slowest.truncate(3);
                if let Err(what) = outcome {
                    let what: String = what.chars().take(500).collect();
                    failures.push(format!("{what}\n    for {}", describe(&case)));
                }
            }
            (cases, failures, slowest, biggest)
        }));
    }
    let mut failures = Vec::new();
    let mut slowest = Vec::new();
    let mut cases = 0;
    let mut biggest: (u64, String) = (0, String::new());
    for worker in workers {
        let (n, f, s, b) = worker.await.expect("a worker finished");
        cases += n;
        failures.extend(f);
        slowest.extend(s);
        if b.0 > biggest.0 {
            biggest = b;
        }
    }
    let _ = sampler.await;
    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));

    // Assert: still serving, no panic in the log, memory back near the baseline.
    let plain_started = Instant::now();
    let alive = gql(&None, "{ __typename }", json!({})).await;
    let plain = plain_started.elapsed();
    assert_eq!(
        alive["data"]["__typename"], "Query",
        "the server still answers"
    );
    assert!(
        server.child.try_wait().ok().flatten().is_none(),
        "the server is still running"
    );
    // Let in-flight work settle before reading the memory: sockets the cases left open
    // close, their subscriptions end. In a full run beside the other tests, on two busy
    // cores, that can take longer than a quiet run's second, so the memory is read until
    // it is back (or for 15 s at most); a leak never comes back, however long it is given.
    let limit_kib = baseline_kib + 128 * 1024;
    let settling = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut final_kib = server.rss_kib();
    while final_kib >= limit_kib && settling.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        final_kib = server.rss_kib();
    }
    eprintln!(
        "fuzz: memory read after {:?} of settling",
        settling.elapsed()
    );
    let peak = peak_kib.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "fuzz: {cases} cases; memory baseline {} MiB, peak {} MiB, after {} MiB; plain {{ __typename }} {:?}",
        baseline_kib / 1024,
        peak / 1024,
        final_kib / 1024,
        plain
    );
    for (took, case) in slowest.iter().take(3) {
        eprintln!("fuzz: slowest {took:?}: {case}");
    }
    eprintln!(
        "fuzz: largest memory step, {} MiB, around: {}",
        biggest.0 / 1024,
        biggest.1
    );
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    let panics: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("panicked"))
        .take(3)
        .collect();
    assert!(
        panics.is_empty(),
        "the server panicked:\n{}",
        panics.join("\n")
    );
    // Client input is never the server's error: nothing at ERROR, and no backtrace
    // (the server runs with RUST_BACKTRACE=1, ids of every wrong kind among the cases).
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""level":"ERROR""#) || l.to_lowercase().contains("backtrace"))
        .take(3)
        .collect();
    assert!(
        errors.is_empty(),
        "client input made the server log an error:\n{}",
        errors.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed (seed {seed}); the first:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        final_kib < limit_kib,
        "memory did not come back: {} MiB after, {} MiB before",
        final_kib / 1024,
        baseline_kib / 1024
    );
}

impl Server {
    /// A memory probe for `pid` that outlives a borrow of the server.
    fn rss_of(pid: u32) -> impl Fn() -> u64 + Send + 'static {
        move || {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                })
                .unwrap_or(0)
        }
    }
}
