use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use super::drift;
use super::rows::{Id, Json, id, opt_id};
use crate::alerts::untraced_drift_body;
use crate::clock::Millis;
use crate::store::{Alert, NewAlert, Result, Stats, StoreError};

pub fn insert_alert(conn: &Connection, alert: &NewAlert, at: Millis) -> Result<Uuid> {
    let alert_id = Uuid::now_v7();
    let mut body = alert.body.clone();
    if let Some(object) = body.as_object_mut() {
        object.insert("alert_id".into(), serde_json::json!(alert_id));
        object.insert("created_at".into(), crate::clock::rfc3339(at).into());
    }
    conn.execute(
        "INSERT INTO alerts (id, kind, host_id, created_at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            id(alert_id),
            alert.kind,
            opt_id(alert.host_id),
            at,
            body.to_string()
        ],
    )?;
    Ok(alert_id)
}

/// Untraced drift held long enough becomes alerts: for each host, the oldest due item and
/// every not yet alerted item first seen within `burst_ms` of it go into one alert.
pub fn raise_due(conn: &Connection, now: Millis, hold_ms: i64, burst_ms: i64) -> Result<u32> {
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
                "SELECT {} FROM drift d JOIN hosts h ON h.id = d.host_id
                 WHERE d.host_id = ?1 AND d.needs_alert = 1 AND d.untraced_since <= ?2
                 ORDER BY d.untraced_since, d.id",
                drift::COLUMNS
            ))?;
            stmt.query_map(params![id(host_id), oldest + burst_ms], drift::row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        let Some(first) = items.first() else {
            continue;
        };
        let body = untraced_drift_body(host_id, &first.hostname, &items, now - oldest);
        let alert_id = insert_alert(
            conn,
            &NewAlert {
                kind: "untraced_drift".into(),
                host_id: Some(host_id),
                body,
            },
            now,
        )?;
        for item in &items {
            conn.execute(
                "UPDATE drift SET needs_alert = 0, alerted_at = ?2, alert_id = ?3 WHERE id = ?1",
                params![id(item.id), now, id(alert_id)],
            )?;
        }
        raised += 1;
    }
    Ok(raised)
}

pub fn raise_silent(conn: &Connection, now: Millis, silent_after_ms: i64) -> Result<u32> {
    let silent: Vec<(Id, String, Option<Millis>)> = {
        let mut stmt = conn.prepare(
            "SELECT id, hostname, last_seen_at FROM hosts
             WHERE silent_alerted = 0 AND coalesce(last_seen_at, enrolled_at) < ?1",
        )?;
        stmt.query_map([now - silent_after_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    for (Id(host_id), hostname, last_seen) in &silent {
        let body = serde_json::json!({
            "kind": "agent_silent",
            "host": { "id": host_id, "hostname": hostname },
            "summary": format!("no heartbeat from {hostname} for more than {} s", silent_after_ms / 1000),
            "last_seen_at": last_seen.map(crate::clock::rfc3339),
        });
        insert_alert(
            conn,
            &NewAlert {
                kind: "agent_silent".into(),
                host_id: Some(*host_id),
                body,
            },
            now,
        )?;
        conn.execute(
            "UPDATE hosts SET silent_alerted = 1 WHERE id = ?1",
            [id(*host_id)],
        )?;
    }
    Ok(silent.len() as u32)
}

pub fn raise_emergency(conn: &Connection, now: Millis, deadline_ms: i64) -> Result<u32> {
    let late: Vec<(Id, String, String, Millis)> = {
        let mut stmt = conn.prepare(
            "SELECT id, ticket, requester, created_at FROM windows
             WHERE kind = 'emergency' AND status = 'requested' AND deadline_alerted_at IS NULL
               AND created_at <= ?1",
        )?;
        stmt.query_map([now - deadline_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    for (Id(window_id), ticket, requester, created_at) in &late {
        let body = serde_json::json!({
            "kind": "emergency_unapproved",
            "window_id": window_id,
            "ticket": ticket,
            "requester": requester,
            "recorded_at": crate::clock::rfc3339(*created_at),
            "summary": format!(
                "emergency change {ticket} (recorded by {requester}) is still not approved after {} h",
                deadline_ms / 3_600_000
            ),
        });
        insert_alert(
            conn,
            &NewAlert {
                kind: "emergency_unapproved".into(),
                host_id: None,
                body,
            },
            now,
        )?;
        conn.execute(
            "UPDATE windows SET deadline_alerted_at = ?2 WHERE id = ?1",
            params![id(*window_id), now],
        )?;
    }
    Ok(late.len() as u32)
}

fn row(r: &Row<'_>) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: r.get::<_, Id>(0)?.0,
        kind: r.get(1)?,
        host_id: r.get::<_, Option<Id>>(2)?.map(|i| i.0),
        created_at: r.get(3)?,
        body: r.get::<_, Json<_>>(4)?.0,
        delivered_at: r.get(5)?,
        attempts: r.get(6)?,
        last_error: r.get(7)?,
    })
}

pub fn list(conn: &Connection, undelivered_only: bool, limit: u32) -> Result<Vec<Alert>> {
    let sql = if undelivered_only {
        "SELECT id, kind, host_id, created_at, body, delivered_at, attempts, last_error
         FROM alerts WHERE delivered_at IS NULL ORDER BY created_at, id LIMIT ?1"
    } else {
        "SELECT id, kind, host_id, created_at, body, delivered_at, attempts, last_error
         FROM alerts ORDER BY created_at DESC, id DESC LIMIT ?1"
    };
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([limit], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn mark(conn: &Connection, alert_id: Uuid, at: Millis, error: Option<&str>) -> Result<()> {
    let changed = conn.execute(
        "UPDATE alerts SET attempts = attempts + 1,
                delivered_at = CASE WHEN ?3 IS NULL THEN ?2 ELSE delivered_at END,
                last_error = ?3
         WHERE id = ?1",
        params![id(alert_id), at, error],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("no alert {alert_id}")));
    }
    Ok(())
}

pub fn stats(conn: &Connection, now: Millis, silent_after_ms: i64) -> Result<Stats> {
    let count = |sql: &str, param: Option<i64>| -> Result<u64> {
        let n: i64 = match param {
            Some(p) => conn.query_row(sql, [p], |r| r.get(0))?,
            None => conn.query_row(sql, [], |r| r.get(0))?,
        };
        Ok(n as u64)
    };
    Ok(Stats {
        hosts: count("SELECT count(*) FROM hosts", None)?,
        silent_hosts: count(
            "SELECT count(*) FROM hosts WHERE coalesce(last_seen_at, enrolled_at) < ?1",
            Some(now - silent_after_ms),
        )?,
        open_drift: count("SELECT count(*) FROM drift WHERE status = 'open'", None)?,
        undelivered_alerts: count(
            "SELECT count(*) FROM alerts WHERE delivered_at IS NULL",
            None,
        )?,
    })
}
