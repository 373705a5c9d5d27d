//! Evidence for auditors with the real `driftwatch-collector` and `driftctl`: a window
//! requested, approved, worked in (one authorized change with hostile bytes, one in another
//! state than approved) and closed out, an untraced change resolved by security; then the
//! period export (JSON and CSV, sampled), the close-out bundle (JSON, Markdown, HTML), the
//! roles that may fetch them, bad input, and the audit entries they leave.

use std::collections::BTreeMap;

use driftwatch_common::api::v1::{
    Actor, AgentHealth, ChangeKind, CommandOutcome, CommandResult, DriftEvent, Heartbeat,
    HeartbeatResponse, Inventory, SubjectState,
};
use driftwatch_tests::collector::{Collector, FakeAgent};
use serde_json::{Value, json};
use uuid::Uuid;

const HOSTILE_SUBJECT: &str = "file:/etc/nginx/<script>alert(1)</script>`|*x*.conf";
const HOSTILE_DIFF: &str = "--- a\n+++ b\n-listen 80;\n+</pre><script>steal()</script>\n+```\n";

/// Reports a change of `subject` to `after` as `agent` (a hostile diff, an actor whose
/// login name is a spreadsheet formula); returns the event's id.
#[track_caller]
fn report(agent: &FakeAgent, collector: &Collector, subject: &str, after: SubjectState) -> Uuid {
    let event = agent.chain(DriftEvent {
        kind: ChangeKind::Content,
        changed: vec!["content".into()],
        before: Some(fields("1")),
        after: Some(after),
        diff: Some(HOSTILE_DIFF.into()),
        actor: Some(Actor {
            source: "fanotify".into(),
            pid: Some(4242),
            comm: Some("vi".into()),
            login_user: Some("=HYPERLINK(\"http://evil\")".into()),
            ..Actor::default()
        }),
        ..agent.event(subject, "unused")
    });
    agent
        .report(collector, std::slice::from_ref(&event))
        .expect(200);
    event.id
}

/// A heartbeat from `agent` that answers `results`; returns the commands received.
#[track_caller]
fn heartbeat(
    agent: &FakeAgent,
    collector: &Collector,
    results: Vec<CommandResult>,
) -> HeartbeatResponse {
    let beat = Heartbeat {
        host_id: agent.id,
        sent_at: time::OffsetDateTime::now_utc(),
        inventory: Inventory::default(),
        health: AgentHealth::default(),
        last_seq: agent.last_seq(),
        results,
        baseline: None,
    };
    let answer = collector
        .post(
            "/api/v1/heartbeat",
            Some(&agent.credential),
            &serde_json::to_value(&beat).unwrap(),
        )
        .expect(200);
    serde_json::from_value(answer).unwrap()
}

fn fields(version: &str) -> SubjectState {
    SubjectState::Fields {
        fields: BTreeMap::from([("version".to_owned(), version.to_owned())]),
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn in_minutes(minutes: i64) -> String {
    rfc3339(time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes))
}

/// Percent-encodes the `+` and `:` of an RFC 3339 time for a query string.
fn q(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}

#[test]
fn evidence_exports_and_close_out_bundles_for_auditors() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let token = |name: &str, role: &str| {
        let run = collector.driftctl(&admin, &["token", "create", "--name", name, "--role", role]);
        run.expect(0);
        run.stdout.trim().to_owned()
    };
    let alice = token("alice", "change-manager");
    let bob = token("bob", "change-manager");
    let mallory = token("mallory", "change-manager");
    let carol = token("carol", "auditor");
    let eve = token("eve", "security");
    let web = FakeAgent::enroll(&collector, &admin, "web-1");
    let db = FakeAgent::enroll(&collector, &admin, "db-1");
    let period_from = in_minutes(-10);

    // A window with an expected state, requested by alice and approved by bob.
    let created = collector.driftctl(
        &alice,
        &[
            "--json",
            "windows",
            "create",
            "--ticket",
            "CHG-77",
            "--title",
            "nginx <b>upgrade</b>",
            "--host",
            "web-1",
            "--subject",
            "file:/etc/nginx/**",
            "--subject",
            "package:nginx",
            "--expect",
            "package:nginx=version:2",
            "--start",
            &in_minutes(-5),
            "--end",
            &in_minutes(55),
            "--time-zone",
            "Europe/Paris",
        ],
    );
    created.expect(0);
    let window = created.json()["id"].as_str().unwrap().to_owned();
    collector
        .driftctl(
            &bob,
            &["windows", "approve", &window, "--comment", "CAB ok"],
        )
        .expect(0);

    let authorized = report(&web, &collector, HOSTILE_SUBJECT, fields("2"));
    let unexpected = report(&web, &collector, "package:nginx", fields("3"));
    let untraced = report(&db, &collector, "file:/etc/passwd", fields("9"));

    let drift = collector
        .get(&format!("/api/v1/drift?host={}", db.id), &eve)
        .expect(200);
    let db_drift = drift[0]["id"].as_str().unwrap().to_owned();
    collector
        .driftctl(
            &eve,
            &[
                "drift",
                "resolve",
                &db_drift,
                "--category",
                "confirmed_unauthorized",
                "--comment",
                "incident INC-9",
            ],
        )
        .expect(0);
    collector
        .driftctl(&alice, &["windows", "close", &window])
        .expect(0)
        .stdout_has("1 drift item(s) accepted");
    let commands = heartbeat(&web, &collector, vec![]).commands;
    assert_eq!(commands.len(), 1, "{commands:?}");
    let driftwatch_common::api::v1::AgentCommand::BaselineAccept { command_id, .. } = &commands[0];
    heartbeat(
        &web,
        &collector,
        vec![CommandResult {
            command_id: *command_id,
            outcome: CommandOutcome::Applied,
            baseline: None,
        }],
    );
    let period_to = in_minutes(10);
    let period = format!("from={}&to={}", q(&period_from), q(&period_to));

    // The period export, JSON: every change with its evidence, figures, the verification.
    let export = collector
        .get(
            &format!("/api/v1/reports/export?{period}&format=json"),
            &carol,
        )
        .expect(200);
    assert_eq!(export["audit_log"]["ok"], true, "{export:#}");
    assert_eq!(export["exported_by"], "carol");
    let rows = export["rows"].as_array().unwrap();
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            authorized.to_string(),
            unexpected.to_string(),
            untraced.to_string()
        ]
    );
    let row = |id: Uuid| {
        rows.iter()
            .find(|r| r["event_id"] == id.to_string())
            .unwrap()
    };
    let a = row(authorized);
    assert_eq!(
        (
            &a["authorization"],
            &a["ticket"],
            &a["requester"],
            &a["approver"]
        ),
        (
            &json!("authorized"),
            &json!("CHG-77"),
            &json!("alice"),
            &json!("bob")
        )
    );
    assert_eq!(
        (&a["resolution"], &a["resolved_by"], &a["drift_status"]),
        (&json!("accepted"), &json!("alice"), &json!("accepted"))
    );
    assert_eq!(a["seen_by"], "watch");
    assert!(a["actor"].as_str().unwrap().contains("via vi[4242]"), "{a}");
    assert_eq!(row(unexpected)["authorization"], "unexpected_state");
    let u = row(untraced);
    assert_eq!(
        (
            &u["authorization"],
            &u["resolution"],
            &u["resolved_by"],
            &u["resolution_comment"]
        ),
        (
            &json!("untraced"),
            &json!("confirmed_unauthorized"),
            &json!("eve"),
            &json!("incident INC-9")
        )
    );
    let overall = &export["summary"]["overall"];
    assert_eq!(
        (
            &overall["changes"],
            &overall["authorized"],
            &overall["untraced"],
            &overall["unexpected_state"]
        ),
        (&json!(3), &json!(1), &json!(1), &json!(1))
    );
    assert_eq!(overall["percent_authorized"], 33.3);
    assert_eq!(overall["resolved"], 1);
    assert!(overall["median_ms_to_resolve"].as_i64().unwrap() >= 0);
    assert_eq!(
        overall["unresolved"], 1,
        "the unexpected state is still open"
    );
    let hosts: Vec<&str> = export["summary"]["per_host"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["db-1", "web-1"]);
    assert_eq!(export["summary"]["per_window"][0]["ticket"], "CHG-77");
    assert_eq!(export["summary"]["per_window"][0]["metrics"]["changes"], 2);

    // A host filter, and a sample that draws the same rows again.
    let only_db = collector
        .get(&format!("/api/v1/reports/export?{period}&host=db-1"), &eve)
        .expect(200);
    assert_eq!(only_db["rows"].as_array().unwrap().len(), 1);
    let sampled = |seed: u64| {
        collector
            .get(
                &format!("/api/v1/reports/export?{period}&sample=2&seed={seed}"),
                &admin,
            )
            .expect(200)["sample"]["event_ids"]
            .clone()
    };
    let first = sampled(9);
    assert_eq!(first.as_array().unwrap().len(), 2);
    assert_eq!(first, sampled(9), "same seed, same data, same sample");

    // CSV through driftctl: the comment section, then a table a spreadsheet cannot run.
    let csv_path = collector.dir().join("evidence.csv");
    collector
        .driftctl(
            &carol,
            &[
                "report",
                "export",
                "--from",
                &period_from,
                "--to",
                &period_to,
                "--format",
                "csv",
                "--sample",
                "1",
                "--seed",
                "3",
                "-o",
                csv_path.to_str().unwrap(),
            ],
        )
        .expect(0)
        .stderr_has("wrote");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let (comments, table) = csv
        .split_once("\r\n\r\n")
        .expect("a blank line after the comments");
    assert!(comments.lines().all(|l| l.starts_with("# ")), "{comments}");
    assert!(
        comments.contains("audit log verification: no problem found"),
        "{comments}"
    );
    assert!(
        comments.contains("sample: 1 of 1 rows asked; seed 3"),
        "{comments}"
    );
    let mut lines = table.split("\r\n");
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("event_id,host,host_id,subject,")
    );
    assert!(
        table.contains(",\"'=HYPERLINK(\"\"http://evil\"\")"),
        "the actor cell is defused: {table}"
    );
    assert!(!table.contains(",=HYPERLINK"));
    assert_eq!(table.matches(",yes\r\n").count(), 1, "one sampled row");

    // Bad input names the problem and exports nothing.
    for (query, fragment) in [
        (
            format!("from={}&to={}", q(&period_to), q(&period_from)),
            "must be before `to`",
        ),
        (
            format!("from=yesterday&to={}", q(&period_to)),
            "from: `yesterday`",
        ),
        (format!("{period}&format=xlsx"), "unknown format `xlsx`"),
        (format!("{period}&sample=3"), "needs `seed`"),
    ] {
        collector
            .get(&format!("/api/v1/reports/export?{query}"), &carol)
            .error(400, "bad_request", fragment);
    }
    collector
        .driftctl(
            &carol,
            &[
                "report",
                "export",
                "--from",
                "2026-13-01",
                "--to",
                &period_to,
            ],
        )
        .expect(65)
        .stderr_has("400");

    // Roles: change managers and agents do not export.
    collector
        .get(&format!("/api/v1/reports/export?{period}"), &alice)
        .error(
            403,
            "forbidden",
            "needs the auditor or security or admin role",
        );
    collector
        .get(&format!("/api/v1/reports/export?{period}"), &web.credential)
        .error(403, "forbidden", "has role agent");

    // The bundle, JSON: the window, the close-out and whether the agent applied it.
    let bundle = collector
        .get(&format!("/api/v1/windows/{window}/evidence"), &carol)
        .expect(200);
    let content = &bundle["content"];
    assert_eq!(bundle["content_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(content["window"]["ticket"], "CHG-77");
    assert_eq!(content["window"]["requester"], "alice");
    assert_eq!(content["window"]["decided_by"], "bob");
    assert_eq!(content["window"]["time_zone"], "Europe/Paris");
    assert_eq!(content["close_out"]["closed_by"], "alice");
    assert_eq!(content["close_out"]["drift_accepted"], 1);
    assert_eq!(content["close_out"]["acceptances"][0]["status"], "applied");
    let changes = content["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["subject"], HOSTILE_SUBJECT);
    assert_eq!(changes[0]["diff"], HOSTILE_DIFF);
    assert_eq!(changes[0]["before"], "version=1");
    assert_eq!(changes[0]["after"], "version=2");
    let flagged = content["flagged"].as_array().unwrap();
    assert!(
        flagged.iter().any(|f| f["subject"] == "package:nginx"
            && f["problem"]
                .as_str()
                .unwrap()
                .contains("expected version 2")),
        "{flagged:#?}"
    );
    assert_eq!(content["audit_log"]["ok"], true);

    // HTML for the change owner: escaped, served as HTML with a strict policy.
    let page = collector.get(
        &format!("/api/v1/windows/{window}/evidence?format=html"),
        &alice,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(!page.body.contains("<b>upgrade"));
    assert!(page.body.contains("&lt;script&gt;steal()&lt;/script&gt;"));

    // Markdown through driftctl, by the approver.
    let md_path = collector.dir().join("evidence.md");
    collector
        .driftctl(
            &bob,
            &[
                "window",
                "evidence",
                &window,
                "--format",
                "md",
                "-o",
                md_path.to_str().unwrap(),
            ],
        )
        .expect(0);
    let md = std::fs::read_to_string(&md_path).unwrap();
    assert!(md.starts_with("# Change window CHG\\-77"), "{md}");
    assert!(md.contains("Closed by alice"), "{md}");
    assert!(
        md.contains("````text\n"),
        "the diff's ``` cannot close the block: {md}"
    );
    assert!(md.contains("Content SHA-256: `"), "{md}");

    // A change manager who had no part in the window, a bad format, an unknown window.
    collector
        .get(&format!("/api/v1/windows/{window}/evidence"), &mallory)
        .error(
            403,
            "forbidden",
            "windows they requested, decided or closed",
        );
    collector
        .get(
            &format!("/api/v1/windows/{window}/evidence?format=pdf"),
            &carol,
        )
        .error(400, "bad_request", "unknown format `pdf`");
    collector
        .get(
            &format!("/api/v1/windows/{}/evidence", Uuid::now_v7()),
            &carol,
        )
        .error(404, "not_found", "no window");

    // Each export and bundle fetch is in the audit log, which still verifies.
    let log = collector.get("/api/v1/audit", &carol).expect(200);
    let entries = log.as_array().unwrap();
    let by = |action: &str, actor: &str| -> Vec<Value> {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["actor"] == actor)
            .cloned()
            .collect()
    };
    let exports = by("report.exported", "carol");
    assert_eq!(
        exports.len(),
        2,
        "the JSON and the CSV export; refusals are not"
    );
    assert_eq!(exports[1]["details"]["format"], "csv");
    assert_eq!(exports[1]["details"]["seed"], 3);
    assert!(exports[0]["details"]["from"].is_string());
    let fetched = by("window.evidence_exported", "bob");
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0]["target"], format!("window:{window}"));
    assert_eq!(fetched[0]["details"]["format"], "md");
    assert!(by("window.evidence_exported", "mallory").is_empty());
    collector
        .driftctl(&carol, &["audit", "verify"])
        .expect(0)
        .stdout_has("no problem found");
}

#[test]
fn an_export_larger_than_max_export_rows_is_refused_and_not_audited() {
    let collector = Collector::start("max_export_rows = 1");
    let admin = collector.token("admin", "root");
    let web = FakeAgent::enroll(&collector, &admin, "web-1");
    let from = in_minutes(-10);
    report(&web, &collector, "package:a", fields("2"));
    report(&web, &collector, "package:b", fields("2"));
    let period = format!("from={}&to={}", q(&from), q(&in_minutes(10)));
    collector
        .get(&format!("/api/v1/reports/export?{period}"), &admin)
        .error(400, "bad_request", "more than 1 events (max_export_rows)");
    let narrow = collector
        .get(
            &format!("/api/v1/reports/export?{period}&host=db-9"),
            &admin,
        )
        .expect(200);
    assert_eq!(narrow["rows"], json!([]), "a narrower export still works");
    let log = collector.get("/api/v1/audit", &admin).expect(200);
    let exports = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "report.exported")
        .count();
    assert_eq!(exports, 1, "only the export that was made is recorded");
}
