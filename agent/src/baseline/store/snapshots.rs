//! Content snapshots (for diffs), kept apart from the entries: zstd-compressed and
//! deduplicated by content hash.
//!
//! Two tables (migration 3): `snapshot_blobs(hash, content)` holds each distinct content once,
//! compressed; `snapshot_refs(path, hash)` says which subject has a snapshot. Loading and
//! verifying a baseline and `check` never read them: only showing a diff does.
//!
//! Integrity: the keyed root does not cover these tables, it covers each entry's record,
//! whose content hash is the snapshot's name. A snapshot is accepted only when its reference
//! names the hash the verified record holds and its decompressed bytes hash to it; anything
//! else (an edited byte, a swapped blob, a reference to other content, a reference without
//! its blob) is reported as tampering.

use driftwatch_common::hash::ContentHash;
use rusqlite::{Connection, OptionalExtension, params};

/// zstd level: 3 is zstd's default, about 5x on source-like text at a few hundred MB/s
/// per core; higher levels save a few percent more for several times the CPU.
const LEVEL: i32 = 3;

/// The largest snapshot ever decompressed (`snapshots.max_bytes` is at most 16 MiB): a
/// crafted blob cannot make a diff allocate more.
const MAX_DECOMPRESSED: usize = driftwatch_config::agent::MAX_SNAPSHOT_BYTES as usize;

/// One file's content, compressed, named by its BLAKE3 hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub hash: ContentHash,
    /// Length of the uncompressed content.
    pub raw_len: u64,
    /// The zstd frame.
    pub compressed: Vec<u8>,
}

impl Snapshot {
    /// Compresses `content`, whose BLAKE3 hash the caller already computed (the scan has).
    pub fn with_hash(hash: ContentHash, content: &[u8]) -> Snapshot {
        Snapshot {
            hash,
            raw_len: content.len() as u64,
            compressed: zstd::bulk::compress(content, LEVEL)
                .expect("compressing into a growable buffer cannot fail"),
        }
    }

    /// Hashes and compresses `content`.
    pub fn of(content: &[u8]) -> Snapshot {
        Snapshot::with_hash(ContentHash::of(content), content)
    }
}

/// Why a stored snapshot was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The reference names other content than the verified record.
    OtherContent(ContentHash),
    /// A reference whose blob is gone.
    BlobMissing,
    /// The blob does not decompress (or would exceed the largest snapshot).
    Undecodable(String),
    /// The decompressed bytes do not hash to the record's content hash.
    HashMismatch,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::OtherContent(hash) => write!(
                f,
                "refers to content {hash}, not the content the baseline records"
            ),
            Refused::BlobMissing => write!(f, "refers to content that is not stored"),
            Refused::Undecodable(err) => write!(f, "cannot be decompressed ({err})"),
            Refused::HashMismatch => write!(f, "does not match its recorded hash"),
        }
    }
}

/// Stores `snapshot` for `path` (its blob only once per content).
pub fn put(conn: &Connection, path: &[u8], snapshot: &Snapshot) -> rusqlite::Result<()> {
    put_blob(conn, snapshot)?;
    conn.prepare_cached("INSERT OR REPLACE INTO snapshot_refs (path, hash) VALUES (?1, ?2)")?
        .execute(params![path, &snapshot.hash.0[..]])?;
    Ok(())
}

/// Stores the blob alone, if no blob of that content is there yet.
pub fn put_blob(conn: &Connection, snapshot: &Snapshot) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO snapshot_blobs (hash, content) VALUES (?1, ?2)")?
        .execute(params![&snapshot.hash.0[..], snapshot.compressed])?;
    Ok(())
}

/// Removes `path`'s reference (its blob goes with [`collect_garbage`] if nothing else uses it).
pub fn remove(conn: &Connection, path: &[u8]) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM snapshot_refs WHERE path = ?1")?
        .execute([path])?;
    Ok(())
}

/// Deletes blobs no reference names any more.
pub fn collect_garbage(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM snapshot_blobs WHERE hash NOT IN (SELECT hash FROM snapshot_refs)",
        [],
    )?;
    Ok(())
}

/// The snapshot of `path`, checked against `expected` (the verified record's content hash).
/// `Ok(None)`: the subject has no snapshot.
pub fn get(
    conn: &Connection,
    path: &[u8],
    expected: &ContentHash,
) -> rusqlite::Result<Result<Option<Vec<u8>>, Refused>> {
    let row: Option<(Vec<u8>, Option<Vec<u8>>)> = conn
        .prepare_cached(
            "SELECT r.hash, b.content FROM snapshot_refs r \
             LEFT JOIN snapshot_blobs b ON b.hash = r.hash WHERE r.path = ?1",
        )?
        .query_row([path], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((hash, blob)) = row else {
        return Ok(Ok(None));
    };
    if hash.as_slice() != expected.0.as_slice() {
        let named = <[u8; 32]>::try_from(hash.as_slice())
            .map(ContentHash)
            .unwrap_or(ContentHash([0; 32]));
        return Ok(Err(Refused::OtherContent(named)));
    }
    let Some(blob) = blob else {
        return Ok(Err(Refused::BlobMissing));
    };
    Ok(decode(&blob, expected).map(Some))
}

/// Decompresses a blob and checks it hashes to `expected`.
pub fn decode(blob: &[u8], expected: &ContentHash) -> Result<Vec<u8>, Refused> {
    let content = zstd::bulk::decompress(blob, MAX_DECOMPRESSED)
        .map_err(|err| Refused::Undecodable(err.to_string()))?;
    if ContentHash::of(&content) != *expected {
        return Err(Refused::HashMismatch);
    }
    Ok(content)
}

/// Moves the snapshots of a schema-2 baseline (`snapshots(path, content)`, uncompressed, one
/// per path) into the two tables and drops the old one: migration 3's data step. The
/// content is hashed as stored; a snapshot that was edited before the upgrade is still
/// refused when read, because its hash is not the record's.
pub fn convert_v2(conn: &Connection) -> rusqlite::Result<u64> {
    let mut converted = 0;
    {
        let mut stmt = conn.prepare("SELECT path, content FROM snapshots")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let path = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
            let content = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            put(conn, path, &Snapshot::of(content))?;
            converted += 1;
        }
    }
    conn.execute_batch("DROP TABLE snapshots;")?;
    Ok(converted)
}

/// Totals of the stored snapshots: references, distinct blobs, their compressed bytes.
pub fn totals(conn: &Connection) -> rusqlite::Result<(u64, u64, u64)> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM snapshot_refs), count(*), coalesce(sum(length(content)), 0) \
         FROM snapshot_blobs",
        [],
        |row| {
            let count = |i| row.get::<_, i64>(i).map(|n| n.max(0) as u64);
            Ok((count(0)?, count(1)?, count(2)?))
        },
    )
}
