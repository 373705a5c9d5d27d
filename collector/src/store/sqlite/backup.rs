//! Online backups: a consistent copy of the live database while `serve` keeps writing it.
//!
//! The copy is ONE step of SQLite's online backup API (`sqlite3_backup_step(-1)`), not many
//! small ones. SQLite restarts a stepped backup from the first page whenever a connection
//! other than the backup's own writes the source between steps (sqlite.org/backup.html,
//! `sqlite3_backup_step`), and `serve` is another process that writes on every batch: under
//! steady ingest a stepped copy may never finish. In WAL mode a single step is one read
//! transaction, and readers never block writers, so ingest goes on during the copy; the
//! only cost is that the WAL cannot be checkpointed past the copy's snapshot until it ends
//! (it grows for that long). The tests write from another connection during a copy.
//!
//! The copy is switched to the rollback journal before it is closed, so it is one
//! self-contained file; the collector that opens it after a restore puts it back in WAL.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{SqliteStore, audit, migrations};
use crate::audit::{AuditHead, AuditKey, NewAudit};
use crate::store::{Result, StoreError};

/// How long a copy retries a source that answers busy (a WAL recovery in another
/// process) before giving up.
const BUSY_WAIT: Duration = Duration::from_secs(30);

/// What a checked copy holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyFacts {
    /// `PRAGMA user_version`: the schema the copy needs (a collector at least this new).
    pub schema_version: i64,
    /// The last audit entry the copy holds (`None`: an empty log).
    pub audit_head: Option<AuditHead>,
    /// Entries in the copy's audit log.
    pub audit_entries: u64,
}

impl SqliteStore {
    /// Copies the whole database into `dest` (a new, empty file) as of one instant.
    pub async fn backup_into(&self, dest: PathBuf) -> Result<()> {
        self.call(move |conn| copy(conn, &dest)).await
    }

    /// Appends `entry` signed with `key`, for a process other than `serve` (the backup
    /// command): `append` reads the head inside the write transaction, and SQLite's write
    /// lock orders the transactions of both processes, so the chain stays one chain.
    pub async fn append_signed_audit(&self, key: Arc<AuditKey>, entry: NewAudit) -> Result<u64> {
        self.write(move |tx| {
            audit::set_signer(key);
            Ok(audit::append(tx, &entry)?.seq)
        })
        .await
    }
}

fn copy(source: &Connection, dest: &Path) -> Result<()> {
    let mut target = Connection::open(dest)?;
    {
        let backup = Backup::new(source, &mut target)?;
        let started = Instant::now();
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                // Busy or locked: nothing was copied yet, try again shortly.
                _ if started.elapsed() < BUSY_WAIT => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    return Err(StoreError::other(format!(
                        "the database stayed busy for {} s; nothing was copied, try again",
                        BUSY_WAIT.as_secs()
                    )));
                }
            }
        }
    }
    // One file, no -wal beside it: the copy can be moved and opened on its own.
    let mode: String = target.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(StoreError::other(format!(
            "the copy stayed in journal mode {mode}"
        )));
    }
    target.close().map_err(|(_, err)| StoreError::from(err))?;
    Ok(())
}

/// Checks a copy on its own: SQLite's `integrity_check`, that it is a collector database
/// this binary can open, and that its audit log ends at its recorded head.
pub fn check_copy(path: &Path) -> Result<CopyFacts> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut problems = Vec::new();
    {
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for row in rows {
            problems.push(row?);
        }
    }
    if problems != ["ok"] {
        return Err(StoreError::other(format!(
            "the copy failed SQLite's integrity check: {}",
            problems.join("; ")
        )));
    }
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if app_id != migrations::APPLICATION_ID {
        return Err(StoreError::other(
            "the copy is not a driftwatch collector database (wrong application id)",
        ));
    }
    let schema_version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if schema_version < 1 || schema_version > migrations::MIGRATIONS.len() as i64 {
        return Err(StoreError::other(format!(
            "the copy has schema version {schema_version}, which this collector does not know"
        )));
    }
    let audit_head = audit::head(&conn)?;
    let (audit_entries, last): (i64, Option<i64>) =
        conn.query_row("SELECT count(*), max(seq) FROM audit", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if last.map(|s| s as u64) != audit_head.as_ref().map(|h| h.seq) {
        return Err(StoreError::other(
            "the copy's audit log does not end at its recorded head",
        ));
    }
    Ok(CopyFacts {
        schema_version,
        audit_head,
        audit_entries: audit_entries as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn entry(n: u64) -> NewAudit {
        NewAudit::new(
            n as i64,
            "tester",
            "test.entry",
            format!("n:{n}"),
            serde_json::json!({}),
        )
    }

    #[tokio::test]
    async fn a_copy_taken_while_another_connection_writes_is_consistent_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("collector.db");
        let store = SqliteStore::open(&live).unwrap();
        let key = Arc::new(AuditKey::from_seed([7; 32]));
        for n in 0..200 {
            store
                .append_signed_audit(Arc::clone(&key), entry(n))
                .await
                .unwrap();
        }
        // Another process's writes, as `serve` makes them during a backup.
        let writer_store = store.clone();
        let writer_key = Arc::clone(&key);
        let writer = tokio::spawn(async move {
            for n in 200..400 {
                writer_store
                    .append_signed_audit(Arc::clone(&writer_key), entry(n))
                    .await
                    .unwrap();
            }
        });
        let reader = SqliteStore::open_read_only(&live).unwrap();
        let copy = dir.path().join("copy.db");
        reader.backup_into(copy.clone()).await.unwrap();
        writer.await.unwrap();
        reader.close();

        let facts = check_copy(&copy).unwrap();
        assert!(facts.audit_entries >= 200, "{facts:?}");
        assert_eq!(
            facts.audit_head.map(|h| h.seq),
            Some(facts.audit_entries),
            "the copy is one instant of the log"
        );
        assert!(
            !dir.path().join("copy.db-wal").exists(),
            "the copy is one file"
        );
        // The copy opens as a store and its log verifies with the key.
        let restored = SqliteStore::open(&copy).unwrap();
        let (entries, head) = restored.audit_log().await.unwrap();
        let report = crate::audit::verify_anchored(
            &entries,
            head,
            crate::audit::Anchors {
                key: Some(key.public()),
                held: &[],
                stored: &[],
            },
        );
        assert!(report.ok, "{report:?}");
        assert_eq!(report.signed_entries, facts.audit_entries);
        restored.close();
        store.close();
    }

    #[test]
    fn a_damaged_copy_fails_its_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.db");
        std::fs::write(&path, b"SQLite format 3\0 but not really a database").unwrap();
        assert!(check_copy(&path).is_err());
        let other = dir.path().join("other.db");
        let conn = Connection::open(&other).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        drop(conn);
        let err = check_copy(&other).unwrap_err().to_string();
        assert!(err.contains("not a driftwatch collector database"), "{err}");
    }
}
