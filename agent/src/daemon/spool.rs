//! The durable outbox: `spool.db` in the state directory, separate from the
//! baseline (its own SQLite file, WAL, `synchronous=FULL`).
//!
//! - `events`: every drift event not yet acknowledged by the collector, as
//!   the exact JSON that is hashed into the chain. An event counts as emitted
//!   only once its insert has committed (invariant 1); the shipper deletes it
//!   only after the collector's acknowledgement.
//! - `reported` (files, by exact path bytes) and `reported_subjects` (state
//!   subjects such as `package:nginx`, by subject key): per subject, the state
//!   last reported while it differs from its baseline. It is updated in the same transaction as the event insert,
//!   so after a crash the two always agree: a restart neither repeats nor
//!   loses an event, and a change made while the agent was down differs from
//!   both the baseline and this record, so the startup scan reports it.
//! - `state`: the host id the events are stamped with, the last sequence
//!   number and chain hash, and the spool's depth in events and bytes.
//!
//! The spool is bounded ([`Limits`]). When an event does not fit, it is
//! refused and *not* remembered as reported: the subject keeps differing
//! from what was reported, so the rescan that runs once space is free finds
//! it again. Nothing already spooled is ever dropped to make room.
//!
//! Each event is MAC'd with the forward-secure chain key of its number
//! (`state.chain_key`, `chain_key_seq`, migration 3), ratcheted in the transaction
//! that stores the events; a TRUNCATE checkpoint after each commit erases the used
//! keys from the WAL and the main file. Numbers rewound under the key (a rewritten
//! spool) continue from the key's number, so the collector sees a gap. Enrollment
//! re-stamps the spooled events with the host id. `secure_delete` is on: a replaced
//! key or a deleted event is zeroed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use driftwatch_common::api::v1::{DriftEvent, SeenBy, SubjectKey};
use driftwatch_common::chain_key::ChainKey;
use driftwatch_common::hash::ContentHash;
use driftwatch_common::pathbytes::PathBytes;
use driftwatch_common::state::FileState;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::daemon::detect::Remember;
use crate::daemon::events::{Pending, Stamp, StatePending, WireEvent};
use crate::observe::sources::Fields;

/// File name of the spool in the state directory.
pub const FILE_NAME: &str = "spool.db";

/// Schema migrations. Append only: a released migration is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE state (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         host_id TEXT NOT NULL,
         last_seq INTEGER NOT NULL,
         last_hash TEXT NOT NULL,
         depth INTEGER NOT NULL,
         bytes INTEGER NOT NULL,
         acked_seq INTEGER NOT NULL
     );
     INSERT INTO state VALUES (1, '00000000-0000-0000-0000-000000000000', 0,
         '0000000000000000000000000000000000000000000000000000000000000000', 0, 0, 0);
     CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
     CREATE TABLE reported (path BLOB PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID;",
    // 2: the reported state of state subjects (`package:nginx`, `user:eve`...),
    // by subject key; `state` is the postcard of `Option<Fields>`. Files stay in
    // `reported`, keyed by their exact bytes.
    "CREATE TABLE reported_subjects (subject TEXT PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID;",
    // 3: the forward-secure chain key and the sequence number it is the key of (the next,
    // `last_seq + 1`), NULL before enrollment or for an agent enrolled before chain keys.
    "ALTER TABLE state ADD COLUMN chain_key BLOB; ALTER TABLE state ADD COLUMN chain_key_seq INTEGER;",
];

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    // The cause is in the message, not chained: rusqlite repeats its text in its source.
    #[error("spool {db}: {cause}")]
    Sqlite { db: PathBuf, cause: rusqlite::Error },
    #[error("spool {db} is damaged: {detail}")]
    Damaged { db: PathBuf, detail: String },
    #[error(
        "spool {db} has schema version {found}, newer than this agent supports ({supported}): upgrade the agent"
    )]
    SchemaTooNew {
        db: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

type Result<T, E = SpoolError> = std::result::Result<T, E>;

/// The spool's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_events: u64,
    pub max_bytes: u64,
}

/// How full the spool is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Depth {
    pub events: u64,
    pub bytes: u64,
    /// The sequence number of the last event committed.
    pub last_seq: u64,
    /// The highest sequence number the collector acknowledged.
    pub acked_seq: u64,
}

/// What one commit did.
#[derive(Debug, Default)]
pub struct Committed {
    pub events: Vec<DriftEvent>,
    /// Pending events that did not fit (not remembered as reported).
    pub refused: usize,
    pub depth: Depth,
}

/// One event ready to send: its sequence number and its exact JSON.
#[derive(Clone, Debug)]
pub struct Spooled {
    pub seq: u64,
    pub body: String,
}

pub struct Spool {
    conn: Connection,
    db: PathBuf,
}

impl Spool {
    /// Opens (creating if needed, mode 0600) and migrates the spool.
    pub fn open(db: &Path) -> Result<Spool> {
        let conn = Connection::open(db).map_err(|cause| sqlite(db, cause))?;
        restrict_permissions(db)?;
        let spool = Spool {
            conn,
            db: db.to_owned(),
        };
        spool
            .conn
            .execute_batch(
                // FULL: a commit is on disk before it returns (an event counts as
                // emitted only then). busy_timeout: the shipper and the detector
                // each have a connection.
                // cache_size: 256 KiB instead of SQLite's 2 MiB default; the daemon keeps the
                // connection for its lifetime and its reads are sequential or by key (measured:
                // with 100k files, the daemon at rest went from 45.6 to 40.9 MiB).
                // secure_delete: a replaced chain key (or a deleted event) is zeroed in its
                // page, not left in free space (see `erase_old_keys` for the WAL).
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; PRAGMA cache_size=-256; PRAGMA secure_delete=ON;",
            )
            .map_err(|cause| spool.sqlite(cause))?;
        spool.migrate()?;
        Ok(spool)
    }

    /// Opens an existing spool read-only (for `status`); `None` if there is none.
    pub fn open_read_only(db: &Path) -> Result<Option<Spool>> {
        if !db.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|cause| sqlite(db, cause))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|cause| sqlite(db, cause))?;
        Ok(Some(Spool {
            conn,
            db: db.to_owned(),
        }))
    }

    fn migrate(&self) -> Result<()> {
        let current: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|cause| self.sqlite(cause))?;
        let latest = MIGRATIONS.len() as i64;
        if current > latest {
            return Err(SpoolError::SchemaTooNew {
                db: self.db.clone(),
                found: current,
                supported: latest,
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let target = index as i64 + 1;
            self.conn
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; {sql} PRAGMA user_version = {target}; COMMIT;"
                ))
                .map_err(|cause| self.sqlite(cause))?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.db
    }

    /// The host id events are stamped with (nil before enrollment).
    pub fn host_id(&self) -> Result<Uuid> {
        let text: String = self
            .conn
            .query_row("SELECT host_id FROM state WHERE id = 1", [], |row| {
                row.get(0)
            })
            .map_err(|cause| self.sqlite(cause))?;
        text.parse()
            .map_err(|err| self.damaged(format!("host id `{text}`: {err}")))
    }

    pub fn depth(&self) -> Result<Depth> {
        read_depth(&self.conn).map_err(|cause| self.sqlite(cause))
    }

    /// Every subject with open (reported, not yet restored) drift.
    pub fn reported(&self) -> Result<HashMap<PathBytes, Option<FileState>>> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, state FROM reported")
            .map_err(|cause| self.sqlite(cause))?;
        let mut rows = stmt.query([]).map_err(|cause| self.sqlite(cause))?;
        let mut reported = HashMap::new();
        while let Some(row) = rows.next().map_err(|cause| self.sqlite(cause))? {
            let path: Vec<u8> = row.get(0).map_err(|cause| self.sqlite(cause))?;
            let bytes: Vec<u8> = row.get(1).map_err(|cause| self.sqlite(cause))?;
            let state: Option<FileState> = postcard::from_bytes(&bytes).map_err(|err| {
                self.damaged(format!(
                    "reported state of {} cannot be decoded ({err})",
                    PathBytes(path.clone())
                ))
            })?;
            reported.insert(PathBytes(path), state);
        }
        Ok(reported)
    }

    /// Every state subject (`package:`, `user:`...) with open drift.
    pub fn reported_state(&self) -> Result<BTreeMap<SubjectKey, Option<Fields>>> {
        let mut stmt = self
            .conn
            .prepare("SELECT subject, state FROM reported_subjects")
            .map_err(|cause| self.sqlite(cause))?;
        let mut rows = stmt.query([]).map_err(|cause| self.sqlite(cause))?;
        let mut reported = BTreeMap::new();
        while let Some(row) = rows.next().map_err(|cause| self.sqlite(cause))? {
            let subject: String = row.get(0).map_err(|cause| self.sqlite(cause))?;
            let bytes: Vec<u8> = row.get(1).map_err(|cause| self.sqlite(cause))?;
            let state: Option<Fields> = postcard::from_bytes(&bytes).map_err(|err| {
                self.damaged(format!(
                    "reported state of {subject} cannot be decoded ({err})"
                ))
            })?;
            reported.insert(SubjectKey(subject), state);
        }
        Ok(reported)
    }

    /// Commits events in order, each with the next sequence number and the
    /// hash of the previous event, and updates the reported state of their
    /// subjects, all in one durable transaction. Events that would exceed
    /// `limits` are refused (and their subjects not remembered as reported).
    pub fn commit<E: Spoolable>(
        &mut self,
        pending: &[E],
        seen_by: SeenBy,
        observed_at: OffsetDateTime,
        limits: Limits,
    ) -> Result<Committed> {
        let db = self.db.clone();
        let sql = |cause| sqlite(&db, cause);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let host_id = read_host(&tx, &db)?;
        let (mut seq, mut prev) = read_chain(&tx, &db)?;
        let mut key = read_key(&tx, &db)?;
        if let Some((key, key_seq)) = &mut key {
            if *key_seq > seq + 1 {
                // Numbers went back under the key (someone rewrote the spool): continue
                // from the key's number, so the collector sees the skipped ones as a gap.
                tracing::warn!(
                    last_seq = seq,
                    key_seq = *key_seq,
                    "the spool's sequence numbers are behind its chain key: it was edited"
                );
                seq = *key_seq - 1;
            }
            while *key_seq < seq + 1 {
                key.advance();
                *key_seq += 1;
            }
        }
        let mut depth = read_depth(&tx).map_err(sql)?;
        let mut committed = Committed::default();
        for (index, event) in pending.iter().enumerate() {
            let mut wire = event.finalize(Stamp {
                host_id,
                seq: seq + 1,
                prev_hash: prev,
                seen_by,
                observed_at,
            });
            if let Some(related) = wire.related
                && !pending[..index].iter().any(|p| p.id() == related)
                && !pending[index + 1..].iter().any(|p| p.id() == related)
            {
                wire.related = None;
            }
            // Never spool what the collector would refuse: a refused batch stalls delivery.
            driftwatch_common::limits::fit_event(&mut wire);
            let encoded = match &key {
                Some((key, _)) => wire.seal(key),
                None => wire.encode(),
            };
            let body = encoded.json.as_str();
            if depth.events + 1 > limits.max_events
                || depth.bytes + body.len() as u64 > limits.max_bytes
            {
                committed.refused = pending.len() - index;
                break;
            }
            tx.execute(
                "INSERT INTO events (seq, id, body) VALUES (?1, ?2, ?3)",
                params![wire.seq as i64, wire.id.to_string(), body],
            )
            .map_err(sql)?;
            event.remember(&tx).map_err(sql)?;
            seq = wire.seq;
            prev = encoded.chain_hash();
            if let Some((key, key_seq)) = &mut key {
                key.advance();
                *key_seq += 1;
            }
            depth.events += 1;
            depth.bytes += body.len() as u64;
            depth.last_seq = seq;
            committed.events.push(wire);
        }
        // The key of the next number replaces the used ones in this same transaction.
        tx.execute(
            "UPDATE state SET last_seq = ?1, last_hash = ?2, depth = ?3, bytes = ?4, chain_key = ?5,
                 chain_key_seq = ?6
             WHERE id = 1",
            params![
                seq as i64,
                prev.to_hex(),
                depth.events as i64,
                depth.bytes as i64,
                key.as_ref().map(|(k, _)| &k.as_bytes()[..]),
                key.as_ref().map(|(_, n)| *n as i64)
            ],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        committed.depth = depth;
        if !committed.events.is_empty() {
            self.erase_old_keys();
        }
        Ok(committed)
    }

    /// Forgets open drift on a subject (its baseline was updated to its current state).
    pub fn forget(&mut self, path: &PathBytes) -> Result<()> {
        self.conn
            .execute("DELETE FROM reported WHERE path = ?1", [path.as_bytes()])
            .map_err(|cause| self.sqlite(cause))?;
        Ok(())
    }

    /// Forgets open drift on a state subject (its baseline was updated).
    pub fn forget_subject(&mut self, subject: &SubjectKey) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM reported_subjects WHERE subject = ?1",
                [&subject.0],
            )
            .map_err(|cause| self.sqlite(cause))?;
        Ok(())
    }

    /// The oldest events, at most `max_events` and (beyond the first) `max_bytes` of JSON.
    pub fn peek(&self, max_events: usize, max_bytes: u64) -> Result<Vec<Spooled>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, body FROM events ORDER BY seq LIMIT ?1")
            .map_err(|cause| self.sqlite(cause))?;
        let mut rows = stmt
            .query([max_events as i64])
            .map_err(|cause| self.sqlite(cause))?;
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        while let Some(row) = rows.next().map_err(|cause| self.sqlite(cause))? {
            let seq: i64 = row.get(0).map_err(|cause| self.sqlite(cause))?;
            let body: String = row.get(1).map_err(|cause| self.sqlite(cause))?;
            bytes += body.len() as u64;
            if !batch.is_empty() && bytes > max_bytes {
                break;
            }
            batch.push(Spooled {
                seq: seq as u64,
                body,
            });
        }
        Ok(batch)
    }

    /// Deletes the acknowledged events `first..=last` (only after the collector's ack).
    pub fn ack(&mut self, first: u64, last: u64) -> Result<Depth> {
        let db = self.db.clone();
        let sql = |cause| sqlite(&db, cause);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let (count, bytes): (i64, i64) = tx
            .query_row(
                "SELECT count(*), coalesce(sum(length(CAST(body AS BLOB))), 0) FROM events
                 WHERE seq BETWEEN ?1 AND ?2",
                params![first as i64, last as i64],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(sql)?;
        tx.execute(
            "DELETE FROM events WHERE seq BETWEEN ?1 AND ?2",
            params![first as i64, last as i64],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE state SET depth = max(depth - ?1, 0), bytes = max(bytes - ?2, 0),
                 acked_seq = max(acked_seq, ?3) WHERE id = 1",
            params![count, bytes, last as i64],
        )
        .map_err(sql)?;
        let depth = read_depth(&tx).map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.erase_old_keys();
        Ok(depth)
    }

    /// Whether events are MAC'd with a chain key (false before enrollment, or for an agent
    /// enrolled before chain keys existed: its chain is unauthenticated until it enrolls again).
    pub fn chain_keyed(&self) -> Result<bool> {
        Ok(read_key(&self.conn, &self.db)?.is_some())
    }

    /// Keys replaced by a commit live on in the WAL's older frames (each commit appends
    /// the `state` page with the key of its time) and, until a checkpoint, in the main
    /// file's copy of that page. A TRUNCATE checkpoint copies the newest page into the
    /// main file (over the old one; secure_delete zeroes freed cells) and truncates the
    /// WAL to nothing. It does not finish while the other connection reads: then the old
    /// frames stay until the next commit's try. Failure only delays erasure.
    fn erase_old_keys(&self) {
        let result = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            });
        match result {
            Ok(0) => {}
            Ok(_) => tracing::debug!(
                "spool checkpoint postponed by a reader: replaced chain keys stay in the WAL until the next"
            ),
            Err(err) => {
                tracing::warn!(error = %err, "spool checkpoint failed: replaced chain keys stay in the WAL until the next")
            }
        }
    }

    /// Stamps the spool with a (new) host identity and, from enrollment, the chain key of
    /// sequence number 1. Events not yet delivered are re-stamped with it and re-chained
    /// from the start (sequence 1, the genesis hash), each MAC'd with its key when there is
    /// one: none of them ever left the host under the old identity in a form the new one
    /// would continue. The key left in the spool is the one of the next number. Without a
    /// key (the daemon, when the spool's host differs from the credential's: the key that
    /// came with it is lost) the events go unauthenticated and a keyed collector refuses
    /// them; enrolling again is the remedy. Returns how many events were re-stamped.
    pub fn adopt_identity(&mut self, host_id: Uuid, chain_key: Option<ChainKey>) -> Result<u64> {
        let db = self.db.clone();
        let sql = |cause| sqlite(&db, cause);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        if read_host(&tx, &db)? == host_id && chain_key.is_none() {
            return Ok(0);
        }
        let bodies: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT body FROM events ORDER BY seq")
                .map_err(sql)?;
            stmt.query_map([], |row| row.get(0))
                .map_err(sql)?
                .collect::<Result<_, _>>()
                .map_err(sql)?
        };
        tx.execute("DELETE FROM events", []).map_err(sql)?;
        let mut key = chain_key;
        let mut prev = DriftEvent::GENESIS;
        let mut seq = 0u64;
        let mut bytes = 0u64;
        for body in &bodies {
            let mut event: DriftEvent =
                serde_json::from_str(body).map_err(|err| SpoolError::Damaged {
                    db: db.clone(),
                    detail: format!("an event cannot be decoded ({err})"),
                })?;
            seq += 1;
            event.host_id = host_id;
            event.seq = seq;
            event.prev_hash = prev;
            event.mac = None;
            let encoded = match &mut key {
                Some(key) => {
                    let encoded = event.seal(key);
                    key.advance();
                    encoded
                }
                None => event.encode(),
            };
            prev = encoded.chain_hash();
            bytes += encoded.json.len() as u64;
            tx.execute(
                "INSERT INTO events (seq, id, body) VALUES (?1, ?2, ?3)",
                params![seq as i64, event.id.to_string(), encoded.json],
            )
            .map_err(sql)?;
        }
        tx.execute(
            "UPDATE state SET host_id = ?1, last_seq = ?2, last_hash = ?3, depth = ?2, bytes = ?4,
                 acked_seq = 0, chain_key = ?5, chain_key_seq = ?6 WHERE id = 1",
            params![
                host_id.to_string(),
                seq as i64,
                prev.to_hex(),
                bytes as i64,
                key.as_ref().map(|k| &k.as_bytes()[..]),
                key.as_ref().map(|_| seq as i64 + 1)
            ],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.erase_old_keys();
        Ok(seq)
    }

    fn sqlite(&self, cause: rusqlite::Error) -> SpoolError {
        sqlite(&self.db, cause)
    }

    fn damaged(&self, detail: String) -> SpoolError {
        SpoolError::Damaged {
            db: self.db.clone(),
            detail,
        }
    }
}

/// An event the spool can commit: its wire form, and what to remember
/// about its subject in the same transaction.
pub trait Spoolable: WireEvent {
    /// Records (or forgets) the subject's reported state.
    fn remember(&self, tx: &Connection) -> rusqlite::Result<()>;
}

impl Spoolable for Pending {
    fn remember(&self, tx: &Connection) -> rusqlite::Result<()> {
        match &self.remember {
            Remember::Drifted(state) => {
                let bytes = postcard::to_allocvec(state).expect("states always serialize");
                tx.execute(
                    "INSERT OR REPLACE INTO reported (path, state) VALUES (?1, ?2)",
                    params![self.path.as_bytes(), bytes],
                )?;
            }
            Remember::Forget => {
                tx.execute(
                    "DELETE FROM reported WHERE path = ?1",
                    [self.path.as_bytes()],
                )?;
            }
        }
        Ok(())
    }
}

/// The agent's own baseline is no subject the detector tracks: nothing to remember.
impl Spoolable for crate::daemon::events::RebaselinePending {
    fn remember(&self, _tx: &Connection) -> rusqlite::Result<()> {
        Ok(())
    }
}

impl Spoolable for StatePending {
    fn remember(&self, tx: &Connection) -> rusqlite::Result<()> {
        match &self.remember {
            Remember::Drifted(fields) => {
                let bytes = postcard::to_allocvec(fields).expect("fields always serialize");
                tx.execute(
                    "INSERT OR REPLACE INTO reported_subjects (subject, state) VALUES (?1, ?2)",
                    params![self.subject.0, bytes],
                )?;
            }
            Remember::Forget => {
                tx.execute(
                    "DELETE FROM reported_subjects WHERE subject = ?1",
                    [&self.subject.0],
                )?;
            }
        }
        Ok(())
    }
}

fn read_host(conn: &Connection, db: &Path) -> Result<Uuid> {
    let text: String = conn
        .query_row("SELECT host_id FROM state WHERE id = 1", [], |row| {
            row.get(0)
        })
        .map_err(|cause| sqlite(db, cause))?;
    text.parse().map_err(|err| SpoolError::Damaged {
        db: db.to_owned(),
        detail: format!("host id `{text}`: {err}"),
    })
}

fn read_chain(conn: &Connection, db: &Path) -> Result<(u64, ContentHash)> {
    let (seq, hash): (i64, String) = conn
        .query_row(
            "SELECT last_seq, last_hash FROM state WHERE id = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(|cause| sqlite(db, cause))?;
    let hash = hash.parse().map_err(|_| SpoolError::Damaged {
        db: db.to_owned(),
        detail: format!("chain hash `{hash}` is not 64 hex digits"),
    })?;
    Ok((seq as u64, hash))
}

/// The chain key, and the sequence number it is the key of, if the spool has one.
fn read_key(conn: &Connection, db: &Path) -> Result<Option<(ChainKey, u64)>> {
    let (bytes, key_seq): (Option<Vec<u8>>, Option<i64>) = conn
        .query_row(
            "SELECT chain_key, chain_key_seq FROM state WHERE id = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(|cause| sqlite(db, cause))?;
    let damaged = |detail: String| SpoolError::Damaged {
        db: db.to_owned(),
        detail,
    };
    match (bytes, key_seq) {
        (None, _) => Ok(None),
        (Some(mut bytes), Some(key_seq)) if key_seq >= 1 => {
            let key = <[u8; 32]>::try_from(bytes.as_slice())
                .map(ChainKey::from_bytes)
                .map_err(|_| damaged(format!("the chain key has {} bytes, not 32", bytes.len())));
            // The copy SQLite handed over is wiped too (ChainKey wipes itself on drop).
            zeroize::Zeroize::zeroize(&mut bytes);
            Ok(Some((key?, key_seq as u64)))
        }
        (Some(_), key_seq) => Err(damaged(format!(
            "the chain key's sequence number is {key_seq:?}"
        ))),
    }
}

fn read_depth(conn: &Connection) -> rusqlite::Result<Depth> {
    conn.query_row(
        "SELECT depth, bytes, last_seq, acked_seq FROM state WHERE id = 1",
        [],
        |row| {
            Ok(Depth {
                events: row.get::<_, i64>(0)? as u64,
                bytes: row.get::<_, i64>(1)? as u64,
                last_seq: row.get::<_, i64>(2)? as u64,
                acked_seq: row.get::<_, i64>(3)? as u64,
            })
        },
    )
    .optional()
    .map(Option::unwrap_or_default)
}

fn sqlite(db: &Path, cause: rusqlite::Error) -> SpoolError {
    SpoolError::Sqlite {
        db: db.to_owned(),
        cause,
    }
}

fn restrict_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|cause| {
        SpoolError::Io {
            path: path.to_owned(),
            cause,
        }
    })
}

#[cfg(test)]
mod tests;
