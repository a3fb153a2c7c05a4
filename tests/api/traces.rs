//! OpenTelemetry traces (ADR 0014) as a collector receives them: the `ordergraph` binary,
//! configured only with OpenTelemetry's standard variables, exports to a fake OTLP/HTTP
//! collector that this test runs on port 0 and that decodes every export (protobuf) the
//! way a real collector does. The binary, because the trace layer is the process's global
//! subscriber, which only the CLI installs.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use ordergraph::auth::Role;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{JWT_SECRET, PostgresGuard, fresh_database_url};

/// Bound on waiting for a span to arrive, or for the server to start or stop.
const DEADLINE: Duration = Duration::from_secs(30);

/// A span as the collector received it, with its resource's attributes.
#[derive(Clone, Debug)]
struct Received {
    resource: Vec<KeyValue>,
    span: opentelemetry_proto::tonic::trace::v1::Span,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&any_value::Value> {
        attribute(&self.span.attributes, key)
    }

    fn string(&self, key: &str) -> Option<&str> {
        match self.attribute(key) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.attribute(key) {
            Some(any_value::Value::IntValue(n)) => Some(*n),
            _ => None,
        }
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

/// A fake OpenTelemetry collector: the OTLP/HTTP receiver's `POST /v1/traces`.
struct Collector {
    address: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let received = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let received = received.clone();
                    async move {
                        assert_eq!(
                            headers.get("content-type").and_then(|v| v.to_str().ok()),
                            Some("application/x-protobuf"),
                            "OTLP/HTTP with protobuf bodies"
                        );
                        let request = ExportTraceServiceRequest::decode(body)
                            .expect("an OTLP export request in protobuf");
                        let mut spans = received.lock().expect("spans");
                        for resource_spans in request.resource_spans {
                            let resource = resource_spans
                                .resource
                                .map(|r| r.attributes)
                                .unwrap_or_default();
                            for scope in resource_spans.scope_spans {
                                for span in scope.spans {
                                    spans.push(Received {
                                        resource: resource.clone(),
                                        span,
                                    });
                                }
                            }
                        }
                        (
                            [("content-type", "application/x-protobuf")],
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the collector binds");
        let address = listener.local_addr().expect("a bound address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, spans }
    }

    /// The first span `matches` finds, once it has arrived.
    async fn span(&self, what: &str, matches: impl Fn(&Received) -> bool) -> Received {
        let started = Instant::now();
        loop {
            if let Some(span) = self
                .spans
                .lock()
                .expect("spans")
                .iter()
                .find(|s| matches(s))
            {
                return span.clone();
            }
            assert!(
                started.elapsed() < DEADLINE,
                "no span {what} reached the collector within {DEADLINE:?}; received: {:?}",
                self.spans
                    .lock()
                    .expect("spans")
                    .iter()
                    .map(|s| s.span.name.clone())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The server binary on its own database, exporting traces to `endpoint`.
struct Server {
    // Field order is drop order: the process goes before its database.
    child: tokio::process::Child,
    port: u16,
    http: reqwest::Client,
    _database: Option<PostgresGuard>,
    _data_dir: tempfile::TempDir,
}

impl Server {
    async fn start(endpoint: &str) -> Self {
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let (database_url, database) = fresh_database_url(data_dir.path()).await;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordergraph"));
        for (name, _) in std::env::vars() {
            if name.starts_with("OTEL_") || name == "ORDERGRAPH_OTLP_ENDPOINT" {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("serve")
            .env("ORDERGRAPH_BIND", "127.0.0.1:0")
            .env("DATABASE_URL", &database_url)
            .env("ORDERGRAPH_DATA_DIR", data_dir.path())
            .env("ORDERGRAPH_JWT_SECRET", JWT_SECRET)
            .env("ORDERGRAPH_LOG_FORMAT", "json")
            .env("ORDERGRAPH_DRAIN_TIMEOUT_MS", "500")
            .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn")
            // OpenTelemetry's own variables, as an operator sets them.
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_SERVICE_NAME", "ordergraph-under-test")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
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
                // Keep the server's log in the test's output, for a failure.
                eprintln!("server: {line}");
            }
        });
        let port = tokio::time::timeout(DEADLINE, port_rx)
            .await
            .expect("the server starts")
            .expect("the server logs its address")
            .expect("the address has a port");
        Self {
            child,
            port,
            http: reqwest::Client::builder()
                .timeout(DEADLINE)
                .build()
                .expect("an HTTP client"),
            _database: database,
            _data_dir: data_dir,
        }
    }

    async fn gql(
        &self,
        token: &str,
        headers: &[(&str, &str)],
        query: &str,
        variables: Value,
    ) -> Value {
        let mut request = self
            .http
            .post(format!("http://127.0.0.1:{}/graphql", self.port))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .send()
            .await
            .expect("an answer")
            .json()
            .await
            .expect("a JSON answer")
    }

    /// Sends SIGTERM and waits for the process to exit; returns how long it took.
    async fn terminate(&mut self) -> Duration {
        let pid = self.child.id().expect("a running server has a pid");
        let started = Instant::now();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success(), "SIGTERM was delivered");
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("the server exits after SIGTERM")
            .expect("the exit status");
        assert!(status.success(), "a clean exit: {status}");
        started.elapsed()
    }
}

fn admin() -> String {
    ordergraph::auth::mint_token(JWT_SECRET, "trace-admin", Role::Admin, DEADLINE).expect("a token")
}

const CREATE: &str = "mutation CreateMug($sku: String!) { createProduct(input: {sku: $sku, name: \"Mug\", price: \"12.50\", initialStock: 5}) { position product { id } } }";

#[tokio::test]
async fn a_mutation_is_one_span_with_its_name_its_command_and_its_read_your_writes_wait() {
    // Arrange: a collector, and the server exporting to it.
    let collector = Collector::start().await;
    let mut server = Server::start(&format!("http://{}", collector.address)).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";

    // Act: a named mutation inside the caller's trace, and a query outside any.
    let created = server
        .gql(
            &admin(),
            &[("traceparent", &format!("00-{trace_id}-{caller_span}-01"))],
            CREATE,
            json!({ "sku": "TRACE-1" }),
        )
        .await;
    let position: i64 = created["data"]["createProduct"]["position"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the product is created: {created}"));
    server
        .gql(
            &admin(),
            &[],
            "query Catalog { products(first: 1) { totalCount } }",
            json!({}),
        )
        .await;

    // Assert: the operation's span, named by its type and name, in the caller's trace.
    let operation = collector
        .span("mutation CreateMug", |s| {
            s.span.name == "mutation CreateMug"
        })
        .await;
    assert_eq!(hex(&operation.span.trace_id), trace_id);
    assert_eq!(hex(&operation.span.parent_span_id), caller_span);
    assert_eq!(operation.span.kind, SpanKind::Server as i32);
    assert_eq!(operation.string("graphql.operation.type"), Some("mutation"));
    assert_eq!(
        operation.string("graphql.operation.name"),
        Some("CreateMug")
    );
    assert_eq!(
        operation.string("ordergraph.command"),
        Some("createProduct")
    );
    assert_eq!(
        attribute(&operation.resource, "service.name"),
        Some(&any_value::Value::StringValue(
            "ordergraph-under-test".into()
        ))
    );
    // Its read-your-writes wait on the catalog, a child span: the view and the position it
    // waited for. (The dashboard's wait, for the other view a product event reaches, runs
    // beside it and may reach the collector first.)
    let wait = collector
        .span("read-your-writes on the catalog", |s| {
            s.span.name == "read-your-writes"
                && s.span.parent_span_id == operation.span.span_id
                && s.string("ordergraph.projection") == Some("catalog")
        })
        .await;
    assert_eq!(wait.int("ordergraph.position"), Some(position));
    assert!(
        wait.int("ordergraph.waited_ms").is_some_and(|ms| ms >= 0),
        "the wait's duration: {:?}",
        wait.span.attributes
    );
    assert_eq!(
        wait.attribute("ordergraph.caught_up"),
        Some(&any_value::Value::BoolValue(true))
    );
    // The command's decision and commit, a child span too.
    collector
        .span("execute", |s| {
            s.span.name == "execute" && s.span.parent_span_id == operation.span.span_id
        })
        .await;
    // A request without a `traceparent` starts a trace of its own.
    let query = collector
        .span("query Catalog", |s| s.span.name == "query Catalog")
        .await;
    assert!(query.span.parent_span_id.is_empty(), "a root span");
    assert_ne!(hex(&query.span.trace_id), trace_id);
    assert_eq!(query.string("graphql.operation.type"), Some("query"));
    assert_eq!(query.string("ordergraph.command"), None);

    server.terminate().await;
}

#[tokio::test]
async fn a_request_error_is_a_span_with_its_code_and_a_refused_command_too() {
    let collector = Collector::start().await;
    let mut server = Server::start(&format!("http://{}", collector.address)).await;
    let customer =
        ordergraph::auth::mint_token(JWT_SECRET, "trace-customer", Role::Customer, DEADLINE)
            .expect("a token");

    server.gql(&admin(), &[], "{ nope }", json!({})).await;
    server
        .gql(&customer, &[], CREATE, json!({ "sku": "TRACE-2" }))
        .await;

    let refused = collector
        .span("a span of the document that did not validate", |s| {
            s.span.name == "query" && s.string("error.type").is_some()
        })
        .await;
    assert_eq!(refused.string("error.type"), Some("BAD_USER_INPUT"));
    assert_eq!(
        refused.span.status.as_ref().map(|s| s.code),
        Some(opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32)
    );
    let forbidden = collector
        .span("the customer's createProduct", |s| {
            s.span.name == "mutation CreateMug"
        })
        .await;
    assert_eq!(forbidden.string("error.type"), Some("FORBIDDEN"));

    server.terminate().await;
}

#[tokio::test]
async fn an_operation_over_a_websocket_is_a_span_too() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    // Arrange
    let collector = Collector::start().await;
    let mut server = Server::start(&format!("http://{}", collector.address)).await;
    let mut request = format!("ws://127.0.0.1:{}/graphql", server.port)
        .into_client_request()
        .expect("a WebSocket request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("a header value"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("a WebSocket");

    // Act: a query over graphql-transport-ws, to its `complete`.
    for message in [
        json!({ "type": "connection_init", "payload": {} }),
        json!({ "type": "subscribe", "id": "1", "payload": {
            "query": "query OverTheSocket { products(first: 1) { totalCount } }" } }),
    ] {
        socket
            .send(Message::text(message.to_string()))
            .await
            .expect("a message is sent");
    }
    let completed = tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message
                && serde_json::from_str::<Value>(text.as_str())
                    .is_ok_and(|m| m["type"] == "complete")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(completed.ok(), Some(true), "the query completes");

    // Assert
    let span = collector
        .span("query OverTheSocket", |s| {
            s.span.name == "query OverTheSocket"
        })
        .await;
    assert_eq!(span.string("graphql.operation.type"), Some("query"));
    assert_eq!(span.string("graphql.operation.name"), Some("OverTheSocket"));
    assert!(span.span.parent_span_id.is_empty(), "a root span");
    assert!(span.span.end_time_unix_nano > span.span.start_time_unix_nano);

    let _ = socket.close(None).await;
    server.terminate().await;
}

#[tokio::test]
async fn a_collector_that_never_answers_holds_up_neither_requests_nor_shutdown() {
    // Arrange: a "collector" that accepts connections and never answers one.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let endpoint = format!("http://{}", black_hole.local_addr().expect("an address"));
    let mut server = Server::start(&endpoint).await;

    // Act: requests while the exporter is stuck on its first export.
    for i in 0..20 {
        let created = tokio::time::timeout(
            Duration::from_secs(10),
            server.gql(&admin(), &[], CREATE, json!({ "sku": format!("HOLE-{i}") })),
        )
        .await
        .expect("a request is not held up by the exporter");
        assert!(created["data"]["createProduct"]["position"].is_string());
    }
    let took = server.terminate().await;

    // Assert: the exporter gave up within its few seconds (the OTLP timeout is 10 s).
    assert!(
        took < Duration::from_secs(8),
        "shutdown took {took:?} with a collector that never answers"
    );
    drop(black_hole);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
