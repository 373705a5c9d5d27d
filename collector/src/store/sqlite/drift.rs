use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::audit;
use super::ingest::history;
use super::rows::{Id, Json, Named, id, json, opt_id};
use crate::audit::NewAudit;
use crate::drift::{self, DriftStatus};
use crate::store::{DriftFilter, DriftItem, Resolution, Result, StoreError};

pub const COLUMNS: &str = "d.id, d.host_id, h.hostname, d.subject, d.status, d.reason, \
                           d.window_id, d.opened_at, d.untraced_since, d.events, \
                           d.last_event_id, d.last_event_at, d.alerted_at, d.resolution, \
                           d.updated_at";

pub fn row(r: &Row<'_>) -> rusqlite::Result<DriftItem> {
    Ok(DriftItem {
        id: r.get::<_, Id>(0)?.0,
        host_id: r.get::<_, Id>(1)?.0,
        hostname: r.get(2)?,
        subject: r.get(3)?,
        status: r.get::<_, Named<_>>(4)?.0,
        reason: r.get(5)?,
        window_id: r.get::<_, Option<Id>>(6)?.map(|i| i.0),
        opened_at: r.get(7)?,
        untraced_since: r.get(8)?,
        events: r.get(9)?,
        last_event_id: r.get::<_, Id>(10)?.0,
        last_event_at: r.get(11)?,
        alerted_at: r.get(12)?,
        resolution: r.get::<_, Option<Json<_>>>(13)?.map(|j| j.0),
        updated_at: r.get(14)?,
    })
}

pub fn list(conn: &Connection, filter: &DriftFilter) -> Result<Vec<DriftItem>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM drift d JOIN hosts h ON h.id = d.host_id
         WHERE (?1 IS NULL OR d.status = ?1) AND (?2 IS NULL OR d.host_id = ?2)
           AND (?3 IS NULL OR d.window_id = ?3)
         ORDER BY d.opened_at DESC, d.id DESC LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        params![
            filter.status.map(|s| s.name()),
            opt_id(filter.host_id),
            opt_id(filter.window_id),
            filter.limit.unwrap_or(1000)
        ],
        row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, drift_id: Uuid) -> Result<DriftItem> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM drift d JOIN hosts h ON h.id = d.host_id WHERE d.id = ?1"),
        [id(drift_id)],
        row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("no drift item {drift_id}")))
}

pub fn resolve(
    conn: &Connection,
    drift_id: Uuid,
    resolution: &Resolution,
    audit: &NewAudit,
) -> Result<DriftItem> {
    let item = get(conn, drift_id)?;
    // The rule is the pure module's; the store checks it in the write's transaction.
    drift::check_resolvable(item.status)
        .map_err(|why| StoreError::Conflict(format!("drift item {drift_id} is {why}")))?;
    // A person looked at it: no alert is due any more.
    conn.execute(
        "UPDATE drift SET status = 'resolved', resolution = ?2, needs_alert = 0, updated_at = ?3
         WHERE id = ?1",
        params![id(drift_id), json(resolution), resolution.at],
    )?;
    history(
        conn,
        drift_id,
        resolution.at,
        Some(DriftStatus::Open),
        DriftStatus::Resolved,
        &resolution.by,
        resolution.category.name(),
    )?;
    audit::append(conn, audit)?;
    get(conn, drift_id)
}
