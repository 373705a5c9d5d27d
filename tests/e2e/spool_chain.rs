//! A keyed chain from spool to store (issue 8, point 4): root on a host edits `spool.db`
//! while the collector is away, or a hostile host posts forged links; the real collector
//! records each as a chain alert (gap, forgery, splice) and never lets one absurd `seq`
//! switch the chain check off.

use std::path::Path;
use std::time::Duration;

use driftwatch_common::api::v1::{ChangeKind, DriftEvent};
use driftwatch_common::chain_key::ChainKey;
use driftwatch_common::hash::ContentHash;
use driftwatch_tests::collector::{Collector, FakeAgent};
use driftwatch_tests::daemon::{Daemon, DaemonHost, wait_until};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

/// The chain alerts the collector recorded: (problem, body).
fn chain_alerts(collector: &Collector, admin: &str) -> Vec<(String, Value)> {
    collector
        .get("/api/v1/alerts", admin)
        .expect(200)
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "chain")
        .map(|a| {
            let problem = &a["body"]["problem"];
            (
                problem["problem"].as_str().unwrap().to_owned(),
                problem.clone(),
            )
        })
        .collect()
}

/// Waits (bounded) for a chain alert `problem`; returns every chain alert.
#[track_caller]
fn wait_for_alert(
    collector: &Collector,
    admin: &str,
    problem: &str,
    logs: impl Fn() -> String,
) -> Vec<(String, Value)> {
    let mut alerts = Vec::new();
    let found = wait_until(Duration::from_secs(30), || {
        alerts = chain_alerts(collector, admin);
        alerts.iter().any(|(p, _)| p == problem)
    });
    assert!(
        found,
        "no `{problem}` chain alert; got {alerts:#?}\n{}\ncollector log:\n{}",
        logs(),
        collector.log()
    );
    alerts
}

/// The spooled events, in order, as the attacker reads them.
fn spooled(db: &Path) -> Vec<DriftEvent> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT body FROM events ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|body| serde_json::from_str(&body.unwrap()).unwrap())
        .collect()
}

/// Replaces the unsent events with `events`, re-linked from `prev` with the (unkeyed) chain
/// hash and renumbered from `first_seq`; `mac_with`: what the attacker does about MACs
/// (`None`: leaves them as they were; `Some(key)`: re-MACs every event with `key` and its
/// successors, the best root can do with the key it found in the spool).
fn rewrite_spool(
    db: &Path,
    mut events: Vec<DriftEvent>,
    first_seq: u64,
    mut prev: ContentHash,
    mac_with: Option<ChainKey>,
) {
    let conn = Connection::open(db).unwrap();
    conn.execute("DELETE FROM events", []).unwrap();
    let mut key = mac_with;
    let mut bytes = 0;
    for (i, event) in events.iter_mut().enumerate() {
        event.seq = first_seq + i as u64;
        event.prev_hash = prev;
        let encoded = match &mut key {
            Some(key) => {
                let encoded = event.seal(key);
                key.advance();
                encoded
            }
            None => event.encode(),
        };
        prev = encoded.chain_hash();
        bytes += encoded.json.len() as i64;
        conn.execute(
            "INSERT INTO events (seq, id, body) VALUES (?1, ?2, ?3)",
            params![event.seq as i64, event.id.to_string(), encoded.json],
        )
        .unwrap();
    }
    let last = first_seq + events.len() as u64 - 1;
    conn.execute(
        "UPDATE state SET last_seq = ?1, last_hash = ?2, depth = ?3, bytes = ?4 WHERE id = 1",
        params![last as i64, prev.to_hex(), events.len() as i64, bytes],
    )
    .unwrap();
}

/// The chain key the spool holds now (the one of the next number): what root finds.
fn current_key(db: &Path) -> ChainKey {
    let conn = Connection::open(db).unwrap();
    let bytes: Vec<u8> = conn
        .query_row("SELECT chain_key FROM state", [], |r| r.get(0))
        .unwrap();
    ChainKey::from_bytes(bytes.try_into().unwrap())
}

/// An enrolled agent daemon that delivered one event, then spooled four more while the
/// collector was down, and was stopped: the four are in `spool.db`, unsent.
struct Spooled {
    collector: Collector,
    admin: String,
    host: DaemonHost,
}

impl Spooled {
    fn set_up() -> Spooled {
        let collector = Collector::start("");
        let admin = collector.token("admin", "root");
        let host = DaemonHost::new(Some(&collector.url()), "");
        host.init();
        host.enroll_at(&collector, &admin);
        let hosts = collector.get("/api/v1/hosts", &admin).expect(200);
        assert_eq!(hosts[0]["chain"], "authenticated", "{hosts:#}");
        let daemon = host.start();
        host.host.write("etc/app.conf", "port = 8080\n");
        daemon.wait_status(
            "the first event acknowledged",
            Duration::from_secs(30),
            |s| s["spool"]["acked_seq"] == 1,
        );
        let mut spooled = Spooled {
            collector,
            admin,
            host,
        };
        let (code, log) = spooled.collector.stop();
        assert_eq!(code, Some(0), "{log}");
        for (path, text) in [
            ("etc/sub/other.conf", "x = 2\n"),
            ("bin/tool", "#!/bin/sh\nexit 1\n"),
            ("etc/new.conf", "new\n"),
            ("etc/app.conf", "port = 9090\n"),
        ] {
            spooled.host.host.write(path, text);
            std::thread::sleep(Duration::from_millis(150));
        }
        daemon.wait_status("four events spooled", Duration::from_secs(30), |s| {
            s["spool"]["last_seq"] == 5 && s["spool"]["events"] == 4
        });
        daemon.stop();
        spooled
    }

    fn spool_db(&self) -> std::path::PathBuf {
        self.host.host.state().join("spool.db")
    }

    /// Brings the collector back, points the agent at it and starts the agent.
    fn resume(&mut self) -> Daemon {
        self.collector.restart();
        self.host.write_config(Some(&self.collector.url()), "");
        let daemon = self.host.start();
        daemon.wait_status("the spool delivered", Duration::from_secs(30), |s| {
            s["spool"]["events"] == 0
        });
        daemon
    }
}

#[test]
fn deleting_an_unsent_event_and_relinking_the_rest_is_caught_at_the_collector() {
    let mut setup = Spooled::set_up();
    let db = setup.spool_db();
    let events = spooled(&db);
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    assert!(
        events.iter().all(|e| e.mac.is_some()),
        "the agent MACs each event"
    );
    // Root deletes seq 3 and re-links 4 and 5 as 3 and 4 with the unkeyed hash, as if the
    // deleted event had never been.
    let deleted = events[1].clone();
    let kept = vec![events[0].clone(), events[2].clone(), events[3].clone()];
    rewrite_spool(&db, kept, 2, events[0].prev_hash, None);

    let daemon = setup.resume();
    let logs = || daemon.log();
    let alerts = wait_for_alert(&setup.collector, &setup.admin, "forged", logs);
    let mut forged: Vec<u64> = alerts
        .iter()
        .filter(|(p, _)| p == "forged")
        .map(|(_, body)| body["seq"].as_u64().unwrap())
        .collect();
    forged.sort_unstable();
    assert_eq!(forged, [3, 4], "{alerts:#?}");
    assert!(
        alerts
            .iter()
            .all(|(p, body)| p != "forged" || body["reason"] == "wrong_mac")
    );
    // The forged events are not stored: nothing at the collector claims the deleted one's
    // number, and its subject shows no event from this batch beyond the honest seq 2.
    let drift = setup
        .collector
        .get("/api/v1/drift", &setup.admin)
        .expect(200);
    assert!(
        !drift
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["subject"] == json!(deleted.subject.0)),
        "the subject of the deleted event must not look reported: {drift:#}"
    );
    // The agent goes on: its next event arrives after the hole and is a gap, not silence.
    setup.host.host.write("etc/sub/other.conf", "x = 3\n");
    wait_for_alert(&setup.collector, &setup.admin, "gap", || daemon.log());
}

#[test]
fn editing_a_spooled_event_and_remacing_with_the_current_key_is_a_forgery() {
    let mut setup = Spooled::set_up();
    let db = setup.spool_db();
    let mut events = spooled(&db);
    // Root edits the content of seq 3 (the change to bin/tool becomes a harmless mode
    // change), re-links 4 and 5, and MACs everything from 3 with every key it can compute:
    // the one in the spool now (of seq 6) and its successors.
    let edited_id = events[1].id;
    events[1].kind = ChangeKind::Attributes;
    events[1].changed = vec!["mode".into()];
    let key = current_key(&db);
    let honest = events.remove(0);
    let prev = honest.encode().chain_hash();
    rewrite_spool(&db, events, 3, prev, Some(key));
    // The honest event 2 stays as it was.
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute(
            "INSERT INTO events (seq, id, body) VALUES (2, ?1, ?2)",
            params![honest.id.to_string(), honest.encode().json],
        )
        .unwrap();
        conn.execute("UPDATE state SET depth = depth + 1", [])
            .unwrap();
    }

    let daemon = setup.resume();
    let alerts = wait_for_alert(&setup.collector, &setup.admin, "forged", || daemon.log());
    let mut forged: Vec<u64> = alerts
        .iter()
        .filter(|(p, _)| p == "forged")
        .map(|(_, body)| body["seq"].as_u64().unwrap())
        .collect();
    forged.sort_unstable();
    assert_eq!(forged, [3, 4, 5], "{alerts:#?}");
    assert!(
        alerts
            .iter()
            .any(|(p, body)| p == "forged" && body["event_id"] == json!(edited_id))
    );
    // The honest event before the edit was accepted (chained and authenticated).
    let drift = setup
        .collector
        .get("/api/v1/drift", &setup.admin)
        .expect(200);
    let other = drift
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["subject"]
                .as_str()
                .unwrap()
                .ends_with("etc/sub/other.conf")
        })
        .unwrap_or_else(|| panic!("the honest event was lost: {drift:#}"));
    let item = setup.collector.get(
        &format!("/api/v1/drift/{}", other["id"].as_str().unwrap()),
        &setup.admin,
    );
    let item = item.expect(200);
    assert_eq!(item["events"][0]["chain"], "ok", "{item:#}");
    // Nothing of the edited event was stored.
    assert!(
        !drift
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["subject"].as_str().unwrap().ends_with("bin/tool")),
        "{drift:#}"
    );
}

#[test]
fn a_gap_filler_that_does_not_fit_its_neighbours_is_a_splice() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let agent = FakeAgent::enroll(&collector, &admin, "web-1");
    let first = agent.event("package:a", "1");
    let second = agent.event("package:b", "1");
    let third = agent.event("package:c", "1");
    agent
        .report(&collector, &[first.clone(), third.clone()])
        .expect(200);
    assert!(
        chain_alerts(&collector, &admin)
            .iter()
            .any(|(p, _)| p == "gap")
    );
    // A filler for seq 2, properly MAC'd, linked to seq 1, but not the event seq 3 names.
    let mut filler = second.clone();
    filler.id = uuid::Uuid::now_v7();
    filler.subject.0 = "package:forged".into();
    agent.seal(&mut filler);
    let ack = agent.report(&collector, &[filler.clone()]).expect(200);
    assert_eq!(ack["accepted"], 1, "{ack}");
    let alerts = chain_alerts(&collector, &admin);
    let splice = alerts
        .iter()
        .find(|(p, _)| p == "splice")
        .unwrap_or_else(|| panic!("no splice alert: {alerts:#?}"));
    assert_eq!(splice.1["seq"], 2);
    assert_eq!(splice.1["predecessor_differs"], false);
    assert_eq!(splice.1["successor_differs"], true);
    // Linked to something else than the stored predecessor: the other side.
    let fourth = agent.event("package:d", "1");
    let fifth = agent.event("package:e", "1");
    let sixth = agent.event("package:f", "1");
    agent.report(&collector, &[fourth, sixth]).expect(200);
    let mut astray = fifth.clone();
    astray.prev_hash = ContentHash([7; 32]);
    agent.seal(&mut astray);
    agent.report(&collector, &[astray]).expect(200);
    let alerts = chain_alerts(&collector, &admin);
    assert!(
        alerts
            .iter()
            .any(|(p, b)| p == "splice" && b["seq"] == 5 && b["predecessor_differs"] == true),
        "{alerts:#?}"
    );
}

#[test]
fn an_absurd_seq_is_refused_and_the_chain_stays_checked() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let agent = FakeAgent::enroll(&collector, &admin, "web-1");
    let first = agent.event("package:a", "1");
    agent
        .report(&collector, std::slice::from_ref(&first))
        .expect(200);
    // seq = 2^63-1: refused with a clear error, nothing stored, the head does not move.
    agent.jump_to(i64::MAX as u64, ContentHash([1; 32]));
    let absurd = agent.event("package:evil", "1");
    agent.report(&collector, &[absurd]).error(
        400,
        "bad_request",
        "beyond the highest sequence number",
    );
    // Just past the bound is refused too; at the bound it is a gap.
    agent.jump_to(2 + 100_000, ContentHash([1; 32]));
    let too_far = agent.event("package:evil", "2");
    agent.report(&collector, &[too_far]).error(
        400,
        "bad_request",
        "beyond the highest sequence number",
    );
    let hosts = collector.get("/api/v1/hosts", &admin).expect(200);
    assert_eq!(hosts[0]["stored_seq"], 1, "{hosts:#}");
    // A batch whose numbers go down is refused.
    agent.jump_to(2, first.chain_hash());
    let second = agent.event("package:b", "2");
    let third = agent.event("package:c", "3");
    agent
        .report(&collector, &[third.clone(), second.clone()])
        .error(400, "bad_request", "below the one before it");
    // Later honest events are still chain-checked: in order they extend the chain, and a
    // wrong link is still a fork.
    let ack = agent.report(&collector, &[second, third]).expect(200);
    assert_eq!(ack["accepted"], 2, "{ack}");
    assert!(chain_alerts(&collector, &admin).is_empty());
    agent.jump_to(4, ContentHash([9; 32]));
    let forked = agent.event("package:d", "4");
    agent.report(&collector, &[forked]).expect(200);
    let alerts = chain_alerts(&collector, &admin);
    assert!(
        alerts.iter().any(|(p, b)| p == "fork" && b["seq"] == 4),
        "{alerts:#?}"
    );
}

#[test]
fn a_missing_or_wrong_mac_from_a_keyed_host_is_a_forgery_never_plain() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let agent = FakeAgent::enroll(&collector, &admin, "web-1");
    let key = agent.chain_key.clone().expect("a chain key at enrollment");
    let first = agent.event("package:a", "1");
    agent.report(&collector, &[first]).expect(200);
    // No MAC: as an old agent, or an attacker hoping for a downgrade, would send.
    let mut bare = agent.event("package:bare", "1");
    bare.mac = None;
    let ack = agent.report(&collector, &[bare.clone()]).expect(200);
    assert_eq!(
        (ack["accepted"].as_u64(), ack["rejected"].as_u64()),
        (Some(0), Some(1))
    );
    // MAC'd with an old key (the key of seq 1, say from a backup of the spool).
    agent.jump_to(2, bare.prev_hash);
    let mut stale = agent.event("package:stale", "1");
    stale.seal(&key);
    let ack = agent.report(&collector, &[stale]).expect(200);
    assert_eq!(ack["rejected"], 1, "{ack}");
    let alerts = chain_alerts(&collector, &admin);
    let reasons: Vec<&str> = alerts
        .iter()
        .filter(|(p, _)| p == "forged")
        .map(|(_, b)| b["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{alerts:#?}");
    assert!(reasons.contains(&"missing_mac") && reasons.contains(&"wrong_mac"));
    let drift = collector.get("/api/v1/drift", &admin).expect(200);
    assert!(
        !drift
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["subject"] == "package:bare" || d["subject"] == "package:stale"),
        "forged events are not stored: {drift:#}"
    );
    // The honest seq 2 still fits.
    agent.jump_to(2, bare.prev_hash);
    let honest = agent.event("package:b", "2");
    let ack = agent.report(&collector, &[honest]).expect(200);
    assert_eq!(ack["accepted"], 1, "{ack}");
    // Another event at a number already stored, properly MAC'd (root with the key of
    // seq 1 would need it from before it took the host): a conflict, refused, and the
    // drift it claims to restore stays open.
    agent.jump_to(1, DriftEvent::GENESIS);
    let mut rival = agent.event("package:a", "0");
    rival.kind = ChangeKind::Restored;
    agent.seal(&mut rival);
    let ack = agent.report(&collector, &[rival]).expect(200);
    assert_eq!(ack["rejected"], 1, "{ack}");
    assert!(
        chain_alerts(&collector, &admin)
            .iter()
            .any(|(p, b)| p == "conflict" && b["seq"] == 1)
    );
    let drift = collector.get("/api/v1/drift", &admin).expect(200);
    let item = drift
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["subject"] == "package:a")
        .unwrap();
    assert_eq!(item["status"], "open", "{item:#}");
}

#[test]
fn a_host_enrolled_before_chain_keys_is_shown_unauthenticated() {
    let mut collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let agent = FakeAgent::enroll(&collector, &admin, "old-1");
    // What migration leaves for a host enrolled by an older collector: no key.
    collector.stop();
    Connection::open(collector.db())
        .unwrap()
        .execute(
            "UPDATE hosts SET chain_key_floor_seq = NULL, chain_key_floor = NULL,
                    chain_key_next_seq = NULL, chain_key_next = NULL",
            [],
        )
        .unwrap();
    collector.restart();
    let mut event = agent.event("package:a", "1");
    event.mac = None;
    agent.report(&collector, &[event]).expect(200);
    let hosts = collector.get("/api/v1/hosts", &admin).expect(200);
    assert_eq!(hosts[0]["chain"], "unauthenticated", "{hosts:#}");
    let drift = collector.get("/api/v1/drift", &admin).expect(200);
    let item = collector
        .get(
            &format!("/api/v1/drift/{}", drift[0]["id"].as_str().unwrap()),
            &admin,
        )
        .expect(200);
    assert_eq!(item["events"][0]["chain"], "unauthenticated", "{item:#}");
    let listing = collector.driftctl(&admin, &["hosts"]);
    assert!(
        listing.stdout.contains("CHAIN UNAUTHENTICATED"),
        "{}",
        listing.stdout
    );
}
