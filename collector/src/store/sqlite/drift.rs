//! Drift items and their history, and the untraced-drift alerts they raise. The rules are
//! `crate::drift`'s; the alert's words come through the [`AlertWords`] callback, called in
//! the transaction that finds the burst and marks its items alerted (see `store`).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::alerts::insert_alert;
use super::audit;
use super::rows::{Id, Json, Named, id, json, opt_id};
use crate::audit::NewAudit;
use crate::clock::Millis;
use crate::drift::{self, DriftStatus};
use crate::store::{
    AlertWords, DriftChange, DriftChanges, DriftFilter, DriftItem, DriftRecord, OpenDriftQuery,
    Resolution, Result, StatusChange, StoreError, UntracedBurst,
};

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

/// The inbox's read: `?1` host text, `?2` subject text (empty: any), `?3` JSON array of
/// reasons (NULL: any), `?4` limit. Walks `drift_listing` newest first and stops at the
/// limit.
pub const OPEN_MATCHING: &str = "SELECT d.id, d.host_id, h.hostname, d.subject, d.status, \
     d.reason, d.window_id, d.opened_at, d.untraced_since, d.events, d.last_event_id, \
     d.last_event_at, d.alerted_at, d.resolution, d.updated_at
     FROM drift d JOIN hosts h ON h.id = d.host_id
     WHERE d.status = 'open'
       AND (?1 = '' OR instr(h.hostname, ?1) > 0)
       AND (?2 = '' OR instr(d.subject, ?2) > 0)
       AND (?3 IS NULL OR coalesce(d.reason, 'untraced') IN (SELECT value FROM json_each(?3)))
     ORDER BY d.opened_at DESC, d.id DESC LIMIT ?4";

/// The same with a host text: the matching hosts first, then their drift by host
/// (`+d.status` keeps SQLite off the status index, which walks every open item). Walking
/// all drift newest first for the few items of one host took 150 ms with 110,000 items;
/// this, 1 ms.
pub const OPEN_MATCHING_HOSTS: &str = "SELECT d.id, d.host_id, h.hostname, d.subject, \
     d.status, d.reason, d.window_id, d.opened_at, d.untraced_since, d.events, \
     d.last_event_id, d.last_event_at, d.alerted_at, d.resolution, d.updated_at
     FROM drift d JOIN hosts h ON h.id = d.host_id
     WHERE +d.status = 'open'
       AND d.host_id IN (SELECT id FROM hosts WHERE instr(hostname, ?1) > 0)
       AND (?2 = '' OR instr(d.subject, ?2) > 0)
       AND (?3 IS NULL OR coalesce(d.reason, 'untraced') IN (SELECT value FROM json_each(?3)))
     ORDER BY d.opened_at DESC, d.id DESC LIMIT ?4";

/// Open drift for the untraced inbox: host name and subject containing the texts given,
/// reason among those given (`json_each` of a JSON array; NULL: any), newest first.
pub fn open_matching(conn: &Connection, query: &OpenDriftQuery) -> Result<Vec<DriftItem>> {
    let reasons = query
        .reasons
        .as_ref()
        .map(|r| serde_json::Value::from(r.clone()).to_string());
    let mut stmt = conn.prepare_cached(if query.host.is_empty() {
        OPEN_MATCHING
    } else {
        OPEN_MATCHING_HOSTS
    })?;
    let rows = stmt.query_map(
        params![query.host, query.subject, reasons, query.limit],
        row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A page of drift in listing order (newest opened first) after the key `after` (issue 10:
/// keyset paging, `(opened_at, id)`; the filters are the SQL's only conditions so that an
/// index on them serves the order).
pub fn page(
    conn: &Connection,
    filter: &DriftFilter,
    after: Option<(Millis, Uuid)>,
) -> Result<Vec<DriftItem>> {
    let mut sql =
        format!("SELECT {COLUMNS} FROM drift d JOIN hosts h ON h.id = d.host_id WHERE 1 = 1");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if let Some(status) = filter.status {
        args.push(Box::new(status.name()));
        sql.push_str(&format!(" AND d.status = ?{}", args.len()));
    }
    if let Some(host) = filter.host_id {
        args.push(Box::new(id(host)));
        sql.push_str(&format!(" AND d.host_id = ?{}", args.len()));
    }
    if let Some(window) = filter.window_id {
        args.push(Box::new(id(window)));
        sql.push_str(&format!(" AND d.window_id = ?{}", args.len()));
    }
    if let Some((at, last)) = after {
        args.push(Box::new(at));
        args.push(Box::new(id(last)));
        sql.push_str(&format!(
            " AND (d.opened_at, d.id) < (?{}, ?{})",
            args.len() - 1,
            args.len()
        ));
    }
    args.push(Box::new(i64::from(filter.limit.unwrap_or(1000))));
    sql.push_str(&format!(
        " ORDER BY d.opened_at DESC, d.id DESC LIMIT ?{}",
        args.len()
    ));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), row)?;
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

/// A drift item with its events, history and the other items of its host and subject.
pub fn record(conn: &Connection, drift_id: Uuid, timeline_limit: u32) -> Result<DriftRecord> {
    let item = get(conn, drift_id)?;
    let events = super::ingest::events_of(conn, drift_id)?;
    let mut stmt = conn.prepare(
        "SELECT at, from_status, to_status, by, reason FROM drift_history
         WHERE drift_id = ?1 ORDER BY id",
    )?;
    let history = stmt
        .query_map([id(drift_id)], |r| {
            Ok(StatusChange {
                at: r.get(0)?,
                from: r.get::<_, Option<Named<_>>>(1)?.map(|n| n.0),
                to: r.get::<_, Named<_>>(2)?.0,
                by: r.get(3)?,
                reason: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM drift d JOIN hosts h ON h.id = d.host_id
         WHERE d.host_id = ?1 AND d.subject = ?2 AND d.id != ?3
         ORDER BY d.opened_at DESC, d.id DESC LIMIT ?4"
    ))?;
    let timeline = stmt
        .query_map(
            params![id(item.host_id), item.subject, id(drift_id), timeline_limit],
            row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    Ok(DriftRecord {
        item,
        events,
        history,
        timeline,
    })
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

pub fn history(
    conn: &Connection,
    drift_id: Uuid,
    at: Millis,
    from: Option<DriftStatus>,
    to: DriftStatus,
    by: &str,
    reason: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO drift_history (drift_id, at, from_status, to_status, by, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id(drift_id),
            at,
            from.map(|s| s.name()),
            to.name(),
            by,
            reason
        ],
    )?;
    Ok(())
}

/// Untraced drift held long enough becomes alerts: for each host, the oldest due item and
/// every not yet alerted item first seen within `burst_ms` of it go into one alert, worded
/// by the rules (`words`) inside this transaction.
pub fn raise_due(
    conn: &Connection,
    now: Millis,
    hold_ms: i64,
    burst_ms: i64,
    words: AlertWords,
) -> Result<u32> {
    let due: Vec<(Id, Millis)> = {
        let mut stmt = conn.prepare(
            "SELECT host_id, min(untraced_since) FROM drift
             WHERE needs_alert = 1 AND untraced_since <= ?1 GROUP BY host_id",
        )?;
        stmt.query_map([now - hold_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut raised = 0;
    for (Id(host_id), oldest) in due {
        let items = {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM drift d JOIN hosts h ON h.id = d.host_id
                 WHERE d.host_id = ?1 AND d.needs_alert = 1 AND d.untraced_since <= ?2
                 ORDER BY d.untraced_since, d.id"
            ))?;
            stmt.query_map(params![id(host_id), oldest + burst_ms], row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        let Some(first) = items.first() else {
            continue;
        };
        let mut tickets = BTreeMap::new();
        let mut ticket_of = conn.prepare("SELECT ticket FROM windows WHERE id = ?1")?;
        for window_id in items.iter().filter_map(|item| item.window_id) {
            let ticket: Option<String> = ticket_of
                .query_row([id(window_id)], |r| r.get(0))
                .optional()?;
            tickets.insert(window_id, ticket);
        }
        let burst = UntracedBurst {
            host_id,
            hostname: first.hostname.clone(),
            items,
            tickets,
            held_ms: now - oldest,
        };
        let alert_id = insert_alert(conn, &(words.untraced)(&burst), now)?;
        for item in &burst.items {
            conn.execute(
                "UPDATE drift SET needs_alert = 0, alerted_at = ?2, alert_id = ?3 WHERE id = ?1",
                params![id(item.id), now, id(alert_id)],
            )?;
        }
        raised += 1;
    }
    Ok(raised)
}

/// The history rows numbered above `after` (the live stream's cursor), and the highest
/// number AUTOINCREMENT handed out (migration 14), which survives the deletion of the rows.
pub fn changes(conn: &Connection, after: i64, limit: u32) -> Result<DriftChanges> {
    let head: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'drift_history'), 0),
                    coalesce((SELECT max(id) FROM drift_history), 0))",
        [],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(
        "SELECT dh.id, dh.drift_id, d.host_id, h.hostname, d.subject, dh.at, dh.from_status,
                dh.to_status, dh.by, dh.reason, d.reason
         FROM drift_history dh JOIN drift d ON d.id = dh.drift_id JOIN hosts h ON h.id = d.host_id
         WHERE dh.id > ?1 ORDER BY dh.id LIMIT ?2",
    )?;
    let changes = stmt
        .query_map(params![after, limit], |r| {
            Ok(DriftChange {
                seq: r.get(0)?,
                drift_id: r.get::<_, Id>(1)?.0,
                host_id: r.get::<_, Id>(2)?.0,
                hostname: r.get(3)?,
                subject: r.get(4)?,
                at: r.get(5)?,
                from: r.get::<_, Option<Named<_>>>(6)?.map(|n| n.0),
                to: r.get::<_, Named<_>>(7)?.0,
                by: r.get(8)?,
                reason: r.get(9)?,
                review_reason: r.get(10)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(DriftChanges { changes, head })
}
