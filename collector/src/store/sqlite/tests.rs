use rusqlite::Connection;

use super::*;

#[tokio::test]
async fn sqlite_passes_the_store_story() {
    crate::store::conformance::story(SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn sqlite_passes_the_people_story() {
    crate::store::conformance_people::story(SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn sqlite_passes_the_sessions_story() {
    crate::store::conformance_sessions::story(SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn sqlite_keeps_spool_marks_and_bounds() {
    crate::store::conformance::clock_story(SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn sqlite_keeps_anchored_baselines() {
    crate::store::conformance_anchor::story(SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn a_file_database_is_migrated_once_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    let store = SqliteStore::open(&path).unwrap();
    store.ping().await.unwrap();
    store.close();
    assert!(store.ping().await.is_err(), "closed");
    let again = SqliteStore::open(&path).unwrap();
    again.ping().await.unwrap();
    again.close();
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, migrations::MIGRATIONS.len() as i64);
    drop(conn);
    let read_only = SqliteStore::open_read_only(&path).unwrap();
    assert!(read_only.audit_log().await.unwrap().0.is_empty());
    read_only.close();
}

#[test]
fn foreign_and_newer_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("other.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = SqliteStore::open(&foreign).unwrap_err().to_string();
    assert!(err.contains("not a driftwatch collector database"), "{err}");

    let newer = dir.path().join("newer.db");
    SqliteStore::open(&newer).unwrap().close();
    Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open(&newer).unwrap_err().to_string();
    assert!(err.contains("newer than this collector knows"), "{err}");
}

#[tokio::test]
async fn the_audit_table_refuses_edits_unless_its_guard_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    let store = SqliteStore::open(&path).unwrap();
    let token = TokenRecord {
        id: Uuid::now_v7(),
        name: "alice".into(),
        role: crate::identity::Role::Admin,
        host_id: None,
        digest: [1; 32],
        created_at: 1,
        created_by: "test".into(),
        revoked_at: None,
        person_id: None,
        person: None,
        created_by_token: None,
    };
    let audit = NewAudit::new(1, "root", "token.created", "token:x", serde_json::json!({}));
    store.insert_token(token, audit).await.unwrap();
    store.close();

    let conn = Connection::open(&path).unwrap();
    let err = conn
        .execute("UPDATE audit SET actor = 'mallory'", [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("append-only"), "{err}");
    conn.execute_batch("DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'mallory';")
        .unwrap();
    drop(conn);

    let store = SqliteStore::open_read_only(&path).unwrap();
    let (entries, head) = store.audit_log().await.unwrap();
    let report = crate::audit::verify(&entries, head);
    assert!(!report.ok);
    assert!(report.findings[0].problem.contains("edited"), "{report:?}");
    store.close();
}

#[tokio::test]
async fn sqlite_passes_the_keyed_chain_story() {
    crate::store::conformance_chain::story(SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn entries_are_signed_once_a_key_is_set_and_checkpoints_become_alerts() {
    let store = SqliteStore::open_in_memory().unwrap();
    let record = |name: &str| NewAudit::new(1, name, "config.test", "x", serde_json::json!({}));
    store
        .note_config("a".into(), "1".into(), record("before"))
        .await
        .unwrap();
    let key = Arc::new(AuditKey::from_seed([5; 32]));
    store.set_audit_key(Arc::clone(&key)).await.unwrap();
    store
        .note_config("a".into(), "2".into(), record("after"))
        .await
        .unwrap();
    let (entries, head) = store.audit_log().await.unwrap();
    assert_eq!(entries[0].signature, None, "written before the key");
    let signature = entries[1].signature.as_deref().unwrap();
    assert!(key.public().verify_entry(&entries[1].hash, signature));
    assert_eq!(store.audit_head().await.unwrap(), head);

    let checkpoint = key.checkpoint(2, entries[1].hash, "t".into());
    store
        .insert_checkpoint(checkpoint.clone(), 7)
        .await
        .unwrap();
    assert_eq!(store.audit_checkpoints().await.unwrap(), vec![checkpoint]);
    let alerts = store.alerts(10).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, "audit_checkpoint");
    assert_eq!(alerts[0].body["entries"], 2);
    let verified = crate::audit::verify_anchored(
        &entries,
        head,
        crate::audit::Anchors {
            key: Some(key.public()),
            held: &[],
            stored: &store.audit_checkpoints().await.unwrap(),
        },
    );
    assert!(verified.ok, "{verified:?}");
}

#[tokio::test]
async fn sqlite_prunes_by_retention() {
    crate::store::conformance_retention::story(SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn sqlite_reads_a_drift_record() {
    crate::store::conformance_detail::story(SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn sqlite_keeps_the_live_cursor() {
    crate::store::conformance_live::story(SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn sqlite_reads_the_inbox_filtered() {
    crate::store::conformance_inbox::story(SqliteStore::open_in_memory().unwrap()).await;
}

/// The newest-first drift reads walk `drift_listing` or `drift_status_listing` (migration 16) backwards and stop at
/// their limit instead of sorting every drift row: the inbox's (`drift::OPEN_MATCHING`)
/// and the listing's (`drift::list`, whose query this repeats); the inbox filtered by
/// host reads the matching hosts' drift by host instead.
#[test]
fn newest_first_drift_reads_use_the_opened_at_index() {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    super::migrate(&mut conn, true).unwrap();
    let plan = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        stmt.query_map(params, |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
            .join("\n")
    };
    assert!(
        super::drift::OPEN_MATCHING.starts_with(&format!("SELECT {}\n", super::drift::COLUMNS)),
        "the inbox reads the columns `drift::row` decodes"
    );
    assert!(
        super::drift::OPEN_MATCHING_HOSTS
            .starts_with(&format!("SELECT {}\n", super::drift::COLUMNS)),
        "the inbox reads the columns `drift::row` decodes"
    );
    let none: Option<String> = None;
    let inbox = plan(super::drift::OPEN_MATCHING, &[&"", &"", &none, &1000]);
    // With a host text, the hosts first, then their drift by host.
    let by_host = plan(
        super::drift::OPEN_MATCHING_HOSTS,
        &[&"web", &"", &none, &1000],
    );
    assert!(
        by_host.contains("USING INDEX drift_host_subject")
            || by_host.contains("USING INDEX drift_host_listing"),
        "{by_host}"
    );
    let listing = plan(
        &format!(
            "SELECT {} FROM drift d JOIN hosts h ON h.id = d.host_id
             WHERE (?1 IS NULL OR d.status = ?1) AND (?2 IS NULL OR d.host_id = ?2)
               AND (?3 IS NULL OR d.window_id = ?3)
             ORDER BY d.opened_at DESC, d.id DESC LIMIT ?4",
            super::drift::COLUMNS
        ),
        &[&"open", &none, &none, &1000],
    );
    for plan in [inbox, listing] {
        assert!(
            plan.contains("drift_listing") || plan.contains("drift_status_listing"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}

#[tokio::test]
async fn sqlite_pages_its_listings() {
    crate::store::conformance_pages::story(SqliteStore::open_in_memory().unwrap()).await;
}
