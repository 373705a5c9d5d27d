//! The audit trail anchored outside its database, with the real `driftwatch-collector` and
//! `driftctl`: signed checkpoints reach the JSON-lines sink; each attack on `collector.db`
//! made after a checkpoint (rewrite of the chain and head, truncation, wipe, a forged entry,
//! DROP TRIGGER then an edit) fails `audit verify --checkpoints`; a window record edited in
//! the database makes its bundle fail; a one-byte edit of an export fails `driftctl verify`
//! offline; a key file others can read is refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use driftwatch_tests::collector::{Collector, FakeAgent, collector_bin, run};
use driftwatch_tests::daemon::wait_until;
use driftwatch_tests::p;
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn in_minutes(minutes: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A collector signing with a key outside its state directory, a checkpoint every second
/// while the head moves.
fn start(keys: &Path) -> Collector {
    Collector::start(&format!(
        "[audit]\nsigning_key_file = \"{}\"\ncheckpoint_interval_secs = 1\n",
        p(&keys.join("audit.key"))
    ))
}

/// The checkpoints the JSON-lines sink received.
fn sink_checkpoints(collector: &Collector) -> Vec<Value> {
    collector
        .alerts()
        .into_iter()
        .filter(|a| a["kind"] == "audit_checkpoint")
        .collect()
}

fn audit_entries(collector: &Collector, token: &str) -> u64 {
    collector
        .get("/api/v1/audit", token)
        .expect(200)
        .as_array()
        .unwrap()
        .len() as u64
}

/// Waits until the sink has a checkpoint of the whole log; returns the sink file's text.
#[track_caller]
fn wait_for_checkpoint_of_head(collector: &Collector, token: &str) -> String {
    let head = audit_entries(collector, token);
    let reached = wait_until(Duration::from_secs(30), || {
        sink_checkpoints(collector)
            .iter()
            .any(|c| c["entries"].as_u64() == Some(head))
    });
    assert!(
        reached,
        "no checkpoint of entry {head} in the sink:\n{}",
        collector.log()
    );
    fs::read_to_string(collector.dir().join("alerts.jsonl")).unwrap()
}

// ----- what an attacker with the database file (not the key) does -----

/// `seq, at, actor, action, target, details, prev_hash` of one stored entry.
type StoredEntry = (i64, i64, String, String, String, String, Vec<u8>);

/// An attack on the database, named, with what verification must say about it.
type Attack<'a> = (&'a str, &'a dyn Fn(&Connection), &'a str);

fn entry_hash(prev: &[u8], seq: i64, at: i64, fields: [&str; 4]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(b"driftwatch audit v1\0");
    hasher.update(prev);
    hasher.update((seq as u64).to_be_bytes());
    hasher.update(at.to_be_bytes());
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().to_vec()
}

/// Re-links every entry from `from` on and records the new head, as the collector would
/// have; `keep_signatures` leaves the old signatures beside the new hashes.
fn forge_chain(db: &Connection, from: i64, keep_signatures: bool) {
    let rows: Vec<StoredEntry> = db
        .prepare(
            "SELECT seq, at, actor, action, target, details, prev_hash FROM audit ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev = vec![0u8; 32];
    let mut last = 0;
    for (seq, at, actor, action, target, details, stored_prev) in rows {
        if seq < from {
            prev = entry_hash(&stored_prev, seq, at, [&actor, &action, &target, &details]);
        } else {
            let hash = entry_hash(&prev, seq, at, [&actor, &action, &target, &details]);
            db.execute(
                "UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE seq = ?1",
                params![seq, prev, hash],
            )
            .unwrap();
            if !keep_signatures {
                db.execute("UPDATE audit SET signature = NULL WHERE seq = ?1", [seq])
                    .unwrap();
            }
            prev = hash;
        }
        last = seq;
    }
    set_head(db, last, &prev);
}

fn set_head(db: &Connection, seq: i64, hash: &[u8]) {
    let mut value = (seq as u64).to_be_bytes().to_vec();
    value.extend_from_slice(hash);
    db.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'audit_head'",
        [value],
    )
    .unwrap();
}

const NO_GUARDS: &str = "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;";

/// A copy of `db` in its own state directory, with a configuration naming it.
fn copy_of(db: &Path, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let state = dir.join(name);
    fs::create_dir_all(&state).unwrap();
    fs::copy(db, state.join("collector.db")).unwrap();
    let config = dir.join(format!("{name}.toml"));
    fs::write(
        &config,
        format!("plain_http = true\nstate_dir = \"{}\"\n", p(&state)),
    )
    .unwrap();
    (config, state.join("collector.db"))
}

fn verify_offline(config: &Path, args: &[&str]) -> driftwatch_tests::Run {
    let mut cmd = std::process::Command::new(collector_bin());
    cmd.arg("--config")
        .arg(config)
        .args(["audit", "verify"])
        .args(args)
        .env("DRIFTWATCH_LOG", "warn");
    run(cmd, Duration::from_secs(60))
}

#[test]
fn every_database_attack_made_after_a_checkpoint_fails_verification() {
    let keys = tempfile::tempdir().unwrap();
    let mut collector = start(keys.path());
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
    // The checkpoints reach the JSON-lines sink; a verifier keeps them.
    let held_text = wait_for_checkpoint_of_head(&collector, &admin);
    let held = keys.path().join("held.jsonl");
    fs::write(&held, &held_text).unwrap();
    let checkpoint = sink_checkpoints(&collector).pop().unwrap();
    assert_eq!(checkpoint["head_hash"].as_str().unwrap().len(), 64);
    assert_eq!(checkpoint["signature"].as_str().unwrap().len(), 128);
    let entries = checkpoint["entries"].as_u64().unwrap();
    assert!(entries >= 5, "{checkpoint}");

    // The public key, from the key file and from the API: the same.
    let key_run = collector.cli(&["audit", "public-key"]);
    key_run.expect(0);
    let public_key = key_run.stdout.trim().to_owned();
    assert_eq!(public_key.len(), 64);
    let api_key = collector
        .get("/api/v1/audit/public-key", &admin)
        .expect(200);
    assert_eq!(api_key["public_key"], public_key.as_str());
    assert_eq!(api_key["key_id"], checkpoint["key_id"]);
    let kept = collector
        .get("/api/v1/audit/checkpoints", &admin)
        .expect(200);
    assert!(
        kept.as_array()
            .unwrap()
            .iter()
            .any(|k| k["signature"] == checkpoint["signature"]),
        "{kept:#} lacks {checkpoint:#}"
    );

    // Untouched: both verifiers anchor the log on the held checkpoint.
    collector
        .cli(&["audit", "verify", "--checkpoints", p(&held)])
        .expect(0)
        .stdout_has(&format!("entries 1 to {entries} are exactly those"));
    collector
        .driftctl(
            &admin,
            &[
                "audit",
                "verify",
                "--checkpoints",
                p(&held),
                "--public-key",
                &public_key,
            ],
        )
        .expect(0)
        .stdout_has("no problem found");
    // `driftctl audit checkpoints` prints a file the verifier reads as well.
    let listed = collector.driftctl(&admin, &["audit", "checkpoints"]);
    listed.expect(0);
    let listed_file = keys.path().join("listed.jsonl");
    fs::write(&listed_file, &listed.stdout).unwrap();
    collector
        .cli(&["audit", "verify", "--checkpoints", p(&listed_file)])
        .expect(0);

    let (code, log) = collector.stop();
    assert_eq!(code, Some(0), "{log}");
    let work = tempfile::tempdir().unwrap();
    let attacks: [Attack<'_>; 5] =
        [
            (
                "rewrite",
                &|db| {
                    db.execute_batch(NO_GUARDS).unwrap();
                    db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2", [])
                        .unwrap();
                    forge_chain(db, 2, false);
                },
                "is no longer the entry that was checkpointed: the log was rewritten",
            ),
            (
                "truncate",
                &|db| {
                    db.execute_batch(NO_GUARDS).unwrap();
                    db.execute("DELETE FROM audit WHERE seq > 2", []).unwrap();
                    db.execute("DELETE FROM audit_checkpoints", []).unwrap();
                    forge_chain(db, 3, true);
                },
                "but the log ends at entry 2: entries were removed (truncated or wiped)",
            ),
            (
                "wipe",
                &|db| {
                    db.execute_batch(NO_GUARDS).unwrap();
                    db.execute_batch(
                        "DELETE FROM audit; DELETE FROM audit_checkpoints; \
                     DELETE FROM meta WHERE key = 'audit_head';",
                    )
                    .unwrap();
                },
                "but the log ends at entry 0",
            ),
            (
                "forged entry",
                &|db| {
                    let (seq, prev): (i64, Vec<u8>) = db
                        .query_row(
                            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                            [],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .unwrap();
                    let fields = [
                        "root",
                        "window.approved",
                        "window:0190a0b0-c0d0-7e00-8000-000000000001",
                        "{}",
                    ];
                    let hash = entry_hash(&prev, seq + 1, 1, fields);
                    db.execute(
                    "INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash)
                     VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![seq + 1, fields[0], fields[1], fields[2], fields[3], prev, hash],
                )
                .unwrap();
                    set_head(db, seq + 1, &hash);
                },
                "not signed, and no checkpoint covers it: the entry was added without the \
             collector's key (forged)",
            ),
            (
                "drop trigger then edit",
                &|db| {
                    db.execute_batch(
                        "DROP TRIGGER audit_no_update; \
                     UPDATE audit SET details = '{\"name\":\"mallory\",\"role\":\"admin\"}' \
                     WHERE seq = 3;",
                    )
                    .unwrap();
                    // The chain and head re-linked, the old signatures left in place.
                    forge_chain(db, 3, true);
                },
                "its signature does not verify with the collector's key",
            ),
        ];
    for (name, attack, expected) in attacks {
        let (config, db_path) = copy_of(&collector.db(), work.path(), &name.replace(' ', "-"));
        let db = Connection::open(&db_path).unwrap();
        attack(&db);
        drop(db);
        let run = verify_offline(
            &config,
            &["--checkpoints", p(&held), "--public-key", &public_key],
        );
        run.expect(1)
            .stdout_has("audit log ALTERED")
            .stdout_has(expected);
        assert!(!run.stdout.contains("no problem found"), "{name}: {run}");
    }

    // Without the held checkpoints, a truncation is not detectable, and the output says
    // so instead of calling the log intact.
    let (config, db_path) = copy_of(&collector.db(), work.path(), "truncate-unheld");
    let db = Connection::open(&db_path).unwrap();
    db.execute_batch(NO_GUARDS).unwrap();
    db.execute("DELETE FROM audit WHERE seq > 2", []).unwrap();
    db.execute("DELETE FROM audit_checkpoints", []).unwrap();
    forge_chain(&db, 3, true);
    drop(db);
    let run = verify_offline(&config, &["--public-key", &public_key]);
    run.expect(0)
        .stdout_has("NOT proven complete")
        .stdout_has("--checkpoints FILE");
    assert!(!run.stdout.contains("intact"), "{run}");

    // driftctl against the running collector on a rewritten database.
    let db = Connection::open(collector.db()).unwrap();
    db.execute_batch(NO_GUARDS).unwrap();
    db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 1", [])
        .unwrap();
    db.execute("DELETE FROM audit_checkpoints", []).unwrap();
    forge_chain(&db, 1, false);
    drop(db);
    collector.restart();
    collector
        .driftctl(
            &admin,
            &[
                "audit",
                "verify",
                "--checkpoints",
                p(&held),
                "--public-key",
                &public_key,
            ],
        )
        .expect(1)
        .stdout_has("audit log ALTERED")
        .stdout_has("the log was rewritten");
}

#[test]
fn evidence_that_disagrees_with_the_log_fails_and_signed_exports_verify_offline() {
    let keys = tempfile::tempdir().unwrap();
    let collector = start(keys.path());
    let admin = collector.token("admin", "root");
    let token = |name: &str, role: &str| {
        let run = collector.driftctl(&admin, &["token", "create", "--name", name, "--role", role]);
        run.expect(0);
        run.stdout.trim().to_owned()
    };
    let (alice, bob, carol) = (
        token("alice", "change-manager"),
        token("bob", "change-manager"),
        token("carol", "auditor"),
    );
    let created = collector.driftctl(
        &alice,
        &[
            "--json",
            "windows",
            "create",
            "--ticket",
            "CHG-9",
            "--title",
            "nginx",
            "--host",
            "web-1",
            "--subject",
            "file:/etc/nginx/**",
            "--start",
            &in_minutes(-5),
            "--end",
            &in_minutes(55),
        ],
    );
    created.expect(0);
    let window = created.json()["id"].as_str().unwrap().to_owned();
    let web = FakeAgent::enroll(&collector, &admin, "web-1");
    collector
        .driftctl(
            &bob,
            &["windows", "approve", &window, "--comment", "CAB ok"],
        )
        .expect(0);
    web.report(&collector, &[web.event("file:/etc/nginx/nginx.conf", "2")])
        .expect(200);
    collector
        .driftctl(&alice, &["windows", "close", &window])
        .expect(0);
    let public_key = collector
        .get("/api/v1/audit/public-key", &carol)
        .expect(200)["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_file = keys.path().join("audit.pub");
    fs::write(&key_file, format!("{public_key}\n")).unwrap();
    let files = tempfile::tempdir().unwrap();
    let verify = |file: &Path| {
        let mut cmd = std::process::Command::new(driftwatch_tests::collector::driftctl_bin());
        cmd.args(["verify", p(file), "--public-key", p(&key_file)])
            .env_remove("DRIFTWATCH_TOKEN");
        run(cmd, Duration::from_secs(30))
    };

    // Exports and bundles, every format, are signed; the verification needs no collector.
    let period = [
        "report",
        "export",
        "--from",
        &in_minutes(-60),
        "--to",
        &in_minutes(60),
    ];
    let mut outputs = Vec::new();
    for (args, name) in [
        (vec!["--format", "json"], "export.json"),
        (vec!["--format", "csv"], "export.csv"),
    ] {
        let path = files.path().join(name);
        let mut all: Vec<&str> = period.to_vec();
        all.extend(args);
        all.extend(["-o", p(&path)]);
        collector.driftctl(&carol, &all).expect(0);
        outputs.push(path);
    }
    for format in ["json", "md", "html"] {
        let path = files.path().join(format!("bundle.{format}"));
        collector
            .driftctl(
                &carol,
                &[
                    "windows",
                    "evidence",
                    &window,
                    "--format",
                    format,
                    "-o",
                    p(&path),
                ],
            )
            .expect(0);
        outputs.push(path);
    }
    for path in &outputs {
        verify(path)
            .expect(0)
            .stdout_has("signature valid")
            .stdout_has("agreed with the audit log");
        // One byte changed anywhere in the signed part: refused.
        let mut bytes = fs::read(path).unwrap();
        let at = (bytes.len() / 3..)
            .find(|&i| bytes[i].is_ascii_alphanumeric())
            .unwrap();
        bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
        let edited = files.path().join("edited");
        fs::write(&edited, &bytes).unwrap();
        verify(&edited).expect(1).stdout_has("signature INVALID");
    }
    // The JSON export carries the checkpoint signed for it, and the sink received it.
    let export: Value = serde_json::from_str(&fs::read_to_string(&outputs[0]).unwrap()).unwrap();
    let checkpoint = &export["audit_log"]["checkpoint"];
    assert_eq!(checkpoint["kind"], "audit_checkpoint", "{export:#}");
    let delivered = wait_until(Duration::from_secs(30), || {
        sink_checkpoints(&collector)
            .iter()
            .any(|c| c["signature"] == checkpoint["signature"])
    });
    assert!(delivered, "the export's checkpoint never reached the sink");
    assert_eq!(export["audit_log"]["ok"], true);

    // Someone with the database rewrites who approved the window.
    let db = Connection::open(collector.db()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE windows SET decided_by = 'erin' WHERE id = ?1",
        [&window],
    )
    .unwrap();
    drop(db);
    let bundle = collector
        .get(&format!("/api/v1/windows/{window}/evidence"), &carol)
        .expect(200);
    let log = &bundle["content"]["audit_log"];
    assert_eq!(bundle["content"]["window"]["decided_by"], "erin");
    assert_eq!(log["ok"], false, "{log:#}");
    let problems = log["findings"].to_string();
    assert!(
        problems.contains("the record says decided by erin") && problems.contains("says bob"),
        "{problems}"
    );
    let md = files.path().join("forged.md");
    collector
        .driftctl(
            &carol,
            &[
                "windows",
                "evidence",
                &window,
                "--format",
                "md",
                "-o",
                p(&md),
            ],
        )
        .expect(0);
    let text = fs::read_to_string(&md).unwrap();
    assert!(
        text.contains("WARNING: this evidence disagrees with the audit log"),
        "{text}"
    );
    assert!(text.contains("ALTERED"), "{text}");
    assert!(
        !text.contains("no problem found") && !text.contains("intact"),
        "{text}"
    );
    // Genuinely signed, and still refused: it says its records disagree with the log.
    verify(&md)
        .expect(1)
        .stdout_has("signature valid")
        .stdout_has("DISAGREE with the audit log")
        .stdout_has("decided by erin");
    let export = files.path().join("forged.csv");
    let mut all: Vec<&str> = period.to_vec();
    all.extend(["--format", "csv", "-o", p(&export)]);
    collector.driftctl(&carol, &all).expect(0);
    verify(&export).expect(1).stdout_has("decided by erin");
}

#[test]
fn a_signing_key_others_can_read_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let collector = start(keys.path());
    let key = keys.path().join("audit.key");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600,
        "created 0600 at first start"
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    collector
        .cli(&["token", "create", "--role", "admin", "--name", "x"])
        .expect(2)
        .stderr_has("has mode 0640")
        .stderr_has("chmod 600");
    collector
        .cli(&["audit", "keygen"])
        .expect(2)
        .stderr_has("already exists");
}

#[test]
fn the_running_collector_alerts_on_a_rewritten_log_and_signs_no_checkpoint_over_it() {
    let keys = tempfile::tempdir().unwrap();
    let collector = start(keys.path());
    let admin = collector.token("admin", "root");
    collector
        .post(
            "/api/v1/tokens",
            Some(&admin),
            &json!({"name": "alice", "role": "auditor"}),
        )
        .expect(201);
    wait_for_checkpoint_of_head(&collector, &admin);

    // While it runs: entry 2 rewritten, the chain and head re-linked, its checkpoints gone.
    let db = Connection::open(collector.db()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch(NO_GUARDS).unwrap();
    db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2", [])
        .unwrap();
    db.execute("DELETE FROM audit_checkpoints", []).unwrap();
    forge_chain(&db, 2, false);
    drop(db);
    // The head moves: the next round would checkpoint it.
    collector
        .post(
            "/api/v1/tokens",
            Some(&admin),
            &json!({"name": "bob", "role": "auditor"}),
        )
        .expect(201);
    let head = audit_entries(&collector, &admin);
    let alerted = wait_until(Duration::from_secs(30), || {
        collector
            .alerts()
            .iter()
            .any(|a| a["kind"] == "audit_tampered")
    });
    assert!(alerted, "no audit_tampered alert:\n{}", collector.log());
    let alert = collector
        .alerts()
        .into_iter()
        .find(|a| a["kind"] == "audit_tampered")
        .unwrap();
    assert!(
        alert["summary"]
            .as_str()
            .unwrap()
            .contains("audit log altered"),
        "{alert:#}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !sink_checkpoints(&collector)
            .iter()
            .any(|c| c["entries"].as_u64() == Some(head)),
        "a checkpoint vouched for the rewritten log"
    );
    let report = collector.get("/api/v1/audit/verify", &admin).expect(200);
    assert_eq!(report["ok"], false, "{report:#}");
}

#[test]
fn an_event_decision_edited_in_the_database_makes_the_evidence_fail() {
    let keys = tempfile::tempdir().unwrap();
    let collector = start(keys.path());
    let admin = collector.token("admin", "root");
    let alice = collector.token("change-manager", "alice");
    let bob = collector.token("change-manager", "bob");
    let carol = collector.token("auditor", "carol");
    let web = FakeAgent::enroll(&collector, &admin, "web-1");
    let window = collector
        .post(
            "/api/v1/windows",
            Some(&alice),
            &serde_json::json!({
                "ticket": "CHG-12", "title": "nginx", "kind": "normal",
                "hosts": {"names": ["web-1"]}, "subjects": ["file:/etc/nginx/**"],
                "start": in_minutes(-5), "end": in_minutes(55), "time_zone": "UTC",
            }),
        )
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    collector
        .post(
            &format!("/api/v1/windows/{window}/approve"),
            Some(&bob),
            &serde_json::json!({}),
        )
        .expect(200);
    web.report(
        &collector,
        &[
            web.event("file:/etc/nginx/nginx.conf", "2"),
            web.event("file:/etc/cron.d/backdoor", "1"),
        ],
    )
    .expect(200);
    let export_path = format!(
        "/api/v1/reports/export?from={}&to={}&format=json",
        in_minutes(-60),
        in_minutes(60)
    );
    let honest = collector.get(&export_path, &carol).expect(200);
    assert_eq!(honest["audit_log"]["ok"], true, "{honest:#}");

    // Someone with the database makes the backdoor read "authorized by CHG-12", copying
    // the authorized event's decision; the drift item follows.
    let db = Connection::open(collector.db()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let forged = db
        .execute(
            "UPDATE events SET
                 outcome = 'authorized', window_id = ?1,
                 decision = (SELECT decision FROM events WHERE outcome = 'authorized')
             WHERE subject = 'file:/etc/cron.d/backdoor'",
            [&window],
        )
        .unwrap();
    assert_eq!(forged, 1);
    db.execute(
        "UPDATE drift SET status = 'authorized' WHERE subject = 'file:/etc/cron.d/backdoor'",
        [],
    )
    .unwrap();
    drop(db);

    let export = collector.get(&export_path, &carol).expect(200);
    let row = export["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["subject"] == "file:/etc/cron.d/backdoor")
        .unwrap_or_else(|| panic!("{export:#}"));
    assert_eq!(
        row["authorization"], "authorized",
        "the forged row is shown"
    );
    let log = &export["audit_log"];
    assert_eq!(log["ok"], false, "{log:#}");
    assert!(
        log["findings"]
            .to_string()
            .contains("does not match its seal"),
        "{log:#}"
    );
    // The window's bundle, which now lists the backdoor, says so too.
    let bundle = collector
        .get(&format!("/api/v1/windows/{window}/evidence"), &carol)
        .expect(200);
    assert_eq!(bundle["content"]["audit_log"]["ok"], false, "{bundle:#}");

    // Removing the seal instead is no better.
    let db = Connection::open(collector.db()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute("UPDATE events SET decision_mac = NULL", [])
        .unwrap();
    drop(db);
    let export = collector.get(&export_path, &carol).expect(200);
    assert!(
        export["audit_log"]["findings"]
            .to_string()
            .contains("has no seal"),
        "{export:#}"
    );
}
