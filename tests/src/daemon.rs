//! Harness for the daemon's end-to-end tests.
//!
//! - [`TestCollector`]: a small HTTP server on `127.0.0.1:0` (axum, on its own runtime
//!   thread) that speaks `common::api::v1`: it enrolls one token, records every batch it
//!   receives (gunzipped, duplicates counted), answers heartbeats with queued commands, and
//!   can be told to fail ([`Mode`]: 500, garbage, slow) or be stopped and started again on
//!   the same port (a collector that is down).
//! - [`Daemon`]: the real `driftwatch-agent run` as a child process, with its log in a
//!   file, readiness read from its `status.json`, SIGTERM/SIGHUP/SIGKILL, and kill on drop.
//! - [`wait_until`]: every wait is bounded; a timeout fails the test with the agent's log.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use driftwatch_common::api::v1::{
    AgentCommand, ApiError, ApiErrorBody, CommandResult, DriftEvent, EnrollRequest, EnrollResponse,
    EventBatch, Heartbeat, HeartbeatResponse, IngestAck,
};
use driftwatch_common::chain_key::ChainKey;
use serde_json::Value;
use uuid::Uuid;

use crate::{HostDir, agent_bin, p};

/// The enrollment token the test collector accepts.
pub const TOKEN: &str = "enroll-me";
/// The credential it issues.
pub const CREDENTIAL: &str = "agent-credential-0123456789";
/// The chain key of sequence number 1 this collector issues at enrollment.
pub const CHAIN_KEY: [u8; 32] = [0x5a; 32];

/// How the test collector answers `POST /api/v1/events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Store and acknowledge.
    Ok,
    /// Answer 500 without storing.
    Fail,
    /// Store, then answer 200 with a body that is not an acknowledgement (the ack is lost).
    Garbage,
    /// Store, then answer only after this long (longer than the agent's timeout: the ack is lost).
    Slow(Duration),
}

#[derive(Default)]
struct Shared {
    mode: Mutex<Option<Mode>>,
    /// Every event received, in arrival order, duplicates included.
    received: Mutex<Vec<DriftEvent>>,
    batches: Mutex<u64>,
    heartbeats: Mutex<Vec<Heartbeat>>,
    commands: Mutex<Vec<AgentCommand>>,
    host_id: Mutex<Option<Uuid>>,
}

/// A recording collector on loopback.
pub struct TestCollector {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Option<(
        tokio::task::JoinHandle<()>,
        tokio::sync::oneshot::Sender<()>,
    )>,
}

impl Default for TestCollector {
    fn default() -> Self {
        Self::start()
    }
}

impl TestCollector {
    /// Starts on a free port, in [`Mode::Ok`].
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test collector runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        *shared.mode.lock().unwrap() = Some(Mode::Ok);
        let mut collector = TestCollector {
            runtime,
            shared,
            addr,
            server: None,
        };
        collector.serve(listener);
        collector
    }

    fn serve(&mut self, listener: std::net::TcpListener) {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let shared = Arc::clone(&self.shared);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handle = self.runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let app = axum::Router::new()
                .route("/api/v1/enroll", post(enroll))
                .route("/api/v1/events", post(events))
                .route("/api/v1/heartbeat", post(heartbeat))
                .with_state(shared);
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        self.server = Some((handle, stop_tx));
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = Some(mode);
    }

    /// Stops listening: the collector is down (connections are refused).
    pub fn stop(&mut self) {
        if let Some((handle, stop)) = self.server.take() {
            let _ = stop.send(());
            // Open connections are dropped too: abort the server task.
            handle.abort();
            let _ = self.runtime.block_on(handle);
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(listener) => break listener,
                Err(err) if Instant::now() < deadline => {
                    let _ = err;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(err) => panic!("cannot listen on {} again: {err}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Every event received so far (duplicates included).
    pub fn received(&self) -> Vec<DriftEvent> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The events received, each id once (what an idempotent store keeps).
    pub fn events(&self) -> Vec<DriftEvent> {
        let mut seen = HashSet::new();
        self.received()
            .into_iter()
            .filter(|e| seen.insert(e.id))
            .collect()
    }

    /// Events whose subject is the file `path`.
    pub fn events_for(&self, path: &Path) -> Vec<DriftEvent> {
        let subject = format!("file:{}", p(path));
        self.events()
            .into_iter()
            .filter(|e| e.subject.0 == subject)
            .collect()
    }

    pub fn batches(&self) -> u64 {
        *self.shared.batches.lock().unwrap()
    }

    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        self.shared.heartbeats.lock().unwrap().clone()
    }

    /// Queues a command for the next heartbeat response.
    pub fn queue_command(&self, command: AgentCommand) {
        self.shared.commands.lock().unwrap().push(command);
    }

    /// Command results reported in heartbeats so far.
    pub fn results(&self) -> Vec<CommandResult> {
        self.heartbeats()
            .into_iter()
            .flat_map(|h| h.results)
            .collect()
    }

    /// Checks the agent's hash chain over every distinct event: sequence numbers 1..=n
    /// without a gap, each `prev_hash` the hash of the one before, each `mac` made with
    /// the key of its number (when the agent enrolled here). Returns n.
    #[track_caller]
    pub fn verify_chain(&self) -> u64 {
        let mut events = self.events();
        events.sort_by_key(|e| e.seq);
        let mut prev = DriftEvent::GENESIS;
        let mut key = ChainKey::from_bytes(CHAIN_KEY);
        for (index, event) in events.iter().enumerate() {
            assert_eq!(
                event.seq,
                index as u64 + 1,
                "gap or duplicate seq: {events:#?}"
            );
            assert_eq!(event.prev_hash, prev, "broken chain at seq {}", event.seq);
            let encoded = event.encode();
            if event.mac.is_some() {
                assert_eq!(
                    event.mac,
                    Some(encoded.mac_with(&key)),
                    "bad mac at seq {}",
                    event.seq
                );
            }
            key.advance();
            prev = encoded.chain_hash();
        }
        events.len() as u64
    }
}

impl Drop for TestCollector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(ApiErrorBody {
            error: ApiError {
                code: code.into(),
                message: message.into(),
            },
        }),
    )
        .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {CREDENTIAL}"))
}

fn body_json<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Option<T> {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .ok()?;
        out
    } else {
        body.to_vec()
    };
    serde_json::from_slice(&bytes).ok()
}

async fn enroll(State(shared): State<Arc<Shared>>, Json(request): Json<EnrollRequest>) -> Response {
    if request.token != TOKEN {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown enrollment token",
        );
    }
    let host_id = Uuid::now_v7();
    *shared.host_id.lock().unwrap() = Some(host_id);
    Json(EnrollResponse {
        host_id,
        credential: CREDENTIAL.into(),
        chain_key: Some(ChainKey::from_bytes(CHAIN_KEY)),
    })
    .into_response()
}

async fn events(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "bad credential");
    }
    let mode = shared.mode.lock().unwrap().unwrap_or(Mode::Ok);
    if mode == Mode::Fail {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "test collector told to fail",
        );
    }
    let Some(batch) = body_json::<EventBatch>(&headers, &body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "not a gzip-compressed event batch",
        );
    };
    let (accepted, duplicates, last_seq) = {
        let mut received = shared.received.lock().unwrap();
        let known: HashSet<Uuid> = received.iter().map(|e| e.id).collect();
        let duplicates = batch
            .events
            .iter()
            .filter(|e| known.contains(&e.id))
            .count() as u32;
        let last_seq = batch.events.iter().map(|e| e.seq).max().unwrap_or(0);
        received.extend(batch.events.iter().cloned());
        *shared.batches.lock().unwrap() += 1;
        (batch.events.len() as u32 - duplicates, duplicates, last_seq)
    };
    match mode {
        Mode::Garbage => (StatusCode::OK, "<html>not an ack</html>").into_response(),
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Json(IngestAck {
                accepted,
                duplicates,
                last_seq,
                rejected: 0,
            })
            .into_response()
        }
        Mode::Ok | Mode::Fail => Json(IngestAck {
            accepted,
            duplicates,
            last_seq,
            rejected: 0,
        })
        .into_response(),
    }
}

async fn heartbeat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "bad credential");
    }
    let Some(heartbeat) = body_json::<Heartbeat>(&headers, &body) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "not a heartbeat");
    };
    shared.heartbeats.lock().unwrap().push(heartbeat);
    let commands = std::mem::take(&mut *shared.commands.lock().unwrap());
    Json(HeartbeatResponse {
        server_time: time::OffsetDateTime::now_utc(),
        commands,
    })
    .into_response()
}

/// Polls `condition` every 20 ms until it holds; false after `timeout`.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A host for the daemon: a [`HostDir`] and an `agent.toml` watching its tree.
pub struct DaemonHost {
    pub host: HostDir,
    pub config: PathBuf,
}

impl DaemonHost {
    /// A tree with a few files and a config whose `[collector] url` is `collector` (if
    /// any); `extra` is appended to the config (TOML tables) before the rule.
    pub fn new(collector: Option<&str>, extra: &str) -> Self {
        let host = HostDir::new();
        host.write("etc/app.conf", "port = 80\n");
        host.write("etc/sub/other.conf", "x = 1\n");
        host.write("bin/tool", "#!/bin/sh\n");
        let config = host.root().join("agent.toml");
        let daemon = DaemonHost { host, config };
        daemon.write_config(collector, extra);
        daemon
    }

    /// Writes the configuration file: quick test settings, overridden or extended by
    /// `extra` (TOML tables and keys, merged into the same tables).
    pub fn write_config(&self, collector: Option<&str>, extra: &str) {
        let mut tables: Vec<(String, Vec<String>)> = vec![
            ("scan".into(), vec!["interval_secs = 3600".into()]),
            ("sources".into(), vec!["enabled = []".into()]),
            (
                "collector".into(),
                [
                    "timeout_secs = 2",
                    "batch_linger_ms = 20",
                    "retry_max_secs = 1",
                ]
                .iter()
                .map(ToString::to_string)
                .chain(collector.map(|url| format!("url = \"{url}\"")))
                .collect(),
            ),
            (
                "watch".into(),
                vec!["settle_ms = 50".into(), "max_delay_ms = 500".into()],
            ),
            ("heartbeat".into(), vec!["interval_secs = 1".into()]),
        ];
        let mut table = String::new();
        for line in extra.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                table = name.to_owned();
                if !tables.iter().any(|(t, _)| *t == table) {
                    tables.push((table.clone(), Vec::new()));
                }
                continue;
            }
            let key = line.split('=').next().unwrap_or_default().trim();
            let (_, lines) = tables
                .iter_mut()
                .find(|(t, _)| *t == table)
                .expect("keys in `extra` follow a [table] header");
            lines.retain(|l| l.split('=').next().unwrap_or_default().trim() != key);
            lines.push(line.to_owned());
        }
        let mut text = format!("state_dir = \"{}\"\n", p(self.host.state()));
        for (name, lines) in tables {
            text.push_str(&format!("[{name}]\n"));
            for line in lines {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text.push_str(&format!("[[rule]]\npath = \"{}\"\n", p(self.host.tree())));
        fs::write(&self.config, text).expect("write agent.toml");
    }

    /// The agent CLI with `--config` this host's configuration.
    pub fn cli<I, S>(&self, args: I) -> crate::Agent
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        crate::Agent::new()
            .arg("--config")
            .arg(&self.config)
            .args(args)
    }

    /// `baseline init` with the configuration.
    #[track_caller]
    pub fn init(&self) {
        self.cli(["baseline", "init", "--quiet"])
            .run()
            .expect(crate::EXIT_CLEAN);
    }

    /// `enroll --token TOKEN` (the URL from the configuration).
    #[track_caller]
    pub fn enroll(&self) {
        self.cli(["enroll", "--token", TOKEN])
            .run()
            .expect(crate::EXIT_CLEAN);
    }

    /// Enrolls with the real `collector` through a one-time token `admin` issues; returns
    /// the hostname it enrolled under.
    #[track_caller]
    pub fn enroll_at(&self, collector: &crate::collector::Collector, admin: &str) -> String {
        let issued = collector
            .post(
                "/api/v1/enrollment-tokens",
                Some(admin),
                &serde_json::json!({}),
            )
            .expect(201);
        self.cli(["enroll", "--token", issued["token"].as_str().unwrap()])
            .run()
            .expect(0);
        collector.get("/api/v1/hosts", admin).expect(200)[0]["hostname"]
            .as_str()
            .expect("the host's name")
            .to_owned()
    }

    /// Starts `run` and waits (bounded) until it is ready.
    #[track_caller]
    pub fn start(&self) -> Daemon {
        self.start_with_env(&[])
    }

    /// Starts `run` with extra environment variables (e.g. libfaketime's) and waits.
    #[track_caller]
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        let daemon = Daemon::spawn_with_env(&self.config, self.host.state(), env);
        daemon.wait_ready();
        daemon
    }
}

/// A running `driftwatch-agent run`.
pub struct Daemon {
    child: Option<Child>,
    state: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon without waiting for it.
    pub fn spawn(config: &Path, state: &Path) -> Daemon {
        Daemon::spawn_with_env(config, state, &[])
    }

    /// Starts the daemon with extra environment variables, without waiting for it.
    pub fn spawn_with_env(config: &Path, state: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = unique(
            state
                .parent()
                .expect("state dir has a parent")
                .join("agent.log"),
        );
        let stderr = fs::File::create(&log).expect("create the agent log");
        let child = Command::new(agent_bin())
            .arg("--config")
            .arg(config)
            .arg("run")
            .env_remove("DRIFTWATCH_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env("DRIFTWATCH_LOG", "info,driftwatch_agent=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", agent_bin().display()));
        Daemon {
            child: Some(child),
            state: state.to_owned(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `status.json`, if written by this process.
    pub fn status(&self) -> Option<Value> {
        let text = fs::read_to_string(self.state.join("status.json")).ok()?;
        let status: Value = serde_json::from_str(&text).ok()?;
        (status["pid"] == self.pid()).then_some(status)
    }

    /// Waits (bounded) until the daemon says it is ready; fails the test otherwise.
    #[track_caller]
    pub fn wait_ready(&self) -> Value {
        let mut status = None;
        let ready = wait_until(Duration::from_secs(60), || {
            status = self.status().filter(|s| s["ready"] == true);
            status.is_some() || self.exited()
        });
        assert!(
            ready && status.is_some(),
            "the agent did not become ready:\n{}",
            self.log()
        );
        status.unwrap()
    }

    /// Waits (bounded) until `condition` holds for the status file.
    #[track_caller]
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = None;
        let ok = wait_until(timeout, || {
            last = self.status();
            last.as_ref().is_some_and(&condition)
        });
        assert!(
            ok,
            "timed out waiting for {what}; last status: {last:#?}\nlog:\n{}",
            self.log()
        );
        last.unwrap()
    }

    fn exited(&self) -> bool {
        // try_wait needs &mut; a dead child has no /proc entry state other than zombie.
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        stat.is_empty() || stat.contains(") Z ")
    }

    /// Sends a signal by name (`TERM`, `HUP`, `KILL`...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// SIGKILL, and reaps the process.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (bounded) for the process to exit.
    #[track_caller]
    pub fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the agent") {
                return (status, self.log());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the agent did not exit within {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and a clean exit (code 0), bounded.
    #[track_caller]
    pub fn stop(self) -> String {
        self.signal("TERM");
        let (status, log) = self.wait_exit(Duration::from_secs(30));
        assert_eq!(status.code(), Some(0), "unclean stop ({status}):\n{log}");
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn unique(path: PathBuf) -> PathBuf {
    if !path.exists() {
        return path;
    }
    let mut n = 1;
    loop {
        let mut candidate = path.clone().into_os_string();
        candidate.push(format!(".{n}"));
        let candidate = PathBuf::from(candidate);
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}
