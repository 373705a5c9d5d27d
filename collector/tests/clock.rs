//! Authorization on the collector's clock, with collector-side time moved by hand: the
//! agent's `observed_at` is a claim, the collector bounds the spool time of each event from
//! the heartbeats it received and the batch's arrival, and a window authorizes only what
//! it provably covers, never past its close.

mod support;

use driftwatch_collector::clock::Clock;
use driftwatch_collector::identity::Role;
use serde_json::{Value, json};
use support::{MINUTE, NOW, Server, at};

const HOUR: i64 = 60 * MINUTE;

async fn approved(
    server: &Server,
    ticket: &str,
    subjects: &[&str],
    start: i64,
    end: i64,
) -> String {
    let alice = server
        .token(Role::ChangeManager, &format!("alice-{ticket}"))
        .await;
    let bob = server
        .token(Role::ChangeManager, &format!("bob-{ticket}"))
        .await;
    let (_, created) = server
        .post(
            "/api/v1/windows",
            &alice,
            json!({
                "ticket": ticket, "title": "maintenance", "hosts": {"names": ["web-1"]},
                "subjects": subjects, "start": at(start), "end": at(end), "time_zone": "UTC",
                // Work already done is recorded as an emergency window.
                "kind": if end <= server.clock.now() { "emergency" } else { "normal" },
            }),
        )
        .await;
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let (status, answer) = server
        .post(&format!("/api/v1/windows/{id}/approve"), &bob, json!({}))
        .await;
    assert!(status.is_success(), "{answer}");
    id
}

/// The drift item of `subject` and its events.
async fn detail(server: &Server, subject: &str) -> Value {
    let reader = server
        .token(Role::Auditor, &format!("audrey-{}", subject.len()))
        .await;
    let (_, drift) = server.get("/api/v1/drift", &reader).await;
    let item = drift
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["subject"] == subject)
        .unwrap_or_else(|| panic!("no drift for {subject}: {drift:#}"));
    let (_, detail) = server
        .get(
            &format!("/api/v1/drift/{}", item["id"].as_str().unwrap()),
            &reader,
        )
        .await;
    detail
}

#[tokio::test]
async fn a_two_hour_outage_is_judged_by_the_interval_it_spans() {
    let server = Server::start().await;
    let web = server.enroll("web-1", &[]).await;
    let long = approved(
        &server,
        "CHG-LONG",
        &["file:/etc/app/**"],
        NOW,
        NOW + 4 * HOUR,
    )
    .await;
    let short = approved(
        &server,
        "CHG-SHORT",
        &["file:/etc/short/**"],
        NOW,
        NOW + 90 * MINUTE,
    )
    .await;

    // Heartbeats until the outage, then nothing for two hours: the collector cannot tell
    // when during the outage the agent spooled what it sends afterwards.
    server.clock.set(NOW + 5 * MINUTE);
    server.heartbeat(&web, 0, NOW + 5 * MINUTE).await;
    server.clock.set(NOW + 2 * HOUR + 5 * MINUTE);
    let (status, answer) = server
        .report(
            &web,
            &[
                web.event("file:/etc/app/app.conf", "2", NOW + 30 * MINUTE),
                web.event("file:/etc/short/s.conf", "2", NOW + 30 * MINUTE),
            ],
        )
        .await;
    assert!(status.is_success(), "{answer}");

    // The long window covered the whole outage: authorized.
    let app = detail(&server, "file:/etc/app/app.conf").await;
    assert_eq!(app["drift"]["status"], "authorized", "{app:#}");
    assert_eq!(app["events"][0]["outcome"]["window_id"], json!(long));
    assert_eq!(app["events"][0]["spooled_after"], at(NOW + 5 * MINUTE));
    assert_eq!(
        app["events"][0]["spooled_before"],
        at(NOW + 2 * HOUR + 5 * MINUTE)
    );
    assert_eq!(app["events"][0]["clock_claim"], "consistent");

    // The short one closed during the outage: the change may have come after it.
    let s = detail(&server, "file:/etc/short/s.conf").await;
    assert_eq!(s["drift"]["status"], "open", "{s:#}");
    assert_eq!(s["drift"]["reason"], "untraced");
    assert_eq!(s["events"][0]["not_provably_in"], json!(short));
}

#[tokio::test]
async fn a_change_seconds_after_close_out_is_untraced() {
    let server = Server::start().await;
    let web = server.enroll("web-1", &[]).await;
    let id = approved(&server, "CHG-1", &["file:/etc/app/**"], NOW, NOW + HOUR).await;
    let alice = server.token(Role::ChangeManager, "alice").await;

    server.clock.set(NOW + 10 * MINUTE);
    server.heartbeat(&web, 0, NOW + 10 * MINUTE).await;
    server.clock.set(NOW + 11 * MINUTE);
    server
        .report(
            &web,
            &[web.event("file:/etc/app/a.conf", "1", NOW + 11 * MINUTE)],
        )
        .await;
    server.clock.set(NOW + 11 * MINUTE + 30_000);
    server.heartbeat(&web, 1, NOW + 11 * MINUTE + 30_000).await;

    server.clock.set(NOW + 12 * MINUTE);
    let (status, answer) = server
        .post(
            &format!("/api/v1/windows/{id}/close"),
            &alice,
            json!({"comment": "done"}),
        )
        .await;
    assert!(status.is_success(), "{answer}");
    assert_eq!(answer["drift_accepted"], 1, "{answer}");

    // 3 s after the close-out, well within the tolerance of 60 s.
    let after = NOW + 12 * MINUTE + 3000;
    server.clock.set(after);
    server
        .report(&web, &[web.event("file:/etc/app/late.conf", "1", after)])
        .await;
    let late = detail(&server, "file:/etc/app/late.conf").await;
    assert_eq!(late["drift"]["status"], "open", "{late:#}");
    assert_eq!(late["drift"]["reason"], "untraced");
    assert_eq!(late["events"][0]["not_provably_in"], json!(id));

    // Even one whose whole interval lies after the close (a heartbeat since).
    server.clock.set(after + 30_000);
    server.heartbeat(&web, 2, after + 30_000).await;
    server.clock.set(after + 40_000);
    server
        .report(
            &web,
            &[web.event("file:/etc/app/later.conf", "1", after + 40_000)],
        )
        .await;
    let later = detail(&server, "file:/etc/app/later.conf").await;
    assert_eq!(later["drift"]["reason"], "untraced", "{later:#}");
    assert_eq!(later["events"][0]["not_provably_in"], Value::Null);
}

#[tokio::test]
async fn claims_of_tomorrow_and_last_night_are_untraced_and_alert_once_per_burst() {
    let server = Server::start().await;
    let web = server.enroll("web-1", &[]).await;
    // Approved windows where the forged claims land.
    approved(
        &server,
        "CHG-TOMORROW",
        &["file:/etc/**"],
        NOW + 17 * HOUR,
        NOW + 18 * HOUR,
    )
    .await;
    approved(
        &server,
        "CHG-NIGHT",
        &["file:/etc/cron.d/**"],
        NOW - 8 * HOUR,
        NOW - 6 * HOUR,
    )
    .await;

    // The heartbeat shows a clock in sync; root then sets the clock between heartbeats.
    server.clock.set(NOW + MINUTE);
    server.heartbeat(&web, 0, NOW + MINUTE).await;
    server.clock.set(NOW + 2 * MINUTE);
    server
        .report(
            &web,
            &[web.event("file:/etc/sudoers", "evil", NOW + 17 * HOUR + 30 * MINUTE)],
        )
        .await;
    server
        .report(
            &web,
            &[web.event("file:/etc/cron.d/backdoor", "evil", NOW - 7 * HOUR)],
        )
        .await;

    let tomorrow = detail(&server, "file:/etc/sudoers").await;
    assert_eq!(tomorrow["drift"]["reason"], "untraced", "{tomorrow:#}");
    assert_eq!(tomorrow["events"][0]["clock_claim"], "after_bounds");
    // The time shown is one the collector can vouch for, not the claim.
    assert_eq!(tomorrow["events"][0]["event_time"], at(NOW + 2 * MINUTE));
    let night = detail(&server, "file:/etc/cron.d/backdoor").await;
    assert_eq!(night["drift"]["reason"], "untraced", "{night:#}");
    assert_eq!(night["events"][0]["clock_claim"], "before_bounds");

    server.app.tick().await.unwrap();
    let alerts = server.alert_lines("clock_claim");
    assert_eq!(alerts.len(), 1, "one per host and burst: {alerts:#?}");
    let summary = alerts[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("web-1") && summary.contains("file:/etc/sudoers"),
        "{summary}"
    );

    // A later burst alerts again.
    server.clock.set(NOW + 20 * MINUTE);
    server
        .report(
            &web,
            &[web.event("file:/etc/passwd", "evil", NOW + 17 * HOUR + 40 * MINUTE)],
        )
        .await;
    server.app.tick().await.unwrap();
    assert_eq!(server.alert_lines("clock_claim").len(), 2);
}

#[tokio::test]
async fn a_window_approved_after_the_fact_covers_only_what_was_spooled_inside_it() {
    let server = Server::start().await;
    let web = server.enroll("web-1", &[]).await;
    server.clock.set(NOW + 30 * MINUTE);
    server.heartbeat(&web, 0, NOW + 30 * MINUTE).await;
    server.clock.set(NOW + 31 * MINUTE);
    server
        .report(
            &web,
            &[web.event("file:/etc/app/a.conf", "1", NOW + 31 * MINUTE)],
        )
        .await;
    // Forged: claims to be from inside the emergency window recorded below.
    server
        .report(
            &web,
            &[web.event("file:/etc/app/b.conf", "1", NOW - 3 * HOUR)],
        )
        .await;
    server.clock.set(NOW + 40 * MINUTE);
    // An emergency window for 09:00 to 10:40 (collector clock) recorded after the fact.
    let id = approved(
        &server,
        "EMG-1",
        &["file:/etc/app/**"],
        NOW - 4 * HOUR,
        NOW + 40 * MINUTE,
    )
    .await;
    let a = detail(&server, "file:/etc/app/a.conf").await;
    assert_eq!(a["drift"]["status"], "authorized", "{a:#}");
    assert_eq!(a["events"][0]["outcome"]["window_id"], json!(id));
    // b's spool time is inside too (the forged claim changes nothing either way), so it
    // is covered on the collector's clock; the false claim stays recorded.
    let b = detail(&server, "file:/etc/app/b.conf").await;
    assert_eq!(b["events"][0]["clock_claim"], "before_bounds");

    // One that was spooled after the window closed is not re-evaluated into it.
    server.clock.set(NOW + 45 * MINUTE);
    server
        .report(&web, &[web.event("file:/etc/app/c.conf", "1", NOW)])
        .await;
    let late = approved(
        &server,
        "EMG-2",
        &["file:/etc/app/c.conf"],
        NOW - HOUR,
        NOW + 41 * MINUTE,
    )
    .await;
    let c = detail(&server, "file:/etc/app/c.conf").await;
    assert_eq!(c["drift"]["status"], "open", "{c:#} (window {late})");
}

#[tokio::test]
async fn normal_operation_raises_no_clock_alarm_and_authorizes_inside_the_window() {
    let server = Server::start().await;
    let web = server.enroll("web-1", &[]).await;
    let id = approved(&server, "CHG-1", &["file:/etc/**"], NOW - HOUR, NOW + HOUR).await;
    // The first events after enrollment: bounded by the enrollment, no heartbeat needed.
    server.clock.set(NOW + 2000);
    server
        .report(&web, &[web.event("file:/etc/first", "1", NOW + 2000)])
        .await;
    // Heartbeats every 60 s (and a clock 30 s ahead: within the tolerance); changes 1 s
    // and 59 s after a heartbeat.
    let mut seq = 1;
    for minute in 1..5 {
        let beat = NOW + minute * MINUTE;
        server.clock.set(beat);
        server.heartbeat(&web, seq, beat + 30_000).await;
        for (offset, name) in [(1000, "early"), (59_000, "late")] {
            server.clock.set(beat + offset);
            server
                .report(
                    &web,
                    &[web.event(
                        &format!("file:/etc/{name}-{minute}"),
                        "1",
                        beat + offset + 30_000,
                    )],
                )
                .await;
            seq += 1;
        }
    }
    // An agent restart: 90 s without heartbeats, then the startup scan's findings.
    server.clock.set(NOW + 6 * MINUTE + 30_000);
    server
        .report(
            &web,
            &[web.event("file:/etc/after-restart", "1", NOW + 6 * MINUTE + 30_000)],
        )
        .await;

    let reader = server.token(Role::Auditor, "audrey").await;
    let (_, drift) = server.get("/api/v1/drift", &reader).await;
    let drift = drift.as_array().unwrap();
    assert_eq!(drift.len(), 10, "{drift:#?}");
    for item in drift {
        assert_eq!(
            (&item["status"], &item["window_id"]),
            (&json!("authorized"), &json!(id)),
            "{item:#}"
        );
        let detail = detail(&server, item["subject"].as_str().unwrap()).await;
        assert_eq!(
            detail["events"][0]["clock_claim"], "consistent",
            "{detail:#}"
        );
    }
    server.app.tick().await.unwrap();
    assert!(server.alert_lines("clock_claim").is_empty());
}
