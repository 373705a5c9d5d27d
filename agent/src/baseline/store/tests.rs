use driftwatch_common::hash::ContentHash;
use driftwatch_common::state::{FileKind, FileState};
use std::collections::BTreeMap;

use driftwatch_common::api::v1::SubjectKey;
use rusqlite::{Connection, params};

use super::*;

fn record(size: u64) -> Record {
    Record {
        state: FileState {
            kind: FileKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size,
            mtime_ns: 1,
            ctime_ns: 1,
            inode: size,
            device: 1,
            nlink: 1,
            rdev: None,
            link_target: None,
            content_hash: Some(ContentHash::of(&size.to_le_bytes())),
            xattrs: None,
        },
        error: None,
    }
}

fn meta() -> Meta {
    Meta {
        created_at: "2026-11-23T00:00:00Z".into(),
        policy_digest: "p".into(),
        last_full_hash_at: "2026-11-23T00:00:00Z".into(),
    }
}

fn history(action: &'static str) -> NewHistory {
    NewHistory {
        action,
        actor: "tester".into(),
        detail: "test".into(),
    }
}

/// A baseline with /a (snapshot "alpha"), /b and /c.
fn make(dir: &Path) -> StorePaths {
    let paths = StorePaths::for_db(&dir.join("b.db"));
    let mut writer = BaselineWriter::create(&paths, false).unwrap();
    let mut alpha = record(5);
    alpha.state.content_hash = Some(ContentHash::of(b"alpha"));
    writer
        .insert(b"/a", &alpha, Some(&Snapshot::of(b"alpha")))
        .unwrap();
    writer.insert(b"/c", &record(3), None).unwrap();
    writer.insert(b"/b", &record(2), None).unwrap();
    writer.finish(&meta(), &[], &[history("init")]).unwrap();
    paths
}

fn load(paths: &StorePaths) -> Result<Baseline> {
    BaselineStore::open(paths)?.load()
}

fn raw(paths: &StorePaths) -> Connection {
    Connection::open(&paths.db).unwrap()
}

fn assert_tampered(result: Result<Baseline>) {
    match result {
        Err(StoreError::Tampered { detail, .. }) => assert!(!detail.is_empty()),
        other => panic!("expected a tamper error, got {other:?}"),
    }
}

#[test]
fn entries_load_sorted_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    let baseline = load(&paths).unwrap();
    let names: Vec<Vec<u8>> = (0..baseline.len()).map(|i| baseline.path(i)).collect();
    assert_eq!(names, [&b"/a"[..], b"/b", b"/c"]);
    assert_eq!(baseline.get(b"/b").unwrap(), Some(record(2)));
    assert!(baseline.get(b"/d").unwrap().is_none());
    assert_eq!(baseline.meta, meta());
}

#[test]
fn derived_keys_are_stable_per_purpose_and_differ_between_purposes() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    let store = BaselineStore::open(&paths).unwrap();
    let fingerprint = store.derived_key("diff fingerprint");
    assert_eq!(
        fingerprint,
        BaselineStore::open(&paths)
            .unwrap()
            .derived_key("diff fingerprint")
    );
    assert_ne!(fingerprint, store.derived_key("something else"));
    // Not the baseline key itself: a leaked fingerprint key must not unseal the baseline.
    let key: ContentHash = fs::read_to_string(&paths.key)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(fingerprint, key.0);
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    for file in [&paths.db, &paths.key] {
        let mode = fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

#[test]
fn an_edited_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    let forged = postcard::to_allocvec(&record(99)).unwrap();
    raw(&paths)
        .execute(
            "UPDATE entries SET record = ?1 WHERE path = ?2",
            params![forged, &b"/b"[..]],
        )
        .unwrap();
    assert_tampered(load(&paths));
}

#[test]
fn a_deleted_or_added_row_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    raw(&paths)
        .execute("DELETE FROM entries WHERE path = ?1", [&b"/c"[..]])
        .unwrap();
    assert_tampered(load(&paths));

    let paths = make(&dir.path().join("second"));
    let extra = postcard::to_allocvec(&record(1)).unwrap();
    raw(&paths)
        .execute(
            "INSERT INTO entries (path, record) VALUES (?1, ?2)",
            params![&b"/z"[..], extra],
        )
        .unwrap();
    assert_tampered(load(&paths));
}

#[test]
fn edited_history_or_meta_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    raw(&paths)
        .execute("UPDATE history SET actor = 'someone else'", [])
        .unwrap();
    assert_tampered(load(&paths));

    let paths = make(&dir.path().join("second"));
    // Pushing the last full hash into the future would suppress paranoid re-hashes.
    raw(&paths)
        .execute(
            "UPDATE meta SET value = '2099-01-01T00:00:00Z' WHERE key = 'last_full_hash_at'",
            [],
        )
        .unwrap();
    assert_tampered(load(&paths));
}

#[test]
fn a_different_key_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    fs::write(&paths.key, format!("{}\n", ContentHash::of(b"other key"))).unwrap();
    assert_tampered(load(&paths));
}

#[test]
fn a_missing_or_malformed_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    fs::write(&paths.key, "not hex").unwrap();
    assert!(matches!(load(&paths), Err(StoreError::KeyInvalid { .. })));
    fs::remove_file(&paths.key).unwrap();
    let err = load(&paths).unwrap_err();
    assert!(matches!(err, StoreError::KeyMissing { .. }));
    assert!(err.is_integrity_failure());
}

#[test]
fn garbage_instead_of_a_database_is_an_integrity_failure() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    fs::write(&paths.db, vec![0x42; 8192]).unwrap();
    let err = load(&paths).unwrap_err();
    assert!(err.is_integrity_failure(), "{err}");
}

#[test]
fn a_tampered_snapshot_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    let store = BaselineStore::open(&paths).unwrap();
    let alpha = ContentHash::of(b"alpha");
    assert_eq!(
        store.snapshot(b"/a", &alpha).unwrap().as_deref(),
        Some(&b"alpha"[..])
    );
    let assert_refused = |what: &str| match store.snapshot(b"/a", &alpha) {
        Err(StoreError::Tampered { detail, .. }) => {
            assert!(
                detail.contains("content snapshot of /a"),
                "{what}: {detail}"
            )
        }
        other => panic!("{what}: expected a tamper error, got {other:?}"),
    };
    // Other content, validly compressed, under the same name.
    let omega = Snapshot::of(b"omega").compressed;
    raw(&paths)
        .execute("UPDATE snapshot_blobs SET content = ?1", [&omega])
        .unwrap();
    assert_refused("swapped content");
    // One byte of the compressed frame changed.
    let mut edited = Snapshot::of(b"alpha").compressed;
    let last = edited.len() - 1;
    edited[last] ^= 0x20;
    raw(&paths)
        .execute("UPDATE snapshot_blobs SET content = ?1", [&edited])
        .unwrap();
    assert_refused("an edited byte");
    // The reference pointed at another content, and a reference without its blob.
    raw(&paths)
        .execute(
            "UPDATE snapshot_refs SET hash = ?1",
            [&ContentHash::of(b"omega").0[..]],
        )
        .unwrap();
    assert_refused("another content's reference");
    raw(&paths)
        .execute("UPDATE snapshot_refs SET hash = ?1", [&alpha.0[..]])
        .unwrap();
    raw(&paths)
        .execute("DELETE FROM snapshot_blobs", [])
        .unwrap();
    assert_refused("a missing blob");
    // A subject without a snapshot has none; that is no error.
    assert_eq!(
        store
            .snapshot(b"/b", &record(2).state.content_hash.unwrap())
            .unwrap(),
        None
    );
}

#[test]
fn snapshots_round_trip_compressed_and_are_stored_once_per_content() {
    let dir = tempfile::tempdir().unwrap();
    let paths = StorePaths::for_db(&dir.path().join("b.db"));
    let text = "server {\n    listen 80;\n}\n".repeat(200);
    let hash = ContentHash::of(text.as_bytes());
    let mut same = record(text.len() as u64);
    same.state.content_hash = Some(hash);
    let mut writer = BaselineWriter::create(&paths, false).unwrap();
    for path in [&b"/etc/a.conf"[..], b"/etc/b.conf", b"/etc/c.conf"] {
        let snapshot = Snapshot::with_hash(hash, text.as_bytes());
        writer.insert(path, &same, Some(&snapshot)).unwrap();
    }
    writer.insert(b"/etc/d", &record(1), None).unwrap();
    writer.finish(&meta(), &[], &[history("init")]).unwrap();

    let store = BaselineStore::open(&paths).unwrap();
    store.load().unwrap();
    for path in [&b"/etc/a.conf"[..], b"/etc/b.conf", b"/etc/c.conf"] {
        assert_eq!(
            store.snapshot(path, &hash).unwrap().as_deref(),
            Some(text.as_bytes())
        );
    }
    let totals = store.snapshot_totals().unwrap();
    assert_eq!((totals.subjects, totals.contents), (3, 1));
    // Compressed: the repetitive text takes a small fraction of its size.
    assert!(
        totals.stored_bytes * 10 < text.len() as u64,
        "{} bytes stored for {}",
        totals.stored_bytes,
        text.len()
    );
}

#[test]
fn accept_replaces_snapshots_and_drops_content_no_one_refers_to() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    let mut store = BaselineStore::open(&paths).unwrap();
    let mut beta = record(4);
    beta.state.content_hash = Some(ContentHash::of(b"beta"));
    store
        .accept(
            &[AcceptedChange {
                path: PathBytes(b"/a".to_vec()),
                record: Some(beta),
                snapshot: Some(b"beta".to_vec()),
            }],
            history("accept"),
        )
        .unwrap();
    assert_eq!(
        store
            .snapshot(b"/a", &ContentHash::of(b"beta"))
            .unwrap()
            .as_deref(),
        Some(&b"beta"[..])
    );
    let totals = store.snapshot_totals().unwrap();
    assert_eq!((totals.subjects, totals.contents), (1, 1), "alpha is gone");
    store
        .accept(
            &[AcceptedChange {
                path: PathBytes(b"/a".to_vec()),
                record: None,
                snapshot: None,
            }],
            history("accept"),
        )
        .unwrap();
    assert_eq!(store.snapshot_totals().unwrap(), SnapshotTotals::default());
}

/// Turns a baseline made now back into the schema-2 layout: snapshots uncompressed in
/// `snapshots(path, content)`, one per path, and no snapshot tables.
fn downgrade_to_v2(paths: &StorePaths, snapshots: &[(&[u8], &[u8])]) {
    let conn = raw(paths);
    conn.execute_batch(
        "DROP TABLE snapshot_blobs; DROP TABLE snapshot_refs;
         CREATE TABLE snapshots (path BLOB PRIMARY KEY, content BLOB NOT NULL) WITHOUT ROWID;
         PRAGMA user_version = 2;",
    )
    .unwrap();
    for (path, content) in snapshots {
        conn.execute(
            "INSERT INTO snapshots (path, content) VALUES (?1, ?2)",
            params![path, content],
        )
        .unwrap();
    }
}

#[test]
fn a_schema_2_baseline_is_upgraded_on_open_and_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    let anchor = load(&paths).unwrap().anchor();
    downgrade_to_v2(&paths, &[(b"/a", b"alpha")]);

    let store = BaselineStore::open(&paths).unwrap();
    // The root does not cover snapshots: the upgrade leaves it (and the anchor) as it was.
    assert_eq!(store.load().unwrap().anchor(), anchor);
    assert_eq!(
        store
            .snapshot(b"/a", &ContentHash::of(b"alpha"))
            .unwrap()
            .as_deref(),
        Some(&b"alpha"[..])
    );
    let version: i64 = raw(&paths)
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, migrations::LATEST);
    let old_table: i64 = raw(&paths)
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'snapshots'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(old_table, 0, "the old table is dropped");
}

#[test]
fn a_snapshot_edited_before_the_upgrade_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    downgrade_to_v2(&paths, &[(b"/a", b"omega")]);
    let store = BaselineStore::open(&paths).unwrap();
    store.load().unwrap();
    assert!(matches!(
        store.snapshot(b"/a", &ContentHash::of(b"alpha")),
        Err(StoreError::Tampered { .. })
    ));
}

#[test]
fn missing_baseline_says_how_to_create_one() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(&StorePaths::for_db(&dir.path().join("none.db"))).unwrap_err();
    assert!(err.to_string().contains("baseline init"), "{err}");
}

#[test]
fn init_refuses_to_replace_without_force_and_abort_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    assert!(matches!(
        BaselineWriter::create(&paths, false),
        Err(StoreError::AlreadyExists { .. })
    ));
    let mut writer = BaselineWriter::create(&paths, true).unwrap();
    writer.insert(b"/only", &record(1), None).unwrap();
    writer.abort();
    assert_eq!(load(&paths).unwrap().len(), 3);
}

#[test]
fn accept_updates_entries_and_history_and_stays_verified() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    let mut store = BaselineStore::open(&paths).unwrap();
    let changes = [
        AcceptedChange {
            path: PathBytes(b"/b".to_vec()),
            record: Some(record(20)),
            snapshot: None,
        },
        AcceptedChange {
            path: PathBytes(b"/c".to_vec()),
            record: None,
            snapshot: None,
        },
    ];
    store.accept(&changes, history("accept")).unwrap();
    let baseline = store.load().unwrap();
    assert_eq!(baseline.len(), 2);
    assert_eq!(baseline.get(b"/b").unwrap(), Some(record(20)));
    let actions: Vec<String> = store
        .history()
        .unwrap()
        .into_iter()
        .map(|h| h.action)
        .collect();
    assert_eq!(actions, ["init", "accept"]);
}

#[test]
fn recording_a_full_hash_keeps_the_root_valid() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    let mut store = BaselineStore::open(&paths).unwrap();
    let mut baseline = store.load().unwrap();
    store
        .record_full_hash(&mut baseline, "2026-12-01T00:00:00Z")
        .unwrap();
    let reloaded = store.load().unwrap();
    assert_eq!(reloaded.meta.last_full_hash_at, "2026-12-01T00:00:00Z");
}

#[test]
fn the_anchor_moves_with_decisions_but_not_with_a_full_hash() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    let mut store = BaselineStore::open(&paths).unwrap();
    let mut baseline = store.load().unwrap();
    let first = baseline.anchor();
    assert_eq!(first.created_at, meta().created_at);
    // A paranoid check re-seals the root: the anchor stays (no alarm at the collector).
    store
        .record_full_hash(&mut baseline, "2026-12-01T00:00:00Z")
        .unwrap();
    assert_eq!(store.load().unwrap().anchor(), first);
    // An accept (entries and a history row) moves it.
    store
        .accept(
            &[AcceptedChange {
                path: PathBytes(b"/b".to_vec()),
                record: Some(record(20)),
                snapshot: None,
            }],
            history("accept"),
        )
        .unwrap();
    let accepted = store.load().unwrap().anchor();
    assert_ne!(accepted.root, first.root);
    // So does a state entry, and a history row alone.
    store
        .accept_with_state(
            &[],
            &[AcceptedState {
                subject: SubjectKey("package:vim".into()),
                fields: Some(fields("9")),
            }],
            history("accept"),
        )
        .unwrap();
    let with_state = store.load().unwrap().anchor();
    assert_ne!(with_state.root, accepted.root);
    store.accept(&[], history("accept")).unwrap();
    let last = store.load().unwrap().anchor();
    assert_ne!(last.root, with_state.root);
    // The streaming check gives the same anchor, and refuses an edited database.
    assert_eq!(store.verify_anchor().unwrap(), last);
    raw(&paths)
        .execute("UPDATE history SET detail = 'x' WHERE id = 1", [])
        .unwrap();
    assert!(matches!(
        store.verify_anchor(),
        Err(StoreError::Tampered { .. })
    ));
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    raw(&paths)
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    assert!(matches!(
        load(&paths),
        Err(StoreError::SchemaTooNew { found: 99, .. })
    ));
}

fn fields(version: &str) -> StateFields {
    BTreeMap::from([("version".to_owned(), version.to_owned())])
}

/// A baseline with one file and two packages.
fn make_with_state(dir: &Path) -> StorePaths {
    let paths = StorePaths::for_db(&dir.join("s.db"));
    let mut writer = BaselineWriter::create(&paths, false).unwrap();
    writer.insert(b"/a", &record(1), None).unwrap();
    writer
        .insert_state(&SubjectKey("package:nginx".into()), &fields("1.22"))
        .unwrap();
    writer
        .insert_state(&SubjectKey("package:curl".into()), &fields("7.88"))
        .unwrap();
    writer.finish(&meta(), &[], &[history("init")]).unwrap();
    paths
}

#[test]
fn state_entries_are_sealed_with_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_with_state(dir.path());
    let store = BaselineStore::open(&paths).unwrap();
    store.load().unwrap();
    let state = store.state().unwrap();
    assert_eq!(state.len(), 2);
    assert_eq!(state[&SubjectKey("package:nginx".into())], fields("1.22"));

    let forged = postcard::to_allocvec(&fields("6.6.6")).unwrap();
    raw(&paths)
        .execute(
            "UPDATE state_entries SET fields = ?1 WHERE key = 'package:nginx'",
            [forged],
        )
        .unwrap();
    assert_tampered(load(&paths));
}

#[test]
fn a_deleted_state_row_is_detected_even_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_with_state(dir.path());
    raw(&paths)
        .execute("DELETE FROM state_entries", [])
        .unwrap();
    assert_tampered(load(&paths));
}

#[test]
fn accepting_state_changes_stays_verified() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_with_state(dir.path());
    let mut store = BaselineStore::open(&paths).unwrap();
    let states = [
        AcceptedState {
            subject: SubjectKey("package:nginx".into()),
            fields: Some(fields("1.24")),
        },
        AcceptedState {
            subject: SubjectKey("package:curl".into()),
            fields: None,
        },
    ];
    store
        .accept_with_state(&[], &states, history("accept"))
        .unwrap();
    store.load().unwrap();
    let state = store.state().unwrap();
    assert_eq!(state.len(), 1);
    assert_eq!(state[&SubjectKey("package:nginx".into())], fields("1.24"));
}

#[test]
fn range_below_is_the_run_of_paths_under_a_directory() {
    let mut baseline = Baseline::with_capacity(0, 0, 0, RecordArena::Memory(Vec::new()));
    let record = record(0);
    let bytes = postcard::to_allocvec(&record).unwrap();
    let mut paths: Vec<&[u8]> = vec![
        b"/a", b"/a-b", b"/a.txt", b"/a/b", b"/a/b/c", b"/a/z", b"/b",
    ];
    paths.sort();
    for path in &paths {
        baseline.push(path, &bytes, &record).unwrap();
    }
    let below: Vec<Vec<u8>> = baseline
        .range_below(b"/a")
        .map(|i| baseline.path(i))
        .collect();
    assert_eq!(below, [&b"/a/b"[..], b"/a/b/c", b"/a/z"]);
    assert_eq!(baseline.range_below(b"/").len(), paths.len());
    assert!(baseline.range_below(b"/nothing").is_empty());
}

#[test]
fn a_lean_load_reads_the_same_records_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make(dir.path());
    let store = BaselineStore::open(&paths).unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let lean = store.load_lean().unwrap();
    assert!(matches!(lean.records_arena(), RecordArena::File { .. }));
    let full = store.load().unwrap();
    assert_eq!(lean.len(), full.len());
    for index in 0..full.len() {
        assert_eq!(lean.record(index).unwrap(), full.record(index).unwrap());
    }
    assert_eq!(lean.get(b"/b").unwrap(), Some(record(2)));
    assert_eq!(lean.meta, full.meta);
    // The file is unnamed: nothing new appears in the state directory.
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(before.len(), after.len());
}
