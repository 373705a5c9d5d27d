//! An in-process collector on a loopback port (real HTTP stack, in-memory SQLite, a clock
//! the test moves), and agents that speak the wire format with a proper hash chain.

#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use driftwatch_collector::app::{App, Settings};
use driftwatch_collector::clock::{Clock, ManualClock, Millis};
use driftwatch_collector::identity::Role;
use driftwatch_collector::store::SqliteStore;
use driftwatch_common::api::v1::{
    ChangeKind, DriftEvent, EnrollResponse, EventBatch, SeenBy, SubjectKey, SubjectState,
};
use driftwatch_common::chain_key::ChainKey;
use driftwatch_common::hash::ContentHash;
use driftwatch_config::collector::{AlertSink, SinkTarget, Transport};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use uuid::Uuid;

/// 2026-11-23T10:00:00Z, "now" at the start of every test.
pub const NOW: Millis = 1_795_428_000_000;
pub const MINUTE: Millis = 60_000;

pub struct Server {
    pub url: String,
    pub app: Arc<App<SqliteStore>>,
    pub clock: ManualClock,
    pub dir: TempDir,
    pub admin: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn settings() -> Settings {
    Settings {
        hold_ms: 5 * MINUTE,
        burst_ms: 10_000,
        tolerance_ms: MINUTE,
        silent_after_ms: 5 * MINUTE,
        emergency_approval_ms: 60 * MINUTE,
        max_body_bytes: 64 * 1024,
        max_export_rows: 1000,
        limits: Default::default(),
        // The API tests read /metrics without a token; tls.rs checks the default.
        metrics: driftwatch_config::collector::MetricsAccess {
            require_token: false,
            ..Default::default()
        },
    }
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(settings(), Transport::PlainHttp, reqwest::Client::new()).await
    }

    pub async fn start_with(
        settings: Settings,
        transport: Transport,
        client: reqwest::Client,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(NOW);
        let store = SqliteStore::open(&dir.path().join("collector.db")).unwrap();
        let sinks = driftwatch_collector::alerts::Sinks::from_config(&[AlertSink {
            name: "jsonl".into(),
            retry_max: std::time::Duration::from_secs(1),
            target: SinkTarget::JsonLines {
                path: dir.path().join("alerts.jsonl"),
            },
        }])
        .unwrap();
        let app = Arc::new(
            App::new(
                store,
                settings,
                Arc::new(clock.clone()) as Arc<dyn Clock>,
                sinks,
            )
            .await
            .unwrap(),
        );
        let admin = app
            .create_token_offline("test", "root", Role::Admin)
            .await
            .unwrap()
            .text;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = match transport {
            Transport::PlainHttp => "http",
            Transport::Tls { .. } => "https",
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let app = Arc::clone(&app);
            async move {
                driftwatch_collector::serve::serve(app, &transport, listener, async {
                    let _ = stopped.await;
                })
                .await
            }
        });
        Server {
            url: format!("{scheme}://localhost:{}", addr.port()),
            app,
            clock,
            dir,
            admin,
            client,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops gracefully and returns what `serve` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }

    pub async fn token(&self, role: Role, name: &str) -> String {
        self.app
            .create_token_offline("test", name, role)
            .await
            .unwrap()
            .text
    }

    /// Sends `body` (JSON, or raw bytes with extra headers) and returns status and JSON answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(bytes, headers) => {
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                request.body(bytes)
            }
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, Some(token), Body::None).await
    }

    /// A listing's page: status, JSON answer and its `Next-Cursor` (issue 10).
    pub async fn get_page(&self, path: &str, token: &str) -> (StatusCode, Value, Option<String>) {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let next = response
            .headers()
            .get("next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value, next)
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(token), Body::Json(body))
            .await
    }

    /// Enrolls a host through the API.
    pub async fn enroll(&self, hostname: &str, labels: &[(&str, &str)]) -> Agent {
        let (status, issued) = self
            .post("/api/v1/enrollment-tokens", &self.admin, json!({}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let (status, answer) = self
            .send(
                Method::POST,
                "/api/v1/enroll",
                None,
                Body::Json(json!({
                    "token": issued["token"], "hostname": hostname,
                    "labels": labels, "agent_version": "0.1.0",
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let answer: EnrollResponse = serde_json::from_value(answer).unwrap();
        Agent {
            host_id: answer.host_id,
            credential: answer.credential,
            seq: Cell::new(0),
            prev: Cell::new(DriftEvent::GENESIS),
            key: answer.chain_key.expect("a chain key at enrollment"),
        }
    }

    /// Posts events as `agent`; returns status and answer.
    pub async fn report(&self, agent: &Agent, events: &[DriftEvent]) -> (StatusCode, Value) {
        let batch = EventBatch {
            events: events.to_vec(),
        };
        self.post(
            "/api/v1/events",
            &agent.credential,
            serde_json::to_value(batch).unwrap(),
        )
        .await
    }

    /// A heartbeat from `agent` received now (the test clock), reporting `last_seq`
    /// spooled and an agent clock of `sent_at`.
    pub async fn heartbeat(&self, agent: &Agent, last_seq: u64, sent_at: Millis) {
        let heartbeat = json!({
            "host_id": agent.host_id, "sent_at": at(sent_at),
            "inventory": {"hostname": "h", "os": "Debian 12", "kernel": "6.1", "uptime_secs": 5, "cpus": 2, "memory_bytes": 1},
            "health": {"agent_version": "0.1.0", "cpu_percent": 0.5, "rss_bytes": 1, "spool_depth": 0, "spool_full": false,
                       "baseline_entries": 10, "baseline_tampered": false,
                       "coverage": {"dropped_event_batches": 0, "unreadable": 0, "attribution_unavailable": null}},
            "last_seq": last_seq,
        });
        let (status, answer) = self
            .post("/api/v1/heartbeat", &agent.credential, heartbeat)
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    /// The alerts of `kind` the JSON-lines sink received.
    pub fn alert_lines(&self, kind: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("alerts.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|alert| alert["kind"] == kind)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>, Vec<(&'static str, &'static str)>),
}

/// An enrolled host that chains its events.
pub struct Agent {
    pub host_id: Uuid,
    pub credential: String,
    /// Interior mutability so that `server.report(&agent, &[agent.event(..)])` reads well.
    pub seq: Cell<u64>,
    pub prev: Cell<ContentHash>,
    /// The chain key of seq 1: each event is MAC'd with the key of its seq.
    pub key: ChainKey,
}

impl Agent {
    /// The next event in the chain: `subject` changed, now at `version`, seen at `at`.
    pub fn event(&self, subject: &str, version: &str, at: Millis) -> DriftEvent {
        self.event_of(subject, ChangeKind::Content, version, at)
    }

    pub fn event_of(
        &self,
        subject: &str,
        kind: ChangeKind,
        version: &str,
        at: Millis,
    ) -> DriftEvent {
        self.seq.set(self.seq.get() + 1);
        let mut event = DriftEvent {
            id: Uuid::now_v7(),
            host_id: self.host_id,
            seq: self.seq.get(),
            prev_hash: self.prev.get(),
            subject: SubjectKey(subject.to_owned()),
            kind,
            changed: vec!["version".into()],
            before: None,
            after: Some(SubjectState::Fields {
                fields: BTreeMap::from([("version".to_owned(), version.to_owned())]),
            }),
            diff: None,
            summary: None,
            actor: None,
            seen_by: SeenBy::Watch,
            observed_at: time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(at) * 1_000_000,
            )
            .unwrap(),
            provenance: None,
            related: None,
            mac: None,
        };
        event.seal(&self.key.forward(self.seq.get() - 1));
        self.prev.set(event.chain_hash());
        event
    }

    /// A `restored` event back to the state before this helper's drift (which names no
    /// `before`: absent).
    pub fn restored(&self, subject: &str, at: Millis) -> DriftEvent {
        let prev = self.prev.get();
        let mut event = self.event_of(subject, ChangeKind::Restored, "", at);
        event.prev_hash = prev;
        event.changed.clear();
        event.after = None;
        event.seal(&self.key.forward(event.seq - 1));
        self.prev.set(event.chain_hash());
        event
    }
}

/// RFC 3339 of a test time.
pub fn at(millis: Millis) -> String {
    driftwatch_collector::clock::rfc3339(millis)
}
