//! Drift vs change windows. Pure: the caller hands in the index of approved windows and what
//! it knows about the host; the answer says whether an event is authorized, and by which
//! window.
//!
//! An event is authorized by an approved window that covers its host, its subject and its
//! time: the agent's clock corrected by the skew measured from heartbeats, give or take the
//! configured tolerance. A window that names the expected end state of the subject
//! authorizes only that state ("in window, unexpected state" otherwise). When several
//! windows authorize, the earliest created wins, so the choice is stable.

mod index;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use driftwatch_common::api::v1::{ChangeKind, SubjectState};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use index::WindowIndex;

use crate::clock::Millis;

/// What the collector knows about the host an event came from.
#[derive(Clone, Copy, Debug)]
pub struct HostFacts<'a> {
    pub hostname: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Agent clock minus collector clock, from the last heartbeat.
    pub skew_ms: i64,
}

/// The parts of an event the matcher looks at.
#[derive(Clone, Copy, Debug)]
pub struct EventFacts<'a> {
    pub subject: &'a str,
    pub kind: ChangeKind,
    pub after: Option<&'a SubjectState>,
    /// Agent clock.
    pub observed_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Authorized {
        window_id: Uuid,
    },
    /// Inside a window that approved another end state for this subject.
    UnexpectedState {
        window_id: Uuid,
        expected: String,
    },
    Untraced,
    /// Back to the baseline state: nothing to authorize.
    Restored,
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Authorized { .. } => "authorized",
            Outcome::UnexpectedState { .. } => "unexpected_state",
            Outcome::Untraced => "untraced",
            Outcome::Restored => "restored",
        }
    }

    pub fn window_id(&self) -> Option<Uuid> {
        match self {
            Outcome::Authorized { window_id } | Outcome::UnexpectedState { window_id, .. } => {
                Some(*window_id)
            }
            Outcome::Untraced | Outcome::Restored => None,
        }
    }

    /// Needs a person: untraced, or in a window but not the approved state.
    pub fn needs_review(&self) -> bool {
        matches!(self, Outcome::Untraced | Outcome::UnexpectedState { .. })
    }
}

/// Decides one event.
pub fn match_event(
    index: &WindowIndex,
    host: HostFacts<'_>,
    event: EventFacts<'_>,
    tolerance_ms: i64,
) -> Outcome {
    if event.kind == ChangeKind::Restored {
        return Outcome::Restored;
    }
    let at = event.observed_at.saturating_sub(host.skew_ms);
    let mut unexpected = None;
    for window in index.candidates(host, at, tolerance_ms) {
        if !window.subjects.covers(event.subject) {
            continue;
        }
        match window
            .expected
            .iter()
            .find(|expected| expected.subject == event.subject)
        {
            Some(expected) if !expected.is_met_by(event.after) => {
                unexpected.get_or_insert(Outcome::UnexpectedState {
                    window_id: window.id,
                    expected: expected.describe(),
                });
            }
            _ => {
                return Outcome::Authorized {
                    window_id: window.id,
                };
            }
        }
    }
    unexpected.unwrap_or(Outcome::Untraced)
}
