//! Retention with the real `driftwatch-collector`: with `[retention]` of one day, a
//! collector whose clock is two days later (libfaketime) prunes the resolved drift with its
//! events and the delivered alerts, keeps open drift, records the prune in the audit log,
//! and `audit verify --checkpoints` and an evidence export still find no problem and say
//! what was pruned. Without `[retention]` nothing is pruned.

use std::path::PathBuf;
use std::time::Duration;

use driftwatch_tests::collector::{Collector, FakeAgent};
use driftwatch_tests::daemon::wait_until;
use driftwatch_tests::skip_unless_required;
use serde_json::{Value, json};

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

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn audit_log(collector: &Collector, token: &str) -> Vec<Value> {
    collector
        .get("/api/v1/audit", token)
        .expect(200)
        .as_array()
        .unwrap()
        .clone()
}

/// An enrolled host with two untraced changes, one of them resolved; both alerted and
/// the alert delivered to the JSON-lines sink. Returns (admin, security, resolved, open).
fn drift_and_alerts(collector: &Collector) -> (String, String, String, String) {
    let admin = collector.token("admin", "Ada Admin");
    let security = collector.token("security", "Sam Security");
    let agent = FakeAgent::enroll(collector, &admin, "web-1");
    let events = [
        agent.event("package:telnetd", "1"),
        agent.event("package:netcat", "1"),
    ];
    agent.report(collector, &events).expect(200);
    let delivered = wait_until(Duration::from_secs(30), || {
        collector
            .get("/api/v1/alerts", &admin)
            .expect(200)
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "untraced_drift" && !a["delivered_at"].is_null())
    });
    assert!(delivered, "no delivered alert:\n{}", collector.log());
    let drift = collector.get("/api/v1/drift", &admin).expect(200);
    let id_of = |subject: &str| {
        drift
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["subject"] == subject)
            .unwrap_or_else(|| panic!("no drift on {subject}: {drift:#}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (resolved, open) = (id_of("package:telnetd"), id_of("package:netcat"));
    collector
        .post(
            &format!("/api/v1/drift/{resolved}/resolve"),
            Some(&security),
            &json!({ "category": "false_positive", "comment": "lab package" }),
        )
        .expect(200);
    (admin, security, resolved, open)
}

#[test]
fn a_short_retention_prunes_old_records_with_an_audit_entry_and_verify_stays_clean() {
    let Some(library) = libfaketime() else {
        skip_unless_required(
            "DRIFTWATCH_REQUIRE_FAKETIME",
            "libfaketime not found (install the Debian package `faketime`, or set \
             DRIFTWATCH_LIBFAKETIME): retention was NOT tested",
        );
        return;
    };
    let mut collector = Collector::start(
        "[audit]\ncheckpoint_interval_secs = 1\n\
         [retention]\nresolved_drift_days = 1\ndelivered_alerts_days = 1\ninterval_secs = 1\n",
    );
    let (admin, security, resolved, open) = drift_and_alerts(&collector);
    // Nothing is a day old yet: nothing pruned.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        audit_log(&collector, &admin)
            .iter()
            .all(|e| e["action"] != "retention.pruned")
    );
    let alert_ids = |collector: &Collector| -> Vec<Value> {
        collector
            .get("/api/v1/alerts", &admin)
            .expect(200)
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].clone())
            .collect()
    };
    let delivered_before = alert_ids(&collector);
    assert!(!delivered_before.is_empty());

    // Two days later.
    collector.restart_with_env(&[
        ("LD_PRELOAD", library.to_str().unwrap()),
        ("FAKETIME", "+2d"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]);
    let mut entry = Value::Null;
    let pruned = wait_until(Duration::from_secs(30), || {
        entry = audit_log(&collector, &admin)
            .into_iter()
            .find(|e| e["action"] == "retention.pruned")
            .unwrap_or(Value::Null);
        !entry.is_null()
    });
    assert!(pruned, "no retention.pruned entry:\n{}", collector.log());
    assert_eq!(entry["actor"], "collector:retention", "{entry:#}");
    let rows = &entry["details"]["rows"];
    assert_eq!(
        (&rows["drift"], &rows["events"]),
        (&json!(1), &json!(1)),
        "{entry:#}"
    );
    assert!(rows["alerts"].as_u64().unwrap() >= 1, "{entry:#}");
    assert_eq!(entry["details"]["audit_log"], "never pruned");
    // The faked clock took effect: the cut-off is a day before the collector's now.
    let cutoff = entry["details"]["resolved_drift_before"].as_str().unwrap();
    let cutoff =
        time::OffsetDateTime::parse(cutoff, &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert!(cutoff > time::OffsetDateTime::now_utc() + time::Duration::hours(20));

    // The resolved drift and its events are gone, the open drift stays.
    collector
        .get(&format!("/api/v1/drift/{resolved}"), &admin)
        .expect(404);
    let kept = collector
        .get(&format!("/api/v1/drift/{open}"), &security)
        .expect(200);
    assert_eq!(kept["drift"]["status"], "open", "{kept:#}");
    assert_eq!(kept["events"].as_array().unwrap().len(), 1, "{kept:#}");
    let left = alert_ids(&collector);
    assert!(
        delivered_before.iter().all(|id| !left.contains(id)),
        "the alerts delivered two days ago are gone: {left:?}"
    );

    // The audit log, with the checkpoints the sink holds, still verifies, and says what
    // was pruned.
    let sink = collector.dir().join("alerts.jsonl");
    let verified = collector.cli(&["audit", "verify", "--checkpoints", sink.to_str().unwrap()]);
    verified.expect(0);
    assert!(
        verified.stdout.contains("no problem found")
            && verified
                .stdout
                .contains("retention removed 1 resolved or accepted drift item(s) with 1 event(s)"),
        "{}",
        verified.stdout
    );

    // An evidence export of the whole period: no problem, and the prune is named.
    let now = time::OffsetDateTime::now_utc();
    let export = collector
        .get(
            &format!(
                "/api/v1/reports/export?from={}&to={}&format=json",
                rfc3339(now - time::Duration::days(1)),
                rfc3339(now + time::Duration::days(3))
            ),
            &admin,
        )
        .expect(200);
    assert_eq!(export["audit_log"]["ok"], true, "{:#}", export["audit_log"]);
    assert_eq!(
        export["audit_log"]["pruned"][0]["seq"], entry["seq"],
        "{:#}",
        export["audit_log"]
    );
}

#[test]
fn without_retention_nothing_is_pruned() {
    let Some(library) = libfaketime() else {
        skip_unless_required(
            "DRIFTWATCH_REQUIRE_FAKETIME",
            "libfaketime not found: retention was NOT tested",
        );
        return;
    };
    let mut collector = Collector::start("");
    let (admin, _, resolved, _) = drift_and_alerts(&collector);
    collector.restart_with_env(&[
        ("LD_PRELOAD", library.to_str().unwrap()),
        ("FAKETIME", "+3650d"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        audit_log(&collector, &admin)
            .iter()
            .all(|e| e["action"] != "retention.pruned")
    );
    collector
        .get(&format!("/api/v1/drift/{resolved}"), &admin)
        .expect(200);
}
