//! The reads behind evidence exports and close-out bundles (`crate::reports`), each with
//! its audit entry in the same transaction.

use std::collections::btree_map::Entry;

use driftwatch_common::api::v1::AgentCommand;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Tx;
use super::audit;
use super::ingest::{EVENT_COLUMN_COUNT, EVENT_COLUMNS, event_row_at};
use super::rows::{from_json, opt_from_json};
use super::{drift, windows};
use crate::audit::{AuditKey, NewAudit};
use crate::store::{
    CloseOutCommand, ExportQuery, ExportRecords, HostEvent, Result, StoreError, WindowRecords,
};

fn host_event(r: &Row) -> Result<HostEvent> {
    Ok(HostEvent {
        stored: event_row_at(r, 0)?,
        // The column after the event's.
        hostname: r.get(EVENT_COLUMN_COUNT),
    })
}

fn too_many(what: &str, max_rows: u32) -> StoreError {
    StoreError::TooLarge(format!(
        "{what} has more than {max_rows} events (max_export_rows): narrow it, or raise \
         max_export_rows in the collector's configuration"
    ))
}

pub async fn export_records(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    query: &ExportQuery,
    audit: &NewAudit,
) -> Result<ExportRecords> {
    // One more than allowed tells "too many" from "exactly the bound".
    let rows = tx
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS}, h.hostname FROM events e JOIN hosts h ON h.id = e.host_id
                 WHERE e.event_time >= $1 AND e.event_time < $2
                   AND ($3::text IS NULL OR h.hostname = $3)
                 ORDER BY e.event_time, e.id LIMIT $4"
            ),
            &[
                &query.from,
                &query.to,
                &query.hostname,
                &(i64::from(query.max_rows) + 1),
            ],
        )
        .await?;
    if rows.len() > query.max_rows as usize {
        return Err(too_many("the period", query.max_rows));
    }
    let events = rows.iter().map(host_event).collect::<Result<Vec<_>>>()?;
    let mut records = ExportRecords {
        events,
        ..ExportRecords::default()
    };
    let drift_ids: Vec<Uuid> = records
        .events
        .iter()
        .filter_map(|e| e.stored.drift_id)
        .collect();
    for drift_id in drift_ids {
        if let Entry::Vacant(slot) = records.drift.entry(drift_id) {
            slot.insert(drift::get(tx, drift_id).await?);
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
            match windows::get(tx, window_id).await {
                Ok(window) => {
                    slot.insert(window);
                }
                Err(StoreError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
    }
    audit::append(tx, key, audit).await?;
    Ok(records)
}

pub async fn window_records(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    window_id: Uuid,
    max_rows: u32,
    audit: &NewAudit,
) -> Result<WindowRecords> {
    windows::get(tx, window_id).await?;
    let rows = tx
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS}, h.hostname FROM events e JOIN hosts h ON h.id = e.host_id
                 WHERE e.window_id = $1 ORDER BY e.event_time, e.id LIMIT $2"
            ),
            &[&window_id, &(i64::from(max_rows) + 1)],
        )
        .await?;
    if rows.len() > max_rows as usize {
        return Err(too_many("the window", max_rows));
    }
    let events = rows.iter().map(host_event).collect::<Result<Vec<_>>>()?;
    let drift = drift::list(
        tx,
        &crate::store::DriftFilter {
            window_id: Some(window_id),
            limit: Some(max_rows.saturating_add(1)),
            ..crate::store::DriftFilter::default()
        },
    )
    .await?;
    if drift.len() > max_rows as usize {
        return Err(too_many("the window", max_rows));
    }
    let rows = tx
        .query(
            "SELECT c.id, c.host_id, h.hostname, c.drift_id, c.body, c.created_at, c.status,
                    c.result, c.result_at
             FROM commands c JOIN hosts h ON h.id = c.host_id
             WHERE c.window_id = $1 ORDER BY c.created_at, c.id",
            &[&window_id],
        )
        .await?;
    let mut commands = Vec::with_capacity(rows.len());
    for r in &rows {
        let AgentCommand::BaselineAccept { subject, state, .. } = from_json(r.get(4))?;
        commands.push(CloseOutCommand {
            id: r.get(0),
            host_id: r.get(1),
            hostname: r.get(2),
            drift_id: r.get(3),
            subject: subject.0,
            state,
            created_at: r.get(5),
            status: r.get(6),
            result: opt_from_json(r.get(7))?,
            result_at: r.get(8),
        });
    }
    audit::append(tx, key, audit).await?;
    Ok(WindowRecords {
        events,
        drift,
        commands,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_too_large_answer_names_the_setting() {
        let err = super::too_many("the period", 10).to_string();
        assert!(err.contains("more than 10 events"), "{err}");
        assert!(err.contains("max_export_rows"), "{err}");
    }
}
