use driftwatch_common::api::v1::{AgentCommand, DriftEvent};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::alerts::insert_alert;
use super::audit;
use super::drift::history;
use super::identity::{host_columns, host_row_at};
use super::rows::{Id, Json, Named, id, json};
use crate::audit::NewAudit;
use crate::clock::Millis;
use crate::drift::{self, DriftStatus};
use crate::matcher::{Outcome, REVIEW_OUTCOMES};
use crate::spool_time::SpoolBounds;
use crate::store::{
    AlertWords, CloseOutcome, LateEmergency, Result, ReviewCandidate, ReviewOutcome, StoreError,
};
use crate::windows::{Window, WindowStatus};

const COLUMNS: &str = "id, ticket, title, kind, status, requester, decided_by, decided_at, \
                       decision_comment, hosts, subjects, start_at, end_at, time_zone, expected, \
                       created_at, ended_at, ended_by, implementers, schedule";

fn row(r: &Row<'_>) -> rusqlite::Result<Window> {
    Ok(Window {
        id: r.get::<_, Id>(0)?.0,
        ticket: r.get(1)?,
        title: r.get(2)?,
        kind: r.get::<_, Named<_>>(3)?.0,
        status: r.get::<_, Named<_>>(4)?.0,
        requester: r.get(5)?,
        decided_by: r.get(6)?,
        decided_at: r.get(7)?,
        decision_comment: r.get(8)?,
        hosts: r.get::<_, Json<_>>(9)?.0,
        subjects: r.get::<_, Json<_>>(10)?.0,
        start: r.get(11)?,
        end: r.get(12)?,
        time_zone: r.get(13)?,
        expected: r.get::<_, Json<_>>(14)?.0,
        created_at: r.get(15)?,
        ended_at: r.get(16)?,
        ended_by: r.get(17)?,
        implementers: r.get::<_, Json<_>>(18)?.0,
        schedule: r.get::<_, Option<Json<_>>>(19)?.map(|j| j.0),
    })
}

pub fn insert(conn: &Connection, w: &Window, audit: &NewAudit) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO windows ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
             ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
        ),
        params![
            id(w.id),
            w.ticket,
            w.title,
            w.kind.name(),
            w.status.name(),
            w.requester,
            w.decided_by,
            w.decided_at,
            w.decision_comment,
            json(&w.hosts),
            json(&w.subjects),
            w.start,
            w.end,
            w.time_zone,
            json(&w.expected),
            w.created_at,
            w.ended_at,
            w.ended_by,
            json(&w.implementers),
            w.schedule.as_ref().map(json)
        ],
    )?;
    audit::append(conn, audit)?;
    Ok(())
}

pub fn get(conn: &Connection, window_id: Uuid) -> Result<Window> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM windows WHERE id = ?1"),
        [id(window_id)],
        row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("no window {window_id}")))
}

pub fn list(conn: &Connection, status: Option<WindowStatus>) -> Result<Vec<Window>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM windows WHERE ?1 IS NULL OR status = ?1 ORDER BY start_at, id"
    ))?;
    let rows = stmt.query_map([status.map(|s| s.name())], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A page of windows in listing order (`start_at`, then id) after the key `after` (issue 10).
pub fn page(
    conn: &Connection,
    status: Option<WindowStatus>,
    after: Option<(Millis, Uuid)>,
    limit: u32,
) -> Result<Vec<Window>> {
    let (at, last) = after.map_or((None, None), |(at, last)| (Some(at), Some(id(last))));
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM windows
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR (start_at, id) > (?2, ?3))
         ORDER BY start_at, id LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        params![status.map(|s| s.name()), at, last, i64::from(limit)],
        row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Saves the decision fields, if the window is still in status `from`.
pub fn update(conn: &Connection, w: &Window, from: WindowStatus, audit: &NewAudit) -> Result<()> {
    let changed = conn.execute(
        "UPDATE windows SET status = ?2, decided_by = ?3, decided_at = ?4, decision_comment = ?5,
                ended_at = ?6, ended_by = ?7
         WHERE id = ?1 AND status = ?8",
        params![
            id(w.id),
            w.status.name(),
            w.decided_by,
            w.decided_at,
            w.decision_comment,
            w.ended_at,
            w.ended_by,
            from.name()
        ],
    )?;
    if changed == 0 {
        let now = get(conn, w.id)?;
        return Err(StoreError::Conflict(format!(
            "window {} is {} now, no longer {from}",
            w.id, now.status
        )));
    }
    audit::append(conn, audit)?;
    Ok(())
}

pub fn close(conn: &Connection, w: &Window, audit: &NewAudit) -> Result<CloseOutcome> {
    let at = w.ended_at.unwrap_or(w.decided_at.unwrap_or(0));
    let by = w.ended_by.clone().unwrap_or_default();
    let items: Vec<(Id, Id, String, Json<DriftEvent>)> = {
        let mut stmt = conn.prepare(
            "SELECT d.id, d.host_id, d.subject, e.body FROM drift d
             JOIN events e ON e.id = d.last_event_id
             WHERE d.window_id = ?1 AND d.status = 'authorized'",
        )?;
        stmt.query_map([id(w.id)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    // The close-out's entry names the drift it accepts, so evidence can be checked against it.
    let mut audit = audit.clone();
    if let Some(details) = audit.details.as_object_mut() {
        let accepted: Vec<serde_json::Value> = items
            .iter()
            .map(|(Id(drift), Id(host), subject, _)| {
                serde_json::json!({ "drift": drift, "host": host, "subject": subject })
            })
            .collect();
        details.insert("accepted".into(), accepted.into());
    }
    update(conn, w, WindowStatus::Approved, &audit)?;
    let mut outcome = CloseOutcome::default();
    for (Id(drift_id), Id(host_id), subject, Json(last)) in items {
        conn.execute(
            "UPDATE drift SET status = 'accepted', updated_at = ?2 WHERE id = ?1",
            params![id(drift_id), at],
        )?;
        history(
            conn,
            drift_id,
            at,
            Some(DriftStatus::Authorized),
            DriftStatus::Accepted,
            &by,
            &drift::close_out_reason(w.id, &w.ticket),
        )?;
        outcome.accepted += 1;
        if !drift::accept_needs_command(&subject) {
            continue;
        }
        let command_id = Uuid::now_v7();
        let command = AgentCommand::BaselineAccept {
            command_id,
            subject: last.subject.clone(),
            // The reviewed state: if the subject changed again, the agent refuses.
            state: last.after.clone(),
            window_id: Some(w.id),
        };
        debug_assert_eq!(last.subject.0, subject);
        conn.execute(
            "INSERT INTO commands (id, host_id, drift_id, window_id, body, created_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
            params![
                id(command_id),
                id(host_id),
                id(drift_id),
                id(w.id),
                json(&command),
                at
            ],
        )?;
        outcome.commands += 1;
    }
    Ok(outcome)
}

/// The outcomes that need review, as an SQL list (the same as the `events_review` index's).
pub fn review_outcomes() -> String {
    REVIEW_OUTCOMES.map(|name| format!("'{name}'")).join(", ")
}

pub fn review_candidates(
    conn: &Connection,
    from: Millis,
    to: Millis,
) -> Result<Vec<ReviewCandidate>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT e.body, e.event_time, e.spooled_after, e.spooled_before, {}
         FROM events e JOIN hosts h ON h.id = e.host_id
         WHERE e.outcome IN ({}) AND e.event_time BETWEEN ?1 AND ?2
           AND e.spooled_after >= ?1 AND e.spooled_before <= ?2
         ORDER BY e.event_time",
        host_columns("h"),
        review_outcomes()
    ))?;
    let rows = stmt.query_map(params![from, to], |r| {
        Ok(ReviewCandidate {
            event: r.get::<_, Json<DriftEvent>>(0)?.0,
            event_time: r.get(1)?,
            spooled: SpoolBounds {
                after: r.get(2)?,
                before: r.get(3)?,
            },
            host: host_row_at(r, 4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn apply_review(
    conn: &Connection,
    window_id: Uuid,
    decisions: &[(Uuid, Outcome)],
    at: Millis,
    by: &str,
) -> Result<ReviewOutcome> {
    let mut outcome = ReviewOutcome::default();
    let mut touched: Vec<Uuid> = Vec::new();
    for (event_id, decision) in decisions {
        let drift_id: Option<Option<Id>> = conn
            .query_row(
                &format!(
                    "UPDATE events SET outcome = ?2, decision = ?3, window_id = ?4
                     WHERE id = ?1 AND outcome IN ({}) RETURNING drift_id",
                    review_outcomes()
                ),
                params![
                    id(*event_id),
                    decision.name(),
                    json(decision),
                    decision.window_id().map(id)
                ],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(drift_id) = drift_id {
            if let Some(key) = super::audit::decision_key() {
                super::ingest::reseal_decision(conn, *event_id, &key)?;
            }
            outcome.events += 1;
            if let Some(Id(drift_id)) = drift_id {
                touched.push(drift_id);
            }
        }
    }
    touched.sort_unstable();
    touched.dedup();
    for drift_id in touched {
        let pending: i64 = conn.query_row(
            &format!(
                "SELECT count(*) FROM events WHERE drift_id = ?1 AND outcome IN ({})",
                review_outcomes()
            ),
            [id(drift_id)],
            |r| r.get(0),
        )?;
        if pending > 0 {
            continue;
        }
        // Every change on it is covered now: no alert is due any more.
        let before: Named<DriftStatus> = conn.query_row(
            "SELECT status FROM drift WHERE id = ?1",
            [id(drift_id)],
            |r| r.get(0),
        )?;
        let status = drift::after_covered(before.0);
        let newly_authorized = status != before.0;
        conn.execute(
            "UPDATE drift SET needs_alert = 0, updated_at = ?2, status = ?4,
                    window_id = CASE WHEN ?5 THEN ?3 ELSE window_id END,
                    reason = CASE WHEN ?5 THEN NULL ELSE reason END
             WHERE id = ?1",
            params![
                id(drift_id),
                at,
                id(window_id),
                status.name(),
                newly_authorized
            ],
        )?;
        if status == DriftStatus::Authorized {
            outcome.drift_authorized += 1;
            history(
                conn,
                drift_id,
                at,
                Some(DriftStatus::Open),
                status,
                by,
                &drift::covered_reason(window_id),
            )?;
        }
    }
    Ok(outcome)
}

/// One alert per emergency window still requested `deadline_ms` after it was recorded,
/// worded by the rules (`words`).
pub fn raise_emergency(
    conn: &Connection,
    now: Millis,
    deadline_ms: i64,
    words: AlertWords,
) -> Result<u32> {
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
        let late = LateEmergency {
            window_id: *window_id,
            ticket: ticket.clone(),
            requester: requester.clone(),
            recorded_at: *created_at,
            deadline_ms,
        };
        insert_alert(conn, &(words.emergency)(&late), now)?;
        conn.execute(
            "UPDATE windows SET deadline_alerted_at = ?2 WHERE id = ?1",
            params![id(*window_id), now],
        )?;
    }
    Ok(late.len() as u32)
}
