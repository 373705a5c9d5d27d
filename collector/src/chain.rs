//! Each agent's events form a hash chain (`seq` counting from 1, `prev_hash` = the previous
//! event's `chain_hash`). Checking it per event proves nothing was dropped, reordered or
//! forged between host and collector. Pure: the store hands in what it has.

use driftwatch_common::api::v1::DriftEvent;
use driftwatch_common::hash::ContentHash;
use serde::{Deserialize, Serialize};

/// The last link stored for a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: ContentHash,
}

/// What an incoming event (with an id never seen before) does to the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The next link: extends the chain.
    Next,
    /// Sequence numbers were skipped: events `from..=to` never arrived (yet).
    Gap { from: u64, to: u64 },
    /// The right sequence number, but `prev_hash` is not the stored head: the agent's
    /// history diverged from what the collector holds.
    Fork { expected: ContentHash },
    /// Below the head and filling a hole left by a gap: stored, nothing to report.
    Late,
    /// Below the head where another event already holds this sequence number.
    Conflict { existing: ContentHash },
}

/// A problem worth an alert of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ChainProblem {
    Gap {
        from: u64,
        to: u64,
    },
    Fork {
        seq: u64,
        expected_prev: String,
        got_prev: String,
    },
    /// Two different events claim one sequence number.
    Conflict {
        seq: u64,
    },
    /// An event id seen before, now with different content.
    Replay {
        seq: u64,
        event_id: uuid::Uuid,
    },
}

impl ChainProblem {
    pub fn name(&self) -> &'static str {
        match self {
            ChainProblem::Gap { .. } => "gap",
            ChainProblem::Fork { .. } => "fork",
            ChainProblem::Conflict { .. } => "conflict",
            ChainProblem::Replay { .. } => "replay",
        }
    }
}

/// Judges `event` against the host's `head`; `holder` is the chain hash of a stored event
/// with the same sequence number, if any.
pub fn check(head: Option<Head>, event: &DriftEvent, holder: Option<ContentHash>) -> Verdict {
    let head = head.unwrap_or(Head {
        seq: 0,
        hash: DriftEvent::GENESIS,
    });
    if event.seq <= head.seq {
        return match holder {
            Some(existing) => Verdict::Conflict { existing },
            None => Verdict::Late,
        };
    }
    if event.seq > head.seq + 1 {
        return Verdict::Gap {
            from: head.seq + 1,
            to: event.seq - 1,
        };
    }
    if event.prev_hash != head.hash {
        return Verdict::Fork {
            expected: head.hash,
        };
    }
    Verdict::Next
}

impl Verdict {
    /// The alert this verdict raises, if any.
    pub fn problem(&self, event: &DriftEvent) -> Option<ChainProblem> {
        match self {
            Verdict::Next | Verdict::Late => None,
            Verdict::Gap { from, to } => Some(ChainProblem::Gap {
                from: *from,
                to: *to,
            }),
            Verdict::Fork { expected } => Some(ChainProblem::Fork {
                seq: event.seq,
                expected_prev: expected.to_hex(),
                got_prev: event.prev_hash.to_hex(),
            }),
            Verdict::Conflict { .. } => Some(ChainProblem::Conflict { seq: event.seq }),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Next => "ok",
            Verdict::Gap { .. } => "gap",
            Verdict::Fork { .. } => "fork",
            Verdict::Late => "late",
            Verdict::Conflict { .. } => "conflict",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use driftwatch_common::api::v1::{ChangeKind, SeenBy, SubjectKey, SubjectState};
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;

    fn event(seq: u64, prev: ContentHash) -> DriftEvent {
        DriftEvent {
            id: Uuid::now_v7(),
            host_id: Uuid::nil(),
            seq,
            prev_hash: prev,
            subject: SubjectKey("package:nginx".into()),
            kind: ChangeKind::Content,
            changed: vec![],
            before: None,
            after: Some(SubjectState::Fields {
                fields: BTreeMap::new(),
            }),
            diff: None,
            summary: None,
            actor: None,
            seen_by: SeenBy::Watch,
            observed_at: OffsetDateTime::UNIX_EPOCH,
            provenance: None,
            related: None,
            mac: None,
        }
    }

    fn head(event: &DriftEvent) -> Option<Head> {
        Some(Head {
            seq: event.seq,
            hash: event.chain_hash(),
        })
    }

    #[test]
    fn a_well_formed_chain_extends() {
        let first = event(1, DriftEvent::GENESIS);
        assert_eq!(check(None, &first, None), Verdict::Next);
        let second = event(2, first.chain_hash());
        assert_eq!(check(head(&first), &second, None), Verdict::Next);
    }

    #[test]
    fn skipped_numbers_are_a_gap() {
        let first = event(1, DriftEvent::GENESIS);
        let fifth = event(5, ContentHash([7; 32]));
        assert_eq!(
            check(head(&first), &fifth, None),
            Verdict::Gap { from: 2, to: 4 }
        );
        // An agent whose first event the collector sees is not 1.
        assert_eq!(check(None, &fifth, None), Verdict::Gap { from: 1, to: 4 });
    }

    #[test]
    fn a_wrong_previous_hash_is_a_fork() {
        let first = event(1, DriftEvent::GENESIS);
        let forged = event(2, ContentHash([1; 32]));
        let verdict = check(head(&first), &forged, None);
        assert_eq!(
            verdict,
            Verdict::Fork {
                expected: first.chain_hash()
            }
        );
        assert!(matches!(
            verdict.problem(&forged),
            Some(ChainProblem::Fork { seq: 2, .. })
        ));
        assert_eq!(
            check(None, &event(1, ContentHash([1; 32])), None).name(),
            "fork"
        );
    }

    #[test]
    fn old_numbers_fill_holes_or_conflict() {
        let third = event(3, ContentHash([3; 32]));
        let second = event(2, ContentHash([2; 32]));
        assert_eq!(check(head(&third), &second, None), Verdict::Late);
        assert_eq!(check(head(&third), &second, None).problem(&second), None);
        let other = ContentHash([9; 32]);
        assert_eq!(
            check(head(&third), &second, Some(other)),
            Verdict::Conflict { existing: other }
        );
    }
}
