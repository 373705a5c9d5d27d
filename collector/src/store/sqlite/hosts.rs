//! Hosts' liveness: heartbeats (with the spool marks that bound event times), the silent
//! and clock alerts, and the fleet's counts.

use driftwatch_common::api::v1::{AgentCommand, CommandOutcome};
use rusqlite::{Connection, params};
use uuid::Uuid;

use super::alerts::insert_alert;
use super::rows::{Id, Json, id, json, opt_id, seq};
use crate::alerts::outbox;
use crate::clock::Millis;
use crate::spool_time::{self, SpoolMark};
use crate::store::{AlertWords, HeartbeatRecord, NewAlert, Result, SilentHost, Stats, StoreError};

pub fn heartbeat(
    conn: &Connection,
    record: &HeartbeatRecord,
    alerts: &[NewAlert],
) -> Result<Vec<AgentCommand>> {
    let updated = conn.execute(
        "UPDATE hosts SET last_seen_at = ?2, skew_ms = ?3, inventory = ?4, health = ?5,
                reported_seq = ?6, silent_alerted = 0
         WHERE id = ?1",
        params![
            id(record.host_id),
            record.received_at,
            record.skew_ms,
            json(&record.inventory),
            json(&record.health),
            seq(record.reported_seq)
        ],
    )?;
    if updated == 0 {
        return Err(StoreError::NotFound(format!("no host {}", record.host_id)));
    }
    add_spool_mark(
        conn,
        record.host_id,
        SpoolMark {
            received_at: record.received_at,
            last_seq: record.reported_seq,
        },
    )?;
    for result in &record.results {
        let status = match result.outcome {
            CommandOutcome::Applied => "applied",
            CommandOutcome::Mismatch { .. } => "mismatch",
            CommandOutcome::Failed { .. } => "failed",
        };
        // Only this host's pending commands: a result for another host's command is ignored.
        conn.execute(
            "UPDATE commands SET status = ?3, result = ?4, result_at = ?5
             WHERE id = ?1 AND host_id = ?2 AND status = 'pending'",
            params![
                id(result.command_id),
                id(record.host_id),
                status,
                json(&result.outcome),
                record.received_at
            ],
        )?;
    }
    for alert in alerts {
        insert_alert(conn, alert, record.received_at)?;
    }
    let mut stmt = conn.prepare(
        "SELECT body FROM commands WHERE host_id = ?1 AND status = 'pending' ORDER BY created_at, id",
    )?;
    let commands = stmt
        .query_map([id(record.host_id)], |r| r.get::<_, Json<AgentCommand>>(0))?
        .map(|c| c.map(|c| c.0))
        .collect::<rusqlite::Result<_>>()?;
    Ok(commands)
}

pub fn spool_marks(conn: &Connection, host_id: Uuid) -> Result<Vec<SpoolMark>> {
    let mut stmt = conn.prepare_cached(
        "SELECT received_at, last_seq FROM spool_marks WHERE host_id = ?1 ORDER BY received_at",
    )?;
    let rows = stmt.query_map([id(host_id)], |r| {
        Ok(SpoolMark {
            received_at: r.get(0)?,
            last_seq: r.get::<_, i64>(1)?.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Adds the mark of a heartbeat and drops the marks that can no longer bound an event
/// (events up to the stored head have arrived).
fn add_spool_mark(conn: &Connection, host_id: Uuid, mark: SpoolMark) -> Result<()> {
    conn.execute(
        "INSERT INTO spool_marks (host_id, received_at, last_seq) VALUES (?1, ?2, ?3)",
        params![id(host_id), mark.received_at, seq(mark.last_seq)],
    )?;
    let stored: i64 = conn.query_row(
        "SELECT chain_seq FROM hosts WHERE id = ?1",
        [id(host_id)],
        |r| r.get(0),
    )?;
    let marks = spool_marks(conn, host_id)?;
    let kept = spool_time::retained(&marks, stored.max(0) as u64);
    if kept.len() < marks.len() {
        conn.execute("DELETE FROM spool_marks WHERE host_id = ?1", [id(host_id)])?;
        for mark in kept {
            conn.execute(
                "INSERT INTO spool_marks (host_id, received_at, last_seq) VALUES (?1, ?2, ?3)",
                params![id(host_id), mark.received_at, seq(mark.last_seq)],
            )?;
        }
    }
    Ok(())
}

pub fn raise_clock_alert(
    conn: &Connection,
    alert: &NewAlert,
    at: Millis,
    burst_ms: i64,
) -> Result<bool> {
    let latest: Option<Millis> = conn.query_row(
        "SELECT max(created_at) FROM alerts WHERE kind = ?1 AND host_id IS ?2",
        params![alert.kind, opt_id(alert.host_id)],
        |r| r.get(0),
    )?;
    if !outbox::clock_alert_due(latest, at, burst_ms) {
        return Ok(false);
    }
    insert_alert(conn, alert, at)?;
    Ok(true)
}

/// One alert per host not heard from for `silent_after_ms`, worded by the rules (`words`),
/// until it is heard from again.
pub fn raise_silent(
    conn: &Connection,
    now: Millis,
    silent_after_ms: i64,
    words: AlertWords,
) -> Result<u32> {
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
    for (Id(host_id), hostname, last_seen_at) in &silent {
        let host = SilentHost {
            host_id: *host_id,
            hostname: hostname.clone(),
            last_seen_at: *last_seen_at,
            silent_after_ms,
        };
        insert_alert(conn, &(words.silent)(&host), now)?;
        conn.execute(
            "UPDATE hosts SET silent_alerted = 1 WHERE id = ?1",
            [id(*host_id)],
        )?;
    }
    Ok(silent.len() as u32)
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
        oldest_untraced_since: conn.query_row(
            "SELECT min(untraced_since) FROM drift WHERE status = 'open'",
            [],
            |r| r.get(0),
        )?,
    })
}
