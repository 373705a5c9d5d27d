//! Change windows: decisions, close-out (with the baseline-accept commands), the review of
//! events a late approval covers, and the emergency round.

use driftwatch_common::api::v1::{AgentCommand, DriftEvent};
use tokio_postgres::Row;
use uuid::Uuid;

use super::Tx;
use super::alerts::insert_alert;
use super::audit;
use super::drift::history;
use super::identity::{HOST_COLUMNS, host_row_at};
use super::rows::{from_json, json, named, opt_from_json};
use crate::audit::{AuditKey, NewAudit};
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

fn row(r: &Row) -> Result<Window> {
    Ok(Window {
        id: r.get(0),
        ticket: r.get(1),
        title: r.get(2),
        kind: named(r.get::<_, &str>(3))?,
        status: named(r.get::<_, &str>(4))?,
        requester: r.get(5),
        decided_by: r.get(6),
        decided_at: r.get(7),
        decision_comment: r.get(8),
        hosts: from_json(r.get(9))?,
        subjects: from_json(r.get(10))?,
        start: r.get(11),
        end: r.get(12),
        time_zone: r.get(13),
        expected: from_json(r.get(14))?,
        created_at: r.get(15),
        ended_at: r.get(16),
        ended_by: r.get(17),
        implementers: from_json(r.get(18))?,
        schedule: opt_from_json(r.get(19))?,
    })
}

pub async fn insert(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    w: &Window,
    audit: &NewAudit,
) -> Result<()> {
    super::cluster::window_changes(tx).await?;
    tx.execute(
        &format!(
            "INSERT INTO windows ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        ),
        &[
            &w.id,
            &w.ticket,
            &w.title,
            &w.kind.name(),
            &w.status.name(),
            &w.requester,
            &w.decided_by,
            &w.decided_at,
            &w.decision_comment,
            &json(&w.hosts),
            &json(&w.subjects),
            &w.start,
            &w.end,
            &w.time_zone,
            &json(&w.expected),
            &w.created_at,
            &w.ended_at,
            &w.ended_by,
            &json(&w.implementers),
            &w.schedule.as_ref().map(json),
        ],
    )
    .await?;
    audit::append(tx, key, audit).await?;
    Ok(())
}

pub async fn get(tx: &Tx<'_>, window_id: Uuid) -> Result<Window> {
    let found = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM windows WHERE id = $1"),
            &[&window_id],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no window {window_id}")))?;
    row(&found)
}

pub async fn list(tx: &Tx<'_>, status: Option<WindowStatus>) -> Result<Vec<Window>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM windows WHERE $1::text IS NULL OR status = $1
                 ORDER BY start_at, id"
            ),
            &[&status.map(|s| s.name())],
        )
        .await?;
    rows.iter().map(row).collect()
}

/// A page of windows in listing order (`start_at`, then id) after the key `after` (issue 10).
pub async fn page(
    tx: &Tx<'_>,
    status: Option<WindowStatus>,
    after: Option<(Millis, Uuid)>,
    limit: u32,
) -> Result<Vec<Window>> {
    let (at, last) = after.map_or((None, None), |(at, last)| (Some(at), Some(last)));
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM windows
                 WHERE ($1::text IS NULL OR status = $1)
                   AND ($2::bigint IS NULL OR (start_at, id) > ($2, $3::uuid))
                 ORDER BY start_at, id LIMIT $4"
            ),
            &[&status.map(|s| s.name()), &at, &last, &i64::from(limit)],
        )
        .await?;
    rows.iter().map(row).collect()
}

/// Saves the decision fields, if the window is still in status `from` (the update's row
/// lock makes a concurrent decision on another node wait, then find the status changed).
pub async fn update(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    w: &Window,
    from: WindowStatus,
    audit: &NewAudit,
) -> Result<()> {
    super::cluster::window_changes(tx).await?;
    let changed = tx
        .execute(
            "UPDATE windows SET status = $2, decided_by = $3, decided_at = $4,
                    decision_comment = $5, ended_at = $6, ended_by = $7
             WHERE id = $1 AND status = $8",
            &[
                &w.id,
                &w.status.name(),
                &w.decided_by,
                &w.decided_at,
                &w.decision_comment,
                &w.ended_at,
                &w.ended_by,
                &from.name(),
            ],
        )
        .await?;
    if changed == 0 {
        let now = get(tx, w.id).await?;
        return Err(StoreError::Conflict(format!(
            "window {} is {} now, no longer {from}",
            w.id, now.status
        )));
    }
    audit::append(tx, key, audit).await?;
    Ok(())
}

pub async fn close(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    w: &Window,
    audit: &NewAudit,
) -> Result<CloseOutcome> {
    let at = w.ended_at.unwrap_or(w.decided_at.unwrap_or(0));
    let by = w.ended_by.clone().unwrap_or_default();
    // The windows' lock, then history's (`cluster::WINDOWS_LOCK`, `drift::HISTORY_LOCK`).
    super::cluster::window_changes(tx).await?;
    super::drift::lock_history(tx).await?;
    // The window first: a second close on another node waits here, then finds it closed.
    tx.execute("SELECT 1 FROM windows WHERE id = $1 FOR UPDATE", &[&w.id])
        .await?;
    let rows = tx
        .query(
            "SELECT d.id, d.host_id, d.subject, e.body FROM drift d
             JOIN events e ON e.id = d.last_event_id
             WHERE d.window_id = $1 AND d.status = 'authorized'
             FOR UPDATE OF d",
            &[&w.id],
        )
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let last: DriftEvent = from_json(r.get(3))?;
        items.push((
            r.get::<_, Uuid>(0),
            r.get::<_, Uuid>(1),
            r.get::<_, String>(2),
            last,
        ));
    }
    // The close-out's entry names the drift it accepts, so evidence can be checked against it.
    let mut audit = audit.clone();
    if let Some(details) = audit.details.as_object_mut() {
        let accepted: Vec<serde_json::Value> = items
            .iter()
            .map(|(drift, host, subject, _)| {
                serde_json::json!({ "drift": drift, "host": host, "subject": subject })
            })
            .collect();
        details.insert("accepted".into(), accepted.into());
    }
    update(tx, key, w, WindowStatus::Approved, &audit).await?;
    let mut outcome = CloseOutcome::default();
    for (drift_id, host_id, subject, last) in items {
        tx.execute(
            "UPDATE drift SET status = 'accepted', updated_at = $2 WHERE id = $1",
            &[&drift_id, &at],
        )
        .await?;
        history(
            tx,
            drift_id,
            at,
            Some(DriftStatus::Authorized),
            DriftStatus::Accepted,
            &by,
            &drift::close_out_reason(w.id, &w.ticket),
        )
        .await?;
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
        tx.execute(
            "INSERT INTO commands (id, host_id, drift_id, window_id, body, created_at, status)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending')",
            &[
                &command_id,
                &host_id,
                &drift_id,
                &w.id,
                &json(&command),
                &at,
            ],
        )
        .await?;
        outcome.commands += 1;
    }
    Ok(outcome)
}

/// The outcomes that need review, as an SQL list (the same as the `events_review` index's).
fn review_outcomes() -> String {
    REVIEW_OUTCOMES.map(|name| format!("'{name}'")).join(", ")
}

pub async fn review_candidates(
    tx: &Tx<'_>,
    from: Millis,
    to: Millis,
) -> Result<Vec<ReviewCandidate>> {
    let rows = tx
        .query(
            &format!(
                "SELECT e.body, e.event_time, e.spooled_after, e.spooled_before, {HOST_COLUMNS}
                 FROM events e JOIN hosts h ON h.id = e.host_id
                 WHERE e.outcome IN ({}) AND e.event_time BETWEEN $1 AND $2
                   AND e.spooled_after >= $1 AND e.spooled_before <= $2
                 ORDER BY e.event_time",
                review_outcomes()
            ),
            &[&from, &to],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ReviewCandidate {
                event: from_json(r.get(0))?,
                event_time: r.get(1),
                spooled: SpoolBounds {
                    after: r.get(2),
                    before: r.get(3),
                },
                host: host_row_at(r, 4)?,
            })
        })
        .collect()
}

pub async fn apply_review(
    tx: &Tx<'_>,
    decision_key: Option<[u8; 32]>,
    window_id: Uuid,
    decisions: &[(Uuid, Outcome)],
    at: Millis,
    by: &str,
) -> Result<ReviewOutcome> {
    // It writes history: that lock before any other (`drift::HISTORY_LOCK`).
    super::drift::lock_history(tx).await?;
    let mut outcome = ReviewOutcome::default();
    let mut touched: Vec<Uuid> = Vec::new();
    for (event_id, decision) in decisions {
        let drift_id = tx
            .query_opt(
                &format!(
                    "UPDATE events SET outcome = $2, decision = $3, window_id = $4
                     WHERE id = $1 AND outcome IN ({}) RETURNING drift_id",
                    review_outcomes()
                ),
                &[
                    event_id,
                    &decision.name(),
                    &json(decision),
                    &decision.window_id(),
                ],
            )
            .await?
            .map(|r| r.get::<_, Option<Uuid>>(0));
        if let Some(drift_id) = drift_id {
            if let Some(key) = &decision_key {
                super::ingest::reseal_decision(tx, *event_id, key).await?;
            }
            outcome.events += 1;
            if let Some(drift_id) = drift_id {
                touched.push(drift_id);
            }
        }
    }
    touched.sort_unstable();
    touched.dedup();
    for drift_id in touched {
        // Locked: an ingest on another node moves it before or after, not between.
        let before: DriftStatus = named(
            tx.query_one(
                "SELECT status FROM drift WHERE id = $1 FOR UPDATE",
                &[&drift_id],
            )
            .await?
            .get::<_, &str>(0),
        )?;
        let pending: i64 = tx
            .query_one(
                &format!(
                    "SELECT count(*) FROM events WHERE drift_id = $1 AND outcome IN ({})",
                    review_outcomes()
                ),
                &[&drift_id],
            )
            .await?
            .get(0);
        if pending > 0 {
            continue;
        }
        // Every change on it is covered now: no alert is due any more.
        let status = drift::after_covered(before);
        let newly_authorized = status != before;
        tx.execute(
            "UPDATE drift SET needs_alert = false, updated_at = $2, status = $4,
                    window_id = CASE WHEN $5 THEN $3 ELSE window_id END,
                    reason = CASE WHEN $5 THEN NULL ELSE reason END
             WHERE id = $1",
            &[
                &drift_id,
                &at,
                &window_id,
                &status.name(),
                &newly_authorized,
            ],
        )
        .await?;
        if status == DriftStatus::Authorized {
            outcome.drift_authorized += 1;
            history(
                tx,
                drift_id,
                at,
                Some(DriftStatus::Open),
                status,
                by,
                &drift::covered_reason(window_id),
            )
            .await?;
        }
    }
    Ok(outcome)
}

/// One alert per emergency window still requested `deadline_ms` after it was recorded,
/// worded by the rules (`words`); rows another node's round holds are skipped.
pub async fn raise_emergency(
    tx: &Tx<'_>,
    now: Millis,
    deadline_ms: i64,
    words: AlertWords,
) -> Result<u32> {
    let late = tx
        .query(
            "SELECT id, ticket, requester, created_at FROM windows
             WHERE kind = 'emergency' AND status = 'requested' AND deadline_alerted_at IS NULL
               AND created_at <= $1
             FOR UPDATE SKIP LOCKED",
            &[&(now - deadline_ms)],
        )
        .await?;
    for r in &late {
        let late = LateEmergency {
            window_id: r.get(0),
            ticket: r.get(1),
            requester: r.get(2),
            recorded_at: r.get(3),
            deadline_ms,
        };
        insert_alert(tx, &(words.emergency)(&late), now).await?;
        tx.execute(
            "UPDATE windows SET deadline_alerted_at = $2 WHERE id = $1",
            &[&late.window_id, &now],
        )
        .await?;
    }
    Ok(late.len() as u32)
}
