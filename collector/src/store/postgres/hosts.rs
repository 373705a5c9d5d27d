//! Hosts' liveness: heartbeats (with the spool marks that bound event times), the silent
//! and clock alerts, and the fleet's counts.

use driftwatch_common::api::v1::{AgentCommand, CommandOutcome};
use uuid::Uuid;

use super::Tx;
use super::alerts::insert_alert;
use super::rows::{from_json, json, seq, unseq};
use crate::alerts::outbox;
use crate::clock::Millis;
use crate::spool_time::{self, SpoolMark};
use crate::store::{AlertWords, HeartbeatRecord, NewAlert, Result, SilentHost, Stats, StoreError};

pub async fn heartbeat(
    tx: &Tx<'_>,
    record: &HeartbeatRecord,
    alerts: &[NewAlert],
) -> Result<Vec<AgentCommand>> {
    let updated = tx
        .execute(
            "UPDATE hosts SET last_seen_at = $2, skew_ms = $3, inventory = $4, health = $5,
                    reported_seq = $6, silent_alerted = false
             WHERE id = $1",
            &[
                &record.host_id,
                &record.received_at,
                &record.skew_ms,
                &json(&record.inventory),
                &json(&record.health),
                &seq(record.reported_seq),
            ],
        )
        .await?;
    if updated == 0 {
        return Err(StoreError::NotFound(format!("no host {}", record.host_id)));
    }
    add_spool_mark(
        tx,
        record.host_id,
        SpoolMark {
            received_at: record.received_at,
            last_seq: record.reported_seq,
        },
    )
    .await?;
    for result in &record.results {
        let status = match result.outcome {
            CommandOutcome::Applied => "applied",
            CommandOutcome::Mismatch { .. } => "mismatch",
            CommandOutcome::Failed { .. } => "failed",
        };
        // Only this host's pending commands: a result for another host's command is ignored.
        tx.execute(
            "UPDATE commands SET status = $3, result = $4, result_at = $5
             WHERE id = $1 AND host_id = $2 AND status = 'pending'",
            &[
                &result.command_id,
                &record.host_id,
                &status,
                &json(&result.outcome),
                &record.received_at,
            ],
        )
        .await?;
    }
    for alert in alerts {
        insert_alert(tx, alert, record.received_at).await?;
    }
    let rows = tx
        .query(
            "SELECT body FROM commands WHERE host_id = $1 AND status = 'pending'
             ORDER BY created_at, id",
            &[&record.host_id],
        )
        .await?;
    rows.iter().map(|r| from_json(r.get(0))).collect()
}

pub async fn spool_marks(tx: &Tx<'_>, host_id: Uuid) -> Result<Vec<SpoolMark>> {
    let rows = tx
        .query(
            "SELECT received_at, last_seq FROM spool_marks WHERE host_id = $1 ORDER BY received_at",
            &[&host_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SpoolMark {
            received_at: r.get(0),
            last_seq: unseq(r.get(1)),
        })
        .collect())
}

/// Adds the mark of a heartbeat and drops the marks that can no longer bound an event
/// (events up to the stored head have arrived). The host's row was locked by the update.
async fn add_spool_mark(tx: &Tx<'_>, host_id: Uuid, mark: SpoolMark) -> Result<()> {
    tx.execute(
        "INSERT INTO spool_marks (host_id, received_at, last_seq) VALUES ($1, $2, $3)",
        &[&host_id, &mark.received_at, &seq(mark.last_seq)],
    )
    .await?;
    let stored: i64 = tx
        .query_one("SELECT chain_seq FROM hosts WHERE id = $1", &[&host_id])
        .await?
        .get(0);
    let marks = spool_marks(tx, host_id).await?;
    let kept = spool_time::retained(&marks, unseq(stored));
    if kept.len() < marks.len() {
        tx.execute("DELETE FROM spool_marks WHERE host_id = $1", &[&host_id])
            .await?;
        for mark in kept {
            tx.execute(
                "INSERT INTO spool_marks (host_id, received_at, last_seq) VALUES ($1, $2, $3)",
                &[&host_id, &mark.received_at, &seq(mark.last_seq)],
            )
            .await?;
        }
    }
    Ok(())
}

pub async fn raise_clock_alert(
    tx: &Tx<'_>,
    alert: &NewAlert,
    at: Millis,
    burst_ms: i64,
) -> Result<bool> {
    // One per host and burst across nodes: the host's row serializes the check.
    if let Some(host_id) = alert.host_id {
        tx.execute("SELECT 1 FROM hosts WHERE id = $1 FOR UPDATE", &[&host_id])
            .await?;
    }
    let latest: Option<Millis> = tx
        .query_one(
            "SELECT max(created_at) FROM alerts WHERE kind = $1 AND host_id IS NOT DISTINCT FROM $2",
            &[&alert.kind, &alert.host_id],
        )
        .await?
        .get(0);
    if !outbox::clock_alert_due(latest, at, burst_ms) {
        return Ok(false);
    }
    insert_alert(tx, alert, at).await?;
    Ok(true)
}

/// One alert per host not heard from for `silent_after_ms`, worded by the rules (`words`),
/// until it is heard from again. The rows are locked, skipping those another node holds.
pub async fn raise_silent(
    tx: &Tx<'_>,
    now: Millis,
    silent_after_ms: i64,
    words: AlertWords,
) -> Result<u32> {
    let silent = tx
        .query(
            "SELECT id, hostname, last_seen_at FROM hosts
             WHERE NOT silent_alerted AND coalesce(last_seen_at, enrolled_at) < $1
             FOR UPDATE SKIP LOCKED",
            &[&(now - silent_after_ms)],
        )
        .await?;
    for r in &silent {
        let host = SilentHost {
            host_id: r.get(0),
            hostname: r.get(1),
            last_seen_at: r.get(2),
            silent_after_ms,
        };
        insert_alert(tx, &(words.silent)(&host), now).await?;
        tx.execute(
            "UPDATE hosts SET silent_alerted = true WHERE id = $1",
            &[&host.host_id],
        )
        .await?;
    }
    Ok(silent.len() as u32)
}

pub async fn stats(tx: &Tx<'_>, now: Millis, silent_after_ms: i64) -> Result<Stats> {
    let r = tx
        .query_one(
            "SELECT (SELECT count(*) FROM hosts),
                    (SELECT count(*) FROM hosts WHERE coalesce(last_seen_at, enrolled_at) < $1),
                    (SELECT count(*) FROM drift WHERE status = 'open'),
                    (SELECT count(*) FROM alerts WHERE delivered_at IS NULL),
                    (SELECT min(untraced_since) FROM drift WHERE status = 'open')",
            &[&(now - silent_after_ms)],
        )
        .await?;
    Ok(Stats {
        hosts: r.get::<_, i64>(0) as u64,
        silent_hosts: r.get::<_, i64>(1) as u64,
        open_drift: r.get::<_, i64>(2) as u64,
        undelivered_alerts: r.get::<_, i64>(3) as u64,
        oldest_untraced_since: r.get(4),
    })
}
