//! Sealed event decisions (pure): what the collector decided about each event (outcome,
//! window, spool bounds, chain verdict, drift item) carries a MAC keyed from the audit
//! signing key, made when the decision is stored or changed. Someone holding the database
//! without the key cannot turn an untraced event into an authorized one
//! (`UPDATE events SET decision = ...`) without the evidence saying so.

use driftwatch_common::hash::ContentHash;
use uuid::Uuid;

use super::Finding;
use crate::clock::Millis;
use crate::store::StoredEvent;

/// Domain of the key derived from the audit signing key's secret.
pub const KEY_CONTEXT: &str = "driftwatch collector 2026-12 event decision mac";

/// Everything a decision rests on: the MAC covers exactly this. `outcome` and `spool` are
/// their JSON as stored (ingest has just written them; a reader re-serializes what it
/// parsed, which gives the same text).
pub struct DecisionFacts<'a> {
    pub event_id: Uuid,
    /// The event's chain hash: its content as the host sent it.
    pub chain_hash: &'a ContentHash,
    pub received_at: Millis,
    pub event_time: Millis,
    pub outcome_json: &'a str,
    pub chain: &'a str,
    pub drift_id: Option<Uuid>,
    pub spool_json: &'a str,
}

/// The MAC of `facts` under `key` (from `AuditKey::decision_key`): keyed BLAKE3 over the
/// fixed-size fields and the length-prefixed texts, so no two fact sets share an input.
pub fn mac(key: &[u8; 32], facts: &DecisionFacts<'_>) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(facts.event_id.as_bytes());
    hasher.update(&facts.chain_hash.0);
    hasher.update(&facts.received_at.to_le_bytes());
    hasher.update(&facts.event_time.to_le_bytes());
    hasher.update(facts.drift_id.unwrap_or_default().as_bytes());
    hasher.update(&[u8::from(facts.drift_id.is_some())]);
    for text in [facts.outcome_json, facts.chain, facts.spool_json] {
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    *hasher.finalize().as_bytes()
}

/// The facts of a stored event (its chain hash recomputed from the stored body).
pub fn mac_of_stored(key: &[u8; 32], stored: &StoredEvent) -> [u8; 32] {
    let outcome_json = serde_json::to_string(&stored.outcome).expect("outcomes serialize");
    let spool_json = serde_json::to_string(&stored.spool).expect("spool times serialize");
    mac(
        key,
        &DecisionFacts {
            event_id: stored.event.id,
            chain_hash: &stored.event.chain_hash(),
            received_at: stored.received_at,
            event_time: stored.event_time,
            outcome_json: &outcome_json,
            chain: &stored.chain,
            drift_id: stored.drift_id,
            spool_json: &spool_json,
        },
    )
}

/// One finding per event whose decision is not the one the collector sealed (edited in
/// the database, or its seal removed).
pub fn check<'a>(
    key: &[u8; 32],
    events: impl IntoIterator<Item = &'a StoredEvent>,
) -> Vec<Finding> {
    events
        .into_iter()
        .filter_map(|stored| {
            let problem = match stored.decision_mac {
                None => "has no seal",
                Some(sealed) if sealed != mac_of_stored(key, stored) => "does not match its seal",
                Some(_) => return None,
            };
            Some(Finding {
                seq: 0,
                problem: format!(
                    "ALTERED: the recorded decision of event {} ({}) {problem}: the events \
                     table was edited outside the collector",
                    stored.event.id,
                    stored.outcome.name()
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use driftwatch_common::api::v1::{ChangeKind, DriftEvent, SeenBy, SubjectKey};

    use super::*;
    use crate::matcher::Outcome;
    use crate::spool_time::SpoolTime;

    fn stored(outcome: Outcome) -> StoredEvent {
        StoredEvent {
            event: DriftEvent {
                id: Uuid::nil(),
                host_id: Uuid::nil(),
                seq: 1,
                prev_hash: DriftEvent::GENESIS,
                subject: SubjectKey("file:/etc/cron.d/backdoor".into()),
                kind: ChangeKind::Added,
                changed: vec![],
                before: None,
                after: None,
                diff: None,
                summary: None,
                actor: None,
                seen_by: SeenBy::Watch,
                observed_at: time::OffsetDateTime::UNIX_EPOCH,
                provenance: None,
                related: None,
                mac: None,
            },
            received_at: 2,
            event_time: 1,
            outcome,
            chain: "ok".into(),
            drift_id: None,
            spool: SpoolTime::default(),
            decision_mac: None,
        }
    }

    #[test]
    fn a_sealed_decision_passes_and_an_edited_or_unsealed_one_is_found() {
        let key = [7; 32];
        let mut honest = stored(Outcome::Untraced);
        honest.decision_mac = Some(mac_of_stored(&key, &honest));
        assert_eq!(check(&key, [&honest]), Vec::new());

        let mut forged = honest.clone();
        forged.outcome = Outcome::Authorized {
            window_id: Uuid::nil(),
        };
        let found = check(&key, [&forged]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].problem.contains("does not match its seal"),
            "{found:?}"
        );

        let mut moved = honest.clone();
        moved.event_time = 0;
        assert_eq!(
            check(&key, [&moved]).len(),
            1,
            "the event time is sealed too"
        );

        let unsealed = stored(Outcome::Untraced);
        assert!(check(&key, [&unsealed])[0].problem.contains("has no seal"));
        // Another key's seal does not pass.
        assert_eq!(check(&[8; 32], [&honest]).len(), 1);
    }
}
