//! Schema migrations. Append only: a released migration is never edited.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE entries (path BLOB PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE snapshots (path BLOB PRIMARY KEY, content BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE history (
         id INTEGER PRIMARY KEY,
         at TEXT NOT NULL,
         action TEXT NOT NULL,
         actor TEXT NOT NULL,
         detail TEXT NOT NULL
     );",
    // 2: state beyond files (packages, sysctl, ...): subject key -> postcard fields.
    "CREATE TABLE state_entries (key TEXT PRIMARY KEY, fields BLOB NOT NULL) WITHOUT ROWID;",
    // 3: snapshots apart, zstd-compressed, one blob per content hash (`snapshots.rs`); the
    // old `snapshots` table's rows are moved by `snapshots::convert_v2`, then it is dropped.
    // Blobs are rows of a rowid table: large values do not belong in a WITHOUT ROWID b-tree.
    "CREATE TABLE snapshot_blobs (hash BLOB PRIMARY KEY, content BLOB NOT NULL);
     CREATE TABLE snapshot_refs (path BLOB PRIMARY KEY, hash BLOB NOT NULL) WITHOUT ROWID;",
];

/// The migration whose data step converts the old snapshots.
const SNAPSHOTS_APART: i64 = 3;

pub const LATEST: i64 = MIGRATIONS.len() as i64;

fn version(conn: &Connection, db: &Path) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|source| StoreError::Sqlite {
            db: db.to_owned(),
            cause: source,
        })
}

/// Brings a database up to the latest schema; refuses one from a newer agent.
pub fn migrate(conn: &Connection, db: &Path) -> Result<(), StoreError> {
    let current = version(conn, db)?;
    if current > LATEST {
        return Err(StoreError::SchemaTooNew {
            db: db.to_owned(),
            found: current,
            supported: LATEST,
        });
    }
    let sqlite = |source| StoreError::Sqlite {
        db: db.to_owned(),
        cause: source,
    };
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let target = index as i64 + 1;
        conn.execute_batch(&format!("BEGIN; {sql}"))
            .map_err(sqlite)?;
        let data_step = if target == SNAPSHOTS_APART {
            super::snapshots::convert_v2(conn).map(|converted| {
                if converted > 0 {
                    tracing::info!(db = %db.display(), converted, "baseline snapshots moved to the compressed store (schema 3)");
                }
            })
        } else {
            Ok(())
        };
        if let Err(source) = data_step
            .and_then(|()| conn.execute_batch(&format!("PRAGMA user_version = {target}; COMMIT;")))
        {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(sqlite(source));
        }
    }
    Ok(())
}

/// Checks that an existing file is a driftwatch baseline, then migrates it.
pub fn check_version(conn: &Connection, db: &Path) -> Result<(), StoreError> {
    let tampered = |detail: String| StoreError::Tampered {
        db: db.to_owned(),
        detail,
    };
    match version(conn, db) {
        Err(StoreError::Sqlite { cause, .. })
            if matches!(
                cause.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            ) =>
        {
            Err(tampered(format!(
                "not a readable SQLite database ({cause})"
            )))
        }
        Err(err) => Err(err),
        Ok(0) => Err(tampered(
            "not a driftwatch baseline (no schema version)".into(),
        )),
        Ok(_) => migrate(conn, db),
    }
}
