//! Limits that keep the collector up, performed as attacks on the real collector over
//! loopback: slow connections (half-sent headers), a flood of bad tokens, a lockout,
//! oversized agent fields, listings beyond their maximum, and `/metrics` access.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use driftwatch_tests::collector::http::{self, request_from};
use driftwatch_tests::collector::{Collector, FakeAgent};
use serde_json::json;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Opens `n` connections that send half a request head and then nothing.
fn slow_connections(collector: &Collector, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut stream = TcpStream::connect(collector.addr).expect("connect");
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("half a head");
            stream
        })
        .collect()
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // hyper may answer 408 before closing.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn healthz_answers_while_300_slow_connections_are_held_and_they_are_closed() {
    let collector = Collector::start("[limits]\nheader_read_timeout_secs = 2\n");
    let mut slow = slow_connections(&collector, 300);

    let started = Instant::now();
    let health = http::get(collector.addr, "/healthz", None);
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "/healthz took {:?} with 300 slow connections held",
        started.elapsed()
    );

    // The header-read timeout (2 s) closes every one of them.
    let deadline = Instant::now() + Duration::from_secs(6);
    for (i, stream) in slow.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
        assert!(
            closed_by_server(stream, left),
            "slow connection {i} still open after the header timeout"
        );
    }
}

#[test]
fn an_oversized_request_head_is_refused_with_431() {
    let collector = Collector::start("");
    let huge = "h".repeat(70 * 1024);
    let answer = http::request(
        collector.addr,
        "GET",
        "/healthz",
        None,
        &[("x-padding", huge.as_str())],
        b"",
    );
    assert_eq!(answer.status, 431, "{}", answer.body);
    assert_eq!(http::get(collector.addr, "/healthz", None).status, 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let collector =
        Collector::start("[limits]\nheader_read_timeout_secs = 30\nidle_timeout_secs = 1\n");
    // A connection that sends nothing at all is idle from the start.
    let mut silent = TcpStream::connect(collector.addr).unwrap();
    assert!(closed_by_server(&mut silent, Duration::from_secs(4)));
}

#[test]
fn a_low_fd_limit_lowers_the_cap_and_slow_connections_make_room() {
    // 160 descriptors: the cap is lowered to fit (with a warning) and the collector never
    // runs out of descriptors. With every slot held by a slow connection, new ones take
    // back the slots of those that never sent a whole request head, so /healthz still
    // answers within a second (the header timeout is long here: it is not what helps),
    // while a request being handled (its body still arriving) keeps its slot.
    let collector =
        Collector::start_with_fd_limit("[limits]\nheader_read_timeout_secs = 30\n", 160);
    let body = br#"{"token": "dwe_x", "hostname": "h", "agent_version": "1"}"#;
    let mut upload = TcpStream::connect(collector.addr).unwrap();
    upload
        .write_all(
            format!(
                "POST /api/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Connection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    upload.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let _slow = slow_connections(&collector, 300);
    let started = Instant::now();
    let health = http::get(collector.addr, "/healthz", None);
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "/healthz took {:?} with every slot held",
        started.elapsed()
    );
    let log = collector.log();
    assert!(log.contains("serving fewer at once"), "{log}");
    assert!(log.contains("connection closed to make room"), "{log}");
    assert!(!log.contains("cannot accept a connection"), "{log}");

    // The upload in progress was not closed: it finishes and gets its answer.
    upload.write_all(&body[10..]).unwrap();
    upload
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    upload.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
}

#[test]
fn a_flood_of_bad_tokens_is_throttled_and_logged_and_honest_clients_go_on() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let attacker = ip("127.0.0.2");
    let mut statuses = Vec::new();
    for i in 0..1000u32 {
        let token = format!("dwt_{:032x}_{}", i, "0".repeat(64));
        let answer = request_from(
            attacker,
            collector.addr,
            "GET",
            "/api/v1/hosts",
            Some(&token),
            b"",
        );
        if answer.status == 429 {
            let retry: u64 = answer
                .header("retry-after")
                .expect("429 carries Retry-After")
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
        statuses.push(answer.status);
        if i % 100 == 0 {
            // Meanwhile an honest person on another address is not affected.
            let honest = request_from(
                ip("127.0.0.1"),
                collector.addr,
                "GET",
                "/api/v1/hosts",
                Some(&admin),
                b"",
            );
            assert_eq!(honest.status, 200, "{}", honest.body);
        }
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(unauthorized + throttled, 1000);
    // The burst (20) plus what a minute's rate (30/min) gives back during the test.
    assert!(
        (20..=60).contains(&unauthorized),
        "{unauthorized} answered 401"
    );
    let log = collector.log();
    let warned = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("authentication failed"))
        .collect::<Vec<_>>();
    assert_eq!(warned.len(), unauthorized, "{log}");
    assert!(warned[0].contains("127.0.0.2"), "{}", warned[0]);
    assert!(
        warned[0].contains("00000000000000000000000000000000")
            || warned[0].contains("00000000-0000-0000-0000-000000000000"),
        "the token id is logged: {}",
        warned[0]
    );
    assert!(
        !log.contains(&"0".repeat(64)),
        "a token's secret reached the log"
    );
}

#[test]
fn guessing_enrollment_tokens_is_throttled_too() {
    let collector = Collector::start("[limits]\nauth_failure_burst = 5\n");
    let mut statuses = Vec::new();
    for i in 0..20u32 {
        let body = json!({"token": format!("dwe_{i:032x}_{}", "1".repeat(64)), "hostname": "h", "agent_version": "1"});
        let answer = request_from(
            ip("127.0.0.9"),
            collector.addr,
            "POST",
            "/api/v1/enroll",
            None,
            body.to_string().as_bytes(),
        );
        statuses.push(answer.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        15,
        "{statuses:?}"
    );
    assert!(collector.log().contains("127.0.0.9"));
}

#[test]
fn a_token_id_locks_after_repeated_failures_and_unlocks_after_its_time() {
    let collector = Collector::start(
        "[limits]\nauth_failure_burst = 1000\nlockout_failures = 3\nlockout_secs = 2\n",
    );
    let admin = collector.token("admin", "root");
    let victim = collector.token("auditor", "ada");
    // Same id, wrong secret, from three addresses (so only the lockout can stop it).
    let (head, _) = victim.rsplit_once('_').unwrap();
    let forged = format!("{head}_{}", "f".repeat(64));
    for n in 2..5 {
        let answer = request_from(
            ip(&format!("127.0.0.{n}")),
            collector.addr,
            "GET",
            "/api/v1/hosts",
            Some(&forged),
            b"",
        );
        assert_eq!(answer.status, 401, "{}", answer.body);
    }
    // Locked: even the right secret gets 429 with Retry-After, other tokens do not.
    let locked = collector.get("/api/v1/hosts", &victim);
    locked.error(429, "too_many_requests", "locked");
    assert!(locked.header("retry-after").is_some());
    assert_eq!(collector.get("/api/v1/hosts", &admin).status, 200);
    // The lock ends by itself.
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(collector.get("/api/v1/hosts", &victim).status, 200);
}

fn stored_events(collector: &Collector) -> i64 {
    let db = rusqlite::Connection::open(collector.db()).unwrap();
    db.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn every_kind_of_oversized_agent_field_is_refused_and_nothing_is_stored() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let agent = FakeAgent::enroll(&collector, &admin, "web-1");
    let long = |n: usize| "x".repeat(n);

    type Bloat = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, &str, Bloat)> = vec![
        (
            "subject",
            "8192",
            Box::new(move |e| e["subject"] = json!(format!("file:/{}", "x".repeat(9000)))),
        ),
        (
            "diff",
            "65536",
            Box::new(move |e| e["diff"] = json!("d".repeat(70_000))),
        ),
        (
            "summary",
            "1024",
            Box::new(move |e| e["summary"] = json!("s".repeat(2000))),
        ),
        (
            "actor.comm",
            "256",
            Box::new(move |e| e["actor"] = json!({"source": "audit", "comm": "c".repeat(300)})),
        ),
        (
            "actor.exe",
            "4096",
            Box::new(move |e| e["actor"] = json!({"source": "audit", "exe": "e".repeat(5000)})),
        ),
        (
            "changed",
            "256",
            Box::new(move |e| e["changed"] = json!(vec!["mode"; 300])),
        ),
        (
            "after.fields.version",
            "4096",
            Box::new(move |e| {
                e["after"] = json!({"type": "fields", "fields": {"version": "v".repeat(5000)}})
            }),
        ),
        (
            "provenance.package",
            "256",
            Box::new(
                move |e| e["provenance"] = json!({"manager": "dpkg", "package": "p".repeat(300), "version": "1", "matches_package": true}),
            ),
        ),
    ];
    for (field, limit, bloat) in cases {
        // A good event first in the batch: nothing of the batch may be stored.
        let good = serde_json::to_value(agent.event("package:nginx", "1")).unwrap();
        let mut bad = serde_json::to_value(agent.event("package:curl", "1")).unwrap();
        bloat(&mut bad);
        let answer = collector.post(
            "/api/v1/events",
            Some(&agent.credential),
            &json!({ "events": [good, bad] }),
        );
        answer.error(413, "field_too_large", &format!("events[1].{field}"));
        answer.error(413, "field_too_large", limit);
        answer.error(413, "field_too_large", "nothing was stored");
        assert_eq!(stored_events(&collector), 0, "{field}");
    }

    // Heartbeat inventory and enrollment fields too.
    let heartbeat = json!({
        "host_id": agent.id,
        "sent_at": "2026-01-01T00:00:00Z",
        "inventory": {"hostname": "web-1", "os": "linux", "kernel": long(300), "uptime_secs": 1, "cpus": 1, "memory_bytes": 1},
        "health": {"agent_version": "e2e", "cpu_percent": 0.0, "rss_bytes": 1, "spool_depth": 0, "spool_full": false,
                   "baseline_entries": 0, "baseline_tampered": false,
                   "coverage": {"dropped_event_batches": 0, "unreadable": 0, "attribution_unavailable": null}},
        "last_seq": 0,
    });
    collector
        .post("/api/v1/heartbeat", Some(&agent.credential), &heartbeat)
        .error(413, "field_too_large", "inventory.kernel");
    let hosts = collector.get("/api/v1/hosts", &admin).expect(200);
    assert!(hosts[0]["inventory"].is_null(), "{hosts}");

    let issued = collector
        .post("/api/v1/enrollment-tokens", Some(&admin), &json!({}))
        .expect(201);
    let labels: serde_json::Map<String, serde_json::Value> =
        (0..70).map(|i| (format!("k{i}"), json!("v"))).collect();
    collector
        .post(
            "/api/v1/enroll",
            None,
            &json!({"token": issued["token"], "hostname": "web-2", "agent_version": "e2e", "labels": labels}),
        )
        .error(413, "field_too_large", "labels holds 70 items");
    assert_eq!(
        collector
            .get("/api/v1/hosts", &admin)
            .expect(200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_listing_limit_beyond_its_maximum_is_refused() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    collector.get("/api/v1/drift?limit=1001", &admin).error(
        400,
        "bad_request",
        "between 1 and 1000",
    );
    collector
        .get("/api/v1/drift?limit=1000", &admin)
        .expect(200);
    collector.get("/api/v1/alerts?limit=10001", &admin).error(
        400,
        "bad_request",
        "between 1 and 10000",
    );
    collector
        .get("/api/v1/alerts?limit=0", &admin)
        .error(400, "bad_request", "limit");
    collector
        .get("/api/v1/alerts?limit=10000", &admin)
        .expect(200);
}

#[test]
fn metrics_need_a_reader_token_by_default() {
    let collector = Collector::start("");
    http::get(collector.addr, "/metrics", None).error(401, "unauthorized", "token");
    let security = collector.token("security", "sam");
    collector
        .get("/metrics", &security)
        .error(403, "forbidden", "reading metrics");
    for role in ["metrics", "admin", "auditor"] {
        let token = collector.token(role, &format!("{role}-reader"));
        let answer = collector.get("/metrics", &token);
        assert_eq!(answer.status, 200, "{role}: {}", answer.body);
        assert!(answer.body.contains("# TYPE"), "{}", answer.body);
    }
    // /healthz stays open.
    assert_eq!(http::get(collector.addr, "/healthz", None).status, 200);
}

#[test]
fn metrics_can_be_left_open_or_moved_to_their_own_address() {
    let open = Collector::start("[metrics]\nrequire_token = false\n");
    assert_eq!(http::get(open.addr, "/metrics", None).status, 200);

    let moved = Collector::start("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let token = moved.token("metrics", "prometheus");
    // Not on the main address any more...
    assert_eq!(moved.get("/metrics", &token).status, 404);
    // ... but on its own, with the token.
    let log = moved.log();
    let line = log
        .lines()
        .find(|l| l.contains("metrics listening"))
        .unwrap_or_else(|| panic!("{log}"));
    let addr: std::net::SocketAddr = line
        .split("address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    http::get(addr, "/metrics", None).error(401, "unauthorized", "token");
    assert_eq!(http::get(addr, "/metrics", Some(&token)).status, 200);
    assert_eq!(http::get(addr, "/healthz", None).status, 200);
    assert_eq!(http::get(addr, "/api/v1/hosts", Some(&token)).status, 404);
}

#[test]
fn a_drift_items_detail_shows_a_bounded_number_of_events() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let agent = FakeAgent::enroll(&collector, &admin, "web-1");
    // A flapping subject: 1001 events on one drift item.
    let events: Vec<_> = (0..1001)
        .map(|i| agent.event("package:nginx", &format!("1.{i}")))
        .collect();
    agent.report(&collector, &events).expect(200);
    let drift = collector.get("/api/v1/drift", &admin).expect(200);
    let id = drift[0]["id"].as_str().unwrap();
    let detail = collector
        .get(&format!("/api/v1/drift/{id}"), &admin)
        .expect(200);
    assert_eq!(detail["events"].as_array().unwrap().len(), 1000);
    assert_eq!(detail["events_omitted"], 1);
    assert_eq!(
        detail["events"][999]["event"]["seq"], 1001,
        "the latest are shown"
    );
}
