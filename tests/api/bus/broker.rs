//! A private NATS server with JetStream for one test: Debian's `nats-server` on a free
//! port with its own store directory, which the test can `kill -9` and start again on the
//! same port and store, as a broker crash and restart. Also the reads a consumer of the
//! stream makes: every message by sequence, decoded as the service's wire format says.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How long the broker may take to accept JetStream requests.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The stream the service publishes to by default.
pub const STREAM: &str = "ORDERGRAPH_EVENTS";

pub struct Broker {
    pub port: u16,
    store: TempDir,
    log: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker; `None` (the test skips) when `nats-server` is not installed.
    pub async fn start() -> Option<Broker> {
        if std::process::Command::new("nats-server")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: nats-server is not installed");
            return None;
        }
        let port = free_port();
        let store = tempfile::tempdir().expect("a store directory");
        let log = store.path().join("nats.log");
        let mut broker = Broker {
            port,
            store,
            log,
            child: None,
        };
        broker.spawn().await;
        Some(broker)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("a log file");
        let err = out.try_clone().expect("the log file twice");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store.path().join("jetstream"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            // JetStream answers: a stream that does not exist is "not found" (account info
            // does not decode from a 2.9 broker with this client).
            if let Ok(js) = self.jetstream().await {
                use async_nats::jetstream::context::GetStreamErrorKind;
                match js.get_stream("READINESS_PROBE").await {
                    Ok(_) => return,
                    Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(_)) => return,
                    Err(_) => {}
                }
            }
            assert!(
                started.elapsed() < START_DEADLINE,
                "the broker did not start:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: the broker dies with whatever it had not written to disk.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL is sent");
            child.wait().await.expect("the broker is reaped");
        }
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.kill9().await;
        self.spawn().await;
    }

    pub async fn jetstream(&self) -> anyhow::Result<jetstream::Context> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(self.url())
            .await?;
        Ok(jetstream::new(client))
    }

    /// The stream's last sequence (0 when it does not exist yet).
    pub async fn last_sequence(&self) -> u64 {
        let Ok(js) = self.jetstream().await else {
            return 0;
        };
        match js.get_stream(STREAM).await {
            Ok(mut stream) => stream
                .info()
                .await
                .map(|info| info.state.last_sequence)
                .unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Every message of the stream from sequence 1, decoded: the log as a consumer reads it.
    pub async fn messages(&self) -> Vec<Message> {
        let js = self.jetstream().await.expect("the broker answers");
        let mut stream = js.get_stream(STREAM).await.expect("the stream exists");
        let state = stream.info().await.expect("stream info").state.clone();
        let mut messages = Vec::new();
        for sequence in state.first_sequence.max(1)..=state.last_sequence {
            let m = stream
                .get_raw_message(sequence)
                .await
                .unwrap_or_else(|e| panic!("message {sequence}: {e}"));
            let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_owned());
            messages.push(Message {
                sequence: m.sequence,
                subject: m.subject.to_string(),
                position: header("Ordergraph-Position"),
                gap: header("Ordergraph-Gap").is_some(),
                stream_id: header("Ordergraph-Stream-Id"),
                version: header("Ordergraph-Stream-Version"),
                event_type: header("Ordergraph-Event-Type"),
                msg_id: header("Nats-Msg-Id"),
                correlation: header("Ordergraph-Correlation-Id"),
                payload: serde_json::from_slice(&m.payload).ok(),
            });
        }
        messages
    }
}

/// One message of the stream, as a consumer of the documented wire format sees it.
#[derive(Debug, Clone)]
pub struct Message {
    pub sequence: u64,
    pub subject: String,
    pub position: Option<String>,
    pub gap: bool,
    pub stream_id: Option<String>,
    pub version: Option<String>,
    pub event_type: Option<String>,
    pub msg_id: Option<String>,
    pub correlation: Option<String>,
    pub payload: Option<serde_json::Value>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
