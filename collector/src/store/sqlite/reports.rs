//! The reads behind evidence exports and close-out bundles (`crate::reports`), each with
//! its audit entry in the same transaction.

use std::collections::btree_map::Entry;

use driftwatch_common::api::v1::{AgentCommand, CommandOutcome};
use rusqlite::{Connection, params};
use uuid::Uuid;

use super::audit;
use super::ingest::{EVENT_COLUMNS, event_row};
use super::rows::{Id, Json, id};
use super::{drift, windows};
use crate::audit::NewAudit;
use crate::store::{
    CloseOutCommand, ExportQuery, ExportRecords, HostEvent, Result, StoreError, WindowRecords,
};

fn host_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<HostEvent> {
    Ok(HostEvent {
        stored: event_row(r)?,
        // The column after the event's.
        hostname: r.get(EVENT_COLUMNS.split(", ").count())?,
    })
}

fn too_many(what: &str, max_rows: u32) -> StoreError {
    StoreError::TooLarge(format!(
        "{what} has more than {max_rows} events (max_export_rows): narrow it, or raise \
         max_export_rows in the collector's configuration"
    ))
}

pub fn export_records(
    conn: &Connection,
    query: &ExportQuery,
    audit: &NewAudit,
) -> Result<ExportRecords> {
    let prefixed: Vec<String> = EVENT_COLUMNS
        .split(", ")
        .map(|c| format!("e.{c}"))
        .collect();
    let mut stmt = conn.prepare(&format!(
        "SELECT {}, h.hostname FROM events e JOIN hosts h ON h.id = e.host_id
         WHERE e.event_time >= ?1 AND e.event_time < ?2 AND (?3 IS NULL OR h.hostname = ?3)
         ORDER BY e.event_time, e.id LIMIT ?4",
        prefixed.join(", ")
    ))?;
    // One more than allowed tells "too many" from "exactly the bound".
    let events = stmt
        .query_map(
            params![
                query.from,
                query.to,
                query.hostname,
                i64::from(query.max_rows) + 1
            ],
            host_event,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if events.len() > query.max_rows as usize {
        return Err(too_many("the period", query.max_rows));
    }
    let mut records = ExportRecords {
        events,
        ..ExportRecords::default()
    };
    for event in &records.events {
        if let Some(drift_id) = event.stored.drift_id
            && !records.drift.contains_key(&drift_id)
        {
            records.drift.insert(drift_id, drift::get(conn, drift_id)?);
        }
    }
    let window_ids: Vec<Uuid> = records
        .events
        .iter()
        .filter_map(|e| e.stored.outcome.window_id())
        .chain(records.drift.values().filter_map(|d| d.window_id))
        .collect();
    for window_id in window_ids {
        if let Entry::Vacant(slot) = records.windows.entry(window_id) {
            // A window id that names nothing (an agent test id) is left out, not an error.
            match windows::get(conn, window_id) {
                Ok(window) => {
                    slot.insert(window);
                }
                Err(StoreError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
    }
    audit::append(conn, audit)?;
    Ok(records)
}

pub fn window_records(
    conn: &Connection,
    window_id: Uuid,
    max_rows: u32,
    audit: &NewAudit,
) -> Result<WindowRecords> {
    windows::get(conn, window_id)?;
    let prefixed: Vec<String> = EVENT_COLUMNS
        .split(", ")
        .map(|c| format!("e.{c}"))
        .collect();
    let mut stmt = conn.prepare(&format!(
        "SELECT {}, h.hostname FROM events e JOIN hosts h ON h.id = e.host_id
         WHERE e.window_id = ?1 ORDER BY e.event_time, e.id LIMIT ?2",
        prefixed.join(", ")
    ))?;
    let events = stmt
        .query_map(params![id(window_id), i64::from(max_rows) + 1], host_event)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if events.len() > max_rows as usize {
        return Err(too_many("the window", max_rows));
    }
    let drift = drift::list(
        conn,
        &crate::store::DriftFilter {
            window_id: Some(window_id),
            limit: Some(max_rows.saturating_add(1)),
            ..crate::store::DriftFilter::default()
        },
    )?;
    if drift.len() > max_rows as usize {
        return Err(too_many("the window", max_rows));
    }
    let mut stmt = conn.prepare(
        "SELECT c.id, c.host_id, h.hostname, c.drift_id, c.body, c.created_at, c.status,
                c.result, c.result_at
         FROM commands c JOIN hosts h ON h.id = c.host_id
         WHERE c.window_id = ?1 ORDER BY c.created_at, c.id",
    )?;
    let commands = stmt
        .query_map([id(window_id)], |r| {
            let Json(AgentCommand::BaselineAccept { subject, state, .. }) = r.get(4)?;
            Ok(CloseOutCommand {
                id: r.get::<_, Id>(0)?.0,
                host_id: r.get::<_, Id>(1)?.0,
                hostname: r.get(2)?,
                drift_id: r.get::<_, Id>(3)?.0,
                subject: subject.0,
                state,
                created_at: r.get(5)?,
                status: r.get(6)?,
                result: r.get::<_, Option<Json<CommandOutcome>>>(7)?.map(|j| j.0),
                result_at: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    audit::append(conn, audit)?;
    Ok(WindowRecords {
        events,
        drift,
        commands,
    })
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;

    #[tokio::test]
    async fn sqlite_passes_the_evidence_story() {
        crate::store::conformance_evidence::story(SqliteStore::open_in_memory().unwrap()).await;
    }

    #[test]
    fn periods_and_windows_are_read_through_an_index() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::super::migrate(&mut conn, true).unwrap();
        for (query, index) in [
            (
                "SELECT e.id FROM events e JOIN hosts h ON h.id = e.host_id
                 WHERE e.event_time >= 1 AND e.event_time < 2 ORDER BY e.event_time, e.id",
                "events_time",
            ),
            (
                "SELECT e.id FROM events e JOIN hosts h ON h.id = e.host_id
                 WHERE e.window_id = 'x' ORDER BY e.event_time, e.id",
                "events_window",
            ),
        ] {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
                .unwrap();
            let plan: Vec<String> = stmt
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{index} unused: {plan:?}"
            );
        }
    }

    #[test]
    fn a_too_large_answer_names_the_setting() {
        let err = super::too_many("the period", 10).to_string();
        assert!(err.contains("more than 10 events"), "{err}");
        assert!(err.contains("max_export_rows"), "{err}");
    }
}
