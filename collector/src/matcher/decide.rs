//! The decision for one (event, window) pair, with a typed reason when the window does not
//! authorize the event. Matching ([`super::judge`]) folds these decisions over the windows
//! the index offers; explaining ([`super::explain`]) shows them for the windows a person
//! would look at. One rule, two uses: an explanation can never disagree with a verdict.
//!
//! The checks, in order: the window was approved; its host scope holds the host; its
//! subject globs hold the subject (or, for a file, its package: see the matcher's
//! documentation); it covers the whole spool interval; then, inside it, the package's
//! content, who made the change and the expected end state.

use serde::{Deserialize, Serialize};

use super::index::Compiled;
use super::{EventFacts, HostFacts, Outcome};
use crate::clock::{Millis, rfc3339};
use crate::windows::WindowStatus;

/// What one window says about one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Decision {
    /// It covers the host, subject and time, and the change as it was made.
    Authorizes,
    /// It covers the host, subject and time, but not the change as it was made: one of
    /// the flagged outcomes (`made_by_approver`, `wrong_implementer`, `actor_unknown`,
    /// `unexpected_state`, `package_mismatch`), never authorized.
    Flags(Outcome),
    /// It does not cover the event, and why.
    Misses(Miss),
}

/// Why a window does not cover an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Miss {
    /// Only an approved window authorizes (one closed, or cancelled after approval, still
    /// covers what happened before it ended).
    NotApproved { status: WindowStatus },
    /// The host is not among its names, globs or labels.
    HostOutOfScope,
    /// The subject is outside its subject globs (and not a file of a package it names).
    SubjectOutside,
    /// It was open during part of the spool interval only: the collector cannot prove the
    /// change was made inside it ("spool time not provably inside the window").
    NotProvablyInside,
    /// The change reached the agent's spool `by_ms` after the window ended at `at`.
    After {
        ended: Ending,
        #[serde(with = "crate::clock::as_rfc3339")]
        at: Millis,
        by_ms: i64,
    },
    /// The change reached the agent's spool `by_ms` before the window opened at `at`.
    Before {
        opens: Opening,
        #[serde(with = "crate::clock::as_rfc3339")]
        at: Millis,
        by_ms: i64,
    },
    /// A recurring window with no occurrence within a week of the change.
    NoOccurrence,
}

/// How a window ended, for [`Miss::After`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Closed out before its planned end.
    Closed,
    /// Cancelled before its planned end.
    Cancelled,
    /// Its planned end (for a recurring window: the end of the approval's validity).
    PlannedEnd,
    /// The end of the recurring window's nearest occurrence.
    Occurrence,
}

/// Which opening, for [`Miss::Before`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Opening {
    /// Its start (for a recurring window: the start of the approval's validity).
    Start,
    /// The start of the recurring window's nearest occurrence.
    Occurrence,
}

/// Decides `event` against one `window`. `who` is [`super::person`] of the event's actor.
pub(super) fn decide(
    window: &Compiled,
    host: HostFacts<'_>,
    event: EventFacts<'_>,
    who: Option<&str>,
    tolerance_ms: i64,
) -> Decision {
    if !window.approved {
        return Decision::Misses(Miss::NotApproved {
            status: window.status,
        });
    }
    if !window.covers_host(host) {
        return Decision::Misses(Miss::HostOutOfScope);
    }
    // The package a changed file belongs to, per the agent's package manager: a window
    // that names that package covers the file only when its content is the packaged one.
    let through_package = if window.subjects.covers(event.subject) {
        None
    } else {
        match event
            .provenance
            .filter(|_| event.subject.starts_with("file:"))
        {
            Some(p) if window.subjects.covers_package(&p.package) => Some(p),
            _ => return Decision::Misses(Miss::SubjectOutside),
        }
    };
    let spooled = event.spooled;
    if !window.contains(spooled, tolerance_ms) {
        return Decision::Misses(if window.meets(spooled, tolerance_ms) {
            Miss::NotProvablyInside
        } else {
            window.time_miss(spooled, tolerance_ms)
        });
    }
    if let Some(p) = through_package
        && !p.matches_package
    {
        return Decision::Flags(Outcome::PackageMismatch {
            window_id: window.id,
            package: p.package.clone(),
        });
    }
    match super::check_window(window, event, who) {
        None => Decision::Authorizes,
        Some(flag) => Decision::Flags(flag),
    }
}

impl Decision {
    /// For people: what the window says about the change, as a sentence without the
    /// window's name (`"covers it, but the change was made by bob, who approved it"`).
    /// `implementers` are the window's, named in a `wrong_implementer` sentence.
    pub fn describe(&self, hostname: &str, subject: &str, implementers: &[String]) -> String {
        match self {
            Decision::Authorizes => "authorizes it".to_owned(),
            Decision::Flags(outcome) => match outcome {
                Outcome::MadeByApprover { actor, .. } => format!(
                    "covers it, but the change was made by {actor}, who approved the window \
                     (segregation of duties)"
                ),
                Outcome::WrongImplementer { actor, .. } => format!(
                    "covers it, but the change was made by {actor}, not one of its \
                     implementers ({})",
                    implementers.join(", ")
                ),
                Outcome::ActorUnknown { .. } => format!(
                    "covers it, but it names implementers ({}) and the agent could not tell \
                     who made the change",
                    implementers.join(", ")
                ),
                Outcome::UnexpectedState { expected, .. } => {
                    format!("covers it, but approved another end state: {expected}")
                }
                Outcome::PackageMismatch { package, .. } => format!(
                    "covers package {package}, but the file's content is not the packaged one"
                ),
                other => format!("covers it: {}", other.name()),
            },
            Decision::Misses(miss) => miss.describe(hostname, subject),
        }
    }
}

impl Miss {
    /// For people (see [`Decision::describe`]).
    pub fn describe(&self, hostname: &str, subject: &str) -> String {
        match self {
            Miss::NotApproved { status } => {
                format!("is {status}, not approved: only an approved window authorizes")
            }
            Miss::HostOutOfScope => format!("host {hostname} is not in its scope"),
            Miss::SubjectOutside => format!("{subject} is outside its subject globs"),
            Miss::NotProvablyInside => "was open during part of the time the change can have \
                                         been made only: not provably inside the window"
                .to_owned(),
            Miss::After { ended, at, by_ms } => {
                let what = match ended {
                    Ending::Closed => "the window was closed",
                    Ending::Cancelled => "the window was cancelled",
                    Ending::PlannedEnd => "the window ended",
                    Ending::Occurrence => "its nearest occurrence ended",
                };
                format!(
                    "the change came {} after {what} ({})",
                    span(*by_ms),
                    rfc3339(*at)
                )
            }
            Miss::Before { opens, at, by_ms } => {
                let what = match opens {
                    Opening::Start => "the window opened",
                    Opening::Occurrence => "its nearest occurrence opened",
                };
                format!(
                    "the change came {} before {what} ({})",
                    span(*by_ms),
                    rfc3339(*at)
                )
            }
            Miss::NoOccurrence => "has no occurrence within a week of the change".to_owned(),
        }
    }
}

/// A duration in words, rounded down to its largest unit or two: `less than a second`,
/// `45 seconds`, `12 minutes`, `3 hours 5 minutes`, `2 days 4 hours`.
pub fn span(ms: i64) -> String {
    if ms < 1000 {
        return "less than a second".to_owned();
    }
    let secs = ms / 1000;
    let unit = |n: i64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match () {
        _ if days > 0 && hours > 0 => format!("{} {}", unit(days, "day"), unit(hours, "hour")),
        _ if days > 0 => unit(days, "day"),
        _ if hours > 0 && minutes > 0 => {
            format!("{} {}", unit(hours, "hour"), unit(minutes, "minute"))
        }
        _ if hours > 0 => unit(hours, "hour"),
        _ if minutes > 0 => unit(minutes, "minute"),
        _ => unit(secs, "second"),
    }
}
