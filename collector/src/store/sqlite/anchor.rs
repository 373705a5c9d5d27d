//! Storage of the anchored baselines (`crate::anchor` decides; this only stores).

use driftwatch_common::hash::ContentHash;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::alerts::insert_alert;
use super::rows::{Json, id, json};
use crate::anchor::AnchorState;
use crate::store::{AnchorChange, AnchorView, Result, StoreError};

fn state(conn: &Connection, host_id: Uuid) -> Result<AnchorState> {
    let stored: Option<Json<AnchorState>> = conn
        .query_row(
            "SELECT state FROM baseline_anchors WHERE host_id = ?1",
            [id(host_id)],
            |r| r.get(0),
        )
        .optional()?;
    Ok(stored.map(|s| s.0).unwrap_or_default())
}

pub fn view(
    conn: &Connection,
    host_id: Uuid,
    roots: &[ContentHash],
    commands: &[Uuid],
) -> Result<AnchorView> {
    let mut known_roots = Vec::new();
    for root in roots {
        let known: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM baseline_roots WHERE host_id = ?1 AND root = ?2 LIMIT 1",
                params![id(host_id), &root.0[..]],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_some() {
            known_roots.push(*root);
        }
    }
    let mut pending_commands = Vec::new();
    for command in commands {
        let pending: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM commands WHERE id = ?1 AND host_id = ?2 AND status = 'pending'",
                params![id(*command), id(host_id)],
                |r| r.get(0),
            )
            .optional()?;
        if pending.is_some() {
            pending_commands.push(*command);
        }
    }
    Ok(AnchorView {
        state: state(conn, host_id)?,
        known_roots,
        pending_commands,
    })
}

pub fn save(conn: &Connection, change: &AnchorChange) -> Result<bool> {
    if state(conn, change.host_id)? != change.judged {
        return Err(StoreError::Conflict(format!(
            "the baseline anchor of host {} changed concurrently",
            change.host_id
        )));
    }
    for expected in &change.moved {
        let seen: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM baseline_roots WHERE host_id = ?1 AND source = ?2",
                params![id(change.host_id), expected.source],
                |r| r.get(0),
            )
            .optional()?;
        if seen.is_some() {
            return Ok(false);
        }
    }
    for expected in &change.moved {
        conn.execute(
            "INSERT INTO baseline_roots (host_id, root, created_at, source, at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id(change.host_id),
                &expected.anchor.root.0[..],
                expected.anchor.created_at,
                expected.source,
                expected.since
            ],
        )?;
    }
    conn.execute(
        "INSERT INTO baseline_anchors (host_id, state, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (host_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        params![id(change.host_id), json(&change.state), change.at],
    )?;
    if let Some(alert) = &change.alert {
        insert_alert(conn, alert, change.at)?;
    }
    Ok(true)
}
