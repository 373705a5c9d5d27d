//! Event ingest: dedupe, the chain and its keys, the drift step of each event and the
//! chain alerts, in the batch's transaction. What an event does (to the chain, to its drift
//! item and its alert hold) is decided by `crate::chain` and `crate::drift`; this file
//! reads what those need and writes what they decided.

use driftwatch_common::api::v1::DriftEvent;
use driftwatch_common::chain_key::ChainKey;
use driftwatch_common::hash::ContentHash;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::alerts::insert_alert;
use super::drift::history;
use super::rows::{Digest, Id, Json, Named, id, json, opt_id, seq};
use crate::audit::decisions::{self, DecisionFacts};
use crate::chain::{self, Admission, BatchChain, ChainKeys, ChainProblem, Head, Neighbours};
use crate::clock::Millis;
use crate::drift::{self, DriftStatus, HoldChange, ResolutionCategory, Step};
use crate::spool_time::{ClockClaim, SpoolTime};
use crate::store::{Decided, IngestOutcome, NewAlert, Resolution, Result, StoreError, StoredEvent};

pub fn ingest(
    conn: &Connection,
    host_id: Uuid,
    events: &[Decided],
    received_at: Millis,
) -> Result<IngestOutcome> {
    let (hostname, chain_seq, chain_hash, stored_keys) = conn
        .query_row(
            "SELECT hostname, chain_seq, chain_hash, chain_key_floor_seq, chain_key_floor,
                    chain_key_next_seq, chain_key_next
             FROM hosts WHERE id = ?1",
            [id(host_id)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Digest>(2)?,
                    chain_keys(r, 3)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("no host {host_id}")))?;
    let mut chain = BatchChain::new(
        Head {
            seq: chain_seq as u64,
            hash: ContentHash(chain_hash.0),
        },
        stored_keys,
    );
    let mut outcome = IngestOutcome::default();
    let decision_key = super::audit::decision_key();

    for decided in events {
        let event = &decided.event;
        let encoded = event.encode();
        let hash = encoded.chain_hash();
        let known: Option<Digest> = conn
            .query_row(
                "SELECT chain_hash FROM events WHERE id = ?1",
                [id(event.id)],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(known) = known {
            // A retry is harmless; the same id with other content is a forgery or a bug.
            if known.0 != hash.0 {
                outcome.chain_problems.push(ChainProblem::Replay {
                    seq: event.seq,
                    event_id: event.id,
                });
            }
            outcome.duplicates += 1;
            continue;
        }
        let holder = if chain.holder_needed(event.seq) {
            stored_link(conn, host_id, event.seq, "chain_hash")?
        } else {
            None
        };
        let authenticity = match chain.admit(event, &encoded, holder) {
            Admission::Admitted(authenticity) => authenticity,
            Admission::Refused(problem) => {
                outcome.chain_problems.push(problem);
                outcome.rejected += 1;
                continue;
            }
        };
        let around = if chain.neighbours_needed(event.seq, holder) {
            Neighbours {
                holder,
                predecessor: if event.seq == 1 {
                    Some(DriftEvent::GENESIS)
                } else {
                    stored_link(conn, host_id, event.seq - 1, "chain_hash")?
                },
                successor_prev: stored_link(conn, host_id, event.seq + 1, "prev_hash")?,
            }
        } else {
            Neighbours {
                holder,
                ..Neighbours::default()
            }
        };
        let linked = chain.link(event, hash, authenticity, around);
        if let Some(problem) = linked.problem {
            outcome.chain_problems.push(problem);
        }
        let chain_word = linked.word;

        let drift_id = move_drift(conn, host_id, decided, received_at)?;
        // The decision as stored, and its seal over exactly that text.
        let outcome_json = json(&decided.outcome);
        let spool_json = json(&decided.spool);
        let seal = decision_key.map(|key| {
            decisions::mac(
                &key,
                &DecisionFacts {
                    event_id: event.id,
                    chain_hash: &hash,
                    received_at,
                    event_time: decided.event_time,
                    outcome_json: &outcome_json,
                    chain: chain_word,
                    drift_id,
                    spool_json: &spool_json,
                },
            )
        });
        conn.execute(
            "INSERT INTO events (id, host_id, seq, chain_hash, chain, subject, kind, observed_at,
                                 event_time, received_at, outcome, decision, window_id, drift_id, body,
                                 spooled_after, spooled_before, spool, decision_mac)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            params![
                id(event.id),
                id(host_id),
                seq(event.seq),
                &hash.0[..],
                chain_word,
                event.subject.0,
                json(&event.kind).trim_matches('"'),
                crate::clock::from_offset(event.observed_at),
                decided.event_time,
                received_at,
                decided.outcome.name(),
                outcome_json,
                opt_id(decided.outcome.window_id()),
                opt_id(drift_id),
                encoded.json,
                decided.spool.spooled_after,
                decided.spool.spooled_before,
                spool_json,
                seal.as_ref().map(|mac| &mac[..])
            ],
        )?;
        outcome.accepted += 1;
        if decided.spool.clock_claim.is_false() {
            outcome.false_claims += 1;
        }
    }

    let mut floor = chain.floor_candidate();
    if let Some(floor) = &mut floor {
        // Events stored before this batch may follow a hole just filled.
        while *floor <= chain.head().seq
            && stored_link(conn, host_id, *floor, "chain_hash")?.is_some()
        {
            *floor += 1;
        }
    }
    let (head, keys) = chain.finish(floor);
    match &keys {
        None => {
            conn.execute(
                "UPDATE hosts SET chain_seq = ?2, chain_hash = ?3 WHERE id = ?1",
                params![id(host_id), seq(head.seq), &head.hash.0[..]],
            )?;
        }
        Some(keys) => {
            // One statement per batch, as before keys: the head and the keys together.
            conn.execute(
                "UPDATE hosts SET chain_seq = ?2, chain_hash = ?3,
                        chain_key_floor_seq = ?4, chain_key_floor = ?5,
                        chain_key_next_seq = ?6, chain_key_next = ?7
                 WHERE id = ?1",
                params![
                    id(host_id),
                    seq(head.seq),
                    &head.hash.0[..],
                    seq(keys.floor_seq),
                    &keys.floor.as_bytes()[..],
                    seq(keys.next_seq),
                    &keys.next.as_bytes()[..]
                ],
            )?;
        }
    }
    for problem in &outcome.chain_problems {
        insert_alert(
            conn,
            &NewAlert {
                kind: "chain".into(),
                host_id: Some(host_id),
                body: chain::alert_body(host_id, &hostname, problem),
            },
            received_at,
        )?;
    }
    outcome.last_seq = head.seq;
    Ok(outcome)
}

/// `column` (`chain_hash`, or the `prev_hash` in the body) of the host's stored event `seq`.
fn stored_link(
    conn: &Connection,
    host_id: Uuid,
    number: u64,
    column: &str,
) -> Result<Option<ContentHash>> {
    let sql = match column {
        "chain_hash" => "SELECT chain_hash FROM events WHERE host_id = ?1 AND seq = ?2 LIMIT 1",
        _ => {
            "SELECT unhex(json_extract(body, '$.prev_hash')) FROM events
              WHERE host_id = ?1 AND seq = ?2 LIMIT 1"
        }
    };
    let mut stmt = conn.prepare_cached(sql)?;
    Ok(stmt
        .query_row(params![id(host_id), seq(number)], |r| {
            r.get::<_, Option<Digest>>(0)
        })
        .optional()?
        .flatten()
        .map(|d| ContentHash(d.0)))
}

/// The host's chain keys from four columns starting at `at` (all NULL: no key).
fn chain_keys(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<ChainKeys>> {
    let floor_seq: Option<i64> = r.get(at)?;
    let floor: Option<Digest> = r.get(at + 1)?;
    let next_seq: Option<i64> = r.get(at + 2)?;
    let next: Option<Digest> = r.get(at + 3)?;
    Ok(match (floor_seq, floor, next_seq, next) {
        (Some(floor_seq), Some(floor), Some(next_seq), Some(next)) => Some(ChainKeys::stored(
            floor_seq as u64,
            ChainKey::from_bytes(floor.0),
            next_seq as u64,
            ChainKey::from_bytes(next.0),
        )),
        _ => None,
    })
}

/// Applies one event to the drift item of its subject; returns the item it belongs to.
fn move_drift(
    conn: &Connection,
    host_id: Uuid,
    decided: &Decided,
    received_at: Millis,
) -> Result<Option<Uuid>> {
    let event = &decided.event;
    let active: Option<(Id, Named<DriftStatus>, bool)> = conn
        .query_row(
            "SELECT id, status, alerted_at IS NOT NULL FROM drift
             WHERE host_id = ?1 AND subject = ?2 AND status IN ('open', 'authorized')",
            params![id(host_id), event.subject.0],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let reason = decided
        .outcome
        .needs_review()
        .then(|| decided.outcome.name());
    let window = opt_id(decided.outcome.window_id());
    let because = drift::event_reason(event.id, &decided.outcome);
    let step = drift::step(active.as_ref().map(|a| a.1.0), &decided.outcome);
    if let (Step::AutoResolve, Some((Id(drift_id), ..))) = (step, &active) {
        // Only restores the collector can check against the accepted state resolve (the
        // opening event is read for restores only, off the common path).
        let opening: Option<Json<DriftEvent>> = conn
            .query_row(
                "SELECT body FROM events WHERE drift_id = ?1 ORDER BY received_at, seq LIMIT 1",
                [id(*drift_id)],
                |r| r.get(0),
            )
            .optional()?;
        let verdict = match &opening {
            Some(Json(opening)) => drift::restore_verdict(opening, event),
            None => Err("the event that opened the drift is not stored".into()),
        };
        if let Err(differs) = verdict {
            return restore_refused(conn, *drift_id, decided, received_at, &differs);
        }
    }
    match (step, active) {
        (Step::Nothing, _) => Ok(None),
        (Step::Open(status), _) => {
            let drift_id = Uuid::now_v7();
            let review = status == DriftStatus::Open;
            conn.execute(
                "INSERT INTO drift (id, host_id, subject, status, reason, window_id, opened_at,
                                    untraced_since, needs_alert, events, last_event_id,
                                    last_event_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10, ?11, ?7)",
                params![
                    id(drift_id),
                    id(host_id),
                    event.subject.0,
                    status.name(),
                    reason,
                    window,
                    received_at,
                    review.then_some(received_at),
                    review,
                    id(event.id),
                    decided.event_time
                ],
            )?;
            history(
                conn,
                drift_id,
                received_at,
                None,
                status,
                drift::BY_COLLECTOR,
                &because,
            )?;
            Ok(Some(drift_id))
        }
        (Step::Update(status), Some((Id(drift_id), Named(before), alerted))) => {
            let hold = drift::hold_change(before, status, alerted, &decided.outcome);
            conn.execute(
                "UPDATE drift SET status = ?2,
                        reason = coalesce(?3, reason),
                        window_id = coalesce(?4, window_id),
                        untraced_since = CASE WHEN ?5 THEN ?6 ELSE untraced_since END,
                        needs_alert = CASE WHEN ?5 THEN 1 ELSE needs_alert END,
                        alerted_at = CASE WHEN ?5 THEN NULL ELSE alerted_at END,
                        events = events + 1, last_event_id = ?7, last_event_at = ?8,
                        updated_at = ?6
                 WHERE id = ?1",
                params![
                    id(drift_id),
                    status.name(),
                    reason,
                    window,
                    hold == HoldChange::Hold,
                    received_at,
                    id(event.id),
                    decided.event_time
                ],
            )?;
            if drift::records_history(before, status) {
                history(
                    conn,
                    drift_id,
                    received_at,
                    Some(before),
                    status,
                    drift::BY_COLLECTOR,
                    &because,
                )?;
            }
            Ok(Some(drift_id))
        }
        (Step::AutoResolve, Some((Id(drift_id), Named(before), _))) => {
            let resolution = Resolution {
                category: ResolutionCategory::Restored,
                comment: drift::restored_comment(event.id),
                ticket: None,
                by: drift::BY_COLLECTOR.into(),
                at: received_at,
            };
            // needs_alert stays: an untraced change that was undone still happened.
            conn.execute(
                "UPDATE drift SET status = 'resolved', resolution = ?2, events = events + 1,
                        last_event_id = ?3, last_event_at = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![
                    id(drift_id),
                    json(&resolution),
                    id(event.id),
                    decided.event_time,
                    received_at
                ],
            )?;
            history(
                conn,
                drift_id,
                received_at,
                Some(before),
                DriftStatus::Resolved,
                drift::BY_COLLECTOR,
                &because,
            )?;
            Ok(Some(drift_id))
        }
        (step, active) => Err(StoreError::other(format!(
            "drift step {step:?} without an active item ({})",
            active.is_some()
        ))),
    }
}

/// A `restored` event whose state is not the one the collector accepted: the drift stays
/// open, the mismatch is recorded in its history and it is alerted again (like a further
/// untraced change of the subject).
fn restore_refused(
    conn: &Connection,
    drift_id: Uuid,
    decided: &Decided,
    received_at: Millis,
    differs: &str,
) -> Result<Option<Uuid>> {
    let event = &decided.event;
    let before: Named<DriftStatus> = conn.query_row(
        "SELECT status FROM drift WHERE id = ?1",
        [id(drift_id)],
        |r| r.get(0),
    )?;
    let status = drift::after_refused_restore(before.0);
    let hold = drift::hold_after_refused_restore(status) == HoldChange::Hold;
    conn.execute(
        "UPDATE drift SET status = ?6,
                reason = CASE WHEN ?7 THEN ?2 ELSE reason END,
                untraced_since = CASE WHEN ?7 THEN ?3 ELSE untraced_since END,
                needs_alert = CASE WHEN ?7 THEN 1 ELSE needs_alert END,
                alerted_at = CASE WHEN ?7 THEN NULL ELSE alerted_at END,
                events = events + 1, last_event_id = ?4, last_event_at = ?5, updated_at = ?3
         WHERE id = ?1",
        params![
            id(drift_id),
            drift::RESTORE_MISMATCH,
            received_at,
            id(event.id),
            decided.event_time,
            status.name(),
            hold
        ],
    )?;
    history(
        conn,
        drift_id,
        received_at,
        Some(before.0),
        status,
        drift::BY_COLLECTOR,
        &drift::refused_restore_reason(event.id, differs),
    )?;
    Ok(Some(drift_id))
}

pub fn event_row(r: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let received_at = r.get(1)?;
    // Events stored before spool bounds existed: enrollment to arrival (the migration).
    let spool = match r.get::<_, Option<Json<SpoolTime>>>(6)? {
        Some(spool) => spool.0,
        None => SpoolTime {
            spooled_after: r.get::<_, Option<i64>>(7)?.unwrap_or(i64::MIN),
            spooled_before: r.get::<_, Option<i64>>(8)?.unwrap_or(received_at),
            clock_claim: ClockClaim::Consistent,
            not_provably_in: None,
        },
    };
    Ok(StoredEvent {
        event: r.get::<_, Json<DriftEvent>>(0)?.0,
        received_at,
        event_time: r.get(2)?,
        outcome: r.get::<_, Json<_>>(3)?.0,
        chain: r.get(4)?,
        drift_id: r.get::<_, Option<Id>>(5)?.map(|i| i.0),
        spool,
        decision_mac: r.get::<_, Option<Digest>>(9)?.map(|d| d.0),
    })
}

/// Stored events by id, in the order asked (missing ones left out).
pub fn events_by_id(conn: &Connection, ids: &[Uuid]) -> Result<Vec<StoredEvent>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"))?;
    let mut found = Vec::with_capacity(ids.len());
    for event_id in ids {
        if let Some(event) = stmt.query_row([id(*event_id)], event_row).optional()? {
            found.push(event);
        }
    }
    Ok(found)
}

pub const EVENT_COLUMNS: &str = "body, received_at, event_time, decision, chain, drift_id, spool, spooled_after, spooled_before, decision_mac";

/// Seals the decision of `event_id` again after the collector changed it (a window approved
/// after the fact re-judged it).
pub fn reseal_decision(conn: &Connection, event_id: Uuid, key: &[u8; 32]) -> Result<()> {
    let stored = conn.query_row(
        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"),
        [id(event_id)],
        event_row,
    )?;
    let seal = decisions::mac_of_stored(key, &stored);
    conn.execute(
        "UPDATE events SET decision_mac = ?2 WHERE id = ?1",
        params![id(event_id), &seal[..]],
    )?;
    Ok(())
}

/// Seals the decision of every stored event that has none (stored before the collector had
/// its signing key), so that from then on a missing seal is an alteration. Runs on the
/// database thread once the key is set.
pub fn seal_unsealed_decisions(conn: &Connection, key: &[u8; 32]) -> Result<u64> {
    let tx = conn.unchecked_transaction()?;
    let unsealed: Vec<(Id, StoredEvent)> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT {EVENT_COLUMNS}, id FROM events WHERE decision_mac IS NULL"
        ))?;
        let id_column = EVENT_COLUMNS.split(", ").count();
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Id>(id_column)?, event_row(r)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (event_id, stored) in &unsealed {
        let seal = decisions::mac_of_stored(key, stored);
        tx.execute(
            "UPDATE events SET decision_mac = ?2 WHERE id = ?1",
            params![id(event_id.0), &seal[..]],
        )?;
    }
    tx.commit()?;
    Ok(unsealed.len() as u64)
}

pub fn events_of(conn: &Connection, drift_id: Uuid) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE drift_id = ?1 ORDER BY received_at, seq"
    ))?;
    let rows = stmt.query_map([id(drift_id)], event_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
