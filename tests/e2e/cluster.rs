//! Two `driftwatch-collector` processes on one PostgreSQL database, behind a round-robin
//! TCP balancer the test runs, with a real agent (through the balancer) and FakeAgents
//! posting to both nodes alternately (issue 10): every event is stored once, a burst of
//! untraced changes is one alert at the webhook (not one per node), `kill -9` of one node
//! in the middle of ingest loses nothing (the senders retry to the other, which also takes
//! over the background rounds), and a window approved through one node authorizes the
//! event the other receives next. Skips like `postgres.rs` without a server.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftwatch_common::api::v1::DriftEvent;
use driftwatch_tests::collector::{Collector, FakeAgent, http};
use driftwatch_tests::daemon::{DaemonHost, wait_until};
use driftwatch_tests::p;
use serde_json::{Value, json};

use crate::postgres::Database;

/// Webhook requests received: the alert bodies, in order.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (Arc::clone(&got), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(body) = read_post(stream) {
                            log.lock().unwrap().push(body);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { addr, got, stop }
    }

    /// The alerts received so far (the generic payload's `alert`).
    fn alerts(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|body| body["alert"].clone())
            .collect()
    }

    /// How many alerts of `kind` about `host_id` arrived.
    fn count(&self, kind: &str, host_id: &str) -> usize {
        self.alerts()
            .iter()
            .filter(|a| a["kind"] == kind && a["host_id"] == host_id)
            .count()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads one POST and answers 200.
fn read_post(stream: TcpStream) -> Option<Value> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut length = 0;
    reader.read_line(&mut line).ok()?;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut raw = vec![0; length];
    reader.read_exact(&mut raw).ok()?;
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    serde_json::from_slice(&raw).ok()
}

/// A TCP balancer on 127.0.0.1: each connection goes to the next backend in turn, or to
/// the one after if that one does not accept (a killed node).
struct Balancer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Connections each backend took.
    taken: Arc<Vec<AtomicUsize>>,
}

impl Balancer {
    fn start(backends: Vec<SocketAddr>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let taken: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let (stopped, counts) = (Arc::clone(&stop), Arc::clone(&taken));
        std::thread::spawn(move || {
            let mut next = 0;
            while !stopped.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let mut upstream = None;
                for _ in 0..backends.len() {
                    let at = next % backends.len();
                    next += 1;
                    if let Ok(stream) =
                        TcpStream::connect_timeout(&backends[at], Duration::from_secs(2))
                    {
                        counts[at].fetch_add(1, Ordering::SeqCst);
                        upstream = Some(stream);
                        break;
                    }
                }
                let Some(upstream) = upstream else {
                    continue;
                };
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pipe(upstream, client);
            }
        });
        Balancer { addr, stop, taken }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either ends, then shuts both.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Posts `events` as the agent with `credential` to `addr`; `None` when the node did not
/// answer (killed before or during the request).
fn post_events(addr: SocketAddr, credential: &str, events: &[DriftEvent]) -> Option<Value> {
    let body = json!({ "events": events }).to_string();
    let credential = credential.to_owned();
    // The harness panics on a dead connection: that is this node's failure, not the test's.
    std::thread::spawn(move || {
        let answer = http::request(
            addr,
            "POST",
            "/api/v1/events",
            Some(&credential),
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        (answer.status == 200).then(|| answer.json())
    })
    .join()
    .ok()
    .flatten()
}

fn in_minutes(minutes: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Events stored for `host_id`: (rows, distinct ids, highest seq).
fn stored(db: &Database, host_id: &str) -> (u64, u64, u64) {
    let row = db.psql(
        &db.url(),
        &format!(
            "SELECT count(*), count(DISTINCT id), coalesce(max(seq), 0) FROM events \
             WHERE host_id = '{host_id}'"
        ),
    );
    let n: Vec<u64> = row.split('|').map(|v| v.parse().unwrap()).collect();
    (n[0], n[1], n[2])
}

#[test]
fn two_collectors_on_one_database_act_as_one() {
    let Some(db) = Database::create() else {
        return;
    };
    let receiver = Receiver::start();
    let store = format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{}\"\ntls = \"disable\"\npool_size = 4\n",
        db.url()
    );
    let hook = format!(
        "[[alert]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"http://{}/in\"\n\
         timeout_secs = 5\nretry_max_secs = 2\n",
        receiver.addr
    );
    let mut a = Collector::start(&format!("{store}{hook}"));
    // Node B signs with node A's key: one audit chain, one decision seal.
    let key = a.dir().join("state").join("audit-signing.key");
    assert!(key.exists(), "node A made its signing key");
    let b = Collector::start(&format!(
        "{store}[audit]\nsigning_key_file = \"{}\"\n{hook}",
        p(&key)
    ));
    let balancer = Balancer::start(vec![a.addr, b.addr]);
    let admin = a.token("admin", "root");
    let token = |name: &str, role: &str| {
        let run = a.driftctl(&admin, &["token", "create", "--name", name, "--role", role]);
        run.expect(0);
        run.stdout.trim().to_owned()
    };
    let alice = token("alice", "change-manager");
    let bob = token("bob", "change-manager");

    // The real agent, through the balancer (so through either node).
    let daemon_host = DaemonHost::new(Some(&balancer.url()), "");
    daemon_host.init();
    let issued = b
        .post("/api/v1/enrollment-tokens", Some(&admin), &json!({}))
        .expect(201);
    daemon_host
        .cli(["enroll", "--token", issued["token"].as_str().unwrap()])
        .run()
        .expect(0);
    let hosts = a.get("/api/v1/hosts", &admin).expect(200);
    let real_id = hosts[0]["id"].as_str().unwrap().to_owned();
    let daemon = daemon_host.start();

    // A window approved through node A authorizes the event node B receives next (B's
    // index was built before the window existed).
    let web = FakeAgent::enroll(&b, &admin, "web-1");
    let created = a.driftctl(
        &alice,
        &[
            "--json",
            "windows",
            "create",
            "--title",
            "nginx",
            "--ticket",
            "CHG-7",
            "--host",
            "web-1",
            "--subject",
            "file:/etc/nginx/**",
            "--start",
            &in_minutes(-5),
            "--end",
            &in_minutes(55),
        ],
    );
    created.expect(0);
    let window_id = created.json()["id"].as_str().unwrap().to_owned();
    a.driftctl(&bob, &["windows", "approve", &window_id])
        .expect(0);
    let covered = web.event("file:/etc/nginx/nginx.conf", "2");
    let ack = web.report(&b, &[covered]).expect(200);
    assert_eq!(ack["accepted"], 1, "{ack:#}");
    let drift = b.get("/api/v1/drift", &admin).expect(200);
    let item = drift
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["subject"] == "file:/etc/nginx/nginx.conf")
        .unwrap_or_else(|| panic!("no drift: {drift:#}"));
    assert_eq!(item["status"], "authorized", "{item:#}\n{}", b.log());
    assert_eq!(item["window_id"], window_id.as_str());

    // A burst of untraced changes on one host, spread over both nodes: one alert.
    let burst = FakeAgent::enroll(&a, &admin, "db-1");
    for (n, node) in [&a, &b, &a].into_iter().enumerate() {
        let event = burst.event(&format!("file:/etc/db/{n}.conf"), "1");
        burst.report(node, &[event]).expect(200);
    }
    let burst_id = burst.id.to_string();
    assert!(
        wait_until(Duration::from_secs(30), || receiver
            .count("untraced_drift", &burst_id)
            > 0),
        "no alert for the burst: {:#?}\n{}\n{}",
        receiver.alerts(),
        a.log(),
        b.log()
    );
    // Both nodes run their rounds each second: give them time to send a second one.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        receiver.count("untraced_drift", &burst_id),
        1,
        "one alert per burst, not one per node: {:#?}",
        receiver.alerts()
    );

    // Ingest in flight on both nodes while node A is killed: a FakeAgent posting batches
    // to A and B alternately (a failed post retried on the other node), and the real
    // agent's changes through the balancer.
    let steady = FakeAgent::enroll(&a, &admin, "app-1");
    let batches: Vec<Vec<DriftEvent>> = (0..60)
        .map(|n| {
            (0..5)
                .map(|i| steady.event(&format!("package:pkg-{n}-{i}"), "1"))
                .collect()
        })
        .collect();
    let total = batches.iter().map(Vec::len).sum::<usize>() as u64;
    let (credential, nodes) = (steady.credential.clone(), [a.addr, b.addr]);
    let sender = std::thread::spawn(move || {
        let mut retried = 0;
        for (n, batch) in batches.iter().enumerate() {
            let mut at = n % 2;
            let mut tries = 0;
            while post_events(nodes[at], &credential, batch).is_none() {
                retried += 1;
                tries += 1;
                assert!(tries < 50, "batch {n} was never acknowledged");
                at = 1 - at;
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        retried
    });
    let mut written = Vec::new();
    let mut killed_at = time::OffsetDateTime::now_utc();
    for n in 0..20 {
        let path = format!("etc/change-{n}.conf");
        daemon_host.host.write(&path, format!("n = {n}\n"));
        written.push(format!("file:{}", p(&daemon_host.host.path(&path))));
        std::thread::sleep(Duration::from_millis(50));
        if n == 8 {
            killed_at = time::OffsetDateTime::now_utc();
            let (code, _) = a.stop_with("KILL");
            assert_eq!(code, None, "killed by a signal");
        }
    }
    let retried = sender.join().unwrap();
    assert!(retried > 0, "no post met the killed node");

    // Nothing lost, nothing twice: every event of the FakeAgent, and the real agent's
    // chain complete with every change it saw.
    let (rows, distinct, _) = stored(&db, &steady.id.to_string());
    assert_eq!((rows, distinct), (total, total), "every event stored once");
    let complete = wait_until(Duration::from_secs(60), || {
        let (rows, distinct, highest) = stored(&db, &real_id);
        let subjects = db.psql(
            &db.url(),
            &format!("SELECT string_agg(subject, ',') FROM events WHERE host_id = '{real_id}'"),
        );
        rows == distinct && rows == highest && written.iter().all(|s| subjects.contains(s))
    });
    assert!(
        complete,
        "the real agent's changes did not all arrive once: {:?}\n{}\n{}",
        stored(&db, &real_id),
        daemon.log(),
        b.log()
    );
    assert!(
        balancer.taken.iter().all(|n| n.load(Ordering::SeqCst) > 0),
        "the balancer sent connections to both nodes"
    );

    // Node B takes over the rounds once A's lease runs out: the real agent's untraced
    // changes are alerted, once each burst, and no alert is sent twice.
    assert!(
        wait_until(Duration::from_secs(60), || receiver
            .count("untraced_drift", &real_id)
            > 0),
        "node B never raised the real agent's alert: {:#?}\n{}",
        receiver.alerts(),
        b.log()
    );
    // No alert sent twice. (Delivery is at least once: an alert a node was sending at the
    // very moment it was killed may go out again once its claim runs out, so the alerts
    // raised around the kill are left out.)
    let around_kill = |alert: &Value| {
        let created = time::OffsetDateTime::parse(
            alert["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        created > killed_at - time::Duration::seconds(5)
            && created < killed_at + time::Duration::seconds(1)
    };
    let mut ids = BTreeMap::new();
    for alert in receiver.alerts().iter().filter(|a| !around_kill(a)) {
        *ids.entry(alert["id"].to_string()).or_insert(0) += 1;
    }
    assert!(
        !ids.is_empty() && ids.values().all(|n| *n == 1),
        "an alert was sent twice: {ids:?}"
    );
    let chain = db.psql(
        &db.url(),
        "SELECT count(*) FROM events WHERE chain NOT IN ('ok', 'late', 'gap')",
    );
    assert_eq!(chain, "0", "no fork, conflict or splice across the nodes");
    drop(daemon);
}
