//! Backups and restore with the real `driftwatch-collector`: `backup FILE` while events
//! arrive, refused over an existing file without `--force`, recorded in the audit log; the
//! copy restored into a fresh state directory as the README says (stop, copy with owner
//! and mode, start, `audit verify --checkpoints`), holding every event up to the backup;
//! the agent's later batches still chain, and what the restore lost is a gap alert.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use driftwatch_common::api::v1::DriftEvent;
use driftwatch_tests::collector::{Collector, FakeAgent, http};
use driftwatch_tests::daemon::wait_until;
use driftwatch_tests::p;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn audit_log(collector: &Collector, token: &str) -> Vec<Value> {
    collector
        .get("/api/v1/audit", token)
        .expect(200)
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the JSON-lines sink holds a checkpoint of the whole log; returns the file.
#[track_caller]
fn checkpointed_sink(collector: &Collector, token: &str) -> String {
    let head = audit_log(collector, token).len() as u64;
    let sink = collector.dir().join("alerts.jsonl");
    let mut text = String::new();
    let reached = wait_until(Duration::from_secs(30), || {
        text = fs::read_to_string(&sink).unwrap_or_default();
        // Whole lines only: the sink may be writing the next one.
        let whole = text.rfind('\n').map_or(0, |end| end + 1);
        text.truncate(whole);
        text.lines().any(|line| {
            let alert: Value = serde_json::from_str(line).unwrap();
            alert["kind"] == "audit_checkpoint" && alert["entries"].as_u64() == Some(head)
        })
    });
    assert!(
        reached,
        "no checkpoint of entry {head}:\n{}",
        collector.log()
    );
    text
}

/// The sequence numbers of the events stored for `host`, in order.
fn stored_seqs(db: &Path, host: &str) -> Vec<u64> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn
        .prepare("SELECT seq FROM events WHERE host_id = ?1 ORDER BY seq")
        .unwrap();
    stmt.query_map([host], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|s| s.unwrap() as u64)
        .collect()
}

fn post_events(collector: &Collector, credential: &str, events: &[DriftEvent]) -> Value {
    let body = json!({ "events": events }).to_string();
    http::request(
        collector.addr,
        "POST",
        "/api/v1/events",
        Some(credential),
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .expect(200)
}

fn sha256_hex(path: &Path) -> String {
    let digest = Sha256::digest(fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_backup_taken_while_events_arrive_restores_into_a_collector_that_verifies_and_chains_on() {
    let keep = tempfile::tempdir().unwrap();
    let mut live = Collector::start("[audit]\ncheckpoint_interval_secs = 1\n");
    let admin = live.token("admin", "Ada Admin");
    let agent = FakeAgent::enroll(&live, &admin, "web-1");
    let host = agent.id.to_string();
    let first: Vec<_> = (1..=10)
        .map(|n| agent.event(&format!("package:p{n}"), "1"))
        .collect();
    agent.report(&live, &first).expect(200);
    // What a verifier holds before the backup: the sink's checkpoints so far.
    let held_before = keep.path().join("checkpoints-before.jsonl");
    fs::write(&held_before, checkpointed_sink(&live, &admin)).unwrap();

    // Events 11..=20 arrive one by one while the backup runs; 21..=25 after it.
    let during: Vec<_> = (11..=20)
        .map(|n| agent.event(&format!("package:p{n}"), "1"))
        .collect();
    let copy = keep.path().join("collector-backup.db");
    let copy_arg = p(&copy);
    let backup = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            for event in &during {
                let ack = post_events(&live, &agent.credential, std::slice::from_ref(event));
                assert_eq!(ack["accepted"], 1, "{ack}");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let run = live.cli(&["backup", copy_arg]);
        sender.join().unwrap();
        run
    });
    backup.expect(0);
    assert!(backup.stdout.contains(": ok, "), "{}", backup.stdout);
    assert!(
        backup.stderr.contains("recorded in the audit log as entry"),
        "{}",
        backup.stderr
    );
    let mode = fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy holds token digests and chain keys");
    let leftovers: Vec<_> = fs::read_dir(keep.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp") || name.contains("-wal"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    let digest = sha256_hex(&copy);

    // The backup is an audit entry of the live log, naming the copy's digest.
    let live_log = audit_log(&live, &admin);
    let entry = live_log
        .iter()
        .find(|e| e["action"] == "collector.backup")
        .expect("a collector.backup entry");
    assert_eq!(entry["details"]["sha256"], json!(digest), "{entry:#}");
    assert!(entry["actor"].as_str().unwrap().starts_with("local:"));
    let copied_entries = entry["details"]["audit_entries"].as_u64().unwrap();
    assert!(copied_entries < entry["seq"].as_u64().unwrap());

    // An existing file is not replaced without --force, and stays as it was.
    let again = live.cli(&["backup", copy_arg]);
    again.expect(2);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    assert_eq!(sha256_hex(&copy), digest);
    let forced = keep.path().join("forced.db");
    fs::write(&forced, b"an older file").unwrap();
    live.cli(&["backup", "--force", p(&forced)]).expect(0);
    assert_ne!(fs::read(&forced).unwrap(), b"an older file");

    let after: Vec<_> = (21..=25)
        .map(|n| agent.event(&format!("package:p{n}"), "1"))
        .collect();
    agent.report(&live, &after).expect(200);
    // The live sink ends up with a checkpoint of the backup's own entry and later ones.
    let held_after = keep.path().join("checkpoints-after.jsonl");
    fs::write(&held_after, checkpointed_sink(&live, &admin)).unwrap();
    let key = fs::read(live.dir().join("state/audit-signing.key")).unwrap();
    let (code, log) = live.stop();
    assert_eq!(code, Some(0), "{log}");

    // The restore, as the README says: a collector stopped, the copy and the signing key
    // put in its state directory (owner and mode kept), started again.
    let mut restored = Collector::start("[audit]\ncheckpoint_interval_secs = 1\n");
    let (code, log) = restored.stop();
    assert_eq!(code, Some(0), "{log}");
    let state = restored.dir().join("state");
    for name in ["collector.db", "collector.db-wal", "collector.db-shm"] {
        let _ = fs::remove_file(state.join(name));
    }
    fs::copy(&copy, state.join("collector.db")).unwrap();
    fs::set_permissions(
        state.join("collector.db"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::write(state.join("audit-signing.key"), key).unwrap();
    fs::set_permissions(
        state.join("audit-signing.key"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    restored.restart();

    // Every event up to the backup is there, and none after it.
    let seqs = stored_seqs(&restored.db(), &host);
    let kept = *seqs.last().unwrap();
    assert_eq!(seqs, (1..=kept).collect::<Vec<_>>());
    assert!((10..=20).contains(&kept), "{seqs:?}");

    // The log verifies against the checkpoints held from before the backup...
    let verified = restored.cli(&["audit", "verify", "--checkpoints", p(&held_before)]);
    verified.expect(0);
    assert!(
        verified.stdout.contains("no problem found"),
        "{}",
        verified.stdout
    );
    // The restored log is the copy's, plus what the restored collector wrote since (its
    // alert sinks differ from the live one's: `config.alert_sinks`).
    let restored_log = audit_log(&restored, &admin);
    assert_eq!(
        restored_log[..copied_entries as usize],
        live_log[..copied_entries as usize]
    );
    assert!(
        restored_log[copied_entries as usize..]
            .iter()
            .all(|e| e["action"] == "config.alert_sinks"),
        "{restored_log:#?}"
    );
    // ... and a checkpoint signed after the backup shows what the restore lost: a restore
    // cannot quietly drop audit entries.
    let later = restored.cli(&["audit", "verify", "--checkpoints", p(&held_after)]);
    later.expect(1);
    assert!(
        later.stdout.starts_with("audit log ALTERED")
            && (later.stdout.contains("entries were removed")
                || later
                    .stdout
                    .contains("no longer the entry that was checkpointed")),
        "{}",
        later.stdout
    );

    // The agent goes on from its own head (events 21..=25 were acknowledged and deleted
    // from its spool): its next batch verifies and is stored, and what the restored
    // collector never received is a gap alert naming the numbers.
    let next = agent.event("package:p26", "1");
    let ack = agent.report(&restored, &[next]).expect(200);
    assert_eq!(ack["accepted"], 1, "{ack}");
    assert_eq!(ack["last_seq"], 26, "{ack}");
    assert_eq!(stored_seqs(&restored.db(), &host).last(), Some(&26));
    let gap = restored
        .get("/api/v1/alerts", &admin)
        .expect(200)
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "chain")
        .map(|a| a["body"]["problem"].clone())
        .collect::<Vec<_>>();
    assert_eq!(gap.len(), 1, "{gap:#?}\n{}", restored.log());
    assert_eq!(gap[0]["problem"], "gap", "{gap:#?}");
    assert_eq!(
        (gap[0]["from"].as_u64(), gap[0]["to"].as_u64()),
        (Some(kept + 1), Some(25)),
        "{gap:#?}"
    );
}

#[test]
fn a_backup_of_nothing_or_onto_the_live_database_is_refused_and_writes_nothing() {
    let collector = Collector::start("");
    let db = collector.db();
    let onto = collector.cli(&["backup", "--force", p(&db)]);
    onto.expect(2);
    assert!(onto.stderr.contains("live database"), "{}", onto.stderr);
    let missing_dir = collector.dir().join("no/such/dir/copy.db");
    let refused = collector.cli(&["backup", p(&missing_dir)]);
    refused.expect(2);
    assert!(!missing_dir.exists());
}
