//! Storage of the anchored baselines (`crate::anchor` decides; this only stores). The
//! host's anchor row is locked for the judgement's check-and-write.

use driftwatch_common::hash::ContentHash;
use uuid::Uuid;

use super::Tx;
use super::alerts::insert_alert;
use super::rows::{from_json, json};
use crate::anchor::AnchorState;
use crate::store::{AnchorChange, AnchorView, Result, StoreError};

async fn state(tx: &Tx<'_>, host_id: Uuid, lock: bool) -> Result<AnchorState> {
    let sql = if lock {
        "SELECT state FROM baseline_anchors WHERE host_id = $1 FOR UPDATE"
    } else {
        "SELECT state FROM baseline_anchors WHERE host_id = $1"
    };
    let stored = tx.query_opt(sql, &[&host_id]).await?;
    Ok(match stored {
        Some(r) => from_json(r.get(0))?,
        None => AnchorState::default(),
    })
}

pub async fn view(
    tx: &Tx<'_>,
    host_id: Uuid,
    roots: &[ContentHash],
    commands: &[Uuid],
) -> Result<AnchorView> {
    let mut known_roots = Vec::new();
    for root in roots {
        let known = tx
            .query_opt(
                "SELECT 1 FROM baseline_roots WHERE host_id = $1 AND root = $2 LIMIT 1",
                &[&host_id, &&root.0[..]],
            )
            .await?;
        if known.is_some() {
            known_roots.push(*root);
        }
    }
    let mut pending_commands = Vec::new();
    for command in commands {
        let pending = tx
            .query_opt(
                "SELECT 1 FROM commands WHERE id = $1 AND host_id = $2 AND status = 'pending'",
                &[command, &host_id],
            )
            .await?;
        if pending.is_some() {
            pending_commands.push(*command);
        }
    }
    Ok(AnchorView {
        state: state(tx, host_id, false).await?,
        known_roots,
        pending_commands,
    })
}

pub async fn save(tx: &Tx<'_>, change: &AnchorChange) -> Result<bool> {
    // The host's row stands for its anchor (which may not exist yet).
    tx.execute(
        "SELECT 1 FROM hosts WHERE id = $1 FOR UPDATE",
        &[&change.host_id],
    )
    .await?;
    if state(tx, change.host_id, true).await? != change.judged {
        return Err(StoreError::Conflict(format!(
            "the baseline anchor of host {} changed concurrently",
            change.host_id
        )));
    }
    for expected in &change.moved {
        let seen = tx
            .query_opt(
                "SELECT 1 FROM baseline_roots WHERE host_id = $1 AND source = $2",
                &[&change.host_id, &expected.source],
            )
            .await?;
        if seen.is_some() {
            return Ok(false);
        }
    }
    for expected in &change.moved {
        tx.execute(
            "INSERT INTO baseline_roots (host_id, root, created_at, source, at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &change.host_id,
                &&expected.anchor.root.0[..],
                &expected.anchor.created_at,
                &expected.source,
                &expected.since,
            ],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO baseline_anchors (host_id, state, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (host_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        &[&change.host_id, &json(&change.state), &change.at],
    )
    .await?;
    if let Some(alert) = &change.alert {
        insert_alert(tx, alert, change.at).await?;
    }
    Ok(true)
}
