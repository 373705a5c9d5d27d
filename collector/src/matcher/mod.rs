//! Drift vs change windows. Pure: the caller hands in the index of approved windows and what
//! it knows about the host; the answer says whether an event is authorized, and by which
//! window.
//!
//! An event is authorized by an approved window that covers its host, its subject and its
//! time. The time is never the agent's claim (`observed_at`: root on the host sets that
//! clock) but the interval in which the collector can prove the event reached the agent's
//! spool ([`SpoolBounds`], from heartbeats and the batch's arrival: `crate::spool_time`).
//! The window must cover that whole interval: the tolerance widens its start and its
//! planned end, never past its close or cancel time (a window closed at T authorizes
//! nothing spooled after T). When a window that covers the host and subject was open for
//! part of the interval only, the event is untraced and the window is named
//! ([`Judgement::not_provably_in`]: "spool time not provably inside the window"). A
//! window that names the expected end state of the subject
//! authorizes only that state ("in window, unexpected state" otherwise). When several
//! windows authorize, the earliest created wins, so the choice is stable.
//!
//! Who made the change is checked too, from the event's actor ([`person`]): a change made
//! by the window's approver is `made_by_approver` (segregation of duties); when the window
//! names implementers, a change by anyone else is `wrong_implementer`, and one whose actor
//! is unknown is `actor_unknown` (attribution missing or partial: security looks, since
//! nobody can say the right person did it). A window without implementers accepts an
//! unknown actor, as before attribution existed. These outcomes are flagged, never
//! authorized: they open drift and alert like untraced drift, naming the window.
//! When no window authorizes, the flag of the earliest created covering window is kept.
//!
//! Package upgrades: a window whose subjects include `package:GLOB` also covers a file
//! whose provenance names a package matching GLOB, when the package manager says the
//! file's content is the packaged one (an upgrade wrote it). A file that claims such a
//! package but does not match the packaged content is `package_mismatch`: never covered
//! through the package (it could be a trojaned binary left under a package's name). A file
//! the window's own file globs cover is judged by those, whatever its provenance.

mod decide;
pub mod explain;
mod index;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use driftwatch_common::api::v1::{Actor, ChangeKind, Provenance, SubjectState};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use decide::decide;
pub use decide::{Decision, Ending, Miss, Opening, span};
use index::Compiled;
pub use index::WindowIndex;

use crate::spool_time::SpoolBounds;

/// What the collector knows about the host an event came from.
#[derive(Clone, Copy, Debug)]
pub struct HostFacts<'a> {
    pub hostname: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// The parts of an event the matcher looks at.
#[derive(Clone, Copy, Debug)]
pub struct EventFacts<'a> {
    pub subject: &'a str,
    pub kind: ChangeKind,
    pub after: Option<&'a SubjectState>,
    /// When the event can have been spooled, on the collector's clock.
    pub spooled: SpoolBounds,
    /// Who made the change, when the agent could tell.
    pub actor: Option<&'a Actor>,
    /// What the package manager says about a changed file.
    pub provenance: Option<&'a Provenance>,
}

/// The person behind a change, as windows name implementers: the audit login user (it
/// survives sudo); without a login session (a service or a timer), the process's user.
/// `None` when unknown: no actor, or a login uid whose name the host could not resolve
/// (falling back to the process user there would name root instead of the person).
pub fn person(actor: Option<&Actor>) -> Option<&str> {
    let actor = actor?;
    match (actor.login_uid, &actor.login_user) {
        (_, Some(login)) => Some(login),
        (Some(_), None) => None,
        (None, None) => actor.user.as_deref(),
    }
}

/// The outcomes that need a person (stored events and drift items carry these names).
pub const REVIEW_OUTCOMES: [&str; 6] = [
    "untraced",
    "unexpected_state",
    "wrong_implementer",
    "made_by_approver",
    "actor_unknown",
    "package_mismatch",
];

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
    /// Inside a window, made by someone it does not name as implementer.
    WrongImplementer {
        window_id: Uuid,
        actor: String,
    },
    /// Inside a window, made by the person who approved it (segregation of duties).
    MadeByApprover {
        window_id: Uuid,
        actor: String,
    },
    /// Inside a window that names implementers, by an actor the agent could not name.
    ActorUnknown {
        window_id: Uuid,
    },
    /// A file covered only through its package, whose content is not the packaged one.
    PackageMismatch {
        window_id: Uuid,
        package: String,
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
            Outcome::WrongImplementer { .. } => "wrong_implementer",
            Outcome::MadeByApprover { .. } => "made_by_approver",
            Outcome::ActorUnknown { .. } => "actor_unknown",
            Outcome::PackageMismatch { .. } => "package_mismatch",
            Outcome::Untraced => "untraced",
            Outcome::Restored => "restored",
        }
    }

    pub fn window_id(&self) -> Option<Uuid> {
        match self {
            Outcome::Authorized { window_id }
            | Outcome::UnexpectedState { window_id, .. }
            | Outcome::WrongImplementer { window_id, .. }
            | Outcome::MadeByApprover { window_id, .. }
            | Outcome::ActorUnknown { window_id }
            | Outcome::PackageMismatch { window_id, .. } => Some(*window_id),
            Outcome::Untraced | Outcome::Restored => None,
        }
    }

    /// Needs a person: untraced, or in a window but not as it approved.
    pub fn needs_review(&self) -> bool {
        REVIEW_OUTCOMES.contains(&self.name())
    }
}

/// The matcher's answer: the outcome, and for an event no window authorizes, a window
/// that covers its host and subject but was open for part of its spool interval only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub outcome: Outcome,
    pub not_provably_in: Option<Uuid>,
}

/// Decides one event.
pub fn match_event(
    index: &WindowIndex,
    host: HostFacts<'_>,
    event: EventFacts<'_>,
    tolerance_ms: i64,
) -> Outcome {
    judge(index, host, event, tolerance_ms).outcome
}

/// Decides one event and says which window its spool interval straddles, if any.
pub fn judge(
    index: &WindowIndex,
    host: HostFacts<'_>,
    event: EventFacts<'_>,
    tolerance_ms: i64,
) -> Judgement {
    let mut judgement = Judgement {
        outcome: Outcome::Restored,
        not_provably_in: None,
    };
    if event.kind == ChangeKind::Restored {
        return judgement;
    }
    let who = person(event.actor);
    let mut flagged = None;
    let mut straddled = None;
    for window in index.candidates(host, event.spooled, tolerance_ms) {
        match decide(window, host, event, who, tolerance_ms) {
            Decision::Authorizes => {
                judgement.outcome = Outcome::Authorized {
                    window_id: window.id,
                };
                return judgement;
            }
            // The earliest created flag is kept, in case nothing authorizes.
            Decision::Flags(flag) => {
                flagged.get_or_insert(flag);
            }
            // Only worth naming when nothing authorizes; the first one found is kept.
            Decision::Misses(Miss::NotProvablyInside) => {
                straddled.get_or_insert(window.id);
            }
            Decision::Misses(_) => {}
        }
    }
    judgement.outcome = flagged.unwrap_or(Outcome::Untraced);
    judgement.not_provably_in = straddled;
    judgement
}

/// What is wrong with `event` inside `window`, which covers its host, subject and time;
/// `None` when the window authorizes it.
fn check_window(window: &Compiled, event: EventFacts<'_>, who: Option<&str>) -> Option<Outcome> {
    let window_id = window.id;
    match who {
        Some(who) if window.approver.as_deref() == Some(who) => {
            return Some(Outcome::MadeByApprover {
                window_id,
                actor: who.to_owned(),
            });
        }
        Some(who)
            if !window.implementers.is_empty() && !window.implementers.iter().any(|i| i == who) =>
        {
            return Some(Outcome::WrongImplementer {
                window_id,
                actor: who.to_owned(),
            });
        }
        None if !window.implementers.is_empty() => {
            return Some(Outcome::ActorUnknown { window_id });
        }
        _ => {}
    }
    match window
        .expected
        .iter()
        .find(|expected| expected.subject == event.subject)
    {
        Some(expected) if !expected.is_met_by(event.after) => Some(Outcome::UnexpectedState {
            window_id,
            expected: expected.describe(),
        }),
        _ => None,
    }
}
