//! A cluster of real server processes for the tests: N copies of the built binary
//! (`ordergraph serve`), each on port 0 with its own node id and data directory, all on one
//! fresh PostgreSQL database. Each replica's log goes to a file, from which its address
//! is read; it can be killed (SIGKILL), frozen (SIGSTOP) and thawed (SIGCONT) like a
//! real process, and it is killed when the harness is dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::helpers::{JWT_SECRET, PostgresGuard, data, fresh_database_url, token};
use ordergraph::auth::Role;

/// How long a replica may take to start serving.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The admin `cluster` query.
pub const CLUSTER: &str = "{ cluster { node nodes { id roles since alive unitsHeld serving { position lag reportedAt } } units { name holder since } } }";

/// One server process.
pub struct Replica {
    pub node: String,
    pub address: String,
    pub log: PathBuf,
    child: Child,
    http: reqwest::Client,
}

/// N replicas on one database.
pub struct Cluster {
    pub replicas: Vec<Replica>,
    pub database_url: String,
    dir: TempDir,
    http: reqwest::Client,
    _database: Option<PostgresGuard>,
    /// Its turn among the suite's clusters (dropped last, after its replicas).
    _turn: tokio::sync::OwnedSemaphorePermit,
}

/// One cluster at a time in the test binary: each replica holds a pool, a lease and a
/// listener connection, and PostgreSQL's default `max_connections` is 100, shared with
/// every other test of the suite running in parallel.
static TURNS: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(1)));

/// A replica's own database pool in the tests (its lease and listener connections come on
/// top): small, so that several clusters and the rest of the suite fit in the server.
const REPLICA_POOL: &str = "10";

impl Drop for Cluster {
    /// A failed test shows what its replicas logged at WARN and ERROR.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for replica in &self.replicas {
            let log = replica.log_text();
            // A client polling `/readyz` logs a line per 503: those say nothing the
            // test's own message does not, and would hide what the replica said.
            let bad: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                .filter(|l| !l.contains("response failed classification=Status code: 503"))
                .collect();
            eprintln!(
                "--- {} logged {} WARN/ERROR lines; the last ones:",
                replica.node,
                bad.len()
            );
            for line in bad.iter().rev().take(40).rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// True when the tests run on PostgreSQL (`TEST_DATABASE_URL`): the cluster needs it.
pub fn on_postgres() -> bool {
    std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.trim().is_empty())
}

impl Cluster {
    /// A fresh database and no replica yet; `None` on SQLite, where there is no cluster.
    pub async fn new() -> Option<Cluster> {
        if !on_postgres() {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (database_url, database) = fresh_database_url(dir.path()).await;
        Some(Self::on_database(dir, database_url, database).await)
    }

    /// No replica yet, on `database_url`: a database of the test's own (on a server it
    /// may crash and restart), kept after the test.
    pub async fn on(database_url: String) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self::on_database(dir, database_url, None).await
    }

    async fn on_database(
        dir: TempDir,
        database_url: String,
        database: Option<PostgresGuard>,
    ) -> Cluster {
        let turn = TURNS
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Cluster {
            replicas: Vec::new(),
            database_url,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            _database: database,
            _turn: turn,
        }
    }

    /// `n` replicas with the default roles, started together.
    pub async fn start(n: usize) -> Option<Cluster> {
        let mut cluster = Self::new().await?;
        cluster.add(n, &[]).await;
        Some(cluster)
    }

    /// Starts `n` more replicas (together) with `env` added to their environment.
    pub async fn add(&mut self, n: usize, env: &[(&str, &str)]) {
        let first = self.replicas.len();
        let starting: Vec<_> = (first..first + n)
            .map(|i| Replica::spawn(&self.dir, &self.database_url, i, env, self.http.clone()))
            .collect();
        for replica in futures_util::future::join_all(starting).await {
            self.replicas.push(replica);
        }
    }

    /// A connection to the cluster's database (for what only PostgreSQL shows).
    pub async fn db(&self) -> sea_orm::DatabaseConnection {
        sea_orm::Database::connect(&self.database_url)
            .await
            .expect("the test database is reachable")
    }

    /// The replica whose node id is `node`.
    pub fn by_node(&self, node: &str) -> usize {
        self.replicas
            .iter()
            .position(|r| r.node == node)
            .unwrap_or_else(|| panic!("no replica {node}"))
    }
}

impl Replica {
    async fn spawn(
        dir: &TempDir,
        database_url: &str,
        index: usize,
        env: &[(&str, &str)],
        http: reqwest::Client,
    ) -> Replica {
        let node = format!("replica-{index}");
        let data_dir = dir.path().join(&node);
        std::fs::create_dir_all(&data_dir).expect("a data directory");
        let log = dir.path().join(format!("{node}.log"));
        let out = std::fs::File::create(&log).expect("a log file");
        let err = out.try_clone().expect("the log file twice");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordergraph"));
        command
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env_remove("ORDERGRAPH_ROLES")
            .env("DATABASE_URL", database_url)
            .env("ORDERGRAPH_BIND", "127.0.0.1:0")
            .env("ORDERGRAPH_JWT_SECRET", JWT_SECRET)
            .env("ORDERGRAPH_NODE_ID", &node)
            .env("ORDERGRAPH_DATA_DIR", &data_dir)
            .env("ORDERGRAPH_CONSISTENCY_WAIT_MS", "15000")
            .env("ORDERGRAPH_DB_MAX_CONNECTIONS", REPLICA_POOL)
            .env("ORDERGRAPH_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("the server binary starts");
        let started = Instant::now();
        let address = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(at) = text.find("serving GraphQL on http://") {
                let rest = &text[at + "serving GraphQL on ".len()..];
                let end = rest
                    .find("/graphql")
                    .expect("the address ends with /graphql");
                break rest[..end].to_owned();
            }
            assert!(
                started.elapsed() < START_DEADLINE,
                "{node} did not start serving:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Replica {
            node,
            address,
            log,
            child,
            http,
        }
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("the replica's status")
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the replica is running")
    }

    /// SIGKILL: the process dies at once, its sockets closed by the kernel.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL is sent");
        let _ = self.child.wait().await;
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {}", self.pid());
    }

    /// SIGSTOP: frozen, its sockets open (a GC pause, a VM freeze, a silent partition).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: running again.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// The replica's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A GraphQL request with a bearer token for `sub` as `role`; the whole response.
    pub async fn gql_as(&self, sub: &str, role: Role, query: &str, variables: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/graphql", self.address))
            .bearer_auth(token(sub, role))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} answers: {e}", self.node));
        response.json().await.expect("a JSON body")
    }

    pub async fn admin(&self, query: &str, variables: Value) -> Value {
        self.gql_as("admin", Role::Admin, query, variables).await
    }

    /// GET `path`: the body's text (empty when it does not answer).
    pub async fn http_get(&self, path: &str) -> String {
        match self
            .http
            .get(format!("{}{path}", self.address))
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// GET `path`: the status code (0 when it does not answer).
    pub async fn http_status(&self, path: &str) -> u16 {
        match self
            .http
            .get(format!("{}{path}", self.address))
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// The `cluster` query's answer, or `None` when the replica does not answer (yet).
    pub async fn cluster(&self) -> Option<Value> {
        let response = self
            .http
            .post(format!("{}/graphql", self.address))
            .bearer_auth(token("admin", Role::Admin))
            .json(&json!({ "query": CLUSTER }))
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        body["data"]["cluster"]
            .is_object()
            .then(|| data(&body)["cluster"].clone())
    }
}

/// The holder of each unit in a `cluster` answer (`None`: nobody).
pub fn holders(cluster: &Value) -> Vec<(String, Option<String>)> {
    cluster["units"]
        .as_array()
        .expect("units is a list")
        .iter()
        .map(|u| {
            (
                u["name"].as_str().expect("a name").to_owned(),
                u["holder"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// The units held by `node` in a `cluster` answer.
pub fn held_by(cluster: &Value, node: &str) -> Vec<String> {
    holders(cluster)
        .into_iter()
        .filter(|(_, holder)| holder.as_deref() == Some(node))
        .map(|(name, _)| name)
        .collect()
}
