//! The API end to end over HTTP: bad input, identity, ingest, windows, matching, drift,
//! alerts and the audit trail.

mod support;

use std::io::Write;

use driftwatch_collector::identity::Role;
use driftwatch_common::api::v1::DriftEvent;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Body, MINUTE, NOW, Server, at};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[track_caller]
fn expect_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, fragment: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
}

fn window(ticket: &str, hosts: Value, subjects: &[&str], start: i64, end: i64) -> Value {
    json!({
        "ticket": ticket, "title": "maintenance", "hosts": hosts, "subjects": subjects,
        "start": at(start), "end": at(end), "time_zone": "Europe/Paris",
    })
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let server = Server::start().await;
    let auditor = server.token(Role::Auditor, "audrey").await;
    let agent = server.enroll("web-1", &[]).await;
    let event = agent.event("package:nginx", "1", NOW);
    let batch = json!({ "events": [event] });

    use StatusCode as S;
    let s = &server;
    expect_error(
        &s.send(
            Method::POST,
            "/api/v1/events",
            None,
            Body::Json(batch.clone()),
        )
        .await,
        S::UNAUTHORIZED,
        "unauthorized",
        "missing token",
    );
    expect_error(
        &s.post("/api/v1/events", "dwa_nope", batch.clone()).await,
        S::UNAUTHORIZED,
        "unauthorized",
        "invalid or revoked token",
    );
    expect_error(
        &s.post("/api/v1/events", &s.admin, batch.clone()).await,
        S::FORBIDDEN,
        "forbidden",
        "only agent credentials",
    );
    expect_error(
        &s.get("/api/v1/windows", &agent.credential).await,
        S::FORBIDDEN,
        "forbidden",
        "has role agent",
    );
    expect_error(
        &s.post("/api/v1/windows", &auditor, json!({})).await,
        S::BAD_REQUEST,
        "bad_request",
        "missing field",
    );
    expect_error(
        &s.post(
            "/api/v1/tokens",
            &auditor,
            json!({"name": "x", "role": "admin"}),
        )
        .await,
        S::FORBIDDEN,
        "forbidden",
        "needs the admin role; audrey has role auditor",
    );
    expect_error(
        &s.get("/api/v1/nothing", &s.admin).await,
        S::NOT_FOUND,
        "not_found",
        "no route /api/v1/nothing",
    );
    expect_error(
        &s.post("/api/v2/events", &agent.credential, batch.clone())
            .await,
        S::NOT_FOUND,
        "unsupported_version",
        "speaks /api/v1",
    );
    expect_error(
        &s.send(
            Method::DELETE,
            "/api/v1/events",
            Some(&agent.credential),
            Body::None,
        )
        .await,
        S::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method",
    );
    expect_error(
        &s.get("/api/v1/windows/not-a-uuid", &s.admin).await,
        S::BAD_REQUEST,
        "bad_request",
        "`not-a-uuid` is not an id",
    );
    expect_error(
        &s.get("/api/v1/drift?status=gone", &s.admin).await,
        S::BAD_REQUEST,
        "bad_request",
        "invalid query parameters",
    );

    let raw = |bytes: Vec<u8>, headers| Body::Raw(bytes, headers);
    let json_header = vec![("content-type", "application/json")];
    let cred = Some(agent.credential.as_str());
    expect_error(
        &s.send(
            Method::POST,
            "/api/v1/events",
            cred,
            raw(b"{\"events\": [".to_vec(), json_header.clone()),
        )
        .await,
        S::BAD_REQUEST,
        "bad_request",
        "invalid request body: EOF",
    );
    expect_error(
        &s.send(
            Method::POST,
            "/api/v1/events",
            cred,
            raw(Vec::new(), json_header.clone()),
        )
        .await,
        S::BAD_REQUEST,
        "bad_request",
        "empty request body",
    );
    let mut wrong = batch.clone();
    wrong["events"][0]["seq"] = json!("one");
    expect_error(
        &s.post("/api/v1/events", &agent.credential, wrong).await,
        S::BAD_REQUEST,
        "bad_request",
        "invalid type: string \"one\", expected u64",
    );
    let mut zero = batch.clone();
    zero["events"][0]["seq"] = json!(0);
    expect_error(
        &s.post("/api/v1/events", &agent.credential, zero).await,
        S::BAD_REQUEST,
        "bad_request",
        "events[0].seq must be between 1",
    );
    let mut bare = batch.clone();
    bare["events"][0]["subject"] = json!("nginx");
    expect_error(
        &s.post("/api/v1/events", &agent.credential, bare).await,
        S::BAD_REQUEST,
        "bad_request",
        "is not `namespace:name`",
    );
    let mut other_host = batch.clone();
    other_host["events"][0]["host_id"] = json!(uuid::Uuid::now_v7());
    expect_error(
        &s.post("/api/v1/events", &agent.credential, other_host)
            .await,
        S::FORBIDDEN,
        "forbidden",
        "belongs to host",
    );

    // Too large: plain, and as a gzip bomb that is small on the wire.
    let huge = vec![b' '; 100 * 1024];
    expect_error(
        &s.send(
            Method::POST,
            "/api/v1/events",
            cred,
            raw(huge.clone(), json_header.clone()),
        )
        .await,
        S::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "larger than 65536 bytes",
    );
    let bomb = gzip(&huge);
    assert!(bomb.len() < 1024);
    expect_error(
        &s.send(
            Method::POST,
            "/api/v1/events",
            cred,
            raw(bomb, vec![("content-encoding", "gzip")]),
        )
        .await,
        S::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "after decompression",
    );
    expect_error(
        &s.send(
            Method::POST,
            "/api/v1/events",
            cred,
            raw(b"not gzip".to_vec(), vec![("content-encoding", "gzip")]),
        )
        .await,
        S::BAD_REQUEST,
        "bad_request",
        "could not read the request body",
    );
    expect_error(
        &s.send(
            Method::POST,
            "/api/v1/events",
            cred,
            raw(b"{}".to_vec(), vec![("content-encoding", "br")]),
        )
        .await,
        S::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "gzip",
    );

    // Nothing of the above was stored; a gzip body is accepted.
    let (status, drift) = s.get("/api/v1/drift", &s.admin).await;
    assert_eq!((status, drift), (S::OK, json!([])));
    let body = gzip(serde_json::to_string(&batch).unwrap().as_bytes());
    let (status, ack) = s
        .send(
            Method::POST,
            "/api/v1/events",
            cred,
            raw(
                body,
                vec![
                    ("content-encoding", "gzip"),
                    ("content-type", "application/json"),
                ],
            ),
        )
        .await;
    assert_eq!(status, S::OK, "{ack}");
    assert_eq!(ack, json!({"accepted": 1, "duplicates": 0, "last_seq": 1}));
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_without_a_token() {
    let server = Server::start().await;
    let (status, body) = server.send(Method::GET, "/healthz", None, Body::None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = server.send(Method::GET, "/readyz", None, Body::None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ready"})));
    let agent = server.enroll("web-1", &[]).await;
    server
        .report(&agent, &[agent.event("package:a", "1", NOW)])
        .await;
    let (status, metrics) = server.send(Method::GET, "/metrics", None, Body::None).await;
    assert_eq!(status, StatusCode::OK);
    let text = metrics.as_str().unwrap();
    for name in [
        "driftwatch_events_ingested_total",
        "driftwatch_drift_open",
        "driftwatch_agents_silent",
        "driftwatch_match_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[tokio::test]
async fn ingest_is_idempotent_and_checks_each_agents_chain() {
    let server = Server::start().await;
    let agent = server.enroll("web-1", &[]).await;
    let first = agent.event("package:nginx", "1.24", NOW);
    let second = agent.event("package:nginx", "1.25", NOW + 1000);
    let (status, ack) = server
        .report(&agent, &[first.clone(), second.clone()])
        .await;
    assert_eq!(
        (status, ack),
        (
            StatusCode::OK,
            json!({"accepted": 2, "duplicates": 0, "last_seq": 2})
        )
    );
    // The agent did not get the answer and retries: harmless.
    let (_, ack) = server.report(&agent, &[first, second.clone()]).await;
    assert_eq!(ack, json!({"accepted": 0, "duplicates": 2, "last_seq": 2}));

    // Continues in a later batch.
    let third = agent.event("file:/etc/hosts", "x", NOW + 2000);
    assert_eq!(server.report(&agent, &[third]).await.1["accepted"], 1);

    // A replay with other content, a gap, and a forged link: stored (nothing observed is
    // lost) and each raises a chain alert.
    let mut replayed = second.clone();
    replayed.changed = vec!["forged".into()];
    assert_eq!(server.report(&agent, &[replayed]).await.1["duplicates"], 1);
    agent.seq.set(agent.seq.get() + 3);
    let after_gap = agent.event("file:/etc/motd", "y", NOW + 3000);
    assert_eq!(
        server.report(&agent, &[after_gap]).await.1,
        json!({"accepted": 1, "duplicates": 0, "last_seq": 7})
    );
    agent.prev.set(DriftEvent::GENESIS);
    let forged = agent.event("file:/etc/motd", "z", NOW + 4000);
    assert_eq!(server.report(&agent, &[forged]).await.1["last_seq"], 8);

    let (_, alerts) = server.get("/api/v1/alerts", &server.admin).await;
    let mut problems: Vec<&str> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "chain")
        .map(|a| a["body"]["problem"]["problem"].as_str().unwrap())
        .collect();
    problems.sort_unstable();
    assert_eq!(problems, ["fork", "gap", "replay"], "{alerts:#}");
    let gap = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["body"]["problem"]["problem"] == "gap")
        .unwrap();
    assert_eq!(
        gap["body"]["summary"],
        "events 4 to 6 from web-1 never arrived"
    );
}

#[tokio::test]
async fn windows_need_someone_else_to_approve_them() {
    let server = Server::start().await;
    let alice = server.token(Role::ChangeManager, "alice").await;
    let bob = server.token(Role::ChangeManager, "bob").await;
    let eve = server.token(Role::Security, "eve").await;

    let request = window(
        "CHG-1",
        json!({"names": ["web-1"]}),
        &["package:nginx*"],
        NOW + 60 * MINUTE,
        NOW + 120 * MINUTE,
    );
    let (status, created) = server
        .post("/api/v1/windows", &alice, request.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "requested");
    assert_eq!(created["start_local"], "2026-11-23T12:00+01:00");
    let id = created["id"].as_str().unwrap();
    expect_error(
        &server.post("/api/v1/windows", &eve, request).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "needs the change-manager or admin role",
    );

    expect_error(
        &server
            .post(&format!("/api/v1/windows/{id}/approve"), &alice, json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "segregation of duties: alice requested",
    );
    expect_error(
        &server
            .post(&format!("/api/v1/windows/{id}/reject"), &bob, json!({}))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "needs a comment",
    );
    let (status, decided) = server
        .send(
            Method::POST,
            &format!("/api/v1/windows/{id}/approve"),
            Some(&bob),
            Body::None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(
        (
            &decided["window"]["status"],
            &decided["window"]["decided_by"]
        ),
        (&json!("approved"), &json!("bob"))
    );
    expect_error(
        &server
            .post(&format!("/api/v1/windows/{id}/approve"), &bob, json!({}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
        "it is approved",
    );
    expect_error(
        &server
            .post(
                &format!("/api/v1/windows/{}/approve", uuid::Uuid::now_v7()),
                &bob,
                json!({}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        "no window",
    );

    // Impossible windows: every problem at once; planned features are "not supported yet".
    let mut impossible = window(
        "CHG-2",
        json!({}),
        &[],
        NOW + 120 * MINUTE,
        NOW + 60 * MINUTE,
    );
    impossible["time_zone"] = json!("Europe/Pariss");
    let answer = server.post("/api/v1/windows", &alice, impossible).await;
    expect_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "empty host scope",
    );
    let message = answer.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("empty subject scope")
            && message.contains("unknown time zone `Europe/Pariss`"),
        "{message}"
    );
    let mut bad_end = window(
        "CHG-3",
        json!({"names": ["web-1"]}),
        &["package:*"],
        NOW + 120 * MINUTE,
        NOW + 60 * MINUTE,
    );
    bad_end["time_zone"] = json!("UTC");
    expect_error(
        &server.post("/api/v1/windows", &alice, bad_end).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "is not after start",
    );
    let mut recurring = window(
        "CHG-4",
        json!({"names": ["web-1"]}),
        &["package:*"],
        NOW + 60 * MINUTE,
        NOW + 120 * MINUTE,
    );
    recurring["schedule"] =
        json!({"weekdays": ["sun", "funday"], "start": "02:00", "duration_minutes": 120});
    expect_error(
        &server.post("/api/v1/windows", &alice, recurring).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "but kind is normal; set kind = \"standard\"; schedule.weekdays[1]: `funday` is not a weekday",
    );
    expect_error(
        &server.get("/api/v1/reports/export", &alice).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "exporting evidence needs the auditor or security or admin role",
    );

    let (_, approved) = server.get("/api/v1/windows?status=approved", &eve).await;
    assert_eq!(approved.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn drift_inside_an_approved_window_is_authorized_and_outside_is_untraced() {
    let server = Server::start().await;
    let alice = server.token(Role::ChangeManager, "alice").await;
    let bob = server.token(Role::ChangeManager, "bob").await;
    let web = server.enroll("web-1", &[("role", "web")]).await;
    let db = server.enroll("db-1", &[("role", "db")]).await;

    let mut request = window(
        "CHG-10",
        json!({"labels": {"role": "web"}}),
        &["package:nginx*", "file:/etc/nginx/**"],
        NOW,
        NOW + 60 * MINUTE,
    );
    request["expected"] = json!([{"subject": "package:nginx", "version": "1.25"}]);
    let (_, created) = server.post("/api/v1/windows", &alice, request).await;
    let id = created["id"].as_str().unwrap().to_owned();
    server
        .post(&format!("/api/v1/windows/{id}/approve"), &bob, json!({}))
        .await;

    // Judged on the collector's clock: the events arrive at `t`.
    let t = NOW + 10 * MINUTE;
    server.clock.set(t);
    server
        .report(
            &web,
            &[
                web.event("package:nginx", "1.25", t),
                web.event("file:/etc/nginx/nginx.conf", "h", t),
            ],
        )
        .await;
    server
        .report(&web, &[web.event("package:openssl", "3", t)])
        .await;
    server
        .report(&db, &[db.event("package:nginx", "1.25", t)])
        .await;
    let (_, drift) = server.get("/api/v1/drift", &alice).await;
    let status_of = |host: &str, subject: &str| -> (String, Value) {
        let item = drift
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["hostname"] == host && d["subject"] == subject)
            .unwrap_or_else(|| panic!("no drift for {host} {subject}: {drift:#}"));
        (
            item["status"].as_str().unwrap().to_owned(),
            item["reason"].clone(),
        )
    };
    assert_eq!(
        status_of("web-1", "package:nginx"),
        ("authorized".into(), Value::Null)
    );
    assert_eq!(
        status_of("web-1", "file:/etc/nginx/nginx.conf"),
        ("authorized".into(), Value::Null)
    );
    assert_eq!(
        status_of("web-1", "package:openssl"),
        ("open".into(), json!("untraced"))
    );
    assert_eq!(
        status_of("db-1", "package:nginx"),
        ("open".into(), json!("untraced"))
    );

    // The window approved version 1.25 only: 1.26 inside the window is flagged.
    server.clock.set(t + MINUTE);
    server
        .report(&web, &[web.event("package:nginx", "1.26", t + MINUTE)])
        .await;
    let (_, drift) = server
        .get(&format!("/api/v1/drift?window={id}"), &alice)
        .await;
    let nginx = drift
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["subject"] == "package:nginx")
        .unwrap();
    assert_eq!(
        (&nginx["status"], &nginx["reason"]),
        (&json!("open"), &json!("unexpected_state"))
    );
    let (_, detail) = server
        .get(
            &format!("/api/v1/drift/{}", nginx["id"].as_str().unwrap()),
            &alice,
        )
        .await;
    let outcomes: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["authorized", "unexpected_state"]);
    assert_eq!(detail["events"][1]["outcome"]["expected"], "version 1.25");

    // After the window, on the collector's clock.
    server.clock.set(NOW + 90 * MINUTE);
    server
        .report(
            &web,
            &[web.event("package:nginx-extras", "1", NOW + 90 * MINUTE)],
        )
        .await;
    let (_, drift) = server.get("/api/v1/drift", &alice).await;
    let extras = drift
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["subject"] == "package:nginx-extras")
        .unwrap();
    assert_eq!(
        (&extras["status"], &extras["reason"]),
        (&json!("open"), &json!("untraced"))
    );
}

#[tokio::test]
async fn untraced_drift_is_held_then_alerted_once_per_burst() {
    let server = Server::start().await;
    let web = server.enroll("web-1", &[]).await;
    let db = server.enroll("db-1", &[]).await;
    for i in 0..3 {
        server
            .report(
                &web,
                &[web.event(&format!("file:/usr/lib/x{i}.so"), "1", NOW)],
            )
            .await;
    }
    server
        .report(&db, &[db.event("user:mallory", "1", NOW)])
        .await;
    server.app.tick().await.unwrap();
    assert!(server.alert_lines("untraced_drift").is_empty(), "held");

    server.clock.advance_secs(5 * 60);
    server.app.tick().await.unwrap();
    let lines = server.alert_lines("untraced_drift");
    assert_eq!(lines.len(), 2, "one per host: {lines:#?}");
    let web_alert = lines
        .iter()
        .find(|a| a["host"]["hostname"] == "web-1")
        .unwrap();
    assert_eq!(web_alert["kind"], "untraced_drift");
    assert_eq!(web_alert["summary"], "3 untraced changes on web-1");
    assert_eq!(web_alert["items"].as_array().unwrap().len(), 3);
    assert_eq!(web_alert["held_secs"], 300);

    // Alerted once; marked delivered.
    server.clock.advance_secs(600);
    server.app.tick().await.unwrap();
    assert_eq!(server.alert_lines("untraced_drift").len(), 2);
    let (_, alerts) = server.get("/api/v1/alerts", &server.admin).await;
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["delivered_at"].is_string()),
        "{alerts:#}"
    );

    // Neither host sent a heartbeat in all that time: each is reported silent, once.
    let silent = server.alert_lines("agent_silent");
    let mut hosts: Vec<&str> = silent
        .iter()
        .map(|a| a["host"]["hostname"].as_str().unwrap())
        .collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["db-1", "web-1"]);
    let (_, listed) = server.get("/api/v1/hosts", &server.admin).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["silent"] == true),
        "{listed:#}"
    );
}

#[tokio::test]
async fn an_emergency_window_approved_after_the_fact_covers_held_drift() {
    let server = Server::start().await;
    let alice = server.token(Role::ChangeManager, "alice").await;
    let bob = server.token(Role::ChangeManager, "bob").await;
    let web = server.enroll("web-1", &[]).await;
    server
        .report(
            &web,
            &[web.event("file:/etc/ssh/sshd_config", "h1", NOW - MINUTE)],
        )
        .await;
    server.clock.advance_secs(120);

    let mut request = window(
        "INC-7",
        json!({"names": ["web-1"]}),
        &["file:/etc/ssh/**"],
        NOW - 10 * MINUTE,
        NOW + MINUTE,
    );
    request["kind"] = json!("emergency");
    let (status, created) = server.post("/api/v1/windows", &alice, request).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, decided) = server
        .post(
            &format!(
                "/api/v1/windows/{}/approve",
                created["id"].as_str().unwrap()
            ),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(
        (&decided["events_covered"], &decided["drift_authorized"]),
        (&json!(1), &json!(1)),
        "{decided}"
    );

    server.clock.advance_secs(3600);
    server.app.tick().await.unwrap();
    assert!(
        server.alert_lines("untraced_drift").is_empty(),
        "covered before the hold ended: nobody paged"
    );
    assert!(
        server.alert_lines("emergency_unapproved").is_empty(),
        "approved in time"
    );

    // An emergency change nobody approves turns into an alert after the deadline.
    let mut late = window(
        "INC-8",
        json!({"names": ["web-1"]}),
        &["file:/etc/ssh/**"],
        NOW,
        NOW + 61 * MINUTE,
    );
    late["kind"] = json!("emergency");
    server.post("/api/v1/windows", &alice, late).await;
    server.clock.advance_secs(59 * 60);
    server.app.tick().await.unwrap();
    assert!(server.alert_lines("emergency_unapproved").is_empty());
    server.clock.advance_secs(60);
    server.app.tick().await.unwrap();
    let lines = server.alert_lines("emergency_unapproved");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(
        (&lines[0]["ticket"], &lines[0]["requester"]),
        (&json!("INC-8"), &json!("alice"))
    );
    let (_, drift) = server.get("/api/v1/drift?status=authorized", &alice).await;
    assert_eq!(drift.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn security_resolves_untraced_drift_and_restores_resolve_themselves() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;
    let alice = server.token(Role::ChangeManager, "alice").await;
    let web = server.enroll("web-1", &[]).await;
    server
        .report(
            &web,
            &[
                web.event("user:mallory", "1", NOW),
                web.event("file:/etc/motd", "1", NOW),
            ],
        )
        .await;
    let (_, drift) = server.get("/api/v1/drift?status=open", &eve).await;
    let id_of = |subject: &str| {
        drift
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["subject"] == subject)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (mallory, motd) = (id_of("user:mallory"), id_of("file:/etc/motd"));

    let resolve =
        json!({"category": "confirmed_unauthorized", "comment": "account removed, incident INC-9"});
    expect_error(
        &server
            .post(
                &format!("/api/v1/drift/{mallory}/resolve"),
                &alice,
                resolve.clone(),
            )
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "needs the security role",
    );
    expect_error(
        &server
            .post(
                &format!("/api/v1/drift/{mallory}/resolve"),
                &eve,
                json!({"category": "emergency_change", "comment": "x"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "names its ticket",
    );
    expect_error(
        &server
            .post(
                &format!("/api/v1/drift/{mallory}/resolve"),
                &eve,
                json!({"category": "oops", "comment": "x"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "unknown variant `oops`",
    );
    let (status, resolved) = server
        .post(
            &format!("/api/v1/drift/{mallory}/resolve"),
            &eve,
            resolve.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(
        (&resolved["status"], &resolved["resolution"]["by"]),
        (&json!("resolved"), &json!("eve"))
    );
    expect_error(
        &server
            .post(&format!("/api/v1/drift/{mallory}/resolve"), &eve, resolve)
            .await,
        StatusCode::CONFLICT,
        "conflict",
        "only open drift",
    );

    server
        .report(&web, &[web.restored("file:/etc/motd", NOW + 1000)])
        .await;
    let (_, detail) = server.get(&format!("/api/v1/drift/{motd}"), &eve).await;
    assert_eq!(detail["drift"]["status"], "resolved");
    assert_eq!(detail["drift"]["resolution"]["category"], "restored");
    assert_eq!(detail["drift"]["resolution"]["by"], "collector");

    // An undone untraced change still happened: it is alerted after the hold.
    server.clock.advance_secs(301);
    server.app.tick().await.unwrap();
    let lines = server.alert_lines("untraced_drift");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["items"][0]["subject"], "file:/etc/motd");
    assert_eq!(lines[0]["items"][0]["status"], "resolved");
}

#[tokio::test]
async fn close_out_accepts_authorized_drift_and_commands_the_agent() {
    let server = Server::start().await;
    let alice = server.token(Role::ChangeManager, "alice").await;
    let bob = server.token(Role::ChangeManager, "bob").await;
    let web = server.enroll("web-1", &[]).await;
    let (_, created) = server
        .post(
            "/api/v1/windows",
            &alice,
            window(
                "CHG-20",
                json!({"globs": ["web-*"]}),
                &["package:*"],
                NOW,
                NOW + 30 * MINUTE,
            ),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    server
        .post(&format!("/api/v1/windows/{id}/approve"), &bob, json!({}))
        .await;
    server
        .report(&web, &[web.event("package:nginx", "1.25", NOW + MINUTE)])
        .await;

    let (status, closed) = server
        .post(
            &format!("/api/v1/windows/{id}/close"),
            &alice,
            json!({"comment": "reviewed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(
        (&closed["drift_accepted"], &closed["commands_queued"]),
        (&json!(1), &json!(1))
    );

    let heartbeat = json!({
        "host_id": web.host_id, "sent_at": at(NOW + 2 * MINUTE + 1500),
        "inventory": {"hostname": "web-1", "os": "Debian 12", "kernel": "6.1", "uptime_secs": 5, "cpus": 2, "memory_bytes": 1},
        "health": {"agent_version": "0.1.0", "cpu_percent": 0.5, "rss_bytes": 1, "spool_depth": 0, "spool_full": false,
                   "baseline_entries": 10, "baseline_tampered": false,
                   "coverage": {"dropped_event_batches": 0, "unreadable": 0, "attribution_unavailable": null}},
        "last_seq": 1,
    });
    server.clock.set(NOW + 2 * MINUTE);
    let (status, answer) = server
        .post("/api/v1/heartbeat", &web.credential, heartbeat.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let command = &answer["commands"][0];
    assert_eq!(
        (&command["type"], &command["subject"]),
        (&json!("baseline_accept"), &json!("package:nginx"))
    );
    assert_eq!(command["state"]["fields"]["version"], "1.25");
    assert_eq!(command["window_id"], json!(id));

    let (_, hosts) = server.get("/api/v1/hosts", &alice).await;
    assert_eq!(hosts[0]["skew_ms"], 1500);
    assert_eq!(hosts[0]["inventory"]["os"], "Debian 12");

    let mut result = heartbeat;
    result["results"] =
        json!([{"command_id": command["command_id"], "outcome": {"type": "applied"}}]);
    let (_, answer) = server
        .post("/api/v1/heartbeat", &web.credential, result.clone())
        .await;
    assert_eq!(answer["commands"], json!([]));

    // Blind spots that appear are an alert of their own, once.
    let mut worse = result;
    worse["results"] = json!([]);
    worse["health"]["coverage"]["unwatched"] =
        json!(["/srv (the kernel's inotify watch limit was reached)"]);
    worse["health"]["coverage"]["dropped_event_batches"] = json!(2);
    for _ in 0..2 {
        let (status, _) = server
            .post("/api/v1/heartbeat", &web.credential, worse.clone())
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, alerts) = server.get("/api/v1/alerts", &server.admin).await;
    let coverage: Vec<&Value> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["body"]["problem"] == "coverage_lost")
        .collect();
    assert_eq!(coverage.len(), 1, "{alerts:#}");
    let summary = coverage[0]["body"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("/srv (the kernel's inotify watch limit was reached)")
            && summary.contains("dropped notifications 2 time(s)"),
        "{summary}"
    );
}

#[tokio::test]
async fn tokens_enrollment_and_the_audit_trail() {
    let server = Server::start().await;
    let (status, issued) = server
        .post(
            "/api/v1/tokens",
            &server.admin,
            json!({"name": "carol", "role": "security"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let carol = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(server.get("/api/v1/drift", &carol).await.0, StatusCode::OK);
    expect_error(
        &server
            .post(
                "/api/v1/tokens",
                &server.admin,
                json!({"name": "x", "role": "agent"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "issued by enrollment",
    );
    let (status, _) = server
        .post(
            &format!("/api/v1/tokens/{}/revoke", issued["id"].as_str().unwrap()),
            &server.admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    expect_error(
        &server.get("/api/v1/drift", &carol).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "invalid or revoked",
    );

    // Enrollment tokens are one-time by default.
    let (_, enrollment) = server
        .post(
            "/api/v1/enrollment-tokens",
            &server.admin,
            json!({"ttl_secs": 60}),
        )
        .await;
    let enroll =
        json!({"token": enrollment["token"], "hostname": "web-9", "agent_version": "0.1.0"});
    assert_eq!(
        server
            .send(
                Method::POST,
                "/api/v1/enroll",
                None,
                Body::Json(enroll.clone())
            )
            .await
            .0,
        StatusCode::OK
    );
    expect_error(
        &server
            .send(Method::POST, "/api/v1/enroll", None, Body::Json(enroll))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "invalid, expired or used up",
    );
    expect_error(
        &server
            .post(
                "/api/v1/enrollment-tokens",
                &server.admin,
                json!({"ttl_secs": 0}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "ttl_secs must be between 1",
    );

    let (_, log) = server.get("/api/v1/audit", &server.admin).await;
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "person.created",
            "token.created",
            "person.created",
            "token.created",
            "token.revoked",
            "enrollment_token.created",
            "host.enrolled"
        ]
    );
    let (_, report) = server.get("/api/v1/audit/verify", &server.admin).await;
    assert_eq!(
        (&report["ok"], &report["entries"]),
        (&json!(true), &json!(7))
    );
}

#[tokio::test]
async fn a_stop_lets_the_server_finish_and_return() {
    let server = Server::start().await;
    assert_eq!(
        server
            .send(Method::GET, "/healthz", None, Body::None)
            .await
            .0,
        StatusCode::OK
    );
    tokio::time::timeout(std::time::Duration::from_secs(30), server.stop())
        .await
        .expect("stops within the grace period")
        .unwrap();
}

/// Issue 11: a drift item's detail says why no window covered it (another host's window, a
/// window closed 12 minutes before the change, one never approved), with its history and
/// the subject's timeline on the host; people only.
#[tokio::test]
async fn the_drift_detail_explains_why_no_window_covered_a_change() {
    let server = Server::start().await;
    let alice = server.token(Role::ChangeManager, "alice").await;
    let bob = server.token(Role::ChangeManager, "bob").await;
    let eve = server.token(Role::Security, "eve").await;
    let web = server.enroll("web-1", &[]).await;
    let create = |ticket: &str, host: &str| {
        window(
            ticket,
            json!({"names": [host]}),
            &["file:/etc/app/**"],
            NOW - 10 * MINUTE,
            NOW + 60 * MINUTE,
        )
    };
    let mut ids = std::collections::BTreeMap::new();
    for (ticket, host) in [("CHG-1", "db-1"), ("CHG-2", "web-1"), ("CHG-3", "web-1")] {
        let (status, created) = server
            .post("/api/v1/windows", &alice, create(ticket, host))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        ids.insert(ticket, created["id"].as_str().unwrap().to_owned());
    }
    for ticket in ["CHG-1", "CHG-2"] {
        let (status, answer) = server
            .post(
                &format!("/api/v1/windows/{}/approve", ids[ticket]),
                &bob,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, answer) = server
        .post(
            &format!("/api/v1/windows/{}/close", ids["CHG-2"]),
            &alice,
            json!({"comment": "done"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // 12 minutes after the close, a heartbeat then the change.
    server.clock.advance_secs(12 * 60);
    server.heartbeat(&web, 0, NOW + 12 * MINUTE).await;
    let subject = "file:/etc/app/app.conf";
    server
        .report(&web, &[web.event(subject, "2", NOW + 12 * MINUTE)])
        .await;
    let (_, drift) = server.get("/api/v1/drift?status=open", &eve).await;
    let first = drift[0]["id"].as_str().unwrap().to_owned();
    let (status, answer) = server
        .post(
            &format!("/api/v1/drift/{first}/resolve"),
            &eve,
            json!({"category": "confirmed_unauthorized", "comment": "nobody owned it"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // The subject changes again: a second item, whose timeline holds the first.
    server.clock.advance_secs(60);
    server
        .report(&web, &[web.event(subject, "3", NOW + 13 * MINUTE)])
        .await;
    let (_, drift) = server.get("/api/v1/drift?status=open", &eve).await;
    let second = drift[0]["id"].as_str().unwrap().to_owned();
    assert_ne!(first, second);

    let (status, detail) = server
        .get(&format!("/api/v1/drift/{first}/detail"), &eve)
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["drift"]["id"], first.as_str());
    assert_eq!(detail["events"].as_array().unwrap().len(), 1);
    let history = detail["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:#?}");
    assert_eq!(
        (&history[1]["to"], &history[1]["by"], &history[1]["reason"]),
        (
            &json!("resolved"),
            &json!("eve"),
            &json!("confirmed_unauthorized")
        )
    );
    assert_eq!(detail["timeline"][0]["id"], second.as_str());
    let event = &detail["explanation"]["events"][0];
    assert_eq!(event["outcome"]["outcome"], "untraced", "{event:#}");
    let says = |ticket: &str| -> (Value, String) {
        let candidate = event["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["window"]["ticket"] == ticket)
            .unwrap_or_else(|| panic!("{ticket} is not a candidate: {event:#}"));
        (
            candidate["decision"].clone(),
            candidate["says"].as_str().unwrap().to_owned(),
        )
    };
    let (decision, words) = says("CHG-1");
    assert_eq!(decision["reason"], "host_out_of_scope", "{decision}");
    assert_eq!(words, "host web-1 is not in its scope");
    let (decision, words) = says("CHG-2");
    assert_eq!(
        (&decision["reason"], &decision["ended"], &decision["by_ms"]),
        (&json!("after"), &json!("closed"), &json!(12 * MINUTE)),
        "{decision}"
    );
    assert!(
        words.starts_with("the change came 12 minutes after the window was closed"),
        "{words}"
    );
    let (decision, words) = says("CHG-3");
    assert_eq!(
        (&decision["reason"], &decision["status"]),
        (&json!("not_approved"), &json!("requested"))
    );
    assert!(words.contains("is requested, not approved"), "{words}");

    // People only; an unknown item is 404.
    let (status, _) = server
        .get(&format!("/api/v1/drift/{first}/detail"), &web.credential)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let auditor = server.token(Role::Auditor, "ann").await;
    let (status, _) = server
        .get(&format!("/api/v1/drift/{second}/detail"), &auditor)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .get(
            &format!("/api/v1/drift/{}/detail", uuid::Uuid::now_v7()),
            &eve,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Listings with a cursor (issue 10): a page and `Next-Cursor` while there is more, the
/// pages together the whole listing once each in order; a limit above the maximum is a
/// 400 naming it (never clamped); a cursor of another listing or a made-up one is a 400.
#[tokio::test]
async fn listings_page_with_a_cursor_and_never_clamp() {
    let server = Server::start().await;
    let admin = server.admin.clone();
    let mut agents = Vec::new();
    for name in ["web-3", "web-1", "db-2"] {
        agents.push(server.enroll(name, &[]).await);
    }
    for (n, subject) in ["package:a", "package:b", "package:c", "package:d"]
        .iter()
        .enumerate()
    {
        let agent = &agents[n % 2];
        let event = agent.event(subject, "1", NOW + n as i64 * 1000);
        assert_eq!(server.report(agent, &[event]).await.1["accepted"], 1);
    }

    let walk = |path: &'static str, limit: u32| {
        let server = &server;
        let admin = admin.clone();
        async move {
            let mut items: Vec<Value> = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let sep = if path.contains('?') { '&' } else { '?' };
                let url = match &cursor {
                    None => format!("{path}{sep}limit={limit}"),
                    Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
                };
                let (status, page, next) = server.get_page(&url, &admin).await;
                assert_eq!(status, StatusCode::OK, "{url}: {page}");
                let page = page.as_array().unwrap().clone();
                assert!(page.len() <= limit as usize, "{url}");
                pages += 1;
                items.extend(page);
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            (items, pages)
        }
    };
    for path in ["/api/v1/drift", "/api/v1/hosts", "/api/v1/audit"] {
        let (status, all, next) = server.get_page(path, &admin).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(next, None, "{path}: one page holds everything");
        let all = all.as_array().unwrap().clone();
        assert!(all.len() >= 3, "{path}: {all:?}");
        for limit in [1, 2] {
            let (walked, pages) = walk(path, limit).await;
            assert_eq!(walked, all, "{path} in pages of {limit}");
            assert_eq!(pages, all.len().div_ceil(limit as usize), "{path}");
        }
    }
    let (hosts, _) = walk("/api/v1/hosts", 1).await;
    let names: Vec<&str> = hosts
        .iter()
        .map(|h| h["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db-2", "web-1", "web-3"]);
    let (open, _) = walk("/api/v1/drift?status=open", 3).await;
    assert_eq!(open.len(), 4);
    let subjects: Vec<&str> = open
        .iter()
        .map(|d| d["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["package:d", "package:c", "package:b", "package:a"],
        "newest opened first"
    );

    // Never clamped: the maximum is named.
    let too_many = server.get("/api/v1/drift?limit=1001", &admin).await;
    expect_error(&too_many, StatusCode::BAD_REQUEST, "bad_request", "1000");
    let too_many = server.get("/api/v1/hosts?limit=5000", &admin).await;
    expect_error(&too_many, StatusCode::BAD_REQUEST, "bad_request", "1000");
    let too_many = server.get("/api/v1/windows?limit=0", &admin).await;
    expect_error(&too_many, StatusCode::BAD_REQUEST, "bad_request", "1000");
    // A cursor belongs to its listing.
    let (_, _, next) = server.get_page("/api/v1/drift?limit=1", &admin).await;
    let drift_cursor = next.expect("more drift");
    let foreign = server
        .get(&format!("/api/v1/hosts?cursor={drift_cursor}"), &admin)
        .await;
    expect_error(
        &foreign,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "hosts listing",
    );
    let made_up = server.get("/api/v1/audit?cursor=zz", &admin).await;
    expect_error(&made_up, StatusCode::BAD_REQUEST, "bad_request", "cursor");
    let both = server
        .get(
            &format!("/api/v1/audit?after=1&cursor={drift_cursor}"),
            &admin,
        )
        .await;
    assert_eq!(both.0, StatusCode::BAD_REQUEST, "{both:?}");
}
