//! Event ingest: dedupe, the chain and its keys, the drift step of each event and the
//! chain alerts, in the batch's transaction. The host's row is locked first (`FOR
//! UPDATE`): two nodes receiving batches of one agent at once check its chain one batch
//! after the other, each seeing the other's events. The rules are `crate::chain`'s and
//! `crate::drift`'s.

use driftwatch_common::api::v1::DriftEvent;
use driftwatch_common::chain_key::ChainKey;
use driftwatch_common::hash::ContentHash;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Tx;
use super::alerts::insert_alert;
use super::drift::history;
use super::rows::{digest, from_json, json, named, seq, unseq};
use crate::audit::decisions::{self, DecisionFacts};
use crate::chain::{self, Admission, BatchChain, ChainKeys, ChainProblem, Head, Neighbours};
use crate::clock::Millis;
use crate::drift::{self, DriftStatus, HoldChange, ResolutionCategory, Step};
use crate::spool_time::{ClockClaim, SpoolTime};
use crate::store::{Decided, IngestOutcome, NewAlert, Resolution, Result, StoreError, StoredEvent};

pub async fn ingest(
    tx: &Tx<'_>,
    decision_key: Option<[u8; 32]>,
    host_id: Uuid,
    events: &[Decided],
    received_at: Millis,
) -> Result<IngestOutcome> {
    // It may write history: that lock before the host's row (`drift::HISTORY_LOCK`).
    super::drift::lock_history(tx).await?;
    let host = tx
        .query_opt(
            "SELECT hostname, chain_seq, chain_hash, chain_key_floor_seq, chain_key_floor,
                    chain_key_next_seq, chain_key_next
             FROM hosts WHERE id = $1 FOR UPDATE",
            &[&host_id],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no host {host_id}")))?;
    let hostname: String = host.get(0);
    let mut chain = BatchChain::new(
        Head {
            seq: unseq(host.get(1)),
            hash: ContentHash(digest(host.get(2))?),
        },
        chain_keys(&host, 3)?,
    );
    let mut outcome = IngestOutcome::default();

    for decided in events {
        let event = &decided.event;
        let encoded = event.encode();
        let hash = encoded.chain_hash();
        let known = tx
            .query_opt("SELECT chain_hash FROM events WHERE id = $1", &[&event.id])
            .await?;
        if let Some(known) = known {
            // A retry is harmless; the same id with other content is a forgery or a bug.
            if known.get::<_, &[u8]>(0) != &hash.0[..] {
                outcome.chain_problems.push(ChainProblem::Replay {
                    seq: event.seq,
                    event_id: event.id,
                });
            }
            outcome.duplicates += 1;
            continue;
        }
        let holder = if chain.holder_needed(event.seq) {
            stored_hash(tx, host_id, event.seq).await?
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
                    stored_hash(tx, host_id, event.seq - 1).await?
                },
                successor_prev: stored_prev(tx, host_id, event.seq + 1).await?,
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

        let drift_id = move_drift(tx, host_id, decided, received_at).await?;
        // The seal is over the decision's canonical text (`decisions::mac_of_stored`
        // serializes what it reads back the same way).
        let outcome_json = serde_json::to_string(&decided.outcome)?;
        let spool_json = serde_json::to_string(&decided.spool)?;
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
        let body: serde_json::Value = serde_json::from_str(&encoded.json)?;
        let kind = json(&event.kind);
        tx.execute(
            "INSERT INTO events (id, host_id, seq, chain_hash, chain, subject, kind, observed_at,
                                 event_time, received_at, outcome, decision, window_id, drift_id, body,
                                 spooled_after, spooled_before, spool, decision_mac)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
            &[
                &event.id,
                &host_id,
                &seq(event.seq),
                &&hash.0[..],
                &chain_word,
                &event.subject.0,
                &kind.as_str().unwrap_or_default(),
                &crate::clock::from_offset(event.observed_at),
                &decided.event_time,
                &received_at,
                &decided.outcome.name(),
                &json(&decided.outcome),
                &decided.outcome.window_id(),
                &drift_id,
                &body,
                &decided.spool.spooled_after,
                &decided.spool.spooled_before,
                &json(&decided.spool),
                &seal.as_ref().map(|mac| &mac[..]),
            ],
        )
        .await?;
        outcome.accepted += 1;
        if decided.spool.clock_claim.is_false() {
            outcome.false_claims += 1;
        }
    }

    let mut floor = chain.floor_candidate();
    if let Some(floor) = &mut floor {
        // Events stored before this batch may follow a hole just filled.
        while *floor <= chain.head().seq && stored_hash(tx, host_id, *floor).await?.is_some() {
            *floor += 1;
        }
    }
    let (head, keys) = chain.finish(floor);
    match &keys {
        None => {
            tx.execute(
                "UPDATE hosts SET chain_seq = $2, chain_hash = $3 WHERE id = $1",
                &[&host_id, &seq(head.seq), &&head.hash.0[..]],
            )
            .await?;
        }
        Some(keys) => {
            tx.execute(
                "UPDATE hosts SET chain_seq = $2, chain_hash = $3,
                        chain_key_floor_seq = $4, chain_key_floor = $5,
                        chain_key_next_seq = $6, chain_key_next = $7
                 WHERE id = $1",
                &[
                    &host_id,
                    &seq(head.seq),
                    &&head.hash.0[..],
                    &seq(keys.floor_seq),
                    &&keys.floor.as_bytes()[..],
                    &seq(keys.next_seq),
                    &&keys.next.as_bytes()[..],
                ],
            )
            .await?;
        }
    }
    for problem in &outcome.chain_problems {
        insert_alert(
            tx,
            &NewAlert {
                kind: "chain".into(),
                host_id: Some(host_id),
                body: chain::alert_body(host_id, &hostname, problem),
            },
            received_at,
        )
        .await?;
    }
    outcome.last_seq = head.seq;
    Ok(outcome)
}

/// The chain hash of the host's stored event `number`.
async fn stored_hash(tx: &Tx<'_>, host_id: Uuid, number: u64) -> Result<Option<ContentHash>> {
    let row = tx
        .query_opt(
            "SELECT chain_hash FROM events WHERE host_id = $1 AND seq = $2 LIMIT 1",
            &[&host_id, &seq(number)],
        )
        .await?;
    row.map(|r| Ok(ContentHash(digest(r.get(0))?))).transpose()
}

/// The `prev_hash` the host's stored event `number` names.
async fn stored_prev(tx: &Tx<'_>, host_id: Uuid, number: u64) -> Result<Option<ContentHash>> {
    let row = tx
        .query_opt(
            "SELECT body->>'prev_hash' FROM events WHERE host_id = $1 AND seq = $2 LIMIT 1",
            &[&host_id, &seq(number)],
        )
        .await?;
    Ok(row
        .and_then(|r| r.get::<_, Option<String>>(0))
        .and_then(|hex| serde_json::from_value(serde_json::Value::String(hex)).ok()))
}

/// The host's chain keys from four columns starting at `at` (all NULL: no key).
fn chain_keys(r: &Row, at: usize) -> Result<Option<ChainKeys>> {
    let floor_seq: Option<i64> = r.get(at);
    let floor: Option<&[u8]> = r.get(at + 1);
    let next_seq: Option<i64> = r.get(at + 2);
    let next: Option<&[u8]> = r.get(at + 3);
    Ok(match (floor_seq, floor, next_seq, next) {
        (Some(floor_seq), Some(floor), Some(next_seq), Some(next)) => Some(ChainKeys::stored(
            unseq(floor_seq),
            ChainKey::from_bytes(digest(floor)?),
            unseq(next_seq),
            ChainKey::from_bytes(digest(next)?),
        )),
        _ => None,
    })
}

/// Applies one event to the drift item of its subject; returns the item it belongs to.
async fn move_drift(
    tx: &Tx<'_>,
    host_id: Uuid,
    decided: &Decided,
    received_at: Millis,
) -> Result<Option<Uuid>> {
    let event = &decided.event;
    let active = tx
        .query_opt(
            "SELECT id, status, alerted_at IS NOT NULL FROM drift
             WHERE host_id = $1 AND subject = $2 AND status IN ('open', 'authorized')
             FOR UPDATE",
            &[&host_id, &event.subject.0],
        )
        .await?
        .map(|r| -> Result<(Uuid, DriftStatus, bool)> {
            Ok((r.get(0), named(r.get::<_, &str>(1))?, r.get(2)))
        })
        .transpose()?;
    let reason = decided
        .outcome
        .needs_review()
        .then(|| decided.outcome.name());
    let window = decided.outcome.window_id();
    let because = drift::event_reason(event.id, &decided.outcome);
    let step = drift::step(active.as_ref().map(|a| a.1), &decided.outcome);
    if let (Step::AutoResolve, Some((drift_id, ..))) = (step, &active) {
        // Only restores the collector can check against the accepted state resolve.
        let opening = tx
            .query_opt(
                "SELECT body FROM events WHERE drift_id = $1 ORDER BY received_at, seq LIMIT 1",
                &[drift_id],
            )
            .await?
            .map(|r| from_json::<DriftEvent>(r.get(0)))
            .transpose()?;
        let verdict = match &opening {
            Some(opening) => drift::restore_verdict(opening, event),
            None => Err("the event that opened the drift is not stored".into()),
        };
        if let Err(differs) = verdict {
            return restore_refused(tx, *drift_id, decided, received_at, &differs).await;
        }
    }
    match (step, active) {
        (Step::Nothing, _) => Ok(None),
        (Step::Open(status), _) => {
            let drift_id = Uuid::now_v7();
            let review = status == DriftStatus::Open;
            tx.execute(
                "INSERT INTO drift (id, host_id, subject, status, reason, window_id, opened_at,
                                    untraced_since, needs_alert, events, last_event_id,
                                    last_event_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11, $7)",
                &[
                    &drift_id,
                    &host_id,
                    &event.subject.0,
                    &status.name(),
                    &reason,
                    &window,
                    &received_at,
                    &review.then_some(received_at),
                    &review,
                    &event.id,
                    &decided.event_time,
                ],
            )
            .await?;
            history(
                tx,
                drift_id,
                received_at,
                None,
                status,
                drift::BY_COLLECTOR,
                &because,
            )
            .await?;
            Ok(Some(drift_id))
        }
        (Step::Update(status), Some((drift_id, before, alerted))) => {
            let hold = drift::hold_change(before, status, alerted, &decided.outcome);
            tx.execute(
                "UPDATE drift SET status = $2,
                        reason = coalesce($3, reason),
                        window_id = coalesce($4, window_id),
                        untraced_since = CASE WHEN $5 THEN $6 ELSE untraced_since END,
                        needs_alert = CASE WHEN $5 THEN true ELSE needs_alert END,
                        alerted_at = CASE WHEN $5 THEN NULL ELSE alerted_at END,
                        events = events + 1, last_event_id = $7, last_event_at = $8,
                        updated_at = $6
                 WHERE id = $1",
                &[
                    &drift_id,
                    &status.name(),
                    &reason,
                    &window,
                    &(hold == HoldChange::Hold),
                    &received_at,
                    &event.id,
                    &decided.event_time,
                ],
            )
            .await?;
            if drift::records_history(before, status) {
                history(
                    tx,
                    drift_id,
                    received_at,
                    Some(before),
                    status,
                    drift::BY_COLLECTOR,
                    &because,
                )
                .await?;
            }
            Ok(Some(drift_id))
        }
        (Step::AutoResolve, Some((drift_id, before, _))) => {
            let resolution = Resolution {
                category: ResolutionCategory::Restored,
                comment: drift::restored_comment(event.id),
                ticket: None,
                by: drift::BY_COLLECTOR.into(),
                at: received_at,
            };
            // needs_alert stays: an untraced change that was undone still happened.
            tx.execute(
                "UPDATE drift SET status = 'resolved', resolution = $2, events = events + 1,
                        last_event_id = $3, last_event_at = $4, updated_at = $5
                 WHERE id = $1",
                &[
                    &drift_id,
                    &json(&resolution),
                    &event.id,
                    &decided.event_time,
                    &received_at,
                ],
            )
            .await?;
            history(
                tx,
                drift_id,
                received_at,
                Some(before),
                DriftStatus::Resolved,
                drift::BY_COLLECTOR,
                &because,
            )
            .await?;
            Ok(Some(drift_id))
        }
        (step, active) => Err(StoreError::other(format!(
            "drift step {step:?} without an active item ({})",
            active.is_some()
        ))),
    }
}

/// A `restored` event whose state is not the one the collector accepted: the drift stays
/// open, the mismatch is recorded in its history and it is alerted again.
async fn restore_refused(
    tx: &Tx<'_>,
    drift_id: Uuid,
    decided: &Decided,
    received_at: Millis,
    differs: &str,
) -> Result<Option<Uuid>> {
    let event = &decided.event;
    let before: DriftStatus = named(
        tx.query_one("SELECT status FROM drift WHERE id = $1", &[&drift_id])
            .await?
            .get::<_, &str>(0),
    )?;
    let status = drift::after_refused_restore(before);
    let hold = drift::hold_after_refused_restore(status) == HoldChange::Hold;
    tx.execute(
        "UPDATE drift SET status = $6,
                reason = CASE WHEN $7 THEN $2 ELSE reason END,
                untraced_since = CASE WHEN $7 THEN $3 ELSE untraced_since END,
                needs_alert = CASE WHEN $7 THEN true ELSE needs_alert END,
                alerted_at = CASE WHEN $7 THEN NULL ELSE alerted_at END,
                events = events + 1, last_event_id = $4, last_event_at = $5, updated_at = $3
         WHERE id = $1",
        &[
            &drift_id,
            &drift::RESTORE_MISMATCH,
            &received_at,
            &event.id,
            &decided.event_time,
            &status.name(),
            &hold,
        ],
    )
    .await?;
    history(
        tx,
        drift_id,
        received_at,
        Some(before),
        status,
        drift::BY_COLLECTOR,
        &drift::refused_restore_reason(event.id, differs),
    )
    .await?;
    Ok(Some(drift_id))
}

/// The columns [`event_row_at`] reads, for a table aliased `e`.
pub const EVENT_COLUMNS: &str = "e.body, e.received_at, e.event_time, e.decision, e.chain, \
     e.drift_id, e.spool, e.spooled_after, e.spooled_before, e.decision_mac";
/// How many columns [`EVENT_COLUMNS`] names.
pub const EVENT_COLUMN_COUNT: usize = 10;

pub fn event_row_at(r: &Row, at: usize) -> Result<StoredEvent> {
    let received_at: Millis = r.get(at + 1);
    let spool = match r.get::<_, Option<serde_json::Value>>(at + 6) {
        Some(spool) => from_json(spool)?,
        None => SpoolTime {
            spooled_after: r.get::<_, Option<i64>>(at + 7).unwrap_or(i64::MIN),
            spooled_before: r.get::<_, Option<i64>>(at + 8).unwrap_or(received_at),
            clock_claim: ClockClaim::Consistent,
            not_provably_in: None,
        },
    };
    Ok(StoredEvent {
        event: from_json(r.get(at))?,
        received_at,
        event_time: r.get(at + 2),
        outcome: from_json(r.get(at + 3))?,
        chain: r.get(at + 4),
        drift_id: r.get(at + 5),
        spool,
        decision_mac: r.get::<_, Option<&[u8]>>(at + 9).map(digest).transpose()?,
    })
}

/// Seals the decision of `event_id` again after the collector changed it (a window approved
/// after the fact re-judged it).
pub async fn reseal_decision(tx: &Tx<'_>, event_id: Uuid, key: &[u8; 32]) -> Result<()> {
    let row = tx
        .query_one(
            &format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.id = $1"),
            &[&event_id],
        )
        .await?;
    let stored = event_row_at(&row, 0)?;
    let seal = decisions::mac_of_stored(key, &stored);
    tx.execute(
        "UPDATE events SET decision_mac = $2 WHERE id = $1",
        &[&event_id, &&seal[..]],
    )
    .await?;
    Ok(())
}

/// Seals the decision of every stored event that has none (stored before the collector had
/// its signing key), so that from then on a missing seal is an alteration.
pub async fn seal_unsealed_decisions(tx: &Tx<'_>, key: &[u8; 32]) -> Result<u64> {
    let rows = tx
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS}, e.id FROM events e WHERE e.decision_mac IS NULL FOR UPDATE"
            ),
            &[],
        )
        .await?;
    for r in &rows {
        let stored = event_row_at(r, 0)?;
        let event_id: Uuid = r.get(EVENT_COLUMN_COUNT);
        let seal = decisions::mac_of_stored(key, &stored);
        tx.execute(
            "UPDATE events SET decision_mac = $2 WHERE id = $1",
            &[&event_id, &&seal[..]],
        )
        .await?;
    }
    Ok(rows.len() as u64)
}

/// Stored events by id, in the order asked (missing ones left out).
pub async fn events_by_id(tx: &Tx<'_>, ids: &[Uuid]) -> Result<Vec<StoredEvent>> {
    let rows = tx
        .query(
            &format!("SELECT {EVENT_COLUMNS}, e.id FROM events e WHERE e.id = ANY($1)"),
            &[&ids],
        )
        .await?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for r in &rows {
        found.insert(r.get::<_, Uuid>(EVENT_COLUMN_COUNT), event_row_at(r, 0)?);
    }
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}

pub async fn events_of(tx: &Tx<'_>, drift_id: Uuid) -> Result<Vec<StoredEvent>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events e WHERE e.drift_id = $1
                 ORDER BY e.received_at, e.seq"
            ),
            &[&drift_id],
        )
        .await?;
    rows.iter().map(|r| event_row_at(r, 0)).collect()
}
