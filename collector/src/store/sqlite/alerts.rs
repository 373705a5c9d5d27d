//! The alert outbox: alerts as raised, and their delivery per sink. It knows no rule and
//! imports no other aggregate: whoever raises an alert (drift, hosts, windows, ingest,
//! audit checkpoints) calls [`insert_alert`] in its own transaction, and the admin actions
//! on dead letters are audited by the caller (`mod.rs`) in the same transaction.

use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use super::rows::{Id, Json, id, opt_id};
use crate::alerts::outbox;
use crate::clock::Millis;
use crate::store::{
    Alert, DeadLetter, DeliveryAttempt, DeliveryState, Dropped, NewAlert, Result, SinkBacklog,
    SinkDelivery, StoreError,
};

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

const ALERT_COLUMNS: &str =
    "a.id, a.kind, a.host_id, a.created_at, a.body, a.delivered_at, a.attempts, a.last_error";

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
        deliveries: Vec::new(),
    })
}

pub fn list(conn: &Connection, undelivered_only: bool, limit: u32) -> Result<Vec<Alert>> {
    let sql = if undelivered_only {
        format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.delivered_at IS NULL
             ORDER BY a.created_at, a.id LIMIT ?1"
        )
    } else {
        format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a ORDER BY a.created_at DESC, a.id DESC LIMIT ?1"
        )
    };
    let mut stmt = conn.prepare(&sql)?;
    let mut alerts = stmt
        .query_map([limit], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    with_deliveries(conn, &mut alerts)?;
    Ok(alerts)
}

/// Alerts with a dead letter no admin dropped, oldest first.
pub fn dead_letters(conn: &Connection, limit: u32) -> Result<Vec<Alert>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id IN (
             SELECT alert_id FROM alert_deliveries
             WHERE dead_lettered_at IS NOT NULL AND dropped_at IS NULL)
         ORDER BY a.created_at, a.id LIMIT ?1"
    ))?;
    let mut alerts = stmt
        .query_map([limit], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    with_deliveries(conn, &mut alerts)?;
    Ok(alerts)
}

pub fn get(conn: &Connection, alert_id: Uuid) -> Result<Alert> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = ?1"
    ))?;
    let mut alerts = stmt
        .query_map([id(alert_id)], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    with_deliveries(conn, &mut alerts)?;
    alerts
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("no alert {alert_id}")))
}

/// Each alert's delivery per sink that has tried it.
fn with_deliveries(conn: &Connection, alerts: &mut [Alert]) -> Result<()> {
    let mut per_alert = conn.prepare(
        "SELECT sink, attempts, last_error, last_attempt_at, next_attempt_at, delivered_at,
                dead_lettered_at, response_status, response_body,
                dropped_at, dropped_by, drop_reason
         FROM alert_deliveries WHERE alert_id = ?1 ORDER BY sink",
    )?;
    for alert in alerts {
        alert.deliveries = per_alert
            .query_map([id(alert.id)], delivery_row)?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(())
}

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<SinkDelivery> {
    let delivered_at: Option<Millis> = r.get(5)?;
    let last_error: Option<String> = r.get(2)?;
    let dead_letter = match r.get::<_, Option<Millis>>(6)? {
        Some(at) => Some(DeadLetter {
            at,
            status: r.get(7)?,
            response: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
        }),
        None => None,
    };
    let dropped = match r.get::<_, Option<Millis>>(9)? {
        Some(at) => Some(Dropped {
            at,
            by: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
            reason: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
        }),
        None => None,
    };
    let state = outbox::delivery_state(
        delivered_at,
        dropped.as_ref(),
        dead_letter.as_ref(),
        last_error.as_deref(),
    );
    let waiting = state == DeliveryState::Failing;
    Ok(SinkDelivery {
        sink: r.get(0)?,
        state,
        attempts: r.get(1)?,
        last_error,
        last_attempt_at: r.get(3)?,
        next_attempt_at: if waiting { r.get(4)? } else { None },
        delivered_at,
        dead_letter,
        dropped,
    })
}

/// Alerts `sink` owes and may try now: not delivered by it, never tried or past the backoff.
pub fn due_for(conn: &Connection, sink: &str, now: Millis, limit: u32) -> Result<Vec<Alert>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ALERT_COLUMNS}, d.attempts, d.last_error, d.last_attempt_at, d.next_attempt_at
         FROM alerts a
         LEFT JOIN alert_deliveries d ON d.alert_id = a.id AND d.sink = ?1
         WHERE a.delivered_at IS NULL AND d.delivered_at IS NULL
           AND d.dead_lettered_at IS NULL AND d.dropped_at IS NULL
           AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?2)
         ORDER BY a.created_at, a.id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![sink, now, limit], |r| {
        let mut alert = row(r)?;
        // This sink's earlier attempts (they all failed), which the backoff counts.
        if let Some(attempts) = r.get::<_, Option<u32>>(8)? {
            alert.deliveries.push(SinkDelivery {
                sink: sink.to_owned(),
                state: DeliveryState::Failing,
                attempts,
                last_error: r.get(9)?,
                last_attempt_at: r.get(10)?,
                next_attempt_at: r.get(11)?,
                delivered_at: None,
                dead_letter: None,
                dropped: None,
            });
        }
        Ok(alert)
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn record_delivery(conn: &Connection, attempt: &DeliveryAttempt) -> Result<bool> {
    let alert = id(attempt.alert_id);
    let delivered = attempt.error.is_none();
    let dead = attempt.dead_letter.as_ref();
    conn.execute(
        "INSERT INTO alert_deliveries
             (alert_id, sink, attempts, last_error, last_attempt_at, next_attempt_at, delivered_at,
              dead_lettered_at, response_status, response_body)
         VALUES (?1, ?2, 1, ?3, ?4, ?5, CASE WHEN ?3 IS NULL THEN ?4 END, ?6, ?7, ?8)
         ON CONFLICT (alert_id, sink) DO UPDATE SET
             attempts = attempts + 1,
             last_error = CASE WHEN ?3 IS NULL THEN last_error ELSE ?3 END,
             last_attempt_at = ?4,
             next_attempt_at = ?5,
             delivered_at = coalesce(delivered_at, CASE WHEN ?3 IS NULL THEN ?4 END),
             dead_lettered_at = ?6,
             response_status = ?7,
             response_body = ?8",
        params![
            alert,
            attempt.sink,
            attempt.error,
            attempt.at,
            attempt.next_attempt_at,
            dead.map(|d| d.at),
            dead.and_then(|d| d.status),
            dead.map(|d| d.response.as_str()),
        ],
    )?;
    let changed = conn.execute(
        "UPDATE alerts SET attempts = attempts + 1, last_error = coalesce(?2, last_error)
         WHERE id = ?1",
        params![alert, attempt.error],
    )?;
    if changed == 0 {
        return Err(crate::store::StoreError::NotFound(format!(
            "no alert {}",
            attempt.alert_id
        )));
    }
    if !delivered {
        return Ok(false);
    }
    complete_if_done(conn, &alert, &attempt.sinks, attempt.at)
}

/// Sets `delivered_at` when every sink in `sinks` has delivered the alert (or an admin
/// dropped its dead letter).
fn complete_if_done(conn: &Connection, alert: &str, sinks: &[String], at: Millis) -> Result<bool> {
    let mut done = conn.prepare(
        "SELECT count(*) FROM alert_deliveries
         WHERE alert_id = ?1 AND sink = ?2
           AND (delivered_at IS NOT NULL OR dropped_at IS NOT NULL)",
    )?;
    let distinct: std::collections::BTreeSet<&String> = sinks.iter().collect();
    let mut finished = 0;
    for sink in distinct {
        let n: i64 = done.query_row(params![alert, sink], |r| r.get(0))?;
        if n > 0 {
            finished += 1;
        }
    }
    if !outbox::every_sink_done(finished, sinks) {
        return Ok(false);
    }
    let changed = conn.execute(
        "UPDATE alerts SET delivered_at = ?2 WHERE id = ?1 AND delivered_at IS NULL",
        params![alert, at],
    )?;
    Ok(changed > 0)
}

pub fn settle(conn: &Connection, sinks: &[String], at: Millis) -> Result<u32> {
    let pending: Vec<String> = {
        let mut stmt = conn.prepare("SELECT id FROM alerts WHERE delivered_at IS NULL")?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut settled = 0;
    for alert in pending {
        if complete_if_done(conn, &alert, sinks, at)? {
            settled += 1;
        }
    }
    Ok(settled)
}

pub fn backlog(conn: &Connection, sinks: &[String]) -> Result<Vec<SinkBacklog>> {
    let mut stmt = conn.prepare(
        "SELECT count(*),
                count(CASE WHEN d.dead_lettered_at IS NULL THEN d.last_error END),
                count(d.dead_lettered_at)
         FROM alerts a
         LEFT JOIN alert_deliveries d ON d.alert_id = a.id AND d.sink = ?1
         WHERE a.delivered_at IS NULL AND d.delivered_at IS NULL AND d.dropped_at IS NULL",
    )?;
    sinks
        .iter()
        .map(|sink| {
            let (undelivered, failing, dead): (i64, i64, i64) =
                stmt.query_row([sink], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(SinkBacklog {
                sink: sink.clone(),
                undelivered: undelivered as u64,
                failing: failing as u64,
                dead_letters: dead as u64,
            })
        })
        .collect()
}

/// The state of `sink`'s delivery of `alert_id`, refusing anything but a dead letter.
fn dead_letter_of(conn: &Connection, alert_id: Uuid, sink: &str) -> Result<SinkDelivery> {
    let alert = get(conn, alert_id)?;
    let delivery = alert.deliveries.into_iter().find(|d| d.sink == sink);
    outbox::require_dead_letter(alert_id, sink, delivery)
}

/// Makes `sink`'s dead letter of `alert_id` due again at `at`.
pub fn retry_dead_letter(conn: &Connection, alert_id: Uuid, sink: &str, at: Millis) -> Result<()> {
    dead_letter_of(conn, alert_id, sink)?;
    conn.execute(
        "UPDATE alert_deliveries SET dead_lettered_at = NULL, response_status = NULL,
             response_body = NULL, next_attempt_at = ?3
         WHERE alert_id = ?1 AND sink = ?2",
        params![id(alert_id), sink, at],
    )?;
    Ok(())
}

/// Every dead letter of `sink` due again; returns how many.
pub fn retry_dead_letters(conn: &Connection, sink: &str, at: Millis) -> Result<u32> {
    let retried = conn.execute(
        "UPDATE alert_deliveries SET dead_lettered_at = NULL, response_status = NULL,
             response_body = NULL, next_attempt_at = ?2
         WHERE sink = ?1 AND dead_lettered_at IS NOT NULL AND dropped_at IS NULL",
        params![sink, at],
    )?;
    Ok(retried as u32)
}

/// Records that `sink` owes `alert_id` no more; the alert is delivered if no sink does.
pub fn drop_dead_letter(
    conn: &Connection,
    alert_id: Uuid,
    sink: &str,
    dropped: &Dropped,
    sinks: &[String],
) -> Result<()> {
    dead_letter_of(conn, alert_id, sink)?;
    conn.execute(
        "UPDATE alert_deliveries SET dropped_at = ?3, dropped_by = ?4, drop_reason = ?5
         WHERE alert_id = ?1 AND sink = ?2",
        params![id(alert_id), sink, dropped.at, dropped.by, dropped.reason],
    )?;
    complete_if_done(conn, &id(alert_id), sinks, dropped.at)?;
    Ok(())
}
