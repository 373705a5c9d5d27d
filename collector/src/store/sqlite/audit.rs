use std::cell::RefCell;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use crate::audit::{AuditEntry, AuditHead, AuditKey, Checkpoint, GENESIS, NewAudit, entry_hash};
use crate::clock::Millis;
use crate::store::{NewAlert, Result};

const HEAD_KEY: &str = "audit_head";

thread_local! {
    /// The key that signs entries appended on this thread: the store's one database
    /// thread, so it is per store. Set by `SqliteStore::set_audit_key`.
    static SIGNER: RefCell<Option<Arc<AuditKey>>> = const { RefCell::new(None) };
}

pub fn set_signer(key: Arc<AuditKey>) {
    SIGNER.with(|signer| *signer.borrow_mut() = Some(key));
}

/// The key that seals event decisions on this thread, if the store has a signing key.
pub fn decision_key() -> Option<[u8; 32]> {
    SIGNER.with(|signer| signer.borrow().as_ref().map(|key| key.decision_key()))
}

fn sign(hash: &[u8; 32]) -> Option<Vec<u8>> {
    SIGNER.with(|signer| signer.borrow().as_ref().map(|key| key.sign_entry(hash)))
}

/// Appends `audit` to the chain (inside the caller's transaction).
pub fn append(conn: &Connection, audit: &NewAudit) -> Result<AuditEntry> {
    let head = head(conn)?;
    let (prev_seq, prev_hash) = head.map_or((0, GENESIS), |h| (h.seq, h.hash));
    let seq = prev_seq + 1;
    let details = audit.details.to_string();
    let hash = entry_hash(
        &prev_hash,
        seq,
        audit.at,
        &audit.actor,
        &audit.action,
        &audit.target,
        &details,
    );
    let signature = sign(&hash);
    conn.execute(
        "INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash, signature)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            seq as i64,
            audit.at,
            audit.actor,
            audit.action,
            audit.target,
            details,
            &prev_hash[..],
            &hash[..],
            signature
        ],
    )?;
    let mut value = Vec::with_capacity(40);
    value.extend_from_slice(&seq.to_be_bytes());
    value.extend_from_slice(&hash);
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![HEAD_KEY, value],
    )?;
    Ok(AuditEntry {
        seq,
        at: audit.at,
        actor: audit.actor.clone(),
        action: audit.action.clone(),
        target: audit.target.clone(),
        details,
        prev_hash,
        hash,
        signature,
    })
}

pub fn head(conn: &Connection) -> Result<Option<AuditHead>> {
    let value: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [HEAD_KEY], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(value.and_then(|bytes| {
        let seq = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let hash = bytes.get(8..40)?.try_into().ok()?;
        Some(AuditHead { seq, hash })
    }))
}

pub fn log(conn: &Connection) -> Result<(Vec<AuditEntry>, Option<AuditHead>)> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, target, details, prev_hash, hash, signature
         FROM audit ORDER BY seq",
    )?;
    let entries = stmt
        .query_map([], |r| {
            Ok(AuditEntry {
                seq: r.get::<_, i64>(0)? as u64,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                details: r.get(5)?,
                prev_hash: tolerant(r.get(6)?),
                hash: tolerant(r.get(7)?),
                signature: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((entries, head(conn)?))
}

/// At most `limit` entries after `after` (a seq), in order (issue 10: the log's listing reads
/// one page, not the whole log).
pub fn page(conn: &Connection, after: u64, limit: u32) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, target, details, prev_hash, hash, signature
         FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let entries = stmt
        .query_map(
            params![i64::try_from(after).unwrap_or(i64::MAX), i64::from(limit)],
            |r| {
                Ok(AuditEntry {
                    seq: r.get::<_, i64>(0)? as u64,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    details: r.get(5)?,
                    prev_hash: tolerant(r.get(6)?),
                    hash: tolerant(r.get(7)?),
                    signature: r.get(8)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(entries)
}

/// A hash column as stored; a blob of the wrong size (tampering) becomes a value no chain
/// produces, so verification reports it instead of failing to read.
fn tolerant(bytes: Vec<u8>) -> [u8; 32] {
    bytes.try_into().unwrap_or([0xff; 32])
}

/// Stores `value` under `config:<key>` and audits the change, if it is one.
pub fn note_config(conn: &Connection, key: &str, value: &str, audit: &NewAudit) -> Result<bool> {
    let key = format!("config:{key}");
    let last: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
            r.get(0)
        })
        .optional()?;
    if last.as_deref() == Some(value.as_bytes()) {
        return Ok(false);
    }
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value.as_bytes()],
    )?;
    append(conn, audit)?;
    Ok(true)
}

/// Keeps a signed checkpoint and queues it for the alert sinks, in one transaction.
pub fn insert_checkpoint(conn: &Connection, checkpoint: &Checkpoint, at: Millis) -> Result<()> {
    let body = serde_json::to_value(checkpoint)?;
    conn.execute(
        "INSERT INTO audit_checkpoints (entries, created_at, body) VALUES (?1, ?2, ?3)",
        params![checkpoint.entries as i64, at, body.to_string()],
    )?;
    super::alerts::insert_alert(
        conn,
        &NewAlert {
            kind: crate::audit::CHECKPOINT_KIND.into(),
            host_id: None,
            body,
        },
        at,
    )?;
    Ok(())
}

/// The checkpoints kept, oldest first; a row that does not parse (tampering) is skipped:
/// verification only trusts checkpoints whose signature verifies anyway.
pub fn checkpoints(conn: &Connection) -> Result<Vec<Checkpoint>> {
    let mut stmt = conn.prepare("SELECT body FROM audit_checkpoints ORDER BY id")?;
    let bodies = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(bodies
        .iter()
        .filter_map(|body| serde_json::from_str(body).ok())
        .collect())
}
