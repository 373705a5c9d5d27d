//! The live drift stream (issue 11): `GET /api/v1/drift/stream` and `driftctl watch`
//! against the real collector, with the real agent or a fake one reporting.
//!
//! Streams are read over raw HTTP/1.0 (the body is then the event stream itself, not
//! chunked) with a small parser of its own, so these tests do not trust the collector's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftwatch_tests::collector::{Collector, FakeAgent, driftctl_bin, isolate_driftctl};
use driftwatch_tests::daemon::{DaemonHost, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A quick heartbeat, so the tests see one within a second or two.
const QUICK: &str = "[limits]\nstream_heartbeat_secs = 1\n";

/// One parsed event: its type, id and data.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: Option<String>,
    data: String,
}

/// A raw stream: the answer's head, then events as they come.
struct Stream {
    status: u16,
    head: String,
    reader: BufReader<TcpStream>,
    comments: usize,
}

impl Stream {
    #[track_caller]
    fn open(addr: SocketAddr, token: Option<&str>, last_event_id: Option<&str>) -> Stream {
        let mut socket = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = format!(
            "GET /api/v1/drift/stream HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n"
        );
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        socket.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(socket);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "no answer: {head}"
            );
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Stream {
            status,
            head,
            reader,
            comments: 0,
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    fn body(mut self) -> String {
        let mut body = String::new();
        let _ = self.reader.read_to_string(&mut body);
        body
    }

    /// The next event, `None` at the end of the stream. Panics after the read timeout.
    #[track_caller]
    fn next(&mut self) -> Option<Sse> {
        let mut event = Sse {
            event: "message".into(),
            id: None,
            data: String::new(),
        };
        let mut has_data = false;
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(err) => panic!("no event within the read timeout: {err}"),
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if has_data {
                    return Some(event);
                }
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = value.into(),
                "id" => event.id = Some(value.into()),
                "data" => {
                    has_data = true;
                    event.data.push_str(value);
                }
                _ => {}
            }
        }
    }

    /// The next event that is not `ready`.
    #[track_caller]
    fn next_change(&mut self) -> Option<Sse> {
        loop {
            let event = self.next()?;
            if event.event != "ready" {
                return Some(event);
            }
        }
    }

    /// Reads for `how_long`; returns the events (heartbeats are counted, not returned).
    fn read_for(&mut self, how_long: Duration) -> Vec<Sse> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let until = Instant::now() + how_long;
        let mut events = Vec::new();
        let mut pending = String::new();
        while Instant::now() < until {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => pending.push_str(&line),
                Err(_) => continue,
            }
            if line.trim_end().is_empty() && pending.contains("data:") {
                let mut again = Stream::parse_block(&pending);
                events.append(&mut again);
                pending.clear();
            } else if line.starts_with(':') {
                self.comments += 1;
                pending.clear();
            }
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        events
    }

    fn parse_block(block: &str) -> Vec<Sse> {
        let mut event = Sse {
            event: "message".into(),
            id: None,
            data: String::new(),
        };
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = value.into(),
                "id" => event.id = Some(value.into()),
                "data" => event.data.push_str(value),
                _ => {}
            }
        }
        vec![event]
    }
}

fn data(event: &Sse) -> Value {
    serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("{e}: {event:?}"))
}

/// The value of a metric line `name value` in `/metrics`.
fn metric(collector: &Collector, token: &str, name: &str) -> Option<f64> {
    let answer = collector.get("/metrics", token);
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body.lines().find_map(|line| {
        let (n, v) = line.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

/// `driftctl watch` running, its output collected as it comes.
struct Watch {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    fn start(collector: &Collector, token: &str, args: &[&str]) -> Watch {
        let mut cmd = Command::new(driftctl_bin());
        cmd.arg("--url")
            .arg(collector.url())
            .arg("watch")
            .args(args)
            .env("DRIFTWATCH_TOKEN", token)
            .env_remove("DRIFTWATCH_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        isolate_driftctl(&mut cmd, collector.dir());
        let mut child = cmd.spawn().expect("start driftctl watch");
        let collect = |pipe: Box<dyn Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Watch {
            child,
            stdout,
            stderr,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn errors(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits for a line holding every fragment; returns it.
    #[track_caller]
    fn wait_for(&self, fragments: &[&str]) -> String {
        let mut found = None;
        wait_until(WAIT, || {
            found = self
                .lines()
                .into_iter()
                .find(|line| fragments.iter().all(|f| line.contains(f)));
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "no line with {fragments:?} in watch's output:\n{}\nstderr:\n{}",
                self.lines().join("\n"),
                self.errors()
            )
        })
    }

    /// SIGINT, then a bounded wait; returns the exit code.
    #[track_caller]
    fn interrupt(mut self) -> Option<i32> {
        let status = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("driftctl watch did not end on SIGINT:\n{}", self.errors());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_shows_a_change_under_the_agent_and_resumes_exactly_once_after_a_restart() {
    let mut collector = Collector::start(QUICK);
    let admin = collector.token("admin", "root");
    let security = collector.token("security", "sam");
    let host = DaemonHost::new(Some(&collector.url()), "");
    host.init();
    let hostname = host.enroll_at(&collector, &admin);
    let daemon = host.start();

    let watch = Watch::start(&collector, &security, &["--stall-secs", "5"]);
    assert!(
        wait_until(WAIT, || metric(
            &collector,
            &admin,
            "driftwatch_live_streams"
        ) == Some(1.0)),
        "watch's stream is counted open:\n{}",
        watch.errors()
    );
    let changed = host.host.tree().join("etc/app.conf");
    std::fs::write(&changed, "port = 8080\n").unwrap();
    let line = watch.wait_for(&["etc/app.conf", "untraced"]);
    assert!(line.contains(&hostname), "{line}");
    assert!(line.starts_with("20"), "starts with the time: {line}");

    // The collector goes away with watch's stream open: it stops promptly and cleanly.
    let started = Instant::now();
    let (code, log) = collector.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the open stream held the shutdown for {:?}",
        started.elapsed()
    );
    // Made while the collector is down: the agent spools it and delivers it later.
    let meanwhile = host.host.tree().join("etc/sub/other.conf");
    std::fs::write(&meanwhile, "x = 2\n").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    collector.restart_same_port();
    watch.wait_for(&["etc/sub/other.conf", "untraced"]);
    // One more change after it, so any duplicate of the earlier ones would be out by now.
    std::fs::write(host.host.tree().join("bin/tool"), "#!/bin/sh\nexit 1\n").unwrap();
    watch.wait_for(&["bin/tool", "untraced"]);
    let lines = watch.lines();
    for subject in ["etc/app.conf", "etc/sub/other.conf", "bin/tool"] {
        let shown = lines.iter().filter(|l| l.contains(subject)).count();
        assert_eq!(shown, 1, "{subject} exactly once:\n{}", lines.join("\n"));
    }
    assert!(
        watch.errors().contains("reconnecting"),
        "it said it reconnects: {}",
        watch.errors()
    );
    assert_eq!(watch.interrupt(), Some(0), "Ctrl-C ends watch cleanly");
    daemon.stop();
}

#[test]
fn a_stream_resumes_after_its_last_event_id_across_a_restart() {
    let mut collector = Collector::start(QUICK);
    let admin = collector.token("admin", "root");
    let security = collector.token("security", "sam");
    let agent = FakeAgent::enroll(&collector, &admin, "web-1");

    let mut first = Stream::open(collector.addr, Some(&security), None);
    assert_eq!(first.status, 200, "{}", first.head);
    assert!(
        first
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(first.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(first.header("x-accel-buffering").as_deref(), Some("no"));
    let ready = first.next().unwrap();
    assert_eq!(ready.event, "ready");
    let start = ready.id.clone().expect("ready carries the cursor");

    agent
        .report(&collector, &[agent.event("package:a", "1")])
        .expect(200);
    let a = first.next_change().unwrap();
    assert_eq!(a.event, "drift");
    let body = data(&a);
    assert_eq!(body["subject"], "package:a");
    assert_eq!(body["hostname"], "web-1");
    assert_eq!(body["kind"], "opened");
    assert_eq!(body["untraced"], true);
    let a_id = a.id.clone().unwrap();
    assert_eq!(body["seq"].to_string(), a_id);
    // Heartbeats while nothing happens.
    let quiet = first.read_for(Duration::from_millis(2500));
    assert!(quiet.is_empty(), "{quiet:?}");
    assert!(first.comments >= 1, "a heartbeat comment every second");
    drop(first);

    // Made while no stream is open, then the collector restarts (a new process).
    agent
        .report(&collector, &[agent.event("package:b", "1")])
        .expect(200);
    collector.restart();

    // From before `a`: a, then b, nothing else.
    let mut again = Stream::open(collector.addr, Some(&security), Some(&start));
    let got: Vec<String> = (0..2)
        .map(|_| {
            data(&again.next().unwrap())["subject"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(got, ["package:a", "package:b"]);
    assert!(again.read_for(Duration::from_millis(1500)).is_empty());
    drop(again);

    // From `a`: only b, exactly once.
    let mut resumed = Stream::open(collector.addr, Some(&security), Some(&a_id));
    let b = resumed.next().unwrap();
    assert_eq!(data(&b)["subject"], "package:b");
    let more = resumed.read_for(Duration::from_millis(1500));
    assert!(more.is_empty(), "nothing after b: {more:?}");

    // A resolution is a change too.
    let drift_id = data(&b)["drift_id"].as_str().unwrap().to_owned();
    collector
        .post(
            &format!("/api/v1/drift/{drift_id}/resolve"),
            Some(&security),
            &serde_json::json!({"category": "false_positive", "comment": "test"}),
        )
        .expect(200);
    let resolved = resumed.next().unwrap();
    let body = data(&resolved);
    assert_eq!(
        (body["kind"].as_str(), body["by"].as_str()),
        (Some("resolved"), Some("sam"))
    );

    // A cursor this database never gave out: a reset to the head, then live.
    let mut future = Stream::open(collector.addr, Some(&security), Some("999999"));
    let reset = future.next().unwrap();
    assert_eq!(reset.event, "reset");
    assert_eq!(data(&reset)["reason"], "unknown_cursor");
    assert_eq!(reset.id.as_deref(), Some(body["seq"].to_string().as_str()));
}

#[test]
fn only_roles_that_may_list_drift_may_follow_it() {
    let collector = Collector::start("");
    let metrics = collector.token("metrics", "prometheus");
    let auditor = collector.token("auditor", "aud");

    let refused = Stream::open(collector.addr, Some(&metrics), None);
    assert_eq!(refused.status, 403);
    assert!(refused.body().contains("forbidden"));
    let anonymous = Stream::open(collector.addr, None, None);
    assert_eq!(anonymous.status, 401);
    let garbage = Stream::open(collector.addr, Some(&auditor), Some("1; DROP TABLE"));
    assert_eq!(garbage.status, 400);
    assert!(garbage.body().contains("Last-Event-ID"));
    let allowed = Stream::open(collector.addr, Some(&auditor), None);
    assert_eq!(allowed.status, 200);

    let run = collector.driftctl(&metrics, &["watch"]);
    assert_eq!(run.code(), 83, "{}", run.stderr);
    assert!(run.stderr.contains("403"), "{}", run.stderr);
}

#[test]
fn beyond_max_streams_the_answer_is_503_with_retry_after() {
    let collector = Collector::start("[limits]\nmax_streams = 2\nstream_heartbeat_secs = 1\n");
    let admin = collector.token("admin", "root");
    let security = collector.token("security", "sam");
    let one = Stream::open(collector.addr, Some(&security), None);
    let two = Stream::open(collector.addr, Some(&security), None);
    assert_eq!((one.status, two.status), (200, 200));
    let full = Stream::open(collector.addr, Some(&security), None);
    assert_eq!(full.status, 503);
    assert!(full.header("retry-after").is_some(), "{}", full.head);
    assert!(full.body().contains("max_streams"));
    assert_eq!(
        metric(&collector, &admin, "driftwatch_live_streams"),
        Some(2.0)
    );

    drop(one);
    // The closed stream gives its slot back (noticed at its next write: a heartbeat).
    let mut reopened = None;
    assert!(wait_until(WAIT, || {
        let stream = Stream::open(collector.addr, Some(&security), None);
        let ok = stream.status == 200;
        reopened = Some(stream);
        ok
    }));
    drop(reopened);
    drop(two);
}

#[test]
fn shutdown_with_open_streams_says_bye_and_exits_promptly() {
    let mut collector = Collector::start("");
    let security = collector.token("security", "sam");
    let mut streams: Vec<Stream> = (0..3)
        .map(|_| Stream::open(collector.addr, Some(&security), None))
        .collect();
    for stream in &mut streams {
        assert_eq!(stream.status, 200);
        assert_eq!(stream.next().unwrap().event, "ready");
    }
    let started = Instant::now();
    let (code, log) = collector.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} with open streams",
        started.elapsed()
    );
    for mut stream in streams {
        assert_eq!(stream.next().unwrap().event, "bye");
        assert!(stream.next().is_none(), "then the stream ends");
    }
}

#[test]
fn watch_prints_hostile_subjects_without_terminal_controls() {
    let collector = Collector::start(QUICK);
    let admin = collector.token("admin", "root");
    let security = collector.token("security", "sam");
    let agent = FakeAgent::enroll(&collector, &admin, "web-1");
    let text = Watch::start(&collector, &security, &[]);
    let json = Watch::start(&collector, &security, &["--json"]);
    assert!(wait_until(WAIT, || metric(
        &collector,
        &admin,
        "driftwatch_live_streams"
    ) == Some(2.0)));
    let hostile = "package:\u{1b}]0;pwned\u{7}\u{202e}evil\nFAKE LINE";
    agent
        .report(&collector, &[agent.event(hostile, "1")])
        .expect(200);
    let line = text.wait_for(&["pwned"]);
    assert!(
        !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{line:?}"
    );
    assert!(line.contains("\\x1b]0;pwned\\x07"), "{line}");
    assert!(
        text.lines().iter().all(|l| !l.starts_with("FAKE LINE")),
        "no forged line"
    );
    let line = json.wait_for(&["pwned"]);
    assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    let view: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(view["subject"], hostile, "JSON keeps the exact string");
}
