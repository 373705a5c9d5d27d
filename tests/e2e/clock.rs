//! Authorization on the collector's clock (issue 8, point 1), through the real
//! `driftwatch-collector`: an event's `observed_at` is a claim; the collector bounds when
//! each event reached the agent's spool from the heartbeats it received and the arrival of
//! the batch, and a window authorizes only what it provably covers, never past its close.
//! Attacks performed: forged claims of tomorrow and last night (a FakeAgent, and the real
//! agent daemon under libfaketime), a change seconds after close-out, and delivery after
//! an outage (the collector stopped between the heartbeats and the batch).

use std::path::PathBuf;
use std::time::Duration;

use driftwatch_tests::collector::{Collector, FakeAgent};
use driftwatch_tests::daemon::{DaemonHost, wait_until};
use driftwatch_tests::skip_unless_required;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// An RFC 3339 time `minutes` from now.
fn in_minutes(minutes: i64) -> String {
    rfc3339(OffsetDateTime::now_utc() + time::Duration::minutes(minutes))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

struct People {
    admin: String,
    alice: String,
    bob: String,
}

fn people(collector: &Collector) -> People {
    People {
        admin: collector.token("admin", "root"),
        alice: collector.token("change-manager", "alice"),
        bob: collector.token("change-manager", "bob"),
    }
}

/// Alice requests, bob approves; returns the window's id.
#[track_caller]
fn approved(
    collector: &Collector,
    who: &People,
    ticket: &str,
    host: &str,
    subjects: &[&str],
    (start, end): (String, String),
    kind: &str,
) -> String {
    let window = collector
        .post(
            "/api/v1/windows",
            Some(&who.alice),
            &json!({
                "ticket": ticket, "title": "work", "kind": kind, "hosts": {"names": [host]},
                "subjects": subjects, "start": start, "end": end, "time_zone": "UTC",
            }),
        )
        .expect(201);
    let id = window["id"].as_str().unwrap().to_owned();
    collector
        .post(
            &format!("/api/v1/windows/{id}/approve"),
            Some(&who.bob),
            &json!({}),
        )
        .expect(200);
    id
}

/// The drift item of `subject` with its events, waiting (bounded) for it to exist.
#[track_caller]
fn drift_detail(collector: &Collector, token: &str, subject: &str) -> Value {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(30), || {
        found = collector
            .get("/api/v1/drift", token)
            .expect(200)
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["subject"] == subject)
            .cloned();
        found.is_some()
    });
    assert!(ok, "no drift for {subject}\n{}", collector.log());
    let id = found.unwrap()["id"].as_str().unwrap().to_owned();
    collector
        .get(&format!("/api/v1/drift/{id}"), token)
        .expect(200)
}

/// Waits (bounded) for a `clock_claim` alert naming `subject` in the alert sink.
#[track_caller]
fn clock_alert(collector: &Collector, subject: &str) -> Value {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(30), || {
        found = collector.alerts().into_iter().find(|a| {
            a["kind"] == "clock_claim"
                && a["events"]
                    .as_array()
                    .is_some_and(|events| events.iter().any(|e| e["subject"] == subject))
        });
        found.is_some()
    });
    assert!(
        ok,
        "no clock_claim alert for {subject}: {:#?}\n{}",
        collector.alerts(),
        collector.log()
    );
    found.unwrap()
}

#[test]
fn a_fake_agent_claiming_tomorrow_or_last_night_is_untraced_and_alerts() {
    let collector = Collector::start("");
    let who = people(&collector);
    let web = FakeAgent::enroll(&collector, &who.admin, "web-1");
    let now = OffsetDateTime::now_utc();
    let tomorrow_3am =
        (now + time::Duration::days(1)).replace_time(time::Time::from_hms(3, 0, 0).unwrap());
    let last_night = now - time::Duration::hours(8);
    // Approved windows where the forged claims land: tomorrow's change, last night's
    // emergency.
    approved(
        &collector,
        &who,
        "CHG-TOMORROW",
        "web-1",
        &["file:/etc/**"],
        (
            rfc3339(tomorrow_3am - time::Duration::hours(1)),
            rfc3339(tomorrow_3am + time::Duration::hours(1)),
        ),
        "normal",
    );
    approved(
        &collector,
        &who,
        "EMG-NIGHT",
        "web-1",
        &["file:/etc/cron.d/**"],
        (
            rfc3339(last_night - time::Duration::hours(1)),
            rfc3339(last_night + time::Duration::hours(1)),
        ),
        "emergency",
    );

    // A heartbeat shows a clock in sync; then root sets the clock and makes the changes.
    web.heartbeat(&collector, 0).expect(200);
    web.report(
        &collector,
        &[
            web.event_at("file:/etc/sudoers", "evil", tomorrow_3am),
            web.event_at("file:/etc/cron.d/backdoor", "evil", last_night),
        ],
    )
    .expect(200);

    let sudoers = drift_detail(&collector, &who.admin, "file:/etc/sudoers");
    assert_eq!(
        (&sudoers["drift"]["status"], &sudoers["drift"]["reason"]),
        (&json!("open"), &json!("untraced")),
        "{sudoers:#}"
    );
    assert_eq!(sudoers["events"][0]["clock_claim"], "after_bounds");
    let backdoor = drift_detail(&collector, &who.admin, "file:/etc/cron.d/backdoor");
    assert_eq!(
        (&backdoor["drift"]["status"], &backdoor["drift"]["reason"]),
        (&json!("open"), &json!("untraced")),
        "{backdoor:#}"
    );
    assert_eq!(backdoor["events"][0]["clock_claim"], "before_bounds");

    // One alert for the burst, naming both events.
    let alert = clock_alert(&collector, "file:/etc/sudoers");
    assert_eq!(alert["events"].as_array().unwrap().len(), 2, "{alert:#}");
    assert!(
        alert["summary"].as_str().unwrap().contains("web-1"),
        "{alert:#}"
    );
    // `drift show` says so.
    collector
        .driftctl(
            &who.admin,
            &["drift", "show", sudoers["drift"]["id"].as_str().unwrap()],
        )
        .expect(0)
        .stdout_has("FALSE CLAIM (after_bounds)")
        .stdout_has("(collector clock)");
}

#[test]
fn a_change_three_seconds_after_close_out_is_untraced() {
    let collector = Collector::start("");
    let who = people(&collector);
    let web = FakeAgent::enroll(&collector, &who.admin, "web-1");
    let id = approved(
        &collector,
        &who,
        "CHG-1",
        "web-1",
        &["file:/etc/app/**"],
        (in_minutes(-5), in_minutes(55)),
        "normal",
    );
    web.heartbeat(&collector, 0).expect(200);
    web.report(&collector, &[web.event("file:/etc/app/a.conf", "1")])
        .expect(200);
    let a = drift_detail(&collector, &who.admin, "file:/etc/app/a.conf");
    assert_eq!(a["drift"]["status"], "authorized", "{a:#}");
    web.heartbeat(&collector, 1).expect(200);

    let closed = collector
        .post(
            &format!("/api/v1/windows/{id}/close"),
            Some(&who.alice),
            &json!({"comment": "done"}),
        )
        .expect(200);
    assert_eq!(closed["drift_accepted"], 1, "{closed:#}");

    std::thread::sleep(Duration::from_secs(3));
    web.report(&collector, &[web.event("file:/etc/app/late.conf", "1")])
        .expect(200);
    let late = drift_detail(&collector, &who.admin, "file:/etc/app/late.conf");
    assert_eq!(
        (&late["drift"]["status"], &late["drift"]["reason"]),
        (&json!("open"), &json!("untraced")),
        "{late:#}"
    );
    assert_eq!(late["events"][0]["not_provably_in"], json!(id));
    assert_eq!(late["events"][0]["clock_claim"], "consistent");

    // The evidence bundle lists only what the window authorized.
    let bundle = collector
        .get(&format!("/api/v1/windows/{id}/evidence"), &who.admin)
        .expect(200);
    let subjects: Vec<&str> = bundle["content"]["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("{bundle:#}"))
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["file:/etc/app/a.conf"], "{bundle:#}");
}

#[test]
fn events_delivered_after_an_outage_are_judged_by_the_interval_it_spans() {
    let mut collector = Collector::start("");
    let who = people(&collector);
    let web = FakeAgent::enroll(&collector, &who.admin, "web-1");
    let long = approved(
        &collector,
        &who,
        "CHG-LONG",
        "web-1",
        &["file:/etc/app/**"],
        (in_minutes(-5), in_minutes(120)),
        "normal",
    );
    let short = approved(
        &collector,
        &who,
        "CHG-SHORT",
        "web-1",
        &["file:/etc/short/**"],
        (in_minutes(-5), in_minutes(120)),
        "normal",
    );
    web.heartbeat(&collector, 0).expect(200);
    let before_outage = OffsetDateTime::now_utc();
    // The short window is closed; then the collector goes down. The agent spools its
    // changes during the outage (its heartbeats fail) and delivers them afterwards.
    collector
        .post(
            &format!("/api/v1/windows/{short}/close"),
            Some(&who.alice),
            &json!({"comment": "done early"}),
        )
        .expect(200);
    let (code, log) = collector.stop();
    assert_eq!(code, Some(0), "{log}");
    let changes = [
        web.event("file:/etc/app/app.conf", "2"),
        web.event("file:/etc/short/s.conf", "2"),
    ];
    std::thread::sleep(Duration::from_secs(2));
    collector.restart();
    web.report(&collector, &changes).expect(200);

    let app = drift_detail(&collector, &who.admin, "file:/etc/app/app.conf");
    assert_eq!(app["drift"]["status"], "authorized", "{app:#}");
    assert_eq!(app["events"][0]["outcome"]["window_id"], json!(long));
    // The interval spans the outage: from the last heartbeat to the batch's arrival.
    let after: OffsetDateTime = time::OffsetDateTime::parse(
        app["events"][0]["spooled_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let before: OffsetDateTime = time::OffsetDateTime::parse(
        app["events"][0]["spooled_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(after <= before_outage, "{app:#}");
    assert!(before - after >= time::Duration::seconds(2), "{app:#}");

    // The short window closed during the interval: not provably inside it.
    let s = drift_detail(&collector, &who.admin, "file:/etc/short/s.conf");
    assert_eq!(
        (&s["drift"]["status"], &s["drift"]["reason"]),
        (&json!("open"), &json!("untraced")),
        "{s:#}"
    );
    assert_eq!(s["events"][0]["not_provably_in"], json!(short));
}

#[test]
fn a_change_made_while_the_agent_was_stopped_is_judged_from_its_last_heartbeat() {
    let collector = Collector::start("clock_skew_tolerance_secs = 1");
    let who = people(&collector);
    let host = DaemonHost::new(Some(&collector.url()), "");
    host.init();
    let hostname = host.enroll_at(&collector, &who.admin);
    let hosts = || collector.get("/api/v1/hosts", &who.admin).expect(200);
    let daemon = host.start();
    assert!(
        wait_until(Duration::from_secs(30), || !hosts()[0]["last_seen_at"]
            .is_null()),
        "no heartbeat\n{}",
        daemon.log()
    );
    daemon.stop();

    // Root stops the agent; a window opens; the change is made; the agent is started
    // again inside the window. The change happened while nothing watched: it is not
    // provably inside the window.
    std::thread::sleep(Duration::from_secs(3));
    let tree = host.host.tree().to_str().unwrap().to_owned();
    let subjects = [format!("file:{tree}/etc/**")];
    let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
    let window = approved(
        &collector,
        &who,
        "CHG-AFTER-STOP",
        &hostname,
        &subjects,
        (rfc3339(OffsetDateTime::now_utc()), in_minutes(60)),
        "normal",
    );
    host.host.write("etc/app.conf", "port = 6666\n");
    let daemon = host.start();
    let subject = format!("file:{tree}/etc/app.conf");
    let detail = drift_detail(&collector, &who.admin, &subject);
    assert_eq!(
        (&detail["drift"]["status"], &detail["drift"]["reason"]),
        (&json!("open"), &json!("untraced")),
        "{detail:#}\n{}",
        daemon.log()
    );
    assert_eq!(
        detail["events"][0]["event"]["seen_by"], "startup",
        "{detail:#}"
    );
    assert_eq!(detail["events"][0]["not_provably_in"], json!(window));

    // A change made while the agent runs, inside the window, is authorized.
    host.host.write("etc/sub/other.conf", "x = 2\n");
    let subject = format!("file:{tree}/etc/sub/other.conf");
    let watched = drift_detail(&collector, &who.admin, &subject);
    assert_eq!(watched["drift"]["status"], "authorized", "{watched:#}");
    daemon.stop();
}

/// libfaketime's preload library, if installed (Debian package `faketime`).
fn libfaketime() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DRIFTWATCH_LIBFAKETIME") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let mut dirs = vec![PathBuf::from("/usr/lib"), PathBuf::from("/usr/local/lib")];
    for base in ["/usr/lib", "/usr/lib64"] {
        if let Ok(entries) = std::fs::read_dir(base) {
            dirs.extend(entries.flatten().map(|e| e.path()));
        }
    }
    dirs.into_iter()
        .map(|dir| dir.join("faketime/libfaketime.so.1"))
        .find(|path| path.is_file())
}

#[test]
fn a_real_agent_whose_clock_is_set_forward_or_back_is_untraced_and_alerts() {
    let Some(library) = libfaketime() else {
        skip_unless_required(
            "DRIFTWATCH_REQUIRE_FAKETIME",
            "libfaketime not found (install the Debian package `faketime`, or set \
             DRIFTWATCH_LIBFAKETIME): the real-agent clock attack was NOT tested",
        );
        return;
    };
    let collector = Collector::start("");
    let who = people(&collector);
    let host = DaemonHost::new(Some(&collector.url()), "");
    host.init();
    let hostname = host.enroll_at(&collector, &who.admin);
    let tree = host.host.tree().to_str().unwrap().to_owned();
    let now = OffsetDateTime::now_utc();
    let tomorrow = now + time::Duration::days(1);
    let last_night = now - time::Duration::hours(7);
    let subjects = [format!("file:{tree}/etc/**")];
    let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
    approved(
        &collector,
        &who,
        "CHG-TOMORROW",
        &hostname,
        &subjects,
        (
            rfc3339(tomorrow - time::Duration::hours(1)),
            rfc3339(tomorrow + time::Duration::hours(1)),
        ),
        "normal",
    );
    approved(
        &collector,
        &who,
        "EMG-NIGHT",
        &hostname,
        &subjects,
        (
            rfc3339(last_night - time::Duration::hours(1)),
            rfc3339(last_night + time::Duration::hours(1)),
        ),
        "emergency",
    );

    // The agent's clock, read from a file it re-reads on every call: in sync at first.
    let offset = host.host.root().join("faketime-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let env = [
        ("LD_PRELOAD", library.to_str().unwrap()),
        ("FAKETIME_TIMESTAMP_FILE", offset.to_str().unwrap()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let daemon = host.start_with_env(&env);
    let skew = || collector.get("/api/v1/hosts", &who.admin).expect(200)[0]["skew_ms"].as_i64();
    assert!(
        wait_until(Duration::from_secs(30), || skew()
            .is_some_and(|s| s.abs() < 5_000)),
        "no heartbeat in sync: {:?}\n{}",
        skew(),
        daemon.log()
    );

    // Root sets the clock to tomorrow and edits a file.
    std::fs::write(&offset, "+1d\n").unwrap();
    host.host.write("etc/app.conf", "port = 6666\n");
    let subject = format!("file:{tree}/etc/app.conf");
    let forward = drift_detail(&collector, &who.admin, &subject);
    assert_eq!(
        (&forward["drift"]["status"], &forward["drift"]["reason"]),
        (&json!("open"), &json!("untraced")),
        "{forward:#}\n{}",
        daemon.log()
    );
    let event = &forward["events"][0];
    assert_eq!(event["clock_claim"], "after_bounds", "{forward:#}");
    // The claim really was tomorrow: faketime took effect on the agent.
    let claimed = OffsetDateTime::parse(
        event["event"]["observed_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(claimed > now + time::Duration::hours(23), "{forward:#}");
    clock_alert(&collector, &subject);

    // Then to last night, and edits another file.
    std::fs::write(&offset, "-7h\n").unwrap();
    host.host.write("etc/sub/other.conf", "x = 666\n");
    let subject = format!("file:{tree}/etc/sub/other.conf");
    let back = drift_detail(&collector, &who.admin, &subject);
    assert_eq!(
        (&back["drift"]["status"], &back["drift"]["reason"]),
        (&json!("open"), &json!("untraced")),
        "{back:#}\n{}",
        daemon.log()
    );
    assert_eq!(
        back["events"][0]["clock_claim"], "before_bounds",
        "{back:#}"
    );
    daemon.stop();
}
