//! The audit log: one hash chain across every node. An append takes a transaction-scoped
//! advisory lock on the head before reading it, so concurrent appends queue up and each
//! links to the one before.

use crate::audit::{AuditEntry, AuditHead, AuditKey, Checkpoint, GENESIS, NewAudit, entry_hash};
use crate::clock::Millis;
use crate::store::{NewAlert, Result};

use super::Tx;

const HEAD_KEY: &str = "audit_head";
/// The advisory lock on the log's head ("DWAUDIT").
const HEAD_LOCK: i64 = 0x0044_5741_5544_4954;

/// Appends `audit` to the chain (inside the caller's transaction), signed with `key`.
pub async fn append(tx: &Tx<'_>, key: Option<&AuditKey>, audit: &NewAudit) -> Result<AuditEntry> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&HEAD_LOCK])
        .await?;
    let head = head(tx).await?;
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
    let signature = key.map(|key| key.sign_entry(&hash));
    tx.execute(
        "INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash, signature)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &(seq as i64),
            &audit.at,
            &audit.actor,
            &audit.action,
            &audit.target,
            &details,
            &&prev_hash[..],
            &&hash[..],
            &signature,
        ],
    )
    .await?;
    let mut value = Vec::with_capacity(40);
    value.extend_from_slice(&seq.to_be_bytes());
    value.extend_from_slice(&hash);
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&HEAD_KEY, &value],
    )
    .await?;
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

pub async fn head(tx: &Tx<'_>) -> Result<Option<AuditHead>> {
    let row = tx
        .query_opt("SELECT value FROM meta WHERE key = $1", &[&HEAD_KEY])
        .await?;
    Ok(row.and_then(|row| {
        let bytes: Vec<u8> = row.get(0);
        let seq = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let hash = bytes.get(8..40)?.try_into().ok()?;
        Some(AuditHead { seq, hash })
    }))
}

pub async fn log(tx: &Tx<'_>) -> Result<(Vec<AuditEntry>, Option<AuditHead>)> {
    let rows = tx
        .query(
            "SELECT seq, at, actor, action, target, details, prev_hash, hash, signature
             FROM audit ORDER BY seq",
            &[],
        )
        .await?;
    let entries = rows
        .iter()
        .map(|r| AuditEntry {
            seq: r.get::<_, i64>(0) as u64,
            at: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            target: r.get(4),
            details: r.get(5),
            prev_hash: tolerant(r.get(6)),
            hash: tolerant(r.get(7)),
            signature: r.get(8),
        })
        .collect();
    Ok((entries, head(tx).await?))
}

/// At most `limit` entries after `after` (a seq), in order (issue 10).
pub async fn page(tx: &Tx<'_>, after: u64, limit: u32) -> Result<Vec<AuditEntry>> {
    let rows = tx
        .query(
            "SELECT seq, at, actor, action, target, details, prev_hash, hash, signature
             FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&i64::try_from(after).unwrap_or(i64::MAX), &i64::from(limit)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AuditEntry {
            seq: r.get::<_, i64>(0) as u64,
            at: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            target: r.get(4),
            details: r.get(5),
            prev_hash: tolerant(r.get(6)),
            hash: tolerant(r.get(7)),
            signature: r.get(8),
        })
        .collect())
}

/// A hash column as stored; a value of the wrong size (tampering) becomes a value no chain
/// produces, so verification reports it instead of failing to read.
fn tolerant(bytes: Vec<u8>) -> [u8; 32] {
    bytes.try_into().unwrap_or([0xff; 32])
}

/// Stores `value` under `config:<key>` and audits the change, if it is one.
pub async fn note_config(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    name: &str,
    value: &str,
    audit: &NewAudit,
) -> Result<bool> {
    let name = format!("config:{name}");
    let last = tx
        .query_opt("SELECT value FROM meta WHERE key = $1 FOR UPDATE", &[&name])
        .await?
        .map(|r| r.get::<_, Vec<u8>>(0));
    if last.as_deref() == Some(value.as_bytes()) {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&name, &value.as_bytes()],
    )
    .await?;
    append(tx, key, audit).await?;
    Ok(true)
}

/// Keeps a signed checkpoint and queues it for the alert sinks, in one transaction.
pub async fn insert_checkpoint(tx: &Tx<'_>, checkpoint: &Checkpoint, at: Millis) -> Result<()> {
    let body = serde_json::to_value(checkpoint)?;
    tx.execute(
        "INSERT INTO audit_checkpoints (entries, created_at, body) VALUES ($1, $2, $3)",
        &[&(checkpoint.entries as i64), &at, &body.to_string()],
    )
    .await?;
    super::alerts::insert_alert(
        tx,
        &NewAlert {
            kind: crate::audit::CHECKPOINT_KIND.into(),
            host_id: None,
            body,
        },
        at,
    )
    .await?;
    Ok(())
}

/// The checkpoints kept, oldest first; a row that does not parse (tampering) is skipped:
/// verification only trusts checkpoints whose signature verifies anyway.
pub async fn checkpoints(tx: &Tx<'_>) -> Result<Vec<Checkpoint>> {
    let rows = tx
        .query("SELECT body FROM audit_checkpoints ORDER BY id", &[])
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
        .collect())
}
