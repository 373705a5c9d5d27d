//! Matching beyond host, subject and time, through the real `driftwatch-collector` and
//! `driftctl`: who made a change (implementers, the approver), package provenance and
//! recurring standard windows. Events are posted as an enrolled agent would post them, with
//! the actor and provenance a privileged agent attaches.

use std::time::Duration;

use driftwatch_common::api::v1::{Actor, DriftEvent, Provenance};
use driftwatch_tests::collector::{Collector, FakeAgent};
use driftwatch_tests::daemon::wait_until;
use serde_json::{Value, json};

/// The next event of `agent`: `subject` changed now, by `actor`, with `provenance`.
fn change(
    agent: &FakeAgent,
    subject: &str,
    actor: Option<Actor>,
    provenance: Option<Provenance>,
) -> DriftEvent {
    agent.chain(DriftEvent {
        actor,
        provenance,
        ..agent.event(subject, "2")
    })
}

/// A change made through sudo by the person who logged in as `login`.
fn by(login: &str) -> Option<Actor> {
    Some(Actor {
        source: "fanotify".into(),
        pid: Some(4242),
        comm: Some("vi".into()),
        uid: Some(0),
        user: Some("root".into()),
        login_uid: Some(1000),
        login_user: Some(login.into()),
        ..Actor::default()
    })
}

/// An RFC 3339 time `minutes` from now.
fn in_minutes(minutes: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

struct People {
    admin: String,
    alice: String,
    bob: String,
    eve: String,
}

fn people(collector: &Collector) -> People {
    let admin = collector.token("admin", "root");
    let token = |name: &str, role: &str| {
        let run = collector.driftctl(&admin, &["token", "create", "--name", name, "--role", role]);
        run.expect(0);
        run.stdout.trim().to_owned()
    };
    People {
        alice: token("alice", "change-manager"),
        bob: token("bob", "change-manager"),
        eve: token("eve", "security"),
        admin,
    }
}

/// Alice requests with `extra` driftctl flags, bob approves; returns the window's JSON.
#[track_caller]
fn approved_window(collector: &Collector, who: &People, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "windows", "create", "--title", "work"];
    args.extend_from_slice(extra);
    let created = collector.driftctl(&who.alice, &args);
    created.expect(0);
    let window = created.json();
    let id = window["id"].as_str().unwrap().to_owned();
    collector
        .driftctl(&who.bob, &["windows", "approve", &id])
        .expect(0)
        .stdout_has("is approved");
    window
}

/// (status, reason) of the active or last drift item of `subject`.
fn drift_of(collector: &Collector, token: &str, subject: &str) -> (String, Value) {
    let drift = collector.get("/api/v1/drift", token).expect(200);
    let item = drift
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["subject"] == subject)
        .unwrap_or_else(|| panic!("no drift on {subject}: {drift:#}"))
        .clone();
    (
        item["status"].as_str().unwrap().to_owned(),
        item["reason"].clone(),
    )
}

#[test]
fn implementers_and_the_approver_are_checked_and_flagged_drift_alerts() {
    let collector = Collector::start("");
    let who = people(&collector);
    let web = FakeAgent::enroll_with(
        &collector,
        &who.admin,
        json!({"hostname": "web-1", "labels": {}}),
    );
    let (start, end) = (in_minutes(-5), in_minutes(55));
    let window = approved_window(
        &collector,
        &who,
        &[
            "--ticket",
            "CHG-7",
            "--host",
            "web-1",
            "--subject",
            "file:/etc/app/**",
            "--start",
            &start,
            "--end",
            &end,
            "--implementer",
            "carol",
            "--implementer",
            "dave",
        ],
    );
    assert_eq!(window["implementers"], json!(["carol", "dave"]));
    collector
        .driftctl(
            &who.bob,
            &["windows", "show", window["id"].as_str().unwrap()],
        )
        .expect(0)
        .stdout_has("implementers: carol, dave");

    web.report(
        &collector,
        &[
            change(&web, "file:/etc/app/ok.conf", by("carol"), None),
            change(&web, "file:/etc/app/other.conf", by("mallory"), None),
            change(&web, "file:/etc/app/approver.conf", by("bob"), None),
            change(&web, "file:/etc/app/unknown.conf", None, None),
        ],
    )
    .expect(200);
    let eve = &who.eve;
    assert_eq!(
        drift_of(&collector, eve, "file:/etc/app/ok.conf"),
        ("authorized".into(), Value::Null)
    );
    for (subject, reason) in [
        ("file:/etc/app/other.conf", "wrong_implementer"),
        ("file:/etc/app/approver.conf", "made_by_approver"),
        ("file:/etc/app/unknown.conf", "actor_unknown"),
    ] {
        assert_eq!(
            drift_of(&collector, eve, subject),
            ("open".into(), json!(reason)),
            "{subject}"
        );
    }

    // Flagged drift is held and alerted like untraced drift, with its reason.
    let (mut alerts, mut items) = (Vec::new(), Vec::new());
    let alerted = wait_until(Duration::from_secs(30), || {
        alerts = collector
            .alerts()
            .into_iter()
            .filter(|a| a["kind"] == "untraced_drift")
            .collect();
        items = alerts
            .iter()
            .flat_map(|a| a["items"].as_array().cloned().unwrap_or_default())
            .collect();
        items.len() == 3
    });
    assert!(
        alerted,
        "alert items: {items:#?}\nlog:\n{}",
        collector.log()
    );
    for alert in &alerts {
        let summary = alert["summary"].as_str().unwrap();
        assert!(
            summary.contains("flagged") && !summary.starts_with("untraced"),
            "{summary}"
        );
    }
    // Each flagged item names its window's ticket (syslog and Slack show it).
    for item in &items {
        assert!(item["window_id"].is_string(), "{item:#}");
        assert_eq!(item["ticket"], "CHG-7", "{item:#}");
    }
    let mut reasons: Vec<&str> = items
        .iter()
        .map(|i| i["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["actor_unknown", "made_by_approver", "wrong_implementer"]
    );
    assert!(items.iter().all(|i| i["window_id"] == window["id"]));

    // Bad input: named, nothing stored.
    let bad = collector.driftctl(
        &who.alice,
        &[
            "windows",
            "create",
            "--ticket",
            "CHG-8",
            "--title",
            "x",
            "--host",
            "web-1",
            "--subject",
            "file:/etc/**",
            "--start",
            &start,
            "--end",
            &end,
            "--implementer",
            "car ol",
        ],
    );
    bad.expect(65)
        .stderr_has("implementers[0]: \"car ol\" contains spaces");
    let listed = collector.get("/api/v1/windows", &who.bob).expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[test]
fn a_package_window_covers_files_the_upgrade_wrote_but_not_a_tampered_one() {
    let collector = Collector::start("");
    let who = people(&collector);
    let web = FakeAgent::enroll_with(
        &collector,
        &who.admin,
        json!({"hostname": "web-1", "labels": {"role": "web"}}),
    );
    let (start, end) = (in_minutes(-5), in_minutes(55));
    approved_window(
        &collector,
        &who,
        &[
            "--ticket",
            "CHG-9",
            "--label",
            "role=web",
            "--subject",
            "package:nginx*",
            "--start",
            &start,
            "--end",
            &end,
        ],
    );
    let packaged = |package: &str, matches_package| {
        Some(Provenance {
            manager: "dpkg".into(),
            package: package.into(),
            version: "1.24.0-1".into(),
            matches_package,
        })
    };
    web.report(
        &collector,
        &[
            change(&web, "package:nginx", by("carol"), None),
            change(
                &web,
                "file:/usr/sbin/nginx",
                by("carol"),
                packaged("nginx", true),
            ),
            change(
                &web,
                "file:/usr/lib/nginx/mod.so",
                by("carol"),
                packaged("nginx", false),
            ),
            change(
                &web,
                "file:/usr/bin/vim",
                by("carol"),
                packaged("vim", true),
            ),
        ],
    )
    .expect(200);
    let eve = &who.eve;
    for (subject, status, reason) in [
        ("package:nginx", "authorized", Value::Null),
        ("file:/usr/sbin/nginx", "authorized", Value::Null),
        (
            "file:/usr/lib/nginx/mod.so",
            "open",
            json!("package_mismatch"),
        ),
        ("file:/usr/bin/vim", "open", json!("untraced")),
    ] {
        assert_eq!(
            drift_of(&collector, eve, subject),
            (status.to_owned(), reason),
            "{subject}"
        );
    }
    let detail = collector.get("/api/v1/drift?status=open", eve).expect(200);
    let mismatch = detail
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["subject"] == "file:/usr/lib/nginx/mod.so")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = collector
        .get(&format!("/api/v1/drift/{mismatch}"), eve)
        .expect(200);
    assert_eq!(
        events["events"][0]["outcome"]["outcome"],
        "package_mismatch"
    );
    assert_eq!(events["events"][0]["outcome"]["package"], "nginx");
}

#[test]
fn a_recurring_standard_window_authorizes_during_its_occurrences_even_after_the_fact() {
    let collector = Collector::start("");
    let who = people(&collector);
    let web = FakeAgent::enroll_with(
        &collector,
        &who.admin,
        json!({"hostname": "web-1", "labels": {"role": "web"}}),
    );
    // Drift first: untraced until the standard window below is approved.
    web.report(
        &collector,
        &[change(&web, "package:openssl", by("carol"), None)],
    )
    .expect(200);
    assert_eq!(
        drift_of(&collector, &who.eve, "package:openssl"),
        ("open".into(), json!("untraced"))
    );

    // Today's occurrence began ten minutes ago (UTC), for an hour; another weekday's does not
    // cover now.
    let began = time::OffsetDateTime::now_utc() - time::Duration::minutes(10);
    let day = |offset: i64| {
        (began + time::Duration::days(offset)).weekday().to_string()[..3].to_lowercase()
    };
    let clock = format!("{:02}:{:02}", began.hour(), began.minute());
    let until = (began + time::Duration::hours(1)).time();
    let slot = |weekday: String| {
        format!(
            "{weekday} {clock}-{:02}:{:02}",
            until.hour(),
            until.minute()
        )
    };
    let (start, end) = (in_minutes(-30), in_minutes(30 * 24 * 60));
    let today = approved_window(
        &collector,
        &who,
        &[
            "--ticket",
            "STD-1",
            "--kind",
            "standard",
            "--label",
            "role=web",
            "--subject",
            "package:*",
            "--start",
            &start,
            "--end",
            &end,
            "--schedule",
            &slot(day(0)),
        ],
    );
    assert_eq!(today["schedule"]["weekdays"], json!([day(0)]));
    assert_eq!(today["schedule"]["duration_minutes"], 60);
    approved_window(
        &collector,
        &who,
        &[
            "--ticket",
            "STD-2",
            "--kind",
            "standard",
            "--label",
            "role=web",
            "--subject",
            "user:*",
            "--start",
            &start,
            "--end",
            &end,
            "--schedule",
            &slot(day(3)),
        ],
    );
    collector
        .driftctl(
            &who.bob,
            &["windows", "show", today["id"].as_str().unwrap()],
        )
        .expect(0)
        .stdout_has(&format!("schedule: {} {clock} for 60 min (UTC)", day(0)));

    // Covered after the fact by the approval of STD-1.
    assert_eq!(
        drift_of(&collector, &who.eve, "package:openssl"),
        ("authorized".into(), Value::Null)
    );
    web.report(
        &collector,
        &[
            change(&web, "package:nginx", by("carol"), None),
            change(&web, "user:deploy", by("carol"), None),
        ],
    )
    .expect(200);
    assert_eq!(
        drift_of(&collector, &who.eve, "package:nginx"),
        ("authorized".into(), Value::Null)
    );
    assert_eq!(
        drift_of(&collector, &who.eve, "user:deploy"),
        ("open".into(), json!("untraced")),
        "STD-2 recurs on another weekday"
    );

    // Bad schedules are named; nothing is stored. The collector refuses what it checks
    // (400: exit 65); driftctl what it parses itself (usage: exit 64).
    let refused = |extra: &[&str], fragment: &str| {
        let mut args = vec![
            "windows",
            "create",
            "--ticket",
            "STD-3",
            "--title",
            "x",
            "--host",
            "web-1",
            "--subject",
            "package:*",
            "--start",
            &start,
            "--end",
            &end,
        ];
        args.extend_from_slice(extra);
        let run = collector.driftctl(&who.alice, &args);
        let usage = fragment.contains("is not `DAYS HH:MM-HH:MM`");
        run.expect(if usage { 64 } else { 65 }).stderr_has(fragment);
    };
    refused(
        &["--kind", "standard", "--schedule", "sunday 02:00-04:00"],
        "schedule.weekdays[0]: `sunday` is not a weekday",
    );
    refused(
        &["--schedule", "sun 02:00-04:00"],
        "a schedule makes a recurring standard window, but kind is normal",
    );
    refused(
        &["--kind", "standard", "--schedule", "sun 2-4"],
        "is not `DAYS HH:MM-HH:MM`",
    );
    let listed = collector.get("/api/v1/windows", &who.bob).expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 2);
}
