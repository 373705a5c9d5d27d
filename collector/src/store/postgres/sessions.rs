//! Web console sessions (`crate::web`): rows keyed by the SHA-256 of the session id.

use tokio_postgres::Row;

use super::Tx;
use super::audit;
use super::rows::digest;
use crate::audit::{AuditKey, NewAudit};
use crate::clock::Millis;
use crate::store::{Result, WebSession};

const COLUMNS: &str = "digest, token_id, created_at, expires_at, last_used_at, ended_at";

fn row(r: &Row) -> Result<WebSession> {
    Ok(WebSession {
        digest: digest(r.get(0))?,
        token_id: r.get(1),
        created_at: r.get(2),
        expires_at: r.get(3),
        last_used_at: r.get(4),
        ended_at: r.get(5),
    })
}

pub async fn insert(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    session: &WebSession,
    entry: &NewAudit,
) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO web_sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            &&session.digest[..],
            &session.token_id,
            &session.created_at,
            &session.expires_at,
            &session.last_used_at,
            &session.ended_at,
        ],
    )
    .await?;
    audit::append(tx, key, entry).await?;
    Ok(())
}

/// The session as it was, its use recorded when it has not ended (its row locked: a
/// concurrent sign-out on another node either precedes or follows it).
pub async fn use_session(
    tx: &Tx<'_>,
    digest: &[u8; 32],
    now: Millis,
) -> Result<Option<WebSession>> {
    let found = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM web_sessions WHERE digest = $1 FOR UPDATE"),
            &[&&digest[..]],
        )
        .await?;
    let Some(found) = found else {
        return Ok(None);
    };
    let session = row(&found)?;
    if session.ended_at.is_none() {
        tx.execute(
            "UPDATE web_sessions SET last_used_at = greatest(last_used_at, $2) WHERE digest = $1",
            &[&&digest[..], &now],
        )
        .await?;
    }
    Ok(Some(session))
}

pub async fn end(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    digest: &[u8; 32],
    at: Millis,
    entry: Option<&NewAudit>,
) -> Result<bool> {
    let changed = tx
        .execute(
            "UPDATE web_sessions SET ended_at = $2 WHERE digest = $1 AND ended_at IS NULL",
            &[&&digest[..], &at],
        )
        .await?;
    if changed == 0 {
        return Ok(false);
    }
    if let Some(entry) = entry {
        audit::append(tx, key, entry).await?;
    }
    Ok(true)
}

pub async fn prune(tx: &Tx<'_>, expired_before: Millis, idle_before: Millis) -> Result<u32> {
    let removed = tx
        .execute(
            "DELETE FROM web_sessions
             WHERE ended_at IS NOT NULL OR expires_at < $1 OR last_used_at < $2",
            &[&expired_before, &idle_before],
        )
        .await?;
    Ok(u32::try_from(removed).unwrap_or(u32::MAX))
}
