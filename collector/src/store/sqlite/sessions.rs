//! Web console sessions (`crate::web`): rows keyed by the SHA-256 of the session id.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::audit;
use super::rows::{Digest, Id, id};
use crate::audit::NewAudit;
use crate::clock::Millis;
use crate::store::{Result, WebSession};

const COLUMNS: &str = "digest, token_id, created_at, expires_at, last_used_at, ended_at";

fn row(r: &Row<'_>) -> rusqlite::Result<WebSession> {
    Ok(WebSession {
        digest: r.get::<_, Digest>(0)?.0,
        token_id: r.get::<_, Id>(1)?.0,
        created_at: r.get(2)?,
        expires_at: r.get(3)?,
        last_used_at: r.get(4)?,
        ended_at: r.get(5)?,
    })
}

pub fn insert(conn: &Connection, session: &WebSession, entry: &NewAudit) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO web_sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            &session.digest[..],
            id(session.token_id),
            session.created_at,
            session.expires_at,
            session.last_used_at,
            session.ended_at
        ],
    )?;
    audit::append(conn, entry)?;
    Ok(())
}

pub fn use_session(
    conn: &Connection,
    digest: &[u8; 32],
    now: Millis,
) -> Result<Option<WebSession>> {
    let found = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM web_sessions WHERE digest = ?1"),
            [&digest[..]],
            row,
        )
        .optional()?;
    if let Some(session) = &found
        && session.ended_at.is_none()
    {
        conn.execute(
            "UPDATE web_sessions SET last_used_at = max(last_used_at, ?2) WHERE digest = ?1",
            params![&digest[..], now],
        )?;
    }
    Ok(found)
}

pub fn end(
    conn: &Connection,
    digest: &[u8; 32],
    at: Millis,
    entry: Option<&NewAudit>,
) -> Result<bool> {
    let changed = conn.execute(
        "UPDATE web_sessions SET ended_at = ?2 WHERE digest = ?1 AND ended_at IS NULL",
        params![&digest[..], at],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    if let Some(entry) = entry {
        audit::append(conn, entry)?;
    }
    Ok(true)
}

pub fn prune(conn: &Connection, expired_before: Millis, idle_before: Millis) -> Result<u32> {
    let removed = conn.execute(
        "DELETE FROM web_sessions
         WHERE ended_at IS NOT NULL OR expires_at < ?1 OR last_used_at < ?2",
        params![expired_before, idle_before],
    )?;
    Ok(u32::try_from(removed).unwrap_or(u32::MAX))
}
