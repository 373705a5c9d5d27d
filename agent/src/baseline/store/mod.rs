//! The baseline store: one SQLite file holding the approved state of every
//! subject, the history of decisions that changed it, and a keyed integrity
//! root that detects any edit made without the key (invariant 6).
//!
//! Layout: `entries(path, record)` with `record` a postcard-encoded [`Record`],
//! `history` (init, accept, re-init) and `meta` (times, policy digest,
//! integrity root); content snapshots of text files (so drift can show a diff) apart,
//! compressed and deduplicated (`snapshots.rs`: `snapshot_blobs`, `snapshot_refs`), read
//! only to show a diff. The schema is versioned with `PRAGMA user_version` and
//! migrated by [`migrations`] (a schema-2 baseline's snapshots are converted on open).
//!
//! [`BaselineStore`] opens, verifies and updates a baseline; [`BaselineWriter`]
//! builds a new one in a temporary file and renames it into place only once sealed
//! (a failed init changes nothing). `baseline.rs` is the compact in-memory
//! [`Baseline`]: paths in one buffer searched by bisection, each entry's stat-key
//! digest, records decoded on demand from a `RecordArena` (memory for the CLI; an
//! unnamed file in the state directory for the daemon, `load_lean`). The
//! `state_entries` table holds the state sources' subjects
//! ([`BaselineStore::state`]), sealed by the same root. `integrity.rs` has the key,
//! the keyed root and the unkeyed *anchor* the collector keeps
//! (`Baseline::anchor`); `migrations.rs` the append-only schema list. Every change
//! (init, re-init, accept) adds a history row in the transaction that re-seals the
//! root (invariant 4).

mod baseline;
mod integrity;
mod migrations;
pub mod paths;
mod snapshots;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use driftwatch_common::api::v1::SubjectKey;

use driftwatch_common::hash::ContentHash;
use driftwatch_common::pathbytes::PathBytes;
use driftwatch_common::state::FileState;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub use baseline::{Baseline, PushError, RecordArena};
pub use integrity::Key;
use integrity::RootHasher;
pub use snapshots::Snapshot;

/// What the baseline holds for one subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub state: FileState,
    /// Why part of the state could not be read (e.g. content unreadable), if so.
    pub error: Option<String>,
}

/// One recorded decision that changed the baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// `init`, `reinit` or `accept`.
    pub action: String,
    /// Who ran the command (login user and uid).
    pub actor: String,
    /// Human-readable detail: reason, subjects and their accepted states.
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    pub created_at: String,
    pub policy_digest: String,
    /// When `check` last re-hashed all content (RFC 3339), empty if never after init.
    pub last_full_hash_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no baseline at {db}: run `driftwatch-agent baseline init` first")]
    NotInitialized { db: PathBuf },
    #[error(
        "a baseline already exists at {db}: pass --force to replace it (the replacement is recorded)"
    )]
    AlreadyExists { db: PathBuf },
    #[error(
        "baseline key {key} is missing: without it the baseline cannot be verified; \
         if it was deleted, treat the baseline as untrusted and re-initialise"
    )]
    KeyMissing { key: PathBuf },
    #[error("baseline key {key} is invalid: {reason}")]
    KeyInvalid { key: PathBuf, reason: String },
    #[error(
        "BASELINE INTEGRITY CHECK FAILED for {db}: {detail}; the database was changed \
         outside driftwatch or is corrupt. Do not trust it: investigate, then re-initialise \
         with `baseline init --force`"
    )]
    Tampered { db: PathBuf, detail: String },
    #[error(
        "baseline {db} has schema version {found}, newer than this agent supports ({supported}): upgrade the agent"
    )]
    SchemaTooNew {
        db: PathBuf,
        found: i64,
        supported: i64,
    },
    // The cause is part of the message, not a chained source: rusqlite's
    // errors repeat their text in their own source, which printed it twice.
    #[error("baseline database {db}: {cause}")]
    Sqlite { db: PathBuf, cause: rusqlite::Error },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

impl StoreError {
    /// Errors that mean the baseline cannot be trusted (as opposed to absent or unreadable).
    pub fn is_integrity_failure(&self) -> bool {
        matches!(
            self,
            StoreError::Tampered { .. }
                | StoreError::KeyInvalid { .. }
                | StoreError::KeyMissing { .. }
        )
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where a baseline lives: the database and its key file.
#[derive(Clone, Debug)]
pub struct StorePaths {
    pub db: PathBuf,
    pub key: PathBuf,
}

impl StorePaths {
    /// The layout under an agent state directory.
    pub fn in_state_dir(dir: &Path) -> Self {
        StorePaths {
            db: dir.join("baseline.db"),
            key: dir.join("baseline.key"),
        }
    }

    /// An explicit database file; its key sits beside it as `FILE.key`.
    pub fn for_db(db: &Path) -> Self {
        let mut key = db.as_os_str().to_owned();
        key.push(".key");
        StorePaths {
            db: db.to_owned(),
            key: PathBuf::from(key),
        }
    }
}

/// An open baseline database whose key has been read.
pub struct BaselineStore {
    conn: Connection,
    paths: StorePaths,
    key: Key,
}

impl BaselineStore {
    /// Opens an existing baseline (it is verified by [`BaselineStore::load`]).
    pub fn open(paths: &StorePaths) -> Result<Self> {
        if !paths.db.exists() {
            return Err(StoreError::NotInitialized {
                db: paths.db.clone(),
            });
        }
        let key = Key::read(&paths.key)?;
        let conn = Connection::open_with_flags(&paths.db, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|source| sqlite_err(&paths.db, source))?;
        let store = BaselineStore {
            conn,
            paths: paths.clone(),
            key,
        };
        store.configure()?;
        migrations::check_version(&store.conn, &store.paths.db)?;
        Ok(store)
    }

    fn configure(&self) -> Result<()> {
        self.conn
            .execute_batch(
                // cache_size: 256 KiB instead of SQLite's 2 MiB default; the daemon keeps the
                // connection for its lifetime and its reads are sequential or by key (measured:
                // with 100k files, the daemon at rest went from 45.6 to 40.9 MiB).
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-256;",
            )
            .map_err(|source| self.tamper_or_sqlite(source))
    }

    fn records_file_error(&self, cause: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.paths.db.with_extension("records (unnamed file)"),
            cause,
        }
    }

    pub fn paths(&self) -> &StorePaths {
        &self.paths
    }

    /// A secret for another purpose (e.g. keying diff fingerprints), derived
    /// from the baseline key so the agent keeps one secret, not several.
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        self.key.derive(purpose)
    }

    /// Reads every entry and the history and verifies the integrity root; the records
    /// are kept in memory.
    pub fn load(&self) -> Result<Baseline> {
        self.load_into(RecordArena::Memory(Vec::new()))
    }

    /// [`Self::load`] for a long-running daemon: the records are kept in an unnamed file in
    /// the state directory instead of memory (it reads few of them).
    /// When that file cannot be written (a full disk), the records stay in memory: the
    /// daemon runs on either.
    pub fn load_lean(&self) -> Result<Baseline> {
        let dir = self.paths.db.parent().unwrap_or(Path::new("."));
        let loaded = RecordArena::file_in(dir)
            .map_err(|cause| StoreError::Io {
                path: dir.to_owned(),
                cause,
            })
            .and_then(|arena| self.load_into(arena));
        match loaded {
            Err(StoreError::Io { path, cause }) => {
                tracing::warn!(path = %path.display(), error = %cause, "the baseline's records stay in memory");
                self.load()
            }
            other => other,
        }
    }

    fn load_into(&self, records: RecordArena) -> Result<Baseline> {
        let meta = self.read_meta()?;
        let (count, path_bytes, record_bytes): (i64, i64, i64) = self
            .conn
            .query_row(
                "SELECT count(*), coalesce(sum(length(path)), 0), coalesce(sum(length(record)), 0) FROM entries",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(|e| self.tamper_or_sqlite(e))?;
        let mut baseline = Baseline::with_capacity(
            count as usize,
            path_bytes as usize,
            record_bytes as usize,
            records,
        );
        let entries_digest = self.walk_entries(|path, bytes| {
            let record: Record = postcard::from_bytes(bytes).map_err(|err| {
                self.tampered(format!(
                    "record for {} cannot be decoded ({err})",
                    PathBytes(path.to_vec())
                ))
            })?;
            baseline
                .push(path, bytes, &record)
                .map_err(|err| match err {
                    PushError::TooLarge | PushError::Unsorted => self.tampered(err.to_string()),
                    PushError::Write(cause) => self.records_file_error(cause),
                })
        })?;
        baseline
            .finish()
            .map_err(|cause| self.records_file_error(cause))?;
        baseline.entries_digest = entries_digest;
        baseline.anchor = self.verify_root(&baseline.entries_digest, &meta)?;
        baseline.meta = meta;
        Ok(baseline)
    }

    /// Verifies the keyed root and returns the anchor without keeping any record: the
    /// daemon's check that the baseline on disk is still the one it runs on.
    pub fn verify_anchor(&self) -> Result<driftwatch_common::api::v1::BaselineAnchor> {
        let meta = self.read_meta()?;
        let entries = self.walk_entries(|_, _| Ok(()))?;
        Ok(driftwatch_common::api::v1::BaselineAnchor {
            root: self.verify_root(&entries, &meta)?,
            created_at: meta.created_at,
        })
    }

    /// Hands every entry (path, encoded record) to `each` in path order and returns the
    /// entries' digest.
    fn walk_entries(
        &self,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<ContentHash> {
        let mut digest = RootHasher::entries();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT path, record FROM entries ORDER BY path")
            .map_err(|e| self.tamper_or_sqlite(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.tamper_or_sqlite(e))?;
        while let Some(row) = rows.next().map_err(|e| self.tamper_or_sqlite(e))? {
            let blob = |i| row.get_ref(i).and_then(|v| v.as_blob().map_err(Into::into));
            let path = blob(0).map_err(|e| self.tamper_or_sqlite(e))?;
            let record = blob(1).map_err(|e| self.tamper_or_sqlite(e))?;
            digest.add(path, record);
            each(path, record)?;
        }
        Ok(digest.finish())
    }

    /// Checks the keyed root over `entries`, the history, the state entries and `meta`
    /// (tampered when it differs) and returns the unkeyed anchor the collector keeps.
    fn verify_root(&self, entries: &ContentHash, meta: &Meta) -> Result<ContentHash> {
        let history = self.history_digest()?;
        let state = state_digest(&self.conn).map_err(|e| self.tamper_or_sqlite(e))?;
        let expected = self.key.root(entries, &history, state.as_ref(), meta);
        let stored = self.read_meta_value("root")?;
        if stored.as_deref() != Some(expected.to_hex().as_str()) {
            return Err(self.tampered(format!(
                "integrity root mismatch (stored {}, computed {})",
                stored.as_deref().unwrap_or("nothing"),
                expected
            )));
        }
        Ok(integrity::anchor(entries, &history, state.as_ref(), meta))
    }

    /// The snapshot of a subject's content, checked against the baseline hash (the verified
    /// record's): anything else stored under its name is tampering.
    pub fn snapshot(&self, path: &[u8], expected: &ContentHash) -> Result<Option<Vec<u8>>> {
        snapshots::get(&self.conn, path, expected)
            .map_err(|e| self.tamper_or_sqlite(e))?
            .map_err(|refused| {
                self.tampered(format!(
                    "content snapshot of {} {refused}",
                    PathBytes(path.to_vec())
                ))
            })
    }

    /// Snapshot totals: subjects with a snapshot, distinct contents, compressed bytes.
    pub fn snapshot_totals(&self) -> Result<SnapshotTotals> {
        let (subjects, contents, stored_bytes) =
            snapshots::totals(&self.conn).map_err(|e| self.tamper_or_sqlite(e))?;
        Ok(SnapshotTotals {
            subjects,
            contents,
            stored_bytes,
        })
    }

    pub fn history(&self) -> Result<Vec<HistoryEntry>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, at, action, actor, detail FROM history ORDER BY id")
            .map_err(|e| self.tamper_or_sqlite(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(HistoryEntry {
                    id: row.get(0)?,
                    at: row.get(1)?,
                    action: row.get(2)?,
                    actor: row.get(3)?,
                    detail: row.get(4)?,
                })
            })
            .map_err(|e| self.tamper_or_sqlite(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.tamper_or_sqlite(e))
    }

    /// Applies accepted changes to a verified baseline and records the decision,
    /// in one transaction that also re-seals the integrity root.
    pub fn accept(&mut self, changes: &[AcceptedChange], history: NewHistory) -> Result<()> {
        self.accept_with_state(changes, &[], history)
    }

    /// The baselined state beyond files (packages, sysctl...), verified by [`Self::load`].
    pub fn state(&self) -> Result<StateCollection> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, fields FROM state_entries ORDER BY key")
            .map_err(|e| self.tamper_or_sqlite(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .map_err(|e| self.tamper_or_sqlite(e))?;
        let mut state = StateCollection::new();
        for row in rows {
            let (key, bytes) = row.map_err(|e| self.tamper_or_sqlite(e))?;
            let fields = postcard::from_bytes(&bytes).map_err(|err| {
                self.tampered(format!("state of {key} cannot be decoded ({err})"))
            })?;
            state.insert(SubjectKey(key), fields);
        }
        Ok(state)
    }

    /// Like [`Self::accept`], also for state subjects (`package:nginx`...).
    pub fn accept_with_state(
        &mut self,
        files: &[AcceptedChange],
        states: &[AcceptedState],
        history: NewHistory,
    ) -> Result<()> {
        let db = self.paths.db.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|source| sqlite_err(&db, source))?;
        for change in files {
            write_change(&tx, change).map_err(|source| sqlite_err(&db, source))?;
        }
        if !files.is_empty() {
            // A changed or removed subject may have left content no one refers to.
            snapshots::collect_garbage(&tx).map_err(|source| sqlite_err(&db, source))?;
        }
        for change in states {
            write_state(&tx, change).map_err(|source| sqlite_err(&db, source))?;
        }
        insert_history(&tx, &history).map_err(|source| sqlite_err(&db, source))?;
        reseal(&tx, &self.key, &db)?;
        tx.commit().map_err(|source| sqlite_err(&db, source))
    }

    /// Records that a full re-hash completed, re-sealing the root without re-reading entries.
    pub fn record_full_hash(&mut self, baseline: &mut Baseline, at: &str) -> Result<()> {
        let db = self.paths.db.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|source| sqlite_err(&db, source))?;
        set_meta(&tx, "last_full_hash_at", at).map_err(|source| sqlite_err(&db, source))?;
        baseline.meta.last_full_hash_at = at.to_owned();
        let history_digest = history_digest(&tx).map_err(|source| sqlite_err(&db, source))?;
        let state_digest = state_digest(&tx).map_err(|source| sqlite_err(&db, source))?;
        let root = self.key.root(
            &baseline.entries_digest,
            &history_digest,
            state_digest.as_ref(),
            &baseline.meta,
        );
        set_meta(&tx, "root", &root.to_hex()).map_err(|source| sqlite_err(&db, source))?;
        tx.commit().map_err(|source| sqlite_err(&db, source))
    }

    fn read_meta(&self) -> Result<Meta> {
        let get = |key| -> Result<String> {
            self.read_meta_value(key)?
                .ok_or_else(|| self.tampered(format!("meta value `{key}` is missing")))
        };
        Ok(Meta {
            created_at: get("created_at")?,
            policy_digest: get("policy_digest")?,
            last_full_hash_at: get("last_full_hash_at")?,
        })
    }

    fn read_meta_value(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| self.tamper_or_sqlite(e))
    }

    fn history_digest(&self) -> Result<ContentHash> {
        history_digest(&self.conn).map_err(|e| self.tamper_or_sqlite(e))
    }

    fn tampered(&self, detail: String) -> StoreError {
        StoreError::Tampered {
            db: self.paths.db.clone(),
            detail,
        }
    }

    /// A database that SQLite cannot read as ours, or whose values have the
    /// wrong shape, is as untrustworthy as an edited one.
    fn tamper_or_sqlite(&self, source: rusqlite::Error) -> StoreError {
        use rusqlite::{Error, ErrorCode};
        let damaged = match &source {
            Error::InvalidColumnType(..) | Error::FromSqlConversionFailure(..) => true,
            Error::SqliteFailure(_, Some(message)) if message.starts_with("no such") => true,
            _ => matches!(
                source.sqlite_error_code(),
                Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
            ),
        };
        if damaged {
            self.tampered(format!("unreadable as a baseline: {source}"))
        } else {
            sqlite_err(&self.paths.db, source)
        }
    }
}

/// What the snapshot store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotTotals {
    /// Subjects that have a snapshot.
    pub subjects: u64,
    /// Distinct contents stored (fewer than subjects when files share content).
    pub contents: u64,
    /// Their compressed size.
    pub stored_bytes: u64,
}

/// A subject's new approved state (or its removal) as decided by an accept.
#[derive(Debug)]
pub struct AcceptedChange {
    pub path: PathBytes,
    /// `None` removes the subject from the baseline (it no longer exists).
    pub record: Option<Record>,
    pub snapshot: Option<Vec<u8>>,
}

/// The fields of one state subject, e.g. `{"version": "1.24.0-1", "arch": "amd64"}`.
pub type StateFields = BTreeMap<String, String>;

/// Every baselined state subject, by key.
pub type StateCollection = BTreeMap<SubjectKey, StateFields>;

/// A state subject's new approved fields (or its removal) as decided by an accept.
#[derive(Debug)]
pub struct AcceptedState {
    pub subject: SubjectKey,
    /// `None` removes the subject from the baseline.
    pub fields: Option<StateFields>,
}

/// A history entry about to be written.
#[derive(Debug)]
pub struct NewHistory {
    pub action: &'static str,
    pub actor: String,
    pub detail: String,
}

/// Builds a new baseline in a temporary file and moves it into place only
/// when complete, so a failed or interrupted init never destroys the old one.
pub struct BaselineWriter {
    conn: Connection,
    paths: StorePaths,
    tmp_db: PathBuf,
    key: Key,
}

impl BaselineWriter {
    pub fn create(paths: &StorePaths, force: bool) -> Result<Self> {
        if paths.db.exists() && !force {
            return Err(StoreError::AlreadyExists {
                db: paths.db.clone(),
            });
        }
        if let Some(dir) = paths.db.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let mut tmp_name = paths.db.as_os_str().to_owned();
        tmp_name.push(format!(".new-{}", std::process::id()));
        let tmp_db = PathBuf::from(tmp_name);
        remove_db_files(&tmp_db);
        let conn = Connection::open(&tmp_db).map_err(|source| sqlite_err(&tmp_db, source))?;
        restrict_permissions(&tmp_db)?;
        // cache_size: entries arrive in the order workers finish, not by path, so inserts land
        // all over the b-tree; with SQLite's 2 MiB default a large tree's pages are evicted
        // and read back again and again. 16 MiB holds the hot part of /usr's entries.
        conn.execute_batch(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-16384;",
        )
        .map_err(|source| sqlite_err(&tmp_db, source))?;
        migrations::migrate(&conn, &tmp_db)?;
        conn.execute_batch("BEGIN")
            .map_err(|source| sqlite_err(&tmp_db, source))?;
        Ok(BaselineWriter {
            conn,
            paths: paths.clone(),
            tmp_db,
            key: Key::generate(),
        })
    }

    pub fn insert_state(&mut self, subject: &SubjectKey, fields: &StateFields) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO state_entries (key, fields) VALUES (?1, ?2)")
            .and_then(|mut stmt| stmt.execute(params![subject.0, encode_fields(fields)]))
            .map(drop)
            .map_err(|source| sqlite_err(&self.tmp_db, source))
    }

    /// Adds one subject; its snapshot's blob is written once per content.
    pub fn insert(
        &mut self,
        path: &[u8],
        record: &Record,
        snapshot: Option<&Snapshot>,
    ) -> Result<()> {
        let bytes = postcard::to_allocvec(record).expect("records always serialize");
        let result = (|| {
            self.conn
                .prepare_cached("INSERT OR REPLACE INTO entries (path, record) VALUES (?1, ?2)")?
                .execute(params![path, bytes])?;
            if let Some(snapshot) = snapshot {
                snapshots::put(&self.conn, path, snapshot)?;
            }
            Ok(())
        })();
        result.map_err(|source| sqlite_err(&self.tmp_db, source))
    }

    /// What the new baseline's snapshot store holds so far.
    pub fn snapshot_totals(&self) -> Result<SnapshotTotals> {
        let (subjects, contents, stored_bytes) =
            snapshots::totals(&self.conn).map_err(|source| sqlite_err(&self.tmp_db, source))?;
        Ok(SnapshotTotals {
            subjects,
            contents,
            stored_bytes,
        })
    }

    /// Seals the baseline, then atomically replaces the old database and key.
    /// `carried` is the verified history of the baseline being replaced: it
    /// stays, with its original times, ahead of the new entries.
    pub fn finish(
        self,
        meta: &Meta,
        carried: &[HistoryEntry],
        history: &[NewHistory],
    ) -> Result<()> {
        let tmp_db = self.tmp_db.clone();
        let result = self.seal_and_replace(meta, carried, history);
        if result.is_err() {
            // E.g. the disk filled up while sealing: leave no half-made files behind.
            remove_db_files(&tmp_db);
        }
        result
    }

    fn seal_and_replace(
        self,
        meta: &Meta,
        carried: &[HistoryEntry],
        history: &[NewHistory],
    ) -> Result<()> {
        let db = &self.tmp_db;
        let sql = |source| sqlite_err(db, source);
        set_meta(&self.conn, "created_at", &meta.created_at).map_err(sql)?;
        set_meta(&self.conn, "policy_digest", &meta.policy_digest).map_err(sql)?;
        set_meta(&self.conn, "last_full_hash_at", &meta.last_full_hash_at).map_err(sql)?;
        for entry in carried {
            self.conn
                .execute(
                    "INSERT INTO history (at, action, actor, detail) VALUES (?1, ?2, ?3, ?4)",
                    params![entry.at, entry.action, entry.actor, entry.detail],
                )
                .map_err(sql)?;
        }
        for entry in history {
            insert_history(&self.conn, entry).map_err(sql)?;
        }
        reseal(&self.conn, &self.key, db)?;
        self.conn.execute_batch("COMMIT").map_err(sql)?;
        self.conn
            .close()
            .map_err(|(_, source)| sqlite_err(db, source))?;

        // Key first: a crash between the two renames leaves a new key with the
        // old database, which fails verification loudly rather than silently.
        let tmp_key = self.key.write_new(&self.paths.key)?;
        fs::rename(&tmp_key, &self.paths.key).map_err(|source| {
            let _ = fs::remove_file(&tmp_key);
            StoreError::Io {
                path: self.paths.key.clone(),
                cause: source,
            }
        })?;
        // The old database's WAL belongs to it, not to its replacement.
        for suffix in ["-wal", "-shm"] {
            let mut name = self.paths.db.as_os_str().to_owned();
            name.push(suffix);
            let _ = fs::remove_file(PathBuf::from(name));
        }
        fs::rename(&self.tmp_db, &self.paths.db).map_err(|source| StoreError::Io {
            path: self.paths.db.clone(),
            cause: source,
        })?;
        sync_parent_dir(&self.paths.db);
        Ok(())
    }

    /// Abandons the new baseline (the old one, if any, stays in place).
    pub fn abort(self) {
        drop(self.conn);
        remove_db_files(&self.tmp_db);
    }
}

fn write_change(conn: &Connection, change: &AcceptedChange) -> rusqlite::Result<()> {
    let path = change.path.as_bytes();
    snapshots::remove(conn, path)?;
    match &change.record {
        None => {
            conn.execute("DELETE FROM entries WHERE path = ?1", [path])?;
        }
        Some(record) => {
            let bytes = postcard::to_allocvec(record).expect("records always serialize");
            conn.execute(
                "INSERT OR REPLACE INTO entries (path, record) VALUES (?1, ?2)",
                params![path, bytes],
            )?;
            if let Some(content) = &change.snapshot {
                snapshots::put(conn, path, &Snapshot::of(content))?;
            }
        }
    }
    Ok(())
}

fn insert_history(conn: &Connection, entry: &NewHistory) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO history (at, action, actor, detail) VALUES (?1, ?2, ?3, ?4)",
        params![
            crate::clock::now_rfc3339(),
            entry.action,
            entry.actor,
            entry.detail
        ],
    )?;
    Ok(())
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![key, value],
    )?;
    Ok(())
}

/// Digest of the state entries in key order; `None` when there are none.
fn state_digest(conn: &Connection) -> rusqlite::Result<Option<ContentHash>> {
    let mut hasher = RootHasher::state();
    let mut rows_seen = false;
    let mut stmt = conn.prepare_cached("SELECT key, fields FROM state_entries ORDER BY key")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let key = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        let fields = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
        hasher.add(key.as_bytes(), fields);
        rows_seen = true;
    }
    Ok(rows_seen.then(|| hasher.finish()))
}

fn encode_fields(fields: &StateFields) -> Vec<u8> {
    postcard::to_allocvec(fields).expect("state fields always serialize")
}

fn write_state(conn: &Connection, change: &AcceptedState) -> rusqlite::Result<()> {
    match &change.fields {
        None => conn.execute(
            "DELETE FROM state_entries WHERE key = ?1",
            [&change.subject.0],
        )?,
        Some(fields) => conn.execute(
            "INSERT OR REPLACE INTO state_entries (key, fields) VALUES (?1, ?2)",
            params![change.subject.0, encode_fields(fields)],
        )?,
    };
    Ok(())
}

fn history_digest(conn: &Connection) -> rusqlite::Result<ContentHash> {
    let mut hasher = RootHasher::history();
    let mut stmt =
        conn.prepare_cached("SELECT id, at, action, actor, detail FROM history ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let fields: [String; 4] = [row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?];
        hasher.add_history(id, &fields);
    }
    Ok(hasher.finish())
}

/// Recomputes every digest from the rows in `conn` and stores the new root.
fn reseal(conn: &Connection, key: &Key, db: &Path) -> Result<()> {
    let sql = |source| sqlite_err(db, source);
    let mut digest = RootHasher::entries();
    {
        let mut stmt = conn
            .prepare_cached("SELECT path, record FROM entries ORDER BY path")
            .map_err(sql)?;
        let mut rows = stmt.query([]).map_err(sql)?;
        while let Some(row) = rows.next().map_err(sql)? {
            let path = row.get_ref(0).and_then(|v| v.as_blob().map_err(Into::into));
            let record = row.get_ref(1).and_then(|v| v.as_blob().map_err(Into::into));
            digest.add(path.map_err(sql)?, record.map_err(sql)?);
        }
    }
    let get = |k: &str| -> Result<String> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |row| {
            row.get(0)
        })
        .map_err(sql)
    };
    let meta = Meta {
        created_at: get("created_at")?,
        policy_digest: get("policy_digest")?,
        last_full_hash_at: get("last_full_hash_at")?,
    };
    let state = state_digest(conn).map_err(sql)?;
    let root = key.root(
        &digest.finish(),
        &history_digest(conn).map_err(sql)?,
        state.as_ref(),
        &meta,
    );
    set_meta(conn, "root", &root.to_hex()).map_err(sql)
}

fn sqlite_err(db: &Path, cause: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        db: db.to_owned(),
        cause,
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            cause: source,
        })
}

fn restrict_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        cause: source,
    })
}

fn remove_db_files(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let _ = fs::remove_file(PathBuf::from(name));
    }
}

fn sync_parent_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(handle) = fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests;
