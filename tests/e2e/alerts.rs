//! The collector's alert channels against real receivers on 127.0.0.1: a webhook that fails
//! before it accepts (retries with backoff, the other sink not held back, status through
//! the API and /metrics, the secret sent but never logged or audited), a webhook that is
//! down across a collector restart (Slack format), syslog over UDP and TCP (the RFC 5424 line,
//! its structured data naming the subjects), and a receiver that refuses one alert for good
//! (dead-lettered, the next delivered, retried or dropped by an admin, every request signed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftwatch_tests::collector::{Collector, FakeAgent};
use driftwatch_tests::daemon::wait_until;
use serde_json::Value;

const SECRET: &str = "hook-s3cret-e2e";

/// Enrolls `hostname` and reports one change nobody approved: an alert after the hold.
#[track_caller]
fn untraced_change(collector: &Collector, admin: &str, hostname: &str, subject: &str) {
    let agent = FakeAgent::enroll(collector, admin, hostname);
    agent
        .report(collector, &[agent.event(subject, "1")])
        .expect(200);
}

/// One request the webhook receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: Vec<(String, String)>,
    /// Exactly the bytes received (what a signature covers).
    raw: Vec<u8>,
    body: Value,
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decides the answer to a request: (request number, body) -> (status, answer body).
type Responder = Arc<dyn Fn(usize, &Value) -> (u16, String) + Send + Sync>;

/// An HTTP receiver on 127.0.0.1.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// Answers 503 to the first `failures` requests, then 200.
    fn start(failures: usize) -> Receiver {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap(), failures)
    }

    fn on(listener: TcpListener, failures: usize) -> Receiver {
        Self::answering(
            listener,
            Arc::new(move |seen, _| (if seen < failures { 503 } else { 200 }, String::new())),
        )
    }

    fn answering(listener: TcpListener, responder: Responder) -> Receiver {
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (Arc::clone(&got), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let seen = log.lock().unwrap().len();
                        if let Some(received) = read_request(stream, |body| responder(seen, body)) {
                            log.lock().unwrap().push(received);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { addr, got, stop }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads one request (headers, Content-Length body) and answers what `answer` decides.
fn read_request(
    stream: TcpStream,
    answer: impl FnOnce(&Value) -> (u16, String),
) -> Option<Received> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    assert!(line.starts_with("POST "), "not a POST: {line}");
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':')?;
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())?;
    let mut raw = vec![0; length];
    reader.read_exact(&mut raw).ok()?;
    let body: Value = serde_json::from_slice(&raw).ok()?;
    let (status, text) = answer(&body);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Service Unavailable",
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    Some(Received {
        headers,
        raw,
        body,
        answered: status,
    })
}

fn webhook_sink(dir: &std::path::Path, addr: SocketAddr, format: &str) -> String {
    let secret = dir.join("hook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    format!(
        "[[alert]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"http://{addr}/in/hook\"\n\
         format = \"{format}\"\nsecret_file = \"{}\"\nretry_max_secs = 2\ntimeout_secs = 5\n",
        secret.display()
    )
}

/// The alerts the API lists.
fn api_alerts(collector: &Collector, token: &str) -> Vec<Value> {
    collector
        .get("/api/v1/alerts", token)
        .expect(200)
        .as_array()
        .unwrap()
        .clone()
}

fn delivery<'a>(alert: &'a Value, sink: &str) -> &'a Value {
    alert["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["sink"] == sink)
        .unwrap_or_else(|| panic!("no delivery for {sink}: {alert:#}"))
}

#[test]
fn a_failing_webhook_is_retried_until_it_accepts_without_holding_back_the_other_sink() {
    let receiver = Receiver::start(2);
    // The secret file must exist before the start (it is read once, then).
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(&webhook_sink(dir.path(), receiver.addr, "json"));
    let admin = collector.token("admin", "root");
    untraced_change(&collector, &admin, "web-1", "user:mallory");

    // The file sink has it while the webhook still fails.
    let filed = wait_until(Duration::from_secs(30), || collector.alerts().len() == 1);
    assert!(filed, "no jsonl alert:\n{}", collector.log());
    let failing = wait_until(Duration::from_secs(30), || {
        api_alerts(&collector, &admin)
            .first()
            .is_some_and(|a| delivery(a, "hook")["state"] == "failing")
    });
    assert!(failing, "the webhook never failed:\n{}", collector.log());
    let alert = api_alerts(&collector, &admin)[0].clone();
    assert_eq!(delivery(&alert, "jsonl")["state"], "delivered", "{alert:#}");
    assert!(alert["delivered_at"].is_null(), "{alert:#}");
    let hook = delivery(&alert, "hook");
    assert!(
        hook["last_error"].as_str().unwrap().contains("HTTP 503"),
        "{hook:#}"
    );
    assert!(hook["next_attempt_at"].is_string(), "{hook:#}");

    // Third time lucky: delivered once, and never again.
    let delivered = wait_until(Duration::from_secs(30), || {
        api_alerts(&collector, &admin)[0]["delivered_at"].is_string()
    });
    assert!(delivered, "not delivered:\n{}", collector.log());
    let alert = api_alerts(&collector, &admin)[0].clone();
    let hook = delivery(&alert, "hook");
    assert_eq!(hook["state"], "delivered", "{alert:#}");
    assert_eq!(hook["attempts"], 3, "{alert:#}");
    assert!(hook["delivered_at"].is_string());
    assert!(hook["next_attempt_at"].is_null());
    assert_eq!(delivery(&alert, "jsonl")["attempts"], 1, "{alert:#}");
    std::thread::sleep(Duration::from_secs(3));
    let received = receiver.received();
    assert_eq!(
        received.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [503, 503, 200],
        "retried, then never sent again"
    );
    assert_eq!(collector.alerts().len(), 1, "the file sink wrote it once");

    // The generic payload: versioned, the alert as the API shows it; the secret as a bearer.
    let last = &received[2];
    assert_eq!(last.body["version"], 1);
    assert_eq!(last.body["alert"]["id"], alert["id"]);
    assert_eq!(last.body["alert"]["kind"], "untraced_drift");
    assert_eq!(
        last.body["alert"]["body"]["items"][0]["subject"],
        "user:mallory"
    );
    assert!(
        last.headers
            .contains(&("authorization".into(), format!("Bearer {SECRET}"))),
        "{:?}",
        last.headers
    );

    // Metrics per sink.
    let metrics = driftwatch_tests::collector::http::get(collector.addr, "/metrics", Some(&admin));
    let line = |needle: &[&str]| {
        metrics
            .body
            .lines()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
    };
    let failed = line(&[
        "driftwatch_alert_deliveries_total{",
        "sink=\"hook\"",
        "outcome=\"failed\"",
    ]);
    assert!(
        failed.as_deref().is_some_and(|l| l.ends_with(" 2")),
        "{}",
        metrics.body
    );
    let ok = line(&[
        "driftwatch_alert_deliveries_total{",
        "sink=\"jsonl\"",
        "outcome=\"delivered\"",
    ]);
    assert!(
        ok.as_deref().is_some_and(|l| l.ends_with(" 1")),
        "{}",
        metrics.body
    );
    let pending = line(&["driftwatch_alert_deliveries_pending{", "sink=\"hook\""]);
    assert!(
        pending.as_deref().is_some_and(|l| l.ends_with(" 0")),
        "{}",
        metrics.body
    );

    // The configuration of the sinks is audited with a digest, and the secret is nowhere.
    let audit = collector.get("/api/v1/audit", &admin).expect(200);
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "config.alert_sinks")
        .unwrap_or_else(|| panic!("no sink audit entry: {audit:#}"));
    assert_eq!(entry["details"]["digest"].as_str().unwrap().len(), 64);
    let sinks = entry["details"]["sinks"].to_string();
    assert!(
        sinks.contains("\"name\":\"hook\"") && sinks.contains("hook.secret"),
        "{sinks}"
    );
    assert!(
        !sinks.contains("/in/hook"),
        "the URL's path stays out: {sinks}"
    );
    assert!(!audit.to_string().contains(SECRET));
    assert!(!collector.log().contains(SECRET), "the secret was logged");
}

#[test]
fn a_webhook_down_across_a_restart_gets_the_alert_once_it_is_back() {
    // A port with nothing behind it (yet).
    let parked = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = parked.local_addr().unwrap();
    drop(parked);
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(&webhook_sink(dir.path(), addr, "slack"));
    let admin = collector.token("admin", "root");
    untraced_change(&collector, &admin, "db-1", "package:netcat");
    let failing = wait_until(Duration::from_secs(30), || {
        api_alerts(&collector, &admin)
            .first()
            .is_some_and(|a| delivery(a, "hook")["attempts"].as_u64() >= Some(1))
    });
    assert!(failing, "no failed attempt:\n{}", collector.log());
    let alert = api_alerts(&collector, &admin)[0].clone();
    assert!(
        delivery(&alert, "hook")["last_error"]
            .as_str()
            .unwrap()
            .contains("POST to http://"),
        "{alert:#}"
    );
    assert_eq!(collector.alerts().len(), 1);
    // People see which sink holds it back, and why.
    collector
        .driftctl(&admin, &["alerts"])
        .expect(0)
        .stdout_has("untraced change on db-1: package:netcat")
        .stdout_has("NOT DELIVERED: hook failing (")
        .stdout_has("attempts: POST to http://127.0.0.1:")
        .stdout_has("), jsonl delivered");

    // The collector stops with the alert undelivered; the receiver comes up; restart.
    let (code, log) = collector.stop();
    assert_eq!(code, Some(0), "{log}");
    let receiver = Receiver::on(TcpListener::bind(addr).expect("the port is free again"), 0);
    collector.restart();
    let delivered = wait_until(Duration::from_secs(30), || !receiver.received().is_empty());
    assert!(
        delivered,
        "not delivered after the restart:\n{}",
        collector.log()
    );
    // A Slack-compatible message: the summary as text, the subjects in the blocks.
    let got = receiver.received();
    assert_eq!(
        got[0].body["text"],
        "driftwatch: untraced change on db-1: package:netcat"
    );
    let blocks = got[0].body["blocks"].to_string();
    assert!(blocks.contains("*Host:* db-1"), "{blocks}");
    assert!(blocks.contains("• `package:netcat`"), "{blocks}");
    assert!(blocks.contains(alert["id"].as_str().unwrap()), "{blocks}");
    let done = wait_until(Duration::from_secs(10), || {
        api_alerts(&collector, &admin)[0]["delivered_at"].is_string()
    });
    assert!(done);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.received().len(), 1, "sent once");
    assert_eq!(
        collector.alerts().len(),
        1,
        "the file sink did not send it again"
    );
}

#[test]
fn syslog_sinks_send_rfc5424_over_udp_and_octet_counted_tcp() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let collector = Collector::start(&format!(
        "[[alert]]\ntype = \"syslog\"\nname = \"udp\"\naddress = \"{}\"\nfacility = \"local3\"\n\
         [[alert]]\ntype = \"syslog\"\nname = \"tcp\"\naddress = \"{}\"\nprotocol = \"tcp\"\n\
         app_name = \"dw-e2e\"\n",
        udp.local_addr().unwrap(),
        tcp.local_addr().unwrap(),
    ));
    let admin = collector.token("admin", "root");
    untraced_change(&collector, &admin, "web-\"7\"", "user:mallory");

    let mut datagram = vec![0; 4096];
    let (n, _) = udp
        .recv_from(&mut datagram)
        .expect("a datagram within 30 s");
    let line = String::from_utf8(datagram[..n].to_vec()).unwrap();
    let alerts = api_alerts(&collector, &admin);
    let id = alerts[0]["id"].as_str().unwrap();
    // local3 (19) * 8 + err (3) = 155.
    assert!(line.starts_with("<155>1 20"), "{line}");
    assert!(line.contains(" driftwatch "), "app-name: {line}");
    assert!(
        line.contains(" untraced_drift [driftwatch@32473 "),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "[driftwatch@32473 alert_id=\"{id}\" kind=\"untraced_drift\" host=\"web-\\\"7\\\"\" \
             subjects=\"1\" subject=\"user:mallory\"]"
        )),
        "escaped SD-PARAM: {line}"
    );
    assert!(
        line.ends_with("untraced change on web-\"7\": user:mallory"),
        "{line}"
    );

    let (stream, _) = accept_within(&tcp, Duration::from_secs(30));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut framed = Vec::new();
    let mut reader = BufReader::new(stream);
    reader.read_to_end(&mut framed).unwrap();
    let framed = String::from_utf8(framed).unwrap();
    let (length, message) = framed.split_once(' ').expect("MSG-LEN SP MSG");
    assert_eq!(length.parse::<usize>().unwrap(), message.len(), "{framed}");
    // auth (4) * 8 + err (3) = 35, the default facility.
    assert!(message.starts_with("<35>1 "), "{message}");
    assert!(message.contains(" dw-e2e "), "{message}");
    assert!(message.contains(&format!("alert_id=\"{id}\"")), "{message}");

    let delivered = wait_until(Duration::from_secs(10), || {
        api_alerts(&collector, &admin)[0]["delivered_at"].is_string()
    });
    assert!(delivered, "{:#}", api_alerts(&collector, &admin)[0]);
}

/// `accept` with a bound: a helper thread connects to wake it up if nothing came.
fn accept_within(listener: &TcpListener, bound: Duration) -> (TcpStream, SocketAddr) {
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + bound;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false).unwrap();
                return (stream, peer);
            }
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("no TCP syslog connection within {bound:?}: {err}"),
        }
    }
}

#[test]
fn the_sink_configuration_is_audited_when_it_changes_between_starts() {
    let mut collector = Collector::start(
        "[[alert]]\ntype = \"syslog\"\nname = \"siem\"\naddress = \"127.0.0.1:9\"\nfacility = \"auth\"\n",
    );
    let admin = collector.token("admin", "root");
    let entries = |collector: &Collector| -> Vec<Value> {
        collector
            .get("/api/v1/audit", &admin)
            .expect(200)
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "config.alert_sinks")
            .cloned()
            .collect()
    };
    assert_eq!(entries(&collector).len(), 1, "the first start");
    collector.restart();
    assert_eq!(entries(&collector).len(), 1, "unchanged: nothing new");

    let config = std::fs::read_to_string(collector.config()).unwrap();
    std::fs::write(
        collector.config(),
        config.replace("facility = \"auth\"", "facility = \"local5\""),
    )
    .unwrap();
    collector.restart();
    let audited = entries(&collector);
    assert_eq!(audited.len(), 2, "{audited:#?}");
    assert_ne!(
        audited[0]["details"]["digest"],
        audited[1]["details"]["digest"]
    );
    let siem = audited[1]["details"]["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "siem")
        .cloned()
        .unwrap_or_else(|| panic!("{audited:#?}"));
    assert_eq!(siem["facility"], 21);
    assert_eq!(siem["type"], "syslog");
    assert!(
        audited[1]["actor"]
            .as_str()
            .unwrap()
            .contains("collector.toml"),
        "{audited:#?}"
    );
    collector.driftctl(&admin, &["audit", "verify"]).expect(0);
}

#[test]
fn a_missing_webhook_secret_file_stops_the_start_with_a_clear_error() {
    let collector = Collector::start("");
    let config = collector.dir().join("hook.toml");
    std::fs::write(
        &config,
        format!(
            "plain_http = true\nstate_dir = \"{}\"\n[[alert]]\ntype = \"webhook\"\n\
             url = \"https://hooks.example/x\"\nsecret_file = \"{}\"\n",
            collector.dir().join("hook-state").display(),
            collector.dir().join("no-such.secret").display(),
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(driftwatch_tests::collector::collector_bin());
    cmd.arg("--config").arg(&config).arg("validate-config");
    // The file itself is valid: the secret is read when the service starts.
    driftwatch_tests::collector::run(cmd, Duration::from_secs(30)).expect(0);
    let mut cmd = std::process::Command::new(driftwatch_tests::collector::collector_bin());
    cmd.arg("--config")
        .arg(&config)
        .args(["serve", "--listen", "127.0.0.1:0"]);
    driftwatch_tests::collector::run(cmd, Duration::from_secs(30))
        .expect(78)
        .stderr_has("alert sink `webhook`: cannot read secret_file")
        .stderr_has("no-such.secret");
    assert!(
        !collector.dir().join("hook-state").exists(),
        "nothing written before the refusal"
    );
}

/// HMAC-SHA256 by RFC 2104's definition, from SHA-256 alone (independent of the
/// collector's `hmac` crate), as hex.
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first subject of a received generic payload.
fn first_subject(body: &Value) -> &str {
    body["alert"]["body"]["items"][0]["subject"]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn a_refused_alert_is_dead_lettered_the_next_is_delivered_and_an_admin_retries_or_drops() {
    use std::os::unix::fs::PermissionsExt;
    const SIGNING: &str = "e2e-signing-key-0123456789";
    // The receiver refuses subjects `user:poison*` for good until it is fixed.
    let fixed = Arc::new(AtomicBool::new(false));
    let is_fixed = Arc::clone(&fixed);
    let receiver = Receiver::answering(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        Arc::new(move |_, body: &Value| {
            if first_subject(body).starts_with("user:poison") && !is_fixed.load(Ordering::SeqCst) {
                (400, "invalid_blocks".to_owned())
            } else {
                (200, "ok".to_owned())
            }
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("hook.signing");
    std::fs::write(&key_file, format!("{SIGNING}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let collector = Collector::start(&format!(
        "[[alert]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"http://{}/in\"\n\
         signing_secret_file = \"{}\"\nretry_max_secs = 2\ntimeout_secs = 5\n",
        receiver.addr,
        key_file.display()
    ));
    let admin = collector.token("admin", "root");
    let security = collector.token("security", "sam");

    // Three alerts (three hosts): the first and the third are refused for good.
    untraced_change(&collector, &admin, "web-1", "user:poison");
    untraced_change(&collector, &admin, "web-2", "user:fine");
    untraced_change(&collector, &admin, "web-3", "user:poison-too");
    let settled = wait_until(Duration::from_secs(30), || {
        let alerts = api_alerts(&collector, &admin);
        alerts.len() == 3
            && alerts.iter().all(|a| {
                let state = &delivery(a, "hook")["state"];
                state == "delivered" || state == "dead_letter"
            })
    });
    assert!(
        settled,
        "{:#?}\n{}",
        api_alerts(&collector, &admin),
        collector.log()
    );
    let by_subject = |subject: &str| -> Value {
        api_alerts(&collector, &admin)
            .into_iter()
            .find(|a| a["body"]["items"][0]["subject"] == subject)
            .unwrap_or_else(|| panic!("no alert for {subject}"))
    };
    let (poison, fine, poison_too) = (
        by_subject("user:poison"),
        by_subject("user:fine"),
        by_subject("user:poison-too"),
    );
    // The refused alert did not hold the next one back.
    assert!(fine["delivered_at"].is_string(), "{fine:#}");
    let dead = delivery(&poison, "hook");
    assert_eq!(dead["state"], "dead_letter", "{poison:#}");
    assert_eq!(dead["attempts"], 1, "not retried: {poison:#}");
    assert_eq!(dead["dead_letter"]["status"], 400);
    assert_eq!(dead["dead_letter"]["response"], "invalid_blocks");
    assert!(poison["delivered_at"].is_null());
    assert_eq!(delivery(&poison, "jsonl")["state"], "delivered");
    let poison_id = poison["id"].as_str().unwrap().to_owned();
    let poison_too_id = poison_too["id"].as_str().unwrap().to_owned();

    // Visible: the API, driftctl and /metrics.
    let listed = collector
        .get("/api/v1/alerts/dead-letters", &security)
        .expect(200);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [poison_id.as_str(), poison_too_id.as_str()],
        "oldest first"
    );
    collector
        .driftctl(&admin, &["alerts", "dead-letters"])
        .expect(0)
        .stdout_has(&poison_id)
        .stdout_has("untraced change on web-1: user:poison")
        .stdout_has("sink hook: refused ")
        .stdout_has("(HTTP 400, 1 attempts): invalid_blocks");
    collector
        .driftctl(&admin, &["alerts"])
        .expect(0)
        .stdout_has("hook dead_letter (1 attempts: POST to http://127.0.0.1:")
        .stdout_has("answered HTTP 400 Bad Request: invalid_blocks)");
    let metrics = driftwatch_tests::collector::http::get(collector.addr, "/metrics", Some(&admin));
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l.starts_with("driftwatch_alert_dead_letters{")
                && l.contains("sink=\"hook\"")
                && l.ends_with(" 2")),
        "{}",
        metrics.body
    );

    // Only an admin retries or drops; a refusal writes nothing.
    collector
        .post(
            &format!("/api/v1/alerts/{poison_id}/retry"),
            Some(&security),
            &serde_json::json!({ "sink": "hook" }),
        )
        .error(403, "forbidden", "needs the admin role");
    collector
        .driftctl(
            &security,
            &[
                "alerts", "drop", &poison_id, "--sink", "hook", "--reason", "x",
            ],
        )
        .expect(83)
        .stderr_has("403");
    collector
        .post(
            &format!("/api/v1/alerts/{poison_id}/drop"),
            Some(&admin),
            &serde_json::json!({ "sink": "hook", "reason": "  " }),
        )
        .error(400, "bad_request", "reason");
    collector
        .post(
            &format!("/api/v1/alerts/{poison_id}/retry"),
            Some(&admin),
            &serde_json::json!({ "sink": "nope" }),
        )
        .error(400, "bad_request", "no alert sink `nope`");
    collector
        .post(
            &format!("/api/v1/alerts/{}/retry", fine["id"].as_str().unwrap()),
            Some(&admin),
            &serde_json::json!({ "sink": "hook" }),
        )
        .error(409, "conflict", "not a dead letter");
    assert_eq!(
        delivery(&by_subject("user:poison"), "hook")["state"],
        "dead_letter"
    );

    // Dropped, with a reason: the sink owes it no more.
    collector
        .driftctl(
            &admin,
            &[
                "alerts",
                "drop",
                &poison_too_id,
                "--sink",
                "hook",
                "--reason",
                "known payload bug",
            ],
        )
        .expect(0)
        .stdout_has(&format!("alert {poison_too_id} dropped for sink hook"));
    let dropped = by_subject("user:poison-too");
    assert_eq!(
        delivery(&dropped, "hook")["state"],
        "dropped",
        "{dropped:#}"
    );
    assert_eq!(
        delivery(&dropped, "hook")["dropped"]["reason"],
        "known payload bug"
    );
    assert_eq!(delivery(&dropped, "hook")["dropped"]["by"], "root");
    assert!(dropped["delivered_at"].is_string(), "{dropped:#}");

    collector
        .driftctl(&security, &["alerts", "retry", "--all", "--sink", "hook"])
        .expect(83)
        .stderr_has("403");

    // The receiver is fixed; retried: delivered.
    fixed.store(true, Ordering::SeqCst);
    collector
        .driftctl(&admin, &["alerts", "retry", &poison_id, "--sink", "hook"])
        .expect(0)
        .stdout_has(&format!("alert {poison_id} queued again for sink hook"));
    let delivered = wait_until(Duration::from_secs(30), || {
        by_subject("user:poison")["delivered_at"].is_string()
    });
    assert!(
        delivered,
        "{:#}\n{}",
        by_subject("user:poison"),
        collector.log()
    );
    assert_eq!(delivery(&by_subject("user:poison"), "hook")["attempts"], 2);
    collector
        .driftctl(&admin, &["alerts", "dead-letters"])
        .expect(0)
        .stdout_has("(none)");
    collector
        .driftctl(&admin, &["alerts", "retry", "--all", "--sink", "hook"])
        .expect(0)
        .stdout_has("0 dead-lettered alert(s) queued again for sink hook");
    let answered: Vec<(String, u16)> = receiver
        .received()
        .iter()
        .map(|r| (first_subject(&r.body).to_owned(), r.answered))
        .collect();
    assert_eq!(
        answered,
        [
            ("user:poison".to_owned(), 400),
            ("user:fine".to_owned(), 200),
            ("user:poison-too".to_owned(), 400),
            ("user:poison".to_owned(), 200),
        ]
    );

    // Both decisions are in the audit log, attributed, and the log verifies.
    let audit = collector.get("/api/v1/audit", &admin).expect(200);
    let entry = |action: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action)
            .cloned()
            .unwrap_or_else(|| panic!("no {action}: {audit:#}"))
    };
    let retried = entry("alert.retried");
    assert_eq!(
        (retried["actor"].as_str(), retried["target"].as_str()),
        (Some("root"), Some(format!("alert:{poison_id}").as_str()))
    );
    assert_eq!(
        entry("alert.dropped")["details"]["reason"],
        "known payload bug"
    );
    assert_eq!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "alert.retried" || e["action"] == "alert.dropped")
            .count(),
        2,
        "the refused requests wrote nothing"
    );
    collector.driftctl(&admin, &["audit", "verify"]).expect(0);

    // Every request was signed: HMAC-SHA256 over "v0:{timestamp}:{body}", fresh.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for request in receiver.received() {
        let timestamp = request
            .header("x-driftwatch-timestamp")
            .expect("a timestamp");
        let at: i64 = timestamp.parse().unwrap();
        assert!((now - at).abs() <= 300, "{timestamp} vs {now}");
        let mut signed = format!("v0:{timestamp}:").into_bytes();
        signed.extend_from_slice(&request.raw);
        assert_eq!(
            request.header("x-driftwatch-signature"),
            Some(format!("v0={}", hmac_sha256(SIGNING.as_bytes(), &signed)).as_str())
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    assert!(!collector.log().contains(SIGNING), "the key was logged");
}
