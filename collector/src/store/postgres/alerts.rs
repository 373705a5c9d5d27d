//! The alert outbox: alerts as raised, and their delivery per sink. Like SQLite's, it knows
//! no rule and imports no other aggregate.

use tokio_postgres::Row;
use uuid::Uuid;

use super::Tx;
use super::rows::from_json;
use crate::alerts::outbox;
use crate::clock::Millis;
use crate::store::{
    Alert, DeadLetter, DeliveryAttempt, DeliveryState, Dropped, NewAlert, Result, SinkBacklog,
    SinkDelivery, StoreError,
};

pub async fn insert_alert(tx: &Tx<'_>, alert: &NewAlert, at: Millis) -> Result<Uuid> {
    let alert_id = Uuid::now_v7();
    let mut body = alert.body.clone();
    if let Some(object) = body.as_object_mut() {
        object.insert("alert_id".into(), serde_json::json!(alert_id));
        object.insert("created_at".into(), crate::clock::rfc3339(at).into());
    }
    tx.execute(
        "INSERT INTO alerts (id, kind, host_id, created_at, body) VALUES ($1, $2, $3, $4, $5)",
        &[&alert_id, &alert.kind, &alert.host_id, &at, &body],
    )
    .await?;
    Ok(alert_id)
}

const ALERT_COLUMNS: &str =
    "a.id, a.kind, a.host_id, a.created_at, a.body, a.delivered_at, a.attempts, a.last_error";

fn row(r: &Row) -> Result<Alert> {
    Ok(Alert {
        id: r.get(0),
        kind: r.get(1),
        host_id: r.get(2),
        created_at: r.get(3),
        body: from_json(r.get(4))?,
        delivered_at: r.get(5),
        attempts: r.get::<_, i64>(6) as u32,
        last_error: r.get(7),
        deliveries: Vec::new(),
    })
}

pub async fn list(tx: &Tx<'_>, undelivered_only: bool, limit: u32) -> Result<Vec<Alert>> {
    let sql = if undelivered_only {
        format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.delivered_at IS NULL
             ORDER BY a.created_at, a.id LIMIT $1"
        )
    } else {
        format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a ORDER BY a.created_at DESC, a.id DESC LIMIT $1"
        )
    };
    let rows = tx.query(&sql, &[&i64::from(limit)]).await?;
    let mut alerts = rows.iter().map(row).collect::<Result<Vec<_>>>()?;
    with_deliveries(tx, &mut alerts).await?;
    Ok(alerts)
}

/// Alerts with a dead letter no admin dropped, oldest first.
pub async fn dead_letters(tx: &Tx<'_>, limit: u32) -> Result<Vec<Alert>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id IN (
                     SELECT alert_id FROM alert_deliveries
                     WHERE dead_lettered_at IS NOT NULL AND dropped_at IS NULL)
                 ORDER BY a.created_at, a.id LIMIT $1"
            ),
            &[&i64::from(limit)],
        )
        .await?;
    let mut alerts = rows.iter().map(row).collect::<Result<Vec<_>>>()?;
    with_deliveries(tx, &mut alerts).await?;
    Ok(alerts)
}

pub async fn get(tx: &Tx<'_>, alert_id: Uuid) -> Result<Alert> {
    let found = tx
        .query_opt(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = $1"),
            &[&alert_id],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no alert {alert_id}")))?;
    let mut alerts = vec![row(&found)?];
    with_deliveries(tx, &mut alerts).await?;
    Ok(alerts.pop().expect("one alert"))
}

/// Each alert's delivery per sink that has tried it.
async fn with_deliveries(tx: &Tx<'_>, alerts: &mut [Alert]) -> Result<()> {
    for alert in alerts {
        let rows = tx
            .query(
                "SELECT sink, attempts, last_error, last_attempt_at, next_attempt_at, delivered_at,
                        dead_lettered_at, response_status, response_body,
                        dropped_at, dropped_by, drop_reason
                 FROM alert_deliveries WHERE alert_id = $1 ORDER BY sink",
                &[&alert.id],
            )
            .await?;
        alert.deliveries = rows.iter().map(delivery_row).collect();
    }
    Ok(())
}

fn delivery_row(r: &Row) -> SinkDelivery {
    let delivered_at: Option<Millis> = r.get(5);
    let last_error: Option<String> = r.get(2);
    let dead_letter = r.get::<_, Option<Millis>>(6).map(|at| DeadLetter {
        at,
        status: r.get::<_, Option<i32>>(7).map(|s| s as u16),
        response: r.get::<_, Option<String>>(8).unwrap_or_default(),
    });
    let dropped = r.get::<_, Option<Millis>>(9).map(|at| Dropped {
        at,
        by: r.get::<_, Option<String>>(10).unwrap_or_default(),
        reason: r.get::<_, Option<String>>(11).unwrap_or_default(),
    });
    let state = outbox::delivery_state(
        delivered_at,
        dropped.as_ref(),
        dead_letter.as_ref(),
        last_error.as_deref(),
    );
    let waiting = state == DeliveryState::Failing;
    SinkDelivery {
        sink: r.get(0),
        state,
        attempts: r.get::<_, i64>(1) as u32,
        last_error,
        last_attempt_at: r.get(3),
        next_attempt_at: if waiting { r.get(4) } else { None },
        delivered_at,
        dead_letter,
        dropped,
    }
}

/// Alerts `sink` owes and may try now: not delivered by it, never tried or past the backoff.
pub async fn due_for(tx: &Tx<'_>, sink: &str, now: Millis, limit: u32) -> Result<Vec<Alert>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {ALERT_COLUMNS}, d.attempts, d.last_error, d.last_attempt_at, d.next_attempt_at
                 FROM alerts a
                 LEFT JOIN alert_deliveries d ON d.alert_id = a.id AND d.sink = $1
                 WHERE a.delivered_at IS NULL AND d.delivered_at IS NULL
                   AND d.dead_lettered_at IS NULL AND d.dropped_at IS NULL
                   AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= $2)
                   AND NOT EXISTS (SELECT 1 FROM delivery_claims c
                                   WHERE c.alert_id = a.id AND c.sink = $1
                                     AND c.claimed_until > $2)
                 ORDER BY a.created_at, a.id LIMIT $3"
            ),
            &[&sink, &now, &i64::from(limit)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let mut alert = row(r)?;
            // This sink's earlier attempts (they all failed), which the backoff counts.
            if let Some(attempts) = r.get::<_, Option<i64>>(8) {
                alert.deliveries.push(SinkDelivery {
                    sink: sink.to_owned(),
                    state: DeliveryState::Failing,
                    attempts: attempts as u32,
                    last_error: r.get(9),
                    last_attempt_at: r.get(10),
                    next_attempt_at: r.get(11),
                    delivered_at: None,
                    dead_letter: None,
                    dropped: None,
                });
            }
            Ok(alert)
        })
        .collect()
}

pub async fn record_delivery(tx: &Tx<'_>, attempt: &DeliveryAttempt) -> Result<bool> {
    let delivered = attempt.error.is_none();
    let dead = attempt.dead_letter.as_ref();
    // Locked first: the alert must exist, and two nodes' attempts count one after the other.
    let exists = tx
        .query_opt(
            "SELECT 1 FROM alerts WHERE id = $1 FOR UPDATE",
            &[&attempt.alert_id],
        )
        .await?;
    if exists.is_none() {
        return Err(StoreError::NotFound(format!(
            "no alert {}",
            attempt.alert_id
        )));
    }
    tx.execute(
        "INSERT INTO alert_deliveries AS d
             (alert_id, sink, attempts, last_error, last_attempt_at, next_attempt_at, delivered_at,
              dead_lettered_at, response_status, response_body)
         VALUES ($1, $2, 1, $3, $4, $5, CASE WHEN $3::text IS NULL THEN $4::bigint END, $6, $7, $8)
         ON CONFLICT (alert_id, sink) DO UPDATE SET
             attempts = d.attempts + 1,
             last_error = CASE WHEN $3::text IS NULL THEN d.last_error ELSE $3 END,
             last_attempt_at = $4,
             next_attempt_at = $5,
             delivered_at = coalesce(d.delivered_at, CASE WHEN $3::text IS NULL THEN $4::bigint END),
             dead_lettered_at = $6,
             response_status = $7,
             response_body = $8",
        &[
            &attempt.alert_id,
            &attempt.sink,
            &attempt.error,
            &attempt.at,
            &attempt.next_attempt_at,
            &dead.map(|d| d.at),
            &dead.and_then(|d| d.status).map(i32::from),
            &dead.map(|d| d.response.as_str()),
        ],
    )
    .await?;
    super::cluster::end_claim(tx, attempt.alert_id, &attempt.sink).await?;
    tx.execute(
        "UPDATE alerts SET attempts = attempts + 1, last_error = coalesce($2, last_error)
         WHERE id = $1",
        &[&attempt.alert_id, &attempt.error],
    )
    .await?;
    if !delivered {
        return Ok(false);
    }
    complete_if_done(tx, attempt.alert_id, &attempt.sinks, attempt.at).await
}

/// Sets `delivered_at` when every sink in `sinks` has delivered the alert (or an admin
/// dropped its dead letter).
async fn complete_if_done(tx: &Tx<'_>, alert: Uuid, sinks: &[String], at: Millis) -> Result<bool> {
    let done: i64 = tx
        .query_one(
            "SELECT count(*) FROM alert_deliveries
             WHERE alert_id = $1 AND sink = ANY($2)
               AND (delivered_at IS NOT NULL OR dropped_at IS NOT NULL)",
            &[&alert, &sinks],
        )
        .await?
        .get(0);
    if !outbox::every_sink_done(done as usize, sinks) {
        return Ok(false);
    }
    let changed = tx
        .execute(
            "UPDATE alerts SET delivered_at = $2 WHERE id = $1 AND delivered_at IS NULL",
            &[&alert, &at],
        )
        .await?;
    Ok(changed > 0)
}

pub async fn settle(tx: &Tx<'_>, sinks: &[String], at: Millis) -> Result<u32> {
    let pending = tx
        .query(
            "SELECT id FROM alerts WHERE delivered_at IS NULL FOR UPDATE",
            &[],
        )
        .await?;
    let mut settled = 0;
    for row in pending {
        if complete_if_done(tx, row.get(0), sinks, at).await? {
            settled += 1;
        }
    }
    Ok(settled)
}

pub async fn backlog(tx: &Tx<'_>, sinks: &[String]) -> Result<Vec<SinkBacklog>> {
    let mut backlog = Vec::with_capacity(sinks.len());
    for sink in sinks {
        let r = tx
            .query_one(
                "SELECT count(*),
                        count(CASE WHEN d.dead_lettered_at IS NULL THEN d.last_error END),
                        count(d.dead_lettered_at)
                 FROM alerts a
                 LEFT JOIN alert_deliveries d ON d.alert_id = a.id AND d.sink = $1
                 WHERE a.delivered_at IS NULL AND d.delivered_at IS NULL AND d.dropped_at IS NULL",
                &[sink],
            )
            .await?;
        backlog.push(SinkBacklog {
            sink: sink.clone(),
            undelivered: r.get::<_, i64>(0) as u64,
            failing: r.get::<_, i64>(1) as u64,
            dead_letters: r.get::<_, i64>(2) as u64,
        });
    }
    Ok(backlog)
}

/// The state of `sink`'s delivery of `alert_id`, refusing anything but a dead letter.
async fn dead_letter_of(tx: &Tx<'_>, alert_id: Uuid, sink: &str) -> Result<SinkDelivery> {
    tx.execute(
        "SELECT 1 FROM alert_deliveries WHERE alert_id = $1 AND sink = $2 FOR UPDATE",
        &[&alert_id, &sink],
    )
    .await?;
    let alert = get(tx, alert_id).await?;
    let delivery = alert.deliveries.into_iter().find(|d| d.sink == sink);
    outbox::require_dead_letter(alert_id, sink, delivery)
}

/// Makes `sink`'s dead letter of `alert_id` due again at `at`.
pub async fn retry_dead_letter(tx: &Tx<'_>, alert_id: Uuid, sink: &str, at: Millis) -> Result<()> {
    dead_letter_of(tx, alert_id, sink).await?;
    tx.execute(
        "UPDATE alert_deliveries SET dead_lettered_at = NULL, response_status = NULL,
             response_body = NULL, next_attempt_at = $3
         WHERE alert_id = $1 AND sink = $2",
        &[&alert_id, &sink, &at],
    )
    .await?;
    Ok(())
}

/// Every dead letter of `sink` due again; returns how many.
pub async fn retry_dead_letters(tx: &Tx<'_>, sink: &str, at: Millis) -> Result<u32> {
    let retried = tx
        .execute(
            "UPDATE alert_deliveries SET dead_lettered_at = NULL, response_status = NULL,
                 response_body = NULL, next_attempt_at = $2
             WHERE sink = $1 AND dead_lettered_at IS NOT NULL AND dropped_at IS NULL",
            &[&sink, &at],
        )
        .await?;
    Ok(retried as u32)
}

/// Records that `sink` owes `alert_id` no more; the alert is delivered if no sink does.
pub async fn drop_dead_letter(
    tx: &Tx<'_>,
    alert_id: Uuid,
    sink: &str,
    dropped: &Dropped,
    sinks: &[String],
) -> Result<()> {
    dead_letter_of(tx, alert_id, sink).await?;
    tx.execute(
        "UPDATE alert_deliveries SET dropped_at = $3, dropped_by = $4, drop_reason = $5
         WHERE alert_id = $1 AND sink = $2",
        &[&alert_id, &sink, &dropped.at, &dropped.by, &dropped.reason],
    )
    .await?;
    complete_if_done(tx, alert_id, sinks, dropped.at).await?;
    Ok(())
}
