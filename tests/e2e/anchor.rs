//! The baseline anchored at the collector (issue 8, points 2 and 3), with the real agent
//! daemon and the real collector: a local re-baseline is a reported, alerting event and
//! cannot turn open drift into "restored"; a baseline swapped, rolled back or edited with
//! its key is alerted within a heartbeat; accepts the collector issued and re-baselines an
//! approved window covers move the expected root quietly. Every wait is bounded.

use std::fs;
use std::path::Path;
use std::time::Duration;

use driftwatch_tests::collector::Collector;
use driftwatch_tests::daemon::{Daemon, DaemonHost, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
/// From a ready daemon to a stored anchor alert: its first heartbeats (every second here;
/// debug builds on a busy machine are slower).
const WITHIN_HEARTBEATS: Duration = Duration::from_secs(10);
const BASELINE_SUBJECT: &str = "driftwatch:baseline";

fn in_minutes(minutes: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A collector, an admin token, and an initialised, enrolled host (daemon not started).
/// Heartbeats every second (the harness's setting).
fn enrolled_host() -> (Collector, String, DaemonHost) {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let host = DaemonHost::new(Some(&collector.url()), "");
    host.init();
    host.enroll_at(&collector, &admin);
    (collector, admin, host)
}

fn anchor_alerts(collector: &Collector) -> Vec<Value> {
    collector
        .alerts()
        .into_iter()
        .filter(|a| a["kind"] == "baseline_anchor")
        .collect()
}

/// Waits for the alert: stored within a few heartbeats of the daemon being ready, then
/// delivered to the sink.
#[track_caller]
fn wait_for_anchor_alert(
    collector: &Collector,
    admin: &str,
    daemon: &Daemon,
    problem: &str,
) -> Value {
    let stored = wait_until(WITHIN_HEARTBEATS, || {
        collector
            .get("/api/v1/alerts", admin)
            .expect(200)
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "baseline_anchor" && a["body"]["problem"] == problem)
    });
    assert!(
        stored,
        "no baseline_anchor alert `{problem}` within {WITHIN_HEARTBEATS:?}\nagent log:\n{}\ncollector log:\n{}",
        daemon.log(),
        collector.log()
    );
    let mut found = None;
    let ok = wait_until(WAIT, || {
        found = anchor_alerts(collector)
            .into_iter()
            .find(|a| a["problem"] == problem);
        found.is_some()
    });
    assert!(
        ok,
        "no baseline_anchor alert `{problem}`; alerts: {:#?}\nagent log:\n{}\ncollector log:\n{}",
        collector.alerts(),
        daemon.log(),
        collector.log()
    );
    found.unwrap()
}

/// The host's drift item on `subject`, once `condition` holds for it.
#[track_caller]
fn wait_for_drift(
    collector: &Collector,
    admin: &str,
    subject: &str,
    daemon: &Daemon,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = None;
    let ok = wait_until(WAIT, || {
        last = collector
            .get("/api/v1/drift", admin)
            .expect(200)
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["subject"] == subject)
            .cloned();
        last.as_ref().is_some_and(&condition)
    });
    assert!(
        ok,
        "drift on {subject} never reached the expected state; last: {last:#?}\nagent log:\n{}\ncollector log:\n{}",
        daemon.log(),
        collector.log()
    );
    last.unwrap()
}

/// Heartbeats with the root that `status.json` shows have reached the collector.
fn heartbeats_settle(collector: &Collector, admin: &str, daemon: &Daemon) {
    let before = daemon
        .status()
        .map(|s| s["heartbeat"]["last_ok_at"].clone());
    assert!(
        wait_until(WAIT, || {
            daemon
                .status()
                .is_some_and(|s| Some(&s["heartbeat"]["last_ok_at"]) != before.as_ref())
        }),
        "no heartbeat got through:\n{}",
        daemon.log()
    );
    // One more, so a verdict waiting for outstanding events has had its chance.
    std::thread::sleep(Duration::from_millis(2500));
    let _ = collector.get("/api/v1/hosts", admin).expect(200);
}

fn file_subject(host: &DaemonHost, rel: &str) -> String {
    format!("file:{}", host.host.tree().join(rel).display())
}

fn copy_baseline(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for name in ["baseline.db", "baseline.key"] {
        fs::copy(from.join(name), to.join(name)).unwrap();
    }
    for name in ["baseline.db-wal", "baseline.db-shm"] {
        let _ = fs::remove_file(to.join(name));
    }
}

#[test]
fn a_local_reinit_is_reported_and_cannot_turn_open_drift_into_restored() {
    let (collector, admin, host) = enrolled_host();
    let daemon = host.start();
    let app = file_subject(&host, "etc/app.conf");

    // Untraced drift opens.
    host.host.write("etc/app.conf", "x\n");
    wait_for_drift(&collector, &admin, &app, &daemon, |d| d["status"] == "open");

    // While the daemon runs, a re-init is refused and changes nothing.
    let db = host.host.state().join("baseline.db");
    let untouched = fs::read(&db).unwrap();
    host.cli(["baseline", "init", "--force", "--quiet"])
        .run()
        .expect(2)
        .stderr_has("the agent daemon is running")
        .stderr_has("Stop the agent first");
    host.cli(["baseline", "accept", "--reason", "mine", "--quiet"])
        .arg(host.host.tree())
        .run()
        .expect(2)
        .stderr_has("the agent daemon is running");
    assert_eq!(fs::read(&db).unwrap(), untouched, "nothing was written");

    // Stopped, the re-init is accepted locally, reported, and the restart says "restored".
    daemon.stop();
    host.cli(["baseline", "init", "--force", "--quiet"])
        .run()
        .expect(0)
        .stderr_has("reported to the collector");
    let daemon = host.start();

    // The re-baseline is untraced drift on the agent's own baseline, naming both roots.
    let rebaseline = wait_for_drift(&collector, &admin, BASELINE_SUBJECT, &daemon, |d| {
        d["status"] == "open"
    });
    assert_eq!(rebaseline["reason"], "untraced", "{rebaseline:#}");
    let detail = collector
        .get(
            &format!("/api/v1/drift/{}", rebaseline["id"].as_str().unwrap()),
            &admin,
        )
        .expect(200);
    let event = &detail["events"][0]["event"];
    assert_eq!(event["actor"]["source"], "command", "{event:#}");
    assert_eq!(
        event["actor"]["uid"],
        std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap()),
        "{event:#}"
    );
    assert_eq!(event["after"]["fields"]["action"], "reinit", "{event:#}");
    assert_ne!(
        event["before"]["fields"]["root"],
        event["after"]["fields"]["root"]
    );
    assert!(
        event["summary"]
            .as_str()
            .unwrap()
            .contains("without a collector command"),
        "{event:#}"
    );

    // The drift on the file stays open: "restored" to a baseline the collector never
    // accepted is refused, recorded and alerted.
    let kept = wait_for_drift(&collector, &admin, &app, &daemon, |d| {
        d["reason"] == "restore_mismatch"
    });
    assert_eq!(kept["status"], "open", "{kept:#}");
    let detail = collector
        .get(
            &format!("/api/v1/drift/{}", kept["id"].as_str().unwrap()),
            &admin,
        )
        .expect(200);
    assert!(
        detail["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"]["kind"] == "restored"),
        "{detail:#}"
    );
    assert!(
        wait_until(WAIT, || collector.alerts().iter().any(|a| {
            a["kind"] == "untraced_drift"
                && a["items"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|i| i["reason"] == "restore_mismatch"))
        })),
        "no alert for the refused restore: {:#?}",
        collector.alerts()
    );
    assert!(
        wait_until(WAIT, || collector.alerts().iter().any(|a| {
            a["kind"] == "untraced_drift"
                && a["items"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|i| i["subject"] == BASELINE_SUBJECT))
        })),
        "no alert for the re-baseline: {:#?}",
        collector.alerts()
    );

    // The reported re-baseline moved the expected root: no anchor alert on top.
    heartbeats_settle(&collector, &admin, &daemon);
    assert!(
        anchor_alerts(&collector).is_empty(),
        "{:#?}",
        collector.alerts()
    );
    daemon.stop();
}

#[test]
fn a_baseline_swapped_with_its_key_for_one_made_by_the_attacker_is_alerted() {
    let (collector, admin, host) = enrolled_host();
    let daemon = host.start();
    heartbeats_settle(&collector, &admin, &daemon);
    daemon.stop();

    // The attacker drops a file and makes a baseline that includes it, elsewhere, with
    // the same policy, then puts database and key in place.
    host.host.write("etc/backdoor.conf", "evil\n");
    let forged = host.host.root().join("forged");
    fs::create_dir_all(&forged).unwrap();
    host.cli(["baseline", "init", "--quiet", "--db"])
        .arg(forged.join("baseline.db"))
        .run()
        .expect(0);
    fs::rename(forged.join("baseline.db.key"), forged.join("baseline.key")).unwrap();
    copy_baseline(&forged, host.host.state());
    host.cli(["check", "--quiet"]).run().expect(0);

    let daemon = host.start();
    let alert = wait_for_anchor_alert(&collector, &admin, &daemon, "replaced");
    assert_ne!(
        alert["expected"]["anchor"]["root"],
        alert["reported"]["root"]
    );
    assert!(
        alert["summary"].as_str().unwrap().contains("replaced"),
        "{alert:#}"
    );
    // Once per condition, not every heartbeat.
    heartbeats_settle(&collector, &admin, &daemon);
    assert_eq!(
        anchor_alerts(&collector).len(),
        1,
        "{:#?}",
        collector.alerts()
    );
    daemon.stop();
}

#[test]
fn a_baseline_replaced_under_the_running_daemon_is_alerted_without_a_restart() {
    let (collector, admin, host) = enrolled_host();
    let daemon = host.start();
    heartbeats_settle(&collector, &admin, &daemon);
    host.host.write("etc/backdoor.conf", "evil\n");
    let forged = host.host.root().join("forged");
    fs::create_dir_all(&forged).unwrap();
    host.cli(["baseline", "init", "--quiet", "--db"])
        .arg(forged.join("baseline.db"))
        .run()
        .expect(0);
    // Renamed into place, key first, as `baseline init --force` would do.
    let state = host.host.state();
    fs::copy(forged.join("baseline.db.key"), state.join("key.tmp")).unwrap();
    fs::rename(state.join("key.tmp"), state.join("baseline.key")).unwrap();
    fs::copy(forged.join("baseline.db"), state.join("db.tmp")).unwrap();
    fs::rename(state.join("db.tmp"), state.join("baseline.db")).unwrap();

    let alert = wait_for_anchor_alert(&collector, &admin, &daemon, "replaced");
    // The detector still runs on the baseline it verified; the one on disk is reported.
    let running = daemon.status().unwrap()["baseline"]["root"].clone();
    assert_ne!(alert["reported"]["root"], running, "{alert:#}");
    assert!(
        daemon
            .log()
            .contains("the baseline on disk is not the one the agent runs on"),
        "{}",
        daemon.log()
    );
    daemon.stop();
}

#[test]
fn a_close_out_moves_the_expected_root_quietly_and_a_rollback_past_it_is_alerted() {
    let (collector, admin, host) = enrolled_host();
    let alice = collector.token("change-manager", "alice");
    let bob = collector.token("change-manager", "bob");
    let daemon = host.start();
    heartbeats_settle(&collector, &admin, &daemon);
    daemon.stop();
    // An older sealed copy, kept by the attacker.
    let old = host.host.root().join("old-copy");
    copy_baseline(host.host.state(), &old);
    let daemon = host.start();

    // An approved window covers a change; its close-out makes the agent accept it.
    let hostname = collector.get("/api/v1/hosts", &admin).expect(200)[0]["hostname"]
        .as_str()
        .unwrap()
        .to_owned();
    let tree = host.host.tree().display().to_string();
    let window = collector
        .post(
            "/api/v1/windows",
            Some(&alice),
            &json!({
                "ticket": "CHG-8", "title": "config change", "hosts": {"names": [hostname]},
                "subjects": [format!("file:{tree}/etc/**")],
                "start": in_minutes(-1), "end": in_minutes(30), "time_zone": "UTC",
            }),
        )
        .expect(201);
    let id = window["id"].as_str().unwrap();
    collector
        .post(
            &format!("/api/v1/windows/{id}/approve"),
            Some(&bob),
            &json!({}),
        )
        .expect(200);
    let app = file_subject(&host, "etc/app.conf");
    host.host.write("etc/app.conf", "port = 8081\n");
    wait_for_drift(&collector, &admin, &app, &daemon, |d| {
        d["status"] == "authorized"
    });
    let root_before = daemon.status().unwrap()["baseline"]["root"].clone();
    collector
        .post(
            &format!("/api/v1/windows/{id}/close"),
            Some(&alice),
            &json!({}),
        )
        .expect(200);
    assert!(
        wait_until(WAIT, || daemon
            .status()
            .is_some_and(|s| s["baseline"]["root"] != root_before)),
        "the agent never applied the close-out:\n{}",
        daemon.log()
    );
    heartbeats_settle(&collector, &admin, &daemon);
    assert!(
        anchor_alerts(&collector).is_empty(),
        "an accept the collector issued is no alarm: {:#?}",
        collector.alerts()
    );
    daemon.stop();

    // Rolling back to the older copy drops that accept: alerted as a rollback.
    copy_baseline(&old, host.host.state());
    let daemon = host.start();
    let alert = wait_for_anchor_alert(&collector, &admin, &daemon, "rolled_back");
    assert_eq!(alert["reported"]["root"], root_before, "{alert:#}");
    daemon.stop();
}

#[test]
fn a_baseline_edited_with_its_key_is_alerted_and_an_unreportable_accept_changes_nothing() {
    let (collector, admin, host) = enrolled_host();
    let daemon = host.start();
    heartbeats_settle(&collector, &admin, &daemon);
    daemon.stop();
    host.host.write("etc/backdoor.conf", "evil\n");
    let state = host.host.state();
    let db = state.join("baseline.db");

    // With the spool made unavailable, an accept on an enrolled host is refused whole.
    let spool = state.join("spool.db");
    let hidden = state.join("spool.db.hidden");
    fs::rename(&spool, &hidden).unwrap();
    fs::create_dir(&spool).unwrap();
    let untouched = fs::read(&db).unwrap();
    host.cli(["baseline", "accept", "--reason", "quiet", "--quiet"])
        .arg(host.host.tree())
        .run()
        .expect(2)
        .stderr_has("must be reported to the collector")
        .stderr_has("nothing was changed");
    assert_eq!(fs::read(&db).unwrap(), untouched);
    fs::remove_dir(&spool).unwrap();
    fs::rename(&hidden, &spool).unwrap();

    // Hiding the credential makes the host look standalone: the accept is only a history
    // row, sealed with the key. The collector still sees another root.
    let credential = state.join("credential.json");
    let aside = state.join("credential.aside");
    fs::rename(&credential, &aside).unwrap();
    host.cli(["baseline", "accept", "--reason", "quiet", "--quiet"])
        .arg(host.host.tree())
        .run()
        .expect(0);
    fs::rename(&aside, &credential).unwrap();
    host.cli(["check", "--quiet"]).run().expect(0);

    let daemon = host.start();
    let alert = wait_for_anchor_alert(&collector, &admin, &daemon, "edited");
    assert!(
        alert["summary"].as_str().unwrap().contains("edited"),
        "{alert:#}"
    );
    daemon.stop();
}

#[test]
fn a_re_baseline_an_approved_window_covers_is_authorized_and_moves_the_root() {
    let (collector, admin, host) = enrolled_host();
    let alice = collector.token("change-manager", "alice");
    let bob = collector.token("change-manager", "bob");
    let daemon = host.start();
    heartbeats_settle(&collector, &admin, &daemon);
    let hostname = collector.get("/api/v1/hosts", &admin).expect(200)[0]["hostname"]
        .as_str()
        .unwrap()
        .to_owned();
    let window = collector
        .post(
            "/api/v1/windows",
            Some(&alice),
            &json!({
                "ticket": "CHG-9", "title": "re-baseline after the upgrade",
                "hosts": {"names": [hostname]},
                "subjects": [BASELINE_SUBJECT],
                "start": in_minutes(-1), "end": in_minutes(30), "time_zone": "UTC",
            }),
        )
        .expect(201);
    let id = window["id"].as_str().unwrap();
    collector
        .post(
            &format!("/api/v1/windows/{id}/approve"),
            Some(&bob),
            &json!({}),
        )
        .expect(200);
    daemon.stop();
    host.host.write("etc/app.conf", "port = 9090\n");
    host.cli(["baseline", "init", "--force", "--quiet"])
        .run()
        .expect(0);
    let daemon = host.start();
    let item = wait_for_drift(&collector, &admin, BASELINE_SUBJECT, &daemon, |d| {
        d["status"] == "authorized"
    });
    assert_eq!(item["window_id"], window["id"], "{item:#}");
    // Its close-out records the approval; the agent already runs on that baseline, so no
    // accept command is sent for it.
    let closed = collector
        .post(
            &format!("/api/v1/windows/{id}/close"),
            Some(&alice),
            &json!({}),
        )
        .expect(200);
    assert_eq!(
        (&closed["drift_accepted"], &closed["commands_queued"]),
        (&json!(1), &json!(0)),
        "{closed:#}"
    );
    heartbeats_settle(&collector, &admin, &daemon);
    assert!(
        anchor_alerts(&collector).is_empty(),
        "{:#?}",
        collector.alerts()
    );
    assert!(
        !collector
            .alerts()
            .iter()
            .any(|a| a["kind"] == "untraced_drift"),
        "{:#?}",
        collector.alerts()
    );
    daemon.stop();
}
