//! The real `driftwatch-collector` and `driftctl` binaries: bootstrap, bad input, change
//! windows with segregation of duties, matching, held alerts, the audit trail (tampered
//! with raw SQL), a clean stop and restart, configuration errors.

use std::io::Write;
use std::time::Duration;

use driftwatch_tests::collector::{Collector, FakeAgent, http};
use driftwatch_tests::daemon::wait_until;
use serde_json::json;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// An RFC 3339 time `minutes` from now.
fn in_minutes(minutes: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn collector_bootstraps_a_token_and_refuses_bad_input() {
    let collector = Collector::start("max_body_bytes = 4096");
    let admin = collector.token("admin", "root");
    assert!(admin.starts_with("dwt_"), "{admin}");
    let health = http::get(collector.addr, "/healthz", None);
    assert_eq!(health.expect(200), json!({"status": "ok"}));

    let host = FakeAgent::enroll(&collector, &admin, "web-1");
    let batch = json!({ "events": [host.event("package:nginx", "1")] });
    let addr = collector.addr;
    let post = |token: Option<&str>, headers: &[(&str, &str)], body: &[u8]| {
        http::request(addr, "POST", "/api/v1/events", token, headers, body)
    };
    let json_type = [("content-type", "application/json")];
    let cred = Some(host.credential.as_str());

    let missing = post(None, &json_type, batch.to_string().as_bytes());
    missing.error(401, "unauthorized", "missing token");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    post(Some("dwt_0_0"), &json_type, batch.to_string().as_bytes()).error(
        401,
        "unauthorized",
        "invalid or revoked",
    );
    post(Some(&admin), &json_type, batch.to_string().as_bytes()).error(
        403,
        "forbidden",
        "only agent credentials",
    );
    collector
        .get("/api/v1/windows", &host.credential)
        .error(403, "forbidden", "has role agent");
    post(cred, &json_type, b"{\"events\": [}").error(400, "bad_request", "invalid request body");
    let mut wrong = batch.clone();
    wrong["events"][0]["observed_at"] = json!(12);
    post(cred, &json_type, wrong.to_string().as_bytes()).error(
        400,
        "bad_request",
        "invalid type: integer `12`",
    );
    let bomb = gzip(&vec![b' '; 1024 * 1024]);
    post(cred, &[("content-encoding", "gzip")], &bomb).error(
        413,
        "payload_too_large",
        "larger than 4096 bytes",
    );
    http::request(addr, "POST", "/api/v9/events", cred, &json_type, b"{}").error(
        404,
        "unsupported_version",
        "speaks /api/v1",
    );
    http::get(addr, "/nowhere", None).error(404, "not_found", "no route /nowhere");

    // Nothing was stored by any of that.
    assert_eq!(
        collector.get("/api/v1/drift", &admin).expect(200),
        json!([])
    );
    let ack = post(cred, &json_type, batch.to_string().as_bytes()).expect(200);
    assert_eq!(ack, json!({"accepted": 1, "duplicates": 0, "last_seq": 1}));
    let again = post(
        cred,
        &[("content-encoding", "gzip")],
        &gzip(batch.to_string().as_bytes()),
    );
    assert_eq!(
        again.expect(200),
        json!({"accepted": 0, "duplicates": 1, "last_seq": 1})
    );
}

#[test]
fn collector_authorizes_drift_in_approved_windows_and_alerts_on_the_rest() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let token = |name: &str, role: &str| {
        let run = collector.driftctl(&admin, &["token", "create", "--name", name, "--role", role]);
        run.expect(0);
        run.stdout.trim().to_owned()
    };
    let (alice, bob, eve) = (
        token("alice", "change-manager"),
        token("bob", "change-manager"),
        token("eve", "security"),
    );
    let web = FakeAgent::enroll(&collector, &admin, "web-1");
    let db = FakeAgent::enroll(&collector, &admin, "db-1");

    let (start, end) = (in_minutes(-5), in_minutes(55));
    let created = collector.driftctl(
        &alice,
        &[
            "--json",
            "windows",
            "create",
            "--ticket",
            "CHG-1042",
            "--title",
            "nginx upgrade",
            "--host",
            "web-1",
            "--subject",
            "package:nginx*",
            "--subject",
            "file:/etc/nginx/**",
            "--start",
            &start,
            "--end",
            &end,
        ],
    );
    created.expect(0);
    let window = created.json();
    let id = window["id"].as_str().unwrap().to_owned();
    assert_eq!(window["status"], "requested");

    collector
        .driftctl(&alice, &["windows", "approve", &id])
        .expect(83)
        .stderr_has("segregation of duties: alice requested");
    collector
        .driftctl(&eve, &["windows", "approve", &id])
        .expect(83)
        .stderr_has("needs the change-manager role");
    collector
        .driftctl(&bob, &["windows", "approve", &id, "--comment", "CAB ok"])
        .expect(0)
        .stdout_has("is approved");

    web.report(
        &collector,
        &[
            web.event("package:nginx", "1.25"),
            web.event("file:/etc/nginx/nginx.conf", "a"),
        ],
    )
    .expect(200);
    db.report(&collector, &[db.event("package:nginx", "1.25")])
        .expect(200);
    web.report(&collector, &[web.event("user:mallory", "1")])
        .expect(200);

    let drift = collector.get("/api/v1/drift", &eve).expect(200);
    let status = |host: &str, subject: &str| {
        drift
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["hostname"] == host && d["subject"] == subject)
            .map(|d| d["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        status("web-1", "package:nginx").as_deref(),
        Some("authorized")
    );
    assert_eq!(
        status("web-1", "file:/etc/nginx/nginx.conf").as_deref(),
        Some("authorized")
    );
    assert_eq!(status("db-1", "package:nginx").as_deref(), Some("open"));
    assert_eq!(status("web-1", "user:mallory").as_deref(), Some("open"));

    // Held one second, then one alert per host.
    let mut alerts = Vec::new();
    let alerted = wait_until(Duration::from_secs(30), || {
        alerts = collector
            .alerts()
            .into_iter()
            .filter(|a| a["kind"] == "untraced_drift")
            .collect();
        alerts.len() == 2
    });
    assert!(alerted, "alerts: {alerts:#?}\nlog:\n{}", collector.log());
    let web_alert = alerts
        .iter()
        .find(|a| a["host"]["hostname"] == "web-1")
        .unwrap();
    assert_eq!(web_alert["items"][0]["subject"], "user:mallory");
    assert!(web_alert["held_secs"].as_i64().unwrap() >= 1);

    let listed = collector.driftctl(&eve, &["drift", "list", "--status", "open"]);
    listed
        .expect(0)
        .stdout_has("user:mallory")
        .stdout_has("db-1");
    let mallory = drift
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["subject"] == "user:mallory")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    collector
        .driftctl(
            &alice,
            &[
                "drift",
                "resolve",
                &mallory,
                "--category",
                "false_positive",
                "--comment",
                "x",
            ],
        )
        .expect(83)
        .stderr_has("needs the security role");
    collector
        .driftctl(
            &eve,
            &[
                "drift",
                "resolve",
                &mallory,
                "--category",
                "confirmed_unauthorized",
                "--comment",
                "account removed",
            ],
        )
        .expect(0)
        .stdout_has("resolved");
    collector
        .driftctl(&bob, &["windows", "list", "--status", "approved"])
        .expect(0)
        .stdout_has("CHG-1042");
    collector
        .driftctl(&eve, &["audit", "verify"])
        .expect(0)
        .stdout_has("audit log: no problem found");
}

#[test]
fn audit_verify_detects_an_edit_and_a_deletion_made_with_raw_sql() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    for name in ["alice", "bob", "carol"] {
        collector
            .post(
                "/api/v1/tokens",
                Some(&admin),
                &json!({"name": name, "role": "auditor"}),
            )
            .expect(201);
    }
    assert_eq!(
        collector.get("/api/v1/audit/verify", &admin).expect(200)["ok"],
        true
    );
    collector
        .cli(&["audit", "verify"])
        .expect(0)
        .stdout_has("audit log: no problem found in 9 entries");

    // Entry 4: person `alice` created by root (1: alert sinks, 2-3: root's person and token).
    // Someone with write access to the file: the triggers stop a careless edit, not them.
    let db = rusqlite::Connection::open(collector.db()).unwrap();
    let refused = db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 4", []);
    assert!(refused.unwrap_err().to_string().contains("append-only"));
    db.execute_batch(
        "DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'mallory' WHERE seq = 4;",
    )
    .unwrap();

    let report = collector.get("/api/v1/audit/verify", &admin).expect(200);
    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(report["findings"][0]["seq"], 4);
    collector
        .driftctl(&admin, &["audit", "verify"])
        .expect(1)
        .stdout_has("audit log ALTERED")
        .stdout_has("entry 4: content does not match its hash");
    collector
        .cli(&["audit", "verify"])
        .expect(1)
        .stdout_has("entry 4");

    db.execute_batch(
        "DROP TRIGGER audit_no_delete; UPDATE audit SET actor = 'root' WHERE seq = 4; \
         DELETE FROM audit WHERE seq = 5;",
    )
    .unwrap();
    drop(db);
    let run = collector.cli(&["audit", "verify", "--json"]);
    run.expect(1);
    let report = run.json();
    assert!(
        report["findings"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("deleted or reordered"),
        "{report:#}"
    );
}

#[test]
fn collector_stops_cleanly_on_sigterm_and_keeps_its_records() {
    let mut collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let host = FakeAgent::enroll(&collector, &admin, "web-1");
    let first = host.event("file:/etc/hosts", "a");
    host.report(&collector, std::slice::from_ref(&first))
        .expect(200);

    let (code, log) = collector.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stopped"), "{log}");
    collector.restart();

    // The same state: the retry of an acknowledged event is a duplicate, the chain goes on.
    let ack = host
        .report(&collector, &[first, host.event("file:/etc/hosts", "b")])
        .expect(200);
    assert_eq!(ack, json!({"accepted": 1, "duplicates": 1, "last_seq": 2}));
    let drift = collector.get("/api/v1/drift", &admin).expect(200);
    assert_eq!(drift[0]["events"], 2, "{drift:#}");
    let alerts = collector.get("/api/v1/alerts", &admin).expect(200);
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kind"] != "chain"),
        "{alerts:#}"
    );

    let (code, log) = collector.stop_with("INT");
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn configuration_errors_name_the_file_line_and_key() {
    let collector = Collector::start("");
    let bad = collector.dir().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"0.0.0.0:8443\"\nplain_http = true\nhold_secs = -5\n[[alert]]\ntype = \"webhook\"\nurl = \"ftp://x/\"\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(driftwatch_tests::collector::collector_bin());
    cmd.arg("--config").arg(&bad).arg("validate-config");
    let run = driftwatch_tests::collector::run(cmd, Duration::from_secs(30));
    run.expect(78)
        .stderr_has("3 problems")
        .stderr_has(
            "bad.toml:2:14: plain_http: plain HTTP on 0.0.0.0:8443 would send tokens in clear text",
        )
        .stderr_has("bad.toml:3:13: hold_secs: must be between 0 and 86400, got -5")
        .stderr_has("bad.toml:6:7: alert[0].url: unsupported URL scheme `ftp`");
    collector
        .cli(&["serve", "--listen", "0.0.0.0:0"])
        .expect(78)
        .stderr_has("would send tokens in clear text");
    collector
        .cli(&["validate-config"])
        .expect(0)
        .stdout_has(": ok");
}

#[test]
fn the_agent_daemon_reports_to_the_real_collector_which_tells_authorized_from_untraced() {
    use driftwatch_tests::daemon::DaemonHost;
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let alice = collector.token("change-manager", "alice");
    let bob = collector.token("change-manager", "bob");
    let host = DaemonHost::new(Some(&collector.url()), "");
    host.init();
    let issued = collector
        .post("/api/v1/enrollment-tokens", Some(&admin), &json!({}))
        .expect(201);
    host.cli(["enroll", "--token", issued["token"].as_str().unwrap()])
        .run()
        .expect(0);
    let daemon = host.start();
    let tree = host.host.tree().to_str().unwrap().to_owned();
    let drift_for = |path: &str| {
        let subject = format!("file:{tree}/{path}");
        collector
            .get("/api/v1/drift", &admin)
            .expect(200)
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["subject"] == subject)
            .cloned()
    };
    let wait_for = |path: &str| {
        let mut found = None;
        let ok = wait_until(Duration::from_secs(30), || {
            found = drift_for(path);
            found.is_some()
        });
        assert!(
            ok,
            "no drift for {path}\nagent log:\n{}\ncollector log:\n{}",
            daemon.log(),
            collector.log()
        );
        found.unwrap()
    };

    // No window: untraced, alerted after the hold.
    host.host.write("etc/app.conf", "port = 8080\n");
    let untraced = wait_for("etc/app.conf");
    assert_eq!(
        (&untraced["status"], &untraced["reason"]),
        (&json!("open"), &json!("untraced"))
    );
    assert!(wait_until(Duration::from_secs(30), || collector
        .alerts()
        .iter()
        .any(
            |a| a["kind"] == "untraced_drift" && a["items"][0]["subject"] == untraced["subject"]
        )));

    // An approved window for this host and tree: the next change is authorized.
    let hostname = collector.get("/api/v1/hosts", &admin).expect(200)[0]["hostname"]
        .as_str()
        .unwrap()
        .to_owned();
    let window = collector
        .post(
            "/api/v1/windows",
            Some(&alice),
            &json!({
                "ticket": "CHG-7", "title": "config change", "hosts": {"names": [hostname]},
                "subjects": [format!("file:{tree}/etc/**")],
                "start": in_minutes(-1), "end": in_minutes(30), "time_zone": "UTC",
            }),
        )
        .expect(201);
    let approve = format!("/api/v1/windows/{}/approve", window["id"].as_str().unwrap());
    collector.post(&approve, Some(&bob), &json!({})).expect(200);
    host.host.write("etc/sub/other.conf", "x = 2\n");
    let authorized = wait_for("etc/sub/other.conf");
    assert_eq!(authorized["status"], "authorized", "{authorized:#}");
    assert_eq!(authorized["window_id"], window["id"]);

    // The agent's heartbeats arrive; its chain is intact.
    assert!(wait_until(Duration::from_secs(30), || {
        collector.get("/api/v1/hosts", &admin).expect(200)[0]["last_seen_at"].is_string()
    }));
    let alerts = collector.get("/api/v1/alerts", &admin).expect(200);
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kind"] != "chain"),
        "{alerts:#}"
    );
    daemon.stop();
}

#[test]
fn the_clis_explain_themselves_and_their_errors() {
    use driftwatch_tests::collector::{collector_bin, driftctl_bin, run};
    let cli = |bin: &std::path::Path, args: &[&str], token: Option<&str>| {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(args).env_remove("DRIFTWATCH_URL");
        match token {
            Some(token) => cmd.env("DRIFTWATCH_TOKEN", token),
            None => cmd.env_remove("DRIFTWATCH_TOKEN"),
        };
        run(cmd, Duration::from_secs(30))
    };
    cli(driftctl_bin(), &["--help"], None)
        .expect(0)
        .stdout_has("windows")
        .stdout_has("Exit codes");
    cli(driftctl_bin(), &["windows", "create", "--help"], None)
        .expect(0)
        .stdout_has("--subject")
        .stdout_has("--time-zone");
    cli(driftctl_bin(), &["drift", "resolve", "--help"], None)
        .expect(0)
        .stdout_has("confirmed_unauthorized");
    cli(collector_bin(), &["--help"], None)
        .expect(0)
        .stdout_has("serve")
        .stdout_has("validate-config");
    cli(collector_bin(), &["token", "create", "--help"], None)
        .expect(0)
        .stdout_has("--role");

    cli(driftctl_bin(), &["drift", "list"], None)
        .expect(78)
        .stderr_has("no token: pass --token-file, set DRIFTWATCH_TOKEN_FILE or DRIFTWATCH_TOKEN");
    cli(
        driftctl_bin(),
        &["--url", "http://127.0.0.1:1", "drift", "list"],
        Some("dwt_x"),
    )
    .expect(69)
    .stderr_has("cannot reach the collector at http://127.0.0.1:1");
    cli(
        driftctl_bin(),
        &["windows", "list", "--status", "pending"],
        Some("dwt_x"),
    )
    .expect(64)
    .stderr_has("unknown window status `pending`, expected one of requested");
    cli(
        collector_bin(),
        &["--config", "/nonexistent/collector.toml", "validate-config"],
        None,
    )
    .expect(78)
    .stderr_has("/nonexistent/collector.toml: cannot read the file");
}
