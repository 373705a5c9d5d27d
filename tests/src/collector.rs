//! Harness for the collector's end-to-end tests.
//!
//! - [`Collector`]: the real `driftwatch-collector serve` on `127.0.0.1:0` (plain HTTP),
//!   its state, configuration, alert file and log in a temp dir; the chosen address comes
//!   from `--port-file`, readiness from `/readyz`. Killed on drop; [`Collector::stop`] is a
//!   SIGTERM and a bounded wait for a clean exit.
//! - [`Collector::cli`] and [`Collector::driftctl`]: the two CLIs, as finished [`Run`]s.
//! - [`http`]: a small HTTP/1.1 client over `std::net` (one request per connection), so
//!   tests can send exactly the bytes they mean, including bad ones.
//! - [`FakeAgent`]: an enrolled host that reports chained events through the API, for
//!   tests about the collector alone.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use driftwatch_common::api::v1::{ChangeKind, DriftEvent, SeenBy, SubjectKey, SubjectState};
use driftwatch_common::chain_key::ChainKey;
use driftwatch_common::hash::ContentHash;
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

use crate::daemon::wait_until;
use crate::{Run, p, shell_words};

/// A binary of the workspace: `$ENV`, else `target/<profile>/<name>` above this test executable.
fn workspace_bin(name: &str, env: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "{env}={} is not a file", bin.display());
        return bin;
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found above {}: run `cargo build --workspace --bins` first (or set {env})",
                exe.display()
            )
        })
}

pub fn collector_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("driftwatch-collector", "DRIFTWATCH_COLLECTOR_BIN"))
}

pub fn driftctl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("driftctl", "DRIFTCTL_BIN"))
}

/// Keeps a driftctl run from the settings of whoever runs the tests: no config file but
/// one the test writes under `config_home`, no token file or CA from the environment.
pub fn isolate_driftctl(cmd: &mut Command, config_home: &Path) {
    cmd.env("XDG_CONFIG_HOME", config_home)
        .env_remove("DRIFTWATCH_CTL_CONFIG")
        .env_remove("DRIFTWATCH_TOKEN_FILE")
        .env_remove("DRIFTWATCH_CA_CERT");
}

/// Runs a command to completion with a bound, capturing its output.
#[track_caller]
pub fn run(mut cmd: Command, timeout: Duration) -> Run {
    let mut argv = vec![cmd.get_program().to_owned()];
    argv.extend(cmd.get_args().map(ToOwned::to_owned));
    let command = shell_words(&argv);
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
    let pid = output.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout).is_err() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    });
    let output = output.wait_with_output().expect("wait for the command");
    let _ = done_tx.send(());
    Run {
        command,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A running collector and its files.
pub struct Collector {
    dir: TempDir,
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Served over TLS: readiness is the port file, not a plain `/readyz`.
    tls: bool,
    /// Most file descriptors the process may open (`prlimit`), if limited.
    fd_limit: Option<u64>,
    /// Extra environment of the process (e.g. libfaketime's), from `restart_with_env`.
    env: Vec<(String, String)>,
    /// Listen on `addr` again at the next start (`restart_same_port`), not on a new port.
    keep_port: bool,
}

impl Collector {
    /// Starts with a quick configuration (`hold_secs = 1`) plus `extra` TOML keys.
    #[track_caller]
    pub fn start(extra: &str) -> Collector {
        Collector::start_configured("plain_http = true\n", extra, None)
    }

    /// Starts over TLS: `tls` is the `[tls]` table's keys (cert, key, client_ca...).
    #[track_caller]
    pub fn start_tls(tls: &str, extra: &str) -> Collector {
        Collector::start_configured(&format!("[tls]\n{tls}\n"), extra, None)
    }

    /// Starts with at most `fd_limit` open file descriptors (soft and hard).
    #[track_caller]
    pub fn start_with_fd_limit(extra: &str, fd_limit: u64) -> Collector {
        Collector::start_configured("plain_http = true\n", extra, Some(fd_limit))
    }

    #[track_caller]
    fn start_configured(transport: &str, extra: &str, fd_limit: Option<u64>) -> Collector {
        let dir = tempfile::Builder::new()
            .prefix("driftwatch-collector-e2e-")
            .tempdir()
            .expect("create a temp dir");
        let tls = transport.starts_with("[tls]");
        // Top-level keys first: a [tls] table would take them as its own.
        let (head, tail) = if tls {
            (String::new(), transport.to_owned())
        } else {
            (transport.to_owned(), String::new())
        };
        let config = format!(
            "{head}state_dir = \"{}\"\nhold_secs = 1\nburst_secs = 5\n{tail}{extra}\n\
             [[alert]]\ntype = \"jsonl\"\npath = \"{}\"\n",
            p(&dir.path().join("state")),
            p(&dir.path().join("alerts.jsonl")),
        );
        fs::write(dir.path().join("collector.toml"), config).expect("write collector.toml");
        let mut collector = Collector {
            dir,
            child: None,
            addr: "127.0.0.1:0".parse().expect("an address"),
            tls,
            fd_limit,
            env: Vec::new(),
            keep_port: false,
        };
        collector.spawn();
        collector
    }

    /// Starts the process on the existing files and waits until it is ready.
    #[track_caller]
    fn spawn(&mut self) {
        let port_file = self.dir.path().join("port");
        let _ = fs::remove_file(&port_file);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the collector log");
        let mut command = match self.fd_limit {
            None => Command::new(collector_bin()),
            Some(limit) => {
                let mut prlimit = Command::new("prlimit");
                prlimit
                    .arg(format!("--nofile={limit}:{limit}"))
                    .arg("--")
                    .arg(collector_bin());
                prlimit
            }
        };
        let listen = if self.keep_port {
            self.addr.to_string()
        } else {
            "127.0.0.1:0".to_owned()
        };
        let child = command
            .arg("--config")
            .arg(self.config())
            .args(["serve", "--listen", &listen, "--port-file"])
            .arg(&port_file)
            .env("DRIFTWATCH_LOG", "info,driftwatch_collector=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", collector_bin().display()));
        self.child = Some(child);
        let mut addr = None;
        let up = wait_until(Duration::from_secs(60), || {
            addr = fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.trim().parse().ok());
            addr.is_some() || self.exited()
        });
        assert!(
            up && addr.is_some(),
            "the collector did not start:\n{}",
            self.log()
        );
        self.addr = addr.expect("checked");
        let ready = wait_until(Duration::from_secs(30), || {
            if self.tls {
                TcpStream::connect(self.addr).is_ok()
            } else {
                http::get(self.addr, "/readyz", None).status == 200
            }
        });
        assert!(ready, "the collector is not ready:\n{}", self.log());
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("collector.toml")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("state/collector.db")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("collector.log")
    }

    /// The collector's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The alerts the JSON-lines sink received.
    pub fn alerts(&self) -> Vec<Value> {
        fs::read_to_string(self.dir.path().join("alerts.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect()
    }

    /// `driftwatch-collector --config <this config> ARGS`.
    #[track_caller]
    pub fn cli(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(collector_bin());
        cmd.arg("--config").arg(self.config()).args(args);
        cmd.env("DRIFTWATCH_LOG", "warn");
        run(cmd, Duration::from_secs(60))
    }

    /// A token for the person `name` made offline with `token create`.
    #[track_caller]
    pub fn token(&self, role: &str, name: &str) -> String {
        let run = self.cli(&["token", "create", "--role", role, "--person", name]);
        run.expect(0);
        run.stdout.trim().to_owned()
    }

    /// `driftctl --url <this collector> ARGS` with `DRIFTWATCH_TOKEN=token`.
    #[track_caller]
    pub fn driftctl(&self, token: &str, args: &[&str]) -> Run {
        let mut cmd = Command::new(driftctl_bin());
        cmd.arg("--url")
            .arg(self.url())
            .args(args)
            .env("DRIFTWATCH_TOKEN", token)
            .env_remove("DRIFTWATCH_URL");
        isolate_driftctl(&mut cmd, self.dir.path());
        run(cmd, Duration::from_secs(60))
    }

    /// Sends a signal by name (`TERM`, `INT`...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// SIGTERM, then a bounded wait for the exit; returns the exit code and the log.
    #[track_caller]
    pub fn stop(&mut self) -> (Option<i32>, String) {
        self.stop_with("TERM")
    }

    /// Sends `signal`, then waits (bounded) for the exit; returns the exit code and the log.
    #[track_caller]
    pub fn stop_with(&mut self, signal: &str) -> (Option<i32>, String) {
        self.signal(signal);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for the collector") {
                return (status.code(), self.log());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the collector did not stop within 30 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same state (a new port).
    #[track_caller]
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let (code, log) = self.stop();
            assert_eq!(code, Some(0), "unclean stop:\n{log}");
        }
        self.spawn();
    }

    /// Starts again on the same state and the same port, so clients and agents that know
    /// its URL reconnect (the live stream's tests).
    #[track_caller]
    pub fn restart_same_port(&mut self) {
        self.keep_port = true;
        self.restart();
    }

    /// Starts again on the same state with `env` added to the process's environment
    /// (kept for later restarts).
    #[track_caller]
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.restart();
    }

    pub fn get(&self, path: &str, token: &str) -> http::Response {
        http::get(self.addr, path, Some(token))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> http::Response {
        http::request(
            self.addr,
            "POST",
            path,
            token,
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    }
}

/// An enrolled host that reports like an agent: its events chained by `seq` and
/// `prev_hash`, so the collector's chain checks see a well-behaved agent.
pub struct FakeAgent {
    pub id: Uuid,
    pub credential: String,
    seq: Cell<u64>,
    prev: Cell<ContentHash>,
    /// The chain key of seq 1 issued at enrollment (`None` from a collector without keys).
    pub chain_key: Option<ChainKey>,
}

impl FakeAgent {
    /// Enrolls `hostname` with a fresh enrollment token issued by `admin`.
    #[track_caller]
    pub fn enroll(collector: &Collector, admin: &str, hostname: &str) -> FakeAgent {
        FakeAgent::enroll_with(collector, admin, json!({ "hostname": hostname }))
    }

    /// Enrolls with `fields` (hostname, labels...) added to the enrollment request.
    #[track_caller]
    pub fn enroll_with(collector: &Collector, admin: &str, fields: Value) -> FakeAgent {
        let issued = collector
            .post("/api/v1/enrollment-tokens", Some(admin), &json!({}))
            .expect(201);
        let mut request = json!({ "token": issued["token"], "agent_version": "e2e" });
        for (key, value) in fields.as_object().expect("an object of request fields") {
            request[key] = value.clone();
        }
        let answer = collector.post("/api/v1/enroll", None, &request).expect(200);
        FakeAgent {
            id: answer["host_id"].as_str().unwrap().parse().unwrap(),
            credential: answer["credential"].as_str().unwrap().to_owned(),
            seq: Cell::new(0),
            prev: Cell::new(DriftEvent::GENESIS),
            chain_key: serde_json::from_value(answer["chain_key"].clone())
                .expect("a chain key or none"),
        }
    }

    /// The next event: `subject` now has `version`, seen by the watch just now.
    pub fn event(&self, subject: &str, version: &str) -> DriftEvent {
        self.event_at(subject, version, time::OffsetDateTime::now_utc())
    }

    /// The next event, claiming it was observed at `observed_at` (agent clock).
    pub fn event_at(
        &self,
        subject: &str,
        version: &str,
        observed_at: time::OffsetDateTime,
    ) -> DriftEvent {
        self.chain(DriftEvent {
            id: Uuid::now_v7(),
            host_id: self.id,
            seq: 0,
            prev_hash: DriftEvent::GENESIS,
            subject: SubjectKey(subject.to_owned()),
            kind: ChangeKind::Content,
            changed: vec!["version".into()],
            before: None,
            after: Some(version_state(version)),
            diff: None,
            summary: None,
            actor: None,
            seen_by: SeenBy::Watch,
            observed_at,
            provenance: None,
            related: None,
            mac: None,
        })
    }

    /// A heartbeat reporting `last_seq` as the last event spooled, with an agent clock of
    /// now; returns the collector's answer.
    pub fn heartbeat(&self, collector: &Collector, last_seq: u64) -> http::Response {
        let sent_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("now formats");
        collector.post(
            "/api/v1/heartbeat",
            Some(&self.credential),
            &json!({
                "host_id": self.id, "sent_at": sent_at,
                "inventory": {"hostname": "fake", "os": "Debian 12", "kernel": "6.1",
                              "uptime_secs": 5, "cpus": 2, "memory_bytes": 1},
                "health": {"agent_version": "e2e", "cpu_percent": 0.5, "rss_bytes": 1,
                           "spool_depth": 0, "spool_full": false, "baseline_entries": 10,
                           "baseline_tampered": false,
                           "coverage": {"dropped_event_batches": 0, "unreadable": 0,
                                        "attribution_unavailable": null}},
                "last_seq": last_seq,
            }),
        )
    }

    /// `event` as this agent's next one: its host id, sequence number and chain link, and
    /// its MAC with the chain key of its number.
    pub fn chain(&self, mut event: DriftEvent) -> DriftEvent {
        self.seq.set(self.seq.get() + 1);
        event.host_id = self.id;
        event.seq = self.seq.get();
        event.prev_hash = self.prev.get();
        self.seal(&mut event);
        self.prev.set(event.chain_hash());
        event
    }

    /// (Re)computes `event`'s MAC with the key of its `seq`, as the real agent does.
    pub fn seal(&self, event: &mut DriftEvent) {
        match &self.chain_key {
            // Beyond a million the derivation is too long for a test (and such a number is
            // refused before any MAC is looked at): any key will do.
            Some(first) if event.seq > 1 << 20 => {
                event.seal(first);
            }
            Some(first) => {
                event.seal(&first.forward(event.seq - 1));
            }
            None => event.mac = None,
        }
    }

    /// Skips sequence numbers: the next event made is `seq`.
    pub fn jump_to(&self, seq: u64, prev: ContentHash) {
        self.seq.set(seq - 1);
        self.prev.set(prev);
    }

    /// The sequence number of the last event made.
    pub fn last_seq(&self) -> u64 {
        self.seq.get()
    }

    /// Posts `events` as this agent.
    pub fn report(&self, collector: &Collector, events: &[DriftEvent]) -> http::Response {
        collector.post(
            "/api/v1/events",
            Some(&self.credential),
            &json!({ "events": events }),
        )
    }
}

/// A state subject's fields: `{"version": version}`.
pub fn version_state(version: &str) -> SubjectState {
    SubjectState::Fields {
        fields: BTreeMap::from([("version".to_owned(), version.to_owned())]),
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub mod http {
    //! One HTTP/1.1 request per connection, `Connection: close`, bounded in time.

    use super::*;

    #[derive(Debug)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Response {
        #[track_caller]
        pub fn json(&self) -> Value {
            serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
        }

        /// Asserts the status and, for errors, the stable code; returns the JSON body.
        #[track_caller]
        pub fn expect(&self, status: u16) -> Value {
            assert_eq!(self.status, status, "{}", self.body);
            self.json()
        }

        /// Asserts an error answer: status, `error.code`, and a fragment of `error.message`.
        #[track_caller]
        pub fn error(&self, status: u16, code: &str, fragment: &str) {
            let body = self.expect(status);
            assert_eq!(body["error"]["code"], code, "{body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
        }

        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    pub fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Response {
        request(addr, "GET", path, token, &[], b"")
    }

    #[track_caller]
    pub fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        send(stream, addr, method, path, token, headers, body)
    }

    /// [`request`] from the local address `source` (any of 127.0.0.0/8 on loopback), so
    /// that one test can play several clients.
    #[track_caller]
    pub fn request_from(
        source: std::net::IpAddr,
        addr: SocketAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Response {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let stream = runtime
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(source, 0))?;
                tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
            })
            .and_then(|stream| stream.into_std())
            .unwrap_or_else(|e| panic!("connect to {addr} from {source}: {e}"));
        stream.set_nonblocking(false).expect("blocking socket");
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", "application/json")]
        };
        send(stream, addr, method, path, token, headers, body)
    }

    #[track_caller]
    fn send(
        mut stream: TcpStream,
        addr: SocketAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        // The server may answer (413) before reading everything: a failed write is not
        // the test's concern, the answer is.
        let _ = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body));
        let mut raw = Vec::new();
        if let Err(err) = stream.read_to_end(&mut raw)
            && raw.is_empty()
        {
            panic!("{method} {path}: no answer: {err}");
        }
        parse(&raw).unwrap_or_else(|| {
            panic!(
                "{method} {path}: not an HTTP answer: {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
    }

    fn parse(raw: &[u8]) -> Option<Response> {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..split]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        let chunked = headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        if chunked {
            body = dechunk(&body)?;
        }
        Some(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let line_end = data.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            data = &data[line_end + 2..];
            if size == 0 {
                return Some(out);
            }
            out.extend_from_slice(data.get(..size)?);
            data = data.get(size + 2..)?;
        }
    }
}
