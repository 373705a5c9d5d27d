use driftwatch_common::api::v1::ChangeKind;
use driftwatch_common::state::FileKind;

use super::*;

fn state(size: u64) -> FileState {
    FileState {
        kind: FileKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size,
        mtime_ns: 1,
        ctime_ns: 1,
        inode: 1,
        device: 1,
        nlink: 1,
        rdev: None,
        link_target: None,
        content_hash: Some(ContentHash::of(&size.to_le_bytes())),
        xattrs: None,
    }
}

fn drift(path: &str, size: u64) -> Pending {
    Pending {
        id: Uuid::now_v7(),
        path: PathBytes(path.as_bytes().to_vec()),
        kind: ChangeKind::Content,
        changed: vec!["hash".into()],
        before: Some(state(0)),
        after: Some(state(size)),
        diff: None,
        actor: None,
        provenance: None,
        related: None,
        remember: Remember::Drifted(Some(state(size))),
        new_snapshot: None,
    }
}

const ROOMY: Limits = Limits {
    max_events: 1000,
    max_bytes: 1 << 30,
};

fn open(dir: &tempfile::TempDir) -> Spool {
    Spool::open(&dir.path().join(FILE_NAME)).unwrap()
}

fn commit(spool: &mut Spool, pending: &[Pending], limits: Limits) -> Committed {
    spool
        .commit(pending, SeenBy::Watch, OffsetDateTime::now_utc(), limits)
        .unwrap()
}

#[test]
fn events_are_numbered_and_chained_across_commits_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(&dir);
    let first = commit(&mut spool, &[drift("/a", 1), drift("/b", 2)], ROOMY);
    drop(spool);
    let mut spool = open(&dir);
    let second = commit(&mut spool, &[drift("/c", 3)], ROOMY);
    let events: Vec<_> = first.events.iter().chain(&second.events).collect();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(events[0].prev_hash, DriftEvent::GENESIS);
    assert_eq!(events[1].prev_hash, events[0].chain_hash());
    assert_eq!(events[2].prev_hash, events[1].chain_hash());
    // What is stored is exactly what was hashed.
    let spooled = spool.peek(10, u64::MAX).unwrap();
    let parsed: DriftEvent = serde_json::from_str(&spooled[2].body).unwrap();
    assert_eq!(&parsed, events[2]);
    assert_eq!(
        ContentHash::of(spooled[1].body.as_bytes()),
        events[2].prev_hash
    );
    assert_eq!(spool.depth().unwrap().events, 3);
    assert_eq!(spool.depth().unwrap().last_seq, 3);
}

#[test]
fn reported_state_is_committed_with_the_event_and_forgotten_on_restore() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(&dir);
    commit(&mut spool, &[drift("/a", 1)], ROOMY);
    let reported = spool.reported().unwrap();
    assert_eq!(
        reported.get(&PathBytes(b"/a".to_vec())),
        Some(&Some(state(1)))
    );
    let restored = Pending::restored(PathBytes(b"/a".to_vec()), Some(state(1)), Some(state(0)));
    let done = commit(&mut spool, &[restored], ROOMY);
    assert_eq!(done.events[0].kind, ChangeKind::Restored);
    assert!(spool.reported().unwrap().is_empty());
}

#[test]
fn a_full_spool_refuses_new_events_and_keeps_every_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(&dir);
    let limits = Limits {
        max_events: 2,
        max_bytes: 1 << 30,
    };
    let done = commit(
        &mut spool,
        &[drift("/a", 1), drift("/b", 2), drift("/c", 3)],
        limits,
    );
    assert_eq!(done.events.len(), 2);
    assert_eq!(done.refused, 1);
    // The refused subject is not remembered: a later rescan reports it.
    let reported = spool.reported().unwrap();
    assert!(reported.contains_key(&PathBytes(b"/b".to_vec())));
    assert!(!reported.contains_key(&PathBytes(b"/c".to_vec())));
    let again = commit(&mut spool, &[drift("/c", 3)], limits);
    assert_eq!((again.events.len(), again.refused), (0, 1));
    assert_eq!(spool.peek(10, u64::MAX).unwrap().len(), 2);

    // Space freed by an ack lets it in, continuing the chain.
    spool.ack(1, 1).unwrap();
    let later = commit(&mut spool, &[drift("/c", 3)], limits);
    assert_eq!(later.events[0].seq, 3);
    assert_eq!(later.events[0].prev_hash, done.events[1].chain_hash());
}

#[test]
fn byte_bound_counts_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(&dir);
    let one = commit(&mut spool, &[drift("/a", 1)], ROOMY);
    let size = one.depth.bytes;
    assert!(size > 100, "{size}");
    let limits = Limits {
        max_events: 1000,
        max_bytes: size * 2 + size / 2,
    };
    let more = commit(&mut spool, &[drift("/b", 2), drift("/c", 3)], limits);
    assert_eq!((more.events.len(), more.refused), (1, 1));
    spool.ack(1, 2).unwrap();
    assert_eq!(spool.depth().unwrap().bytes, 0);
    assert_eq!(spool.depth().unwrap().events, 0);
    assert_eq!(spool.depth().unwrap().acked_seq, 2);
}

#[test]
fn peek_respects_both_bounds_and_ack_deletes_only_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(&dir);
    let pending: Vec<_> = (0..5).map(|i| drift(&format!("/f{i}"), i)).collect();
    commit(&mut spool, &pending, ROOMY);
    assert_eq!(spool.peek(3, u64::MAX).unwrap().len(), 3);
    // A byte bound below one event still returns one (progress is always possible).
    assert_eq!(spool.peek(10, 1).unwrap().len(), 1);
    spool.ack(1, 2).unwrap();
    let left: Vec<u64> = spool
        .peek(10, u64::MAX)
        .unwrap()
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(left, [3, 4, 5]);
    // A repeated ack (a retry) is harmless.
    spool.ack(1, 2).unwrap();
    assert_eq!(spool.depth().unwrap().events, 3);
}

/// Whether `needle` occurs anywhere in the spool's files (database and WAL).
fn on_disk(dir: &tempfile::TempDir, needle: &[u8]) -> bool {
    ["spool.db", "spool.db-wal"].iter().any(|name| {
        std::fs::read(dir.path().join(name))
            .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}

#[test]
fn enrollment_keys_the_chain_and_each_commit_ratchets_and_erases_the_used_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(&dir);
    commit(&mut spool, &[drift("/a", 1)], ROOMY);
    assert!(!spool.chain_keyed().unwrap());
    let first = ChainKey::from_bytes([42; 32]);
    let host = Uuid::now_v7();
    assert_eq!(spool.adopt_identity(host, Some(first.clone())).unwrap(), 1);
    assert!(spool.chain_keyed().unwrap());
    commit(&mut spool, &[drift("/b", 2), drift("/c", 3)], ROOMY);
    let events: Vec<(String, DriftEvent)> = spool
        .peek(10, u64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| {
            let event = serde_json::from_str(&s.body).unwrap();
            (s.body, event)
        })
        .collect();
    let mut key = first.clone();
    let mut prev = DriftEvent::GENESIS;
    for (body, event) in &events {
        let encoded = event.encode();
        assert_eq!(&encoded.json, body, "spooled bytes are the wire bytes");
        assert_eq!(event.prev_hash, prev);
        assert_eq!(event.mac, Some(encoded.mac_with(&key)), "seq {}", event.seq);
        prev = encoded.chain_hash();
        key.advance();
    }
    // Only the key of the next number (4) is left; the used ones are gone from the files.
    assert!(on_disk(&dir, key.as_bytes()), "the next key is kept");
    for used in [first.clone(), first.next(), first.next().next()] {
        assert!(
            !on_disk(&dir, used.as_bytes()),
            "a used key is still on disk"
        );
    }
    drop(spool);
    let mut spool = open(&dir);
    let next = commit(&mut spool, &[drift("/d", 4)], ROOMY);
    assert_eq!(next.events[0].seq, 4);
    assert_eq!(
        next.events[0].mac,
        Some(next.events[0].encode().mac_with(&key))
    );
}

#[test]
fn adopting_an_identity_restamps_and_rechains_undelivered_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(&dir);
    assert_eq!(spool.host_id().unwrap(), Uuid::nil());
    commit(
        &mut spool,
        &[drift("/a", 1), drift("/b", 2), drift("/c", 3)],
        ROOMY,
    );
    spool.ack(1, 1).unwrap();
    let host = Uuid::now_v7();
    assert_eq!(spool.adopt_identity(host, None).unwrap(), 2);
    assert_eq!(spool.adopt_identity(host, None).unwrap(), 0, "idempotent");
    let events: Vec<DriftEvent> = spool
        .peek(10, u64::MAX)
        .unwrap()
        .iter()
        .map(|s| serde_json::from_str(&s.body).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.host_id == host));
    assert_eq!((events[0].seq, events[1].seq), (1, 2));
    assert_eq!(events[0].prev_hash, DriftEvent::GENESIS);
    assert_eq!(events[1].prev_hash, events[0].chain_hash());
    let next = commit(&mut spool, &[drift("/d", 4)], ROOMY);
    assert_eq!(next.events[0].seq, 3);
    assert_eq!(next.events[0].host_id, host);
    assert_eq!(next.events[0].prev_hash, events[1].chain_hash());
}

#[test]
fn an_uncommitted_transaction_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(FILE_NAME);
    drop(Spool::open(&db).unwrap());
    {
        // A writer that dies mid-transaction (its connection closes without COMMIT).
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "BEGIN IMMEDIATE; INSERT INTO events (seq, id, body) VALUES (1, 'x', '{}');
             UPDATE state SET depth = 1;",
        )
        .unwrap();
    }
    let spool = Spool::open(&db).unwrap();
    assert_eq!(spool.depth().unwrap().events, 0);
    assert!(spool.peek(10, u64::MAX).unwrap().is_empty());
}

#[test]
fn the_spool_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    let mode = std::fs::metadata(dir.path().join(FILE_NAME))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_version_1_spool_keeps_its_events_and_gains_the_state_subjects_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(FILE_NAME);
    {
        // A spool as the first release left it: schema 1, one file subject open.
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 1; COMMIT;",
            MIGRATIONS[0]
        ))
        .unwrap();
        conn.execute(
            "INSERT INTO reported (path, state) VALUES (?1, ?2)",
            params![
                b"/a".as_slice(),
                postcard::to_allocvec(&Some(state(1))).unwrap()
            ],
        )
        .unwrap();
    }
    let mut spool = Spool::open(&db).unwrap();
    assert_eq!(spool.reported().unwrap().len(), 1, "file subjects survive");
    assert!(spool.reported_state().unwrap().is_empty());

    let eve = SubjectKey("user:eve".into());
    let uid0 = crate::observe::sources::fields([("uid", "0")]);
    let added = StatePending {
        id: Uuid::now_v7(),
        subject: eve.clone(),
        kind: ChangeKind::Added,
        changed: Vec::new(),
        before: None,
        after: Some(uid0.clone()),
        summary: "user eve added with uid 0".into(),
        remember: Remember::Drifted(Some(uid0.clone())),
    };
    let done = spool
        .commit(&[added], SeenBy::Scan, OffsetDateTime::now_utc(), ROOMY)
        .unwrap();
    assert_eq!(
        done.events[0].summary.as_deref(),
        Some("user eve added with uid 0")
    );
    assert_eq!(done.events[0].seq, 1);
    drop(spool);
    let mut spool = Spool::open(&db).unwrap();
    assert_eq!(spool.reported_state().unwrap().get(&eve), Some(&Some(uid0)));
    spool.forget_subject(&eve).unwrap();
    assert!(spool.reported_state().unwrap().is_empty());
    assert_eq!(spool.reported().unwrap().len(), 1);
}

#[test]
fn numbers_rewound_under_the_key_continue_from_the_key_so_the_collector_sees_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(&dir);
    let first = ChainKey::from_bytes([9; 32]);
    spool
        .adopt_identity(Uuid::now_v7(), Some(first.clone()))
        .unwrap();
    commit(
        &mut spool,
        &[drift("/a", 1), drift("/b", 2), drift("/c", 3)],
        ROOMY,
    );
    // Root deletes seq 3 and winds the numbers back; the key (of seq 4) stays.
    spool
        .conn
        .execute_batch("DELETE FROM events WHERE seq = 3; UPDATE state SET last_seq = 2;")
        .unwrap();
    let next = commit(&mut spool, &[drift("/d", 4)], ROOMY);
    let event = &next.events[0];
    assert_eq!(event.seq, 4, "never re-uses a number under a later key");
    assert_eq!(event.mac, Some(event.encode().mac_with(&first.forward(3))));
}

#[test]
fn events_are_fitted_to_the_collectors_limits_before_they_are_spooled() {
    use driftwatch_common::limits::{self, MAX_DIFF_BYTES, MAX_SUBJECT_BYTES};
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(&dir);
    let deep = format!("/{}", "d/".repeat(6000));
    let mut pending = drift(&deep, 1);
    pending.diff = Some("+x\n".repeat(40_000));
    pending.actor = Some(driftwatch_common::api::v1::Actor {
        source: "audit".into(),
        exe: Some(format!("/{}", "e".repeat(9000))),
        ..Default::default()
    });
    let committed = commit(&mut spool, &[pending], ROOMY);
    let spooled = spool.peek(10, u64::MAX).unwrap();
    let sent: DriftEvent = serde_json::from_str(&spooled[0].body).unwrap();
    assert_eq!(sent, committed.events[0]);
    assert_eq!(limits::check_event(&sent, 0), Vec::new());
    assert!(sent.subject.0.len() <= MAX_SUBJECT_BYTES);
    assert_eq!(
        sent.subject,
        limits::shorten_subject(&SubjectKey::file(deep.as_bytes()))
    );
    let diff = sent.diff.unwrap();
    assert!(diff.len() <= MAX_DIFF_BYTES && diff.ends_with("[diff truncated]\n"));
    assert!(sent.actor.unwrap().exe.unwrap().ends_with('…'));
}
