//! The harness of the black-box suite: a real `Application` on port 0 over a fresh database
//! per test (a temporary SQLite file, or a UUID-named PostgreSQL database when
//! `TEST_DATABASE_URL` is set), plain HTTP clients with and without bearer tokens, the
//! GraphQL documents the tests share, and small assertion helpers.
//!
//! Everything here speaks to the service the way a client does: HTTP and JSON. The only
//! things taken from the crate are the start-up API (`Settings`, `Application`) and
//! `mint_token`, which a client would get from `ordergraph token`.

use std::future::Future;
use std::time::{Duration, Instant};

use ordergraph::auth::Role;
use ordergraph::config::Settings;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The HS256 secret the test server verifies tokens with.
pub const JWT_SECRET: &str = "test-secret-of-the-black-box-suite-not-for-production";

/// How long `wait_until` waits for a condition before failing the test.
const WAIT_DEADLINE: Duration = Duration::from_secs(15);

/// A running service, its database and an HTTP client for it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub port: u16,
    pub http: reqwest::Client,
    settings: Settings,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    /// The PostgreSQL database made for this test: (server URL, database name).
    postgres: Option<(String, String)>,
    /// Holds the SQLite file (and the data dir) until the test ends.
    _data_dir: TempDir,
}

/// Starts the service on a fresh database and port 0.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like `spawn_app`, with the test's settings adjusted by `configure` before the start.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    // `TEST_LOG=ordergraph=debug`: the servers' logs, shown with a failing test's output.
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let data_dir = tempfile::tempdir().expect("a temporary directory can be created");
    let (database_url, postgres) = match std::env::var("TEST_DATABASE_URL") {
        Ok(server) if !server.trim().is_empty() => {
            let (url, name) = fresh_postgres_database(&server).await;
            (url, Some((server, name)))
        }
        _ => (
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.path().join("test.db").display()
            ),
            None,
        ),
    };

    let mut settings = Settings {
        bind: "127.0.0.1:0".parse().expect("a valid socket address"),
        database_url: Some(database_url),
        data_dir: data_dir.path().to_path_buf(),
        jwt_secret: Some(secrecy::SecretString::from(JWT_SECRET.to_string())),
        // Generous: a slow CI machine must not turn read-your-writes into a flaky test.
        consistency_wait_ms: 10_000,
        ..Settings::default()
    };
    configure(&mut settings);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client can be built");
    let mut app = TestApp {
        address: String::new(),
        port: 0,
        http,
        settings,
        shutdown: None,
        handle: None,
        postgres,
        _data_dir: data_dir,
    };
    app.start().await;
    app
}

/// A fresh database for a server started outside this process: a PostgreSQL database
/// when `TEST_DATABASE_URL` is set (dropped when the guard goes), else a SQLite file in
/// `dir`.
pub async fn fresh_database_url(dir: &std::path::Path) -> (String, Option<PostgresGuard>) {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(server) if !server.trim().is_empty() => {
            let (url, name) = fresh_postgres_database(&server).await;
            (url, Some(PostgresGuard(Some((server, name)))))
        }
        _ => (
            format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
            None,
        ),
    }
}

/// Drops its PostgreSQL test database when dropped (kept when the test failed).
pub struct PostgresGuard(Option<(String, String)>);

impl Drop for PostgresGuard {
    fn drop(&mut self) {
        if let Some((server, name)) = self.0.take() {
            if std::thread::panicking() {
                eprintln!("kept the PostgreSQL database {name} of the failed test");
            } else {
                drop_postgres_database(server, name);
            }
        }
    }
}

/// Creates `test_<uuid>` on the server of `admin_url`; returns its URL and name.
async fn fresh_postgres_database(admin_url: &str) -> (String, String) {
    use sea_orm::ConnectionTrait;

    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL={admin_url} is reachable: {e}"));
    admin
        .execute_unprepared(&format!(r#"CREATE DATABASE "{name}""#))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
    admin
        .close()
        .await
        .expect("the admin connection closes cleanly");

    let mut url = reqwest::Url::parse(admin_url).expect("TEST_DATABASE_URL is a valid URL");
    url.set_path(&format!("/{name}"));
    (url.to_string(), name)
}

/// Drops a test database, closing the connections the stopped server may still hold.
/// Best effort: a leftover database costs disk space, not correctness.
fn drop_postgres_database(admin_url: String, name: String) {
    use sea_orm::ConnectionTrait;

    // Drop cannot await, and may run on a runtime that is shutting down: use a thread with
    // a runtime of its own.
    let dropping = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            let admin = sea_orm::Database::connect(&admin_url).await.ok()?;
            let dropped = admin
                .execute_unprepared(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                .await;
            let _ = admin.close().await;
            dropped.ok()
        })
    });
    let _ = dropping.join();
}

impl TestApp {
    async fn start(&mut self) {
        let app = ordergraph::Application::build(self.settings.clone())
            .await
            .expect("the application builds on a fresh database");
        self.port = app.port();
        self.address = format!("http://127.0.0.1:{}", self.port);
        let (tx, rx) = oneshot::channel::<()>();
        self.shutdown = Some(tx);
        self.handle = Some(tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        })));
    }

    /// Stops the server gracefully and starts a new one on the same settings and database
    /// (a new port): what a deploy or a crash-and-restart looks like to a client.
    pub async fn restart(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(WAIT_DEADLINE, handle)
                .await
                .expect("the server stopped before the deadline")
                .expect("the server task does not panic")
                .expect("the server stops cleanly on shutdown");
        }
        self.start().await;
    }

    /// Stops the server as SIGTERM does (graceful drain) and returns how it ended.
    pub async fn shut_down(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let handle = self.handle.take().expect("the server is running");
        tokio::time::timeout(WAIT_DEADLINE, handle)
            .await
            .expect("the server stopped before the deadline")
            .expect("the server task does not panic")
    }

    /// Waits until the server stops on its own (say, a fault injected into the saga) and
    /// returns how it ended. Panics if it is still running at the deadline.
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        let handle = self.handle.take().expect("the server is running");
        // Keep the shutdown sender alive while waiting: dropping it would stop the server.
        let ended = tokio::time::timeout(WAIT_DEADLINE, handle)
            .await
            .expect("the server stopped before the deadline")
            .expect("the server task does not panic");
        self.shutdown = None;
        ended
    }

    /// Starts the server again on the same database with changed settings (after it
    /// stopped, or stopping it first).
    pub async fn restart_with(&mut self, change: impl FnOnce(&mut Settings)) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = tokio::time::timeout(WAIT_DEADLINE, handle)
                .await
                .expect("the server stopped before the deadline");
        }
        change(&mut self.settings);
        self.start().await;
    }

    /// Starts a second server on this test's database, with its own port, connection pool,
    /// write gate and relay: what another replica (another process) looks like. It stops
    /// when dropped; the database stays this test's.
    pub async fn replica(&self) -> TestApp {
        self.replica_with(|_| {}).await
    }

    /// Like `replica`, with its settings adjusted by `configure` first (a read replica:
    /// `read_database_url`).
    pub async fn replica_with(&self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings.clone();
        configure(&mut settings);
        let mut replica = TestApp {
            address: String::new(),
            port: 0,
            http: self.http.clone(),
            settings,
            shutdown: None,
            handle: None,
            postgres: None,
            _data_dir: tempfile::tempdir().expect("a temporary directory can be created"),
        };
        replica.start().await;
        replica
    }

    /// An unlabelled gauge of `/metrics` (0 when absent).
    pub async fn gauge(&self, name: &str) -> i64 {
        let text = self.get_text("/metrics").await;
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .map_or(0, |n| n.trim().parse().expect("a gauge is a number"))
    }

    /// The body of `GET <path>` (say `/metrics`), as text.
    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("the body of GET {path}: {e}"))
    }

    /// The URL of this test's own database.
    pub fn database_url(&self) -> &str {
        self.settings
            .database_url
            .as_deref()
            .expect("spawn_app always sets a database URL")
    }

    /// A caller without a token.
    pub fn anonymous(&self) -> Caller<'_> {
        Caller {
            app: self,
            token: None,
        }
    }

    /// A signed-in admin (`sub` = "admin").
    pub fn as_admin(&self) -> Caller<'_> {
        self.with_token(token("admin", Role::Admin))
    }

    /// A signed-in customer with the given user id.
    pub fn as_user(&self, sub: &str) -> Caller<'_> {
        self.with_token(token(sub, Role::Customer))
    }

    /// A caller sending `Authorization: Bearer <token>` with any token, valid or not.
    pub fn with_token(&self, token: impl Into<String>) -> Caller<'_> {
        Caller {
            app: self,
            token: Some(token.into()),
        }
    }

    /// Anonymous GraphQL request; returns the whole response body.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.anonymous().gql(query, variables).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// POSTs `body` verbatim to `/graphql` as `application/json`; returns status and body text.
    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        token: Option<&str>,
    ) -> (reqwest::StatusCode, String) {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .expect("the request reaches the server");
        let status = response.status();
        let text = response
            .text()
            .await
            .expect("the response body is readable");
        (status, text)
    }

    /// `GET /graphql?query=…`; returns status and the parsed JSON body.
    pub async fn gql_get(&self, query: &str, token: Option<&str>) -> (reqwest::StatusCode, Value) {
        let url = reqwest::Url::parse_with_params(&self.url("/graphql"), &[("query", query)])
            .expect("a valid URL");
        let mut request = self.http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .expect("the request reaches the server");
        let status = response.status();
        let text = response
            .text()
            .await
            .expect("the response body is readable");
        (status, parse_json(status, &text))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
        if let Some((server, name)) = self.postgres.take() {
            if std::thread::panicking() {
                // The test failed: keep its database for a post-mortem.
                eprintln!("kept the PostgreSQL database {name} of the failed test");
            } else {
                drop_postgres_database(server, name);
            }
        }
    }
}

/// Someone calling the API: anonymous, or with a bearer token.
pub struct Caller<'a> {
    app: &'a TestApp,
    token: Option<String>,
}

impl Caller<'_> {
    /// POST /graphql with `{query, variables}`; returns the whole response body as JSON.
    /// Panics (with the body) when the server answers something that is not JSON: the API
    /// never answers plain text, not even on errors.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.post_json(&json!({ "query": query, "variables": variables }))
            .await
    }

    /// POST /graphql with an arbitrary JSON body (e.g. with `operationName`).
    pub async fn post_json(&self, body: &Value) -> Value {
        let mut request = self.app.http.post(self.app.url("/graphql")).json(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .expect("the request reaches the server");
        let status = response.status();
        let text = response
            .text()
            .await
            .expect("the response body is readable");
        parse_json(status, &text)
    }

    /// Creates an ACTIVE product and returns it (`createProduct.product`).
    pub async fn create_product(&self, sku: &str, price: &str, stock: i64) -> Value {
        let resp = self
            .gql(
                CREATE_PRODUCT,
                json!({ "input": {
                    "sku": sku,
                    "name": format!("Product {sku}"),
                    "description": format!("Description of {sku}"),
                    "price": price,
                    "initialStock": stock,
                }}),
            )
            .await;
        data(&resp)["createProduct"]["product"].clone()
    }

    /// The product view, `null` when unknown.
    pub async fn product(&self, id: &str) -> Value {
        let resp = self.gql(PRODUCT, json!({ "id": id })).await;
        data(&resp)["product"].clone()
    }

    /// The caller's cart view.
    pub async fn cart(&self) -> Value {
        let resp = self.gql(CART, json!({})).await;
        data(&resp)["cart"].clone()
    }

    pub async fn add_to_cart(&self, product_id: &str, quantity: i64) -> Value {
        self.gql(
            ADD_TO_CART,
            json!({ "input": { "productId": product_id, "quantity": quantity } }),
        )
        .await
    }

    pub async fn set_quantity(&self, product_id: &str, quantity: i64) -> Value {
        self.gql(
            SET_CART_ITEM_QUANTITY,
            json!({ "input": { "productId": product_id, "quantity": quantity } }),
        )
        .await
    }

    pub async fn remove_from_cart(&self, product_id: &str) -> Value {
        self.gql(REMOVE_FROM_CART, json!({ "productId": product_id }))
            .await
    }

    pub async fn clear_cart(&self) -> Value {
        self.gql(CLEAR_CART, json!({})).await
    }

    pub async fn adjust_stock(&self, product_id: &str, delta: i64) -> Value {
        self.gql(
            ADJUST_STOCK,
            json!({ "input": { "productId": product_id, "delta": delta, "reason": "test" } }),
        )
        .await
    }

    pub async fn discontinue(&self, product_id: &str) -> Value {
        self.gql(DISCONTINUE_PRODUCT, json!({ "id": product_id }))
            .await
    }

    pub async fn review(&self, product_id: &str, rating: i64) -> Value {
        self.gql(
            REVIEW_PRODUCT,
            json!({ "input": { "productId": product_id, "rating": rating, "comment": "ok" } }),
        )
        .await
    }

    /// `products(...)` with the given arguments; returns the connection.
    pub async fn products(&self, args: Value) -> Value {
        let resp = self.gql(PRODUCTS, args).await;
        data(&resp)["products"].clone()
    }
}

fn parse_json(status: reqwest::StatusCode, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| {
        panic!("the server answered HTTP {status} with a body that is not JSON ({e}): {text:.2000}")
    })
}

/// Mints a valid token signed with the test secret, valid for an hour.
pub fn token(sub: &str, role: Role) -> String {
    ordergraph::auth::mint_token(JWT_SECRET, sub, role, Duration::from_secs(3600))
        .expect("a token can be minted")
}

/// Signs arbitrary claims with HS256 and `secret`, bypassing the service's own minting.
pub fn sign_claims(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("claims can be signed")
}

/// Seconds since the Unix epoch, for `iat`/`exp` claims.
pub fn unix_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(now.as_secs()).expect("the time fits in i64")
}

/// A customer token that expired an hour ago (well past any leeway).
pub fn expired_token(sub: &str) -> String {
    let now = unix_now();
    sign_claims(
        &json!({ "sub": sub, "role": "customer", "iat": now - 7200, "exp": now - 3600 }),
        JWT_SECRET,
    )
}

/// A well-formed, unexpired admin token signed with a secret the server does not know.
pub fn wrong_secret_token(sub: &str) -> String {
    let now = unix_now();
    sign_claims(
        &json!({ "sub": sub, "role": "admin", "iat": now, "exp": now + 3600 }),
        "not-the-server-secret",
    )
}

/// The `data` of a response; panics with the whole response when it carries errors.
pub fn data(resp: &Value) -> &Value {
    if let Some(errors) = resp.get("errors")
        && !errors.is_null()
        && errors.as_array().is_none_or(|e| !e.is_empty())
    {
        panic!("expected no errors, got: {resp:#}");
    }
    match resp.get("data") {
        Some(data) if !data.is_null() => data,
        _ => panic!("expected data, got: {resp:#}"),
    }
}

/// The first error's `extensions.code`, if any.
pub fn error_code(resp: &Value) -> Option<String> {
    resp.get("errors")?
        .get(0)?
        .get("extensions")?
        .get("code")?
        .as_str()
        .map(str::to_string)
}

/// Asserts that the response failed with `code` (first error's `extensions.code`).
#[track_caller]
pub fn assert_error(resp: &Value, code: &str) {
    assert_eq!(
        error_code(resp).as_deref(),
        Some(code),
        "expected error code {code}, got: {resp:#}"
    );
}

/// Parses a `Position` (a u64 as a decimal string).
#[track_caller]
pub fn position(value: &Value) -> u64 {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a Position is a string, got {value}"))
        .parse()
        .unwrap_or_else(|e| panic!("a Position is a decimal u64, got {value}: {e}"))
}

/// The string at `value`, panicking with the value otherwise.
#[track_caller]
pub fn str_of(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
}

/// Polls `check` until it returns `Some`, failing the test after a deadline. For views that
/// are eventually consistent with a write made elsewhere; never a bare sleep.
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT_DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {WAIT_DEADLINE:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub const CREATE_PRODUCT: &str = "mutation CreateProduct($input: CreateProductInput!) {
  createProduct(input: $input) { position product { id sku name description price stock inStock status averageRating reviewCount version updatedAt position } }
}";

pub const UPDATE_PRODUCT: &str = "mutation UpdateProduct($input: UpdateProductInput!) {
  updateProduct(input: $input) { position product { id sku name description price stock inStock status averageRating reviewCount version updatedAt position } }
}";

pub const ADJUST_STOCK: &str = "mutation AdjustStock($input: AdjustStockInput!) {
  adjustStock(input: $input) { position product { id sku name description price stock inStock status averageRating reviewCount version updatedAt position } }
}";

pub const DISCONTINUE_PRODUCT: &str = "mutation Discontinue($id: UUID!) {
  discontinueProduct(id: $id) { position product { id sku name description price stock inStock status averageRating reviewCount version updatedAt position } }
}";

pub const REVIEW_PRODUCT: &str = "mutation Review($input: ReviewProductInput!) {
  reviewProduct(input: $input) { position product { id sku name description price stock inStock status averageRating reviewCount version updatedAt position } }
}";

pub const PRODUCT: &str = "query Product($id: UUID!) {
  product(id: $id) { id sku name description price stock inStock status averageRating reviewCount version updatedAt position }
}";

pub const PRODUCTS: &str = "query Products($first: Int, $after: String, $search: String, $inStockOnly: Boolean, $includeDiscontinued: Boolean) {
  products(first: $first, after: $after, search: $search, inStockOnly: $inStockOnly, includeDiscontinued: $includeDiscontinued) {
    edges { cursor node { id sku name description price stock inStock status } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}";

pub const CART: &str = "query Cart {
  cart { userId itemCount total updatedAt position items { productId name unitPrice quantity lineTotal product { id stock price } } }
}";

pub const ADD_TO_CART: &str = "mutation AddToCart($input: CartItemInput!) {
  addToCart(input: $input) { position cart { userId itemCount total updatedAt position items { productId name unitPrice quantity lineTotal product { id stock price } } } }
}";

pub const SET_CART_ITEM_QUANTITY: &str = "mutation SetQuantity($input: CartItemInput!) {
  setCartItemQuantity(input: $input) { position cart { userId itemCount total updatedAt position items { productId name unitPrice quantity lineTotal product { id stock price } } } }
}";

pub const REMOVE_FROM_CART: &str = "mutation Remove($productId: UUID!) {
  removeFromCart(productId: $productId) { position cart { userId itemCount total updatedAt position items { productId name unitPrice quantity lineTotal product { id stock price } } } }
}";

pub const CLEAR_CART: &str = "mutation Clear {
  clearCart { position cart { userId itemCount total updatedAt position items { productId name unitPrice quantity lineTotal product { id stock price } } } }
}";

/// The cart line of `product_id` in a cart view, if any.
pub fn cart_line<'a>(cart: &'a Value, product_id: &str) -> Option<&'a Value> {
    cart["items"]
        .as_array()
        .unwrap_or_else(|| panic!("cart.items is a list: {cart:#}"))
        .iter()
        .find(|line| line["productId"] == product_id)
}

/// The SKUs of a `products` connection's page, in order.
pub fn skus(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("edges is a list: {connection:#}"))
        .iter()
        .map(|edge| str_of(&edge["node"]["sku"]).to_string())
        .collect()
}

// Orders, the order saga and the dashboard.

pub const CHECKOUT: &str = "mutation Checkout($input: CheckoutInput!) {
  checkout(input: $input) { position order { id userId status lines { productId sku name unitPrice quantity lineTotal } total shippingAddress reservation payment reason placedAt updatedAt version position } }
}";

pub const CANCEL_ORDER: &str = "mutation CancelOrder($id: UUID!, $reason: String) {
  cancelOrder(id: $id, reason: $reason) { position order { id userId status lines { productId sku name unitPrice quantity lineTotal } total shippingAddress reservation payment reason placedAt updatedAt version position } }
}";

pub const SHIP_ORDER: &str = "mutation ShipOrder($id: UUID!) {
  shipOrder(id: $id) { position order { id userId status lines { productId sku name unitPrice quantity lineTotal } total shippingAddress reservation payment reason placedAt updatedAt version position } }
}";

pub const DELIVER_ORDER: &str = "mutation DeliverOrder($id: UUID!) {
  deliverOrder(id: $id) { position order { id userId status lines { productId sku name unitPrice quantity lineTotal } total shippingAddress reservation payment reason placedAt updatedAt version position } }
}";

pub const ORDER: &str = "query Order($id: UUID!) {
  order(id: $id) { id userId status lines { productId sku name unitPrice quantity lineTotal } total shippingAddress reservation payment reason placedAt updatedAt version position }
}";

pub const ORDERS: &str =
    "query Orders($first: Int, $after: String, $status: OrderStatus, $userId: String) {
  orders(first: $first, after: $after, status: $status, userId: $userId) {
    edges { cursor node { id userId status total reservation payment placedAt position } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}";

pub const DASHBOARD: &str = "query Dashboard {
  dashboard { ordersByStatus { status count } revenue ordersToday lowStock { sku stock } position }
}";

pub const DASHBOARD_LOW_STOCK: &str = "query LowStock($threshold: Int!) {
  dashboard { lowStock(threshold: $threshold) { sku stock status } }
}";

/// The shipping address the order tests use unless they test the address itself.
pub const ADDRESS: &str = "1 Main Street, Springfield";

/// Every `OrderStatus`, in the schema's order.
pub const ORDER_STATUSES: [&str; 7] = [
    "PENDING",
    "RESERVED",
    "CONFIRMED",
    "SHIPPED",
    "DELIVERED",
    "CANCELLED",
    "REJECTED",
];

impl Caller<'_> {
    /// `checkout` with the given input fields; returns the whole response.
    pub async fn checkout_with(&self, token: &str, address: &str, key: Option<&str>) -> Value {
        let mut input = json!({ "paymentToken": token, "shippingAddress": address });
        if let Some(key) = key {
            input["idempotencyKey"] = json!(key);
        }
        self.gql(CHECKOUT, json!({ "input": input })).await
    }

    /// Checks the caller's cart out; panics unless it succeeds; returns the new order's id.
    pub async fn checkout(&self, token: &str, address: &str) -> String {
        let resp = self.checkout_with(token, address, None).await;
        str_of(&data(&resp)["checkout"]["order"]["id"]).to_string()
    }

    /// Puts `quantity` of one product in the caller's cart and checks out; returns the
    /// order's id.
    pub async fn order_one(&self, product_id: &str, quantity: i64, token: &str) -> String {
        data(&self.add_to_cart(product_id, quantity).await);
        self.checkout(token, ADDRESS).await
    }

    /// The order view as the caller sees it (`null` when not visible); panics on errors.
    pub async fn order(&self, id: &str) -> Value {
        let resp = self.gql(ORDER, json!({ "id": id })).await;
        data(&resp)["order"].clone()
    }

    /// `orders(...)` with the given arguments; returns the connection, panics on errors.
    pub async fn orders(&self, args: Value) -> Value {
        let resp = self.gql(ORDERS, args).await;
        data(&resp)["orders"].clone()
    }

    pub async fn cancel_order(&self, id: &str, reason: &str) -> Value {
        self.gql(CANCEL_ORDER, json!({ "id": id, "reason": reason }))
            .await
    }

    pub async fn ship_order(&self, id: &str) -> Value {
        self.gql(SHIP_ORDER, json!({ "id": id })).await
    }

    pub async fn deliver_order(&self, id: &str) -> Value {
        self.gql(DELIVER_ORDER, json!({ "id": id })).await
    }

    /// The dashboard with the default `lowStock` threshold; panics on errors.
    pub async fn dashboard(&self) -> Value {
        let resp = self.gql(DASHBOARD, json!({})).await;
        data(&resp)["dashboard"].clone()
    }
}

/// Polls `fetch` until `done` holds for what it returns, like `wait_until`. Prints each
/// distinct value seen, so a test that gives up shows where the view got stuck.
pub async fn wait_for_value<F, Fut>(what: &str, fetch: F, done: impl Fn(&Value) -> bool) -> Value
where
    F: Fn() -> Fut,
    Fut: Future<Output = Value>,
{
    let last = std::sync::Mutex::new(Value::Null);
    let (fetch, done, last) = (&fetch, &done, &last);
    wait_until(what, || async move {
        let value = fetch().await;
        let mut seen = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *seen != value {
            eprintln!("waiting until {what}, now: {value}");
            seen.clone_from(&value);
        }
        done(&value).then_some(value)
    })
    .await
}

/// Waits until the order, as `caller` sees it, satisfies `done`; returns it.
pub async fn wait_for_order(
    caller: &Caller<'_>,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_for_value(&format!("order {id} {what}"), || caller.order(id), done).await
}

/// Waits until the order, as `caller` sees it, has one of `statuses`; returns it.
pub async fn wait_for_order_status(caller: &Caller<'_>, id: &str, statuses: &[&str]) -> Value {
    wait_for_order(caller, id, &format!("is one of {statuses:?}"), |order| {
        order["status"]
            .as_str()
            .is_some_and(|status| statuses.contains(&status))
    })
    .await
}

/// Waits until the product view shows `stock` units on hand.
pub async fn wait_for_stock(caller: &Caller<'_>, product_id: &str, stock: i64) {
    wait_for_value(
        &format!("product {product_id} has {stock} units"),
        || caller.product(product_id),
        |product| product["stock"] == stock,
    )
    .await;
}

/// Waits until the dashboard, as the admin `caller` sees it, satisfies `done`; returns it.
pub async fn wait_for_dashboard(
    caller: &Caller<'_>,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_for_value(
        &format!("the dashboard {what}"),
        || caller.dashboard(),
        done,
    )
    .await
}

/// The count of `status` in a dashboard's `ordersByStatus`.
#[track_caller]
pub fn status_count(dashboard: &Value, status: &str) -> i64 {
    dashboard["ordersByStatus"]
        .as_array()
        .unwrap_or_else(|| panic!("ordersByStatus is a list: {dashboard:#}"))
        .iter()
        .find(|entry| entry["status"] == status)
        .unwrap_or_else(|| panic!("ordersByStatus lists {status}: {dashboard:#}"))["count"]
        .as_i64()
        .unwrap_or_else(|| panic!("a count is an Int: {dashboard:#}"))
}

/// The order ids of an `orders` connection's page, in order.
pub fn order_ids(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("edges is a list: {connection:#}"))
        .iter()
        .map(|edge| str_of(&edge["node"]["id"]).to_string())
        .collect()
}

/// The first error's message, or "" when there is none.
pub fn error_message(resp: &Value) -> &str {
    resp["errors"][0]["message"].as_str().unwrap_or("")
}

/// Behind the service's back: appends to cart stream `stream` (at version 2) an event its
/// cart projection cannot read. Returns a connection to the test's database and the row.
pub async fn insert_undecodable_cart_event(
    app: &TestApp,
    stream: uuid::Uuid,
) -> (
    sea_orm::DatabaseConnection,
    ordergraph::entity::events::Model,
) {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    let bad = ordergraph::entity::events::ActiveModel {
        stream_id: Set(stream),
        stream_type: Set("cart".into()),
        version: Set(2),
        event_type: Set("CartItemAdded".into()),
        event_version: Set(1),
        data: Set(json!({ "nonsense": true })),
        metadata: Set(json!({ "correlationId": uuid::Uuid::new_v4(), "causationId": "test" })),
        recorded_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&db)
    .await
    .expect("the event is inserted");
    (db, bad)
}

/// Behind the service's back: starts stream `stream` with one event of the given type.
pub async fn insert_event(
    app: &TestApp,
    stream: uuid::Uuid,
    stream_type: &str,
    event_type: &str,
    data: Value,
) -> ordergraph::entity::events::Model {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("the test database is reachable");
    ordergraph::entity::events::ActiveModel {
        stream_id: Set(stream),
        stream_type: Set(stream_type.into()),
        version: Set(1),
        event_type: Set(event_type.into()),
        event_version: Set(1),
        data: Set(data),
        metadata: Set(json!({ "correlationId": uuid::Uuid::new_v4(), "causationId": "test" })),
        recorded_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&db)
    .await
    .expect("the event is inserted")
}
