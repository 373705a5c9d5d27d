//! Why no window covered a change: the windows a person would look at for one event, each
//! with the matcher's own decision ([`super::Decision`], from the same `decide` that
//! matching uses) and that decision in words.
//!
//! Candidates are every stored window whatever its state (a requested or rejected window
//! is often the answer: "it was never approved"), kept when its time is within
//! [`NEAR_MS`] of the change, or, further away, when its host scope holds the host and
//! its subjects the subject (the same change approved last week). They are sorted nearest
//! first (time between the window and the change's spool interval, then creation order)
//! and cut to a limit; how many were left out is counted.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::index::{Compiled, compile};
use super::{Decision, EventFacts, HostFacts, decide, person};
use crate::clock::Millis;
use crate::windows::schedule::Schedule;
use crate::windows::{Window, WindowKind, WindowStatus};

/// Windows within this time of a change are candidates whatever their scope: a day.
pub const NEAR_MS: i64 = 86_400_000;

/// Most candidate windows shown for one event.
pub const MAX_CANDIDATES: usize = 10;

/// What a person needs to recognise a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSummary {
    pub id: Uuid,
    pub ticket: String,
    pub title: String,
    pub kind: WindowKind,
    pub status: WindowStatus,
    #[serde(with = "crate::clock::as_rfc3339")]
    pub start: Millis,
    #[serde(with = "crate::clock::as_rfc3339")]
    pub end: Millis,
    /// When it was closed or cancelled.
    #[serde(default, with = "crate::clock::as_opt_rfc3339")]
    pub ended_at: Option<Millis>,
    #[serde(default)]
    pub schedule: Option<Schedule>,
    pub requester: String,
    /// Who approved (or rejected) it.
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub implementers: Vec<String>,
}

impl From<&Window> for WindowSummary {
    fn from(w: &Window) -> Self {
        WindowSummary {
            id: w.id,
            ticket: w.ticket.clone(),
            title: w.title.clone(),
            kind: w.kind,
            status: w.status,
            start: w.start,
            end: w.end,
            ended_at: w.ended_at,
            schedule: w.schedule.clone(),
            requester: w.requester.clone(),
            decided_by: w.decided_by.clone(),
            implementers: w.implementers.clone(),
        }
    }
}

/// One candidate window and what it says about the event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub window: WindowSummary,
    pub decision: Decision,
    /// The decision in words (`"host web-2 is not in its scope"`).
    pub says: String,
}

/// The candidates for one event, nearest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidates {
    /// The person the matcher holds responsible (the login user behind sudo, else the
    /// process's user), when known.
    pub person: Option<String>,
    pub candidates: Vec<Candidate>,
    /// Candidates beyond the limit, left out.
    pub omitted: usize,
}

/// Time between `[start, end]` and `[from, to]` (0 when they meet).
fn distance(start: Millis, end: Millis, from: Millis, to: Millis) -> i64 {
    if end < from {
        from - end
    } else if start > to {
        start - to
    } else {
        0
    }
}

/// Whether a window far in time may hold the host, before compiling its patterns.
fn may_hold_host(window: &Window, host: HostFacts<'_>) -> bool {
    let scope = &window.hosts;
    scope.names.iter().any(|n| n == host.hostname)
        || !scope.globs.is_empty()
        || (!scope.labels.is_empty()
            && scope
                .labels
                .iter()
                .all(|(k, v)| host.labels.get(k) == Some(v)))
}

/// Whether `compiled` holds the event's subject directly or through its file's package.
fn holds_subject(compiled: &Compiled, event: EventFacts<'_>) -> bool {
    compiled.subjects.covers(event.subject)
        || event
            .provenance
            .filter(|_| event.subject.starts_with("file:"))
            .is_some_and(|p| compiled.subjects.covers_package(&p.package))
}

/// The candidate windows for `event` on `host` among `windows` (any state), at most
/// `limit`, each decided by the matcher's rule. A stored window whose patterns no longer
/// compile is left out (the index refuses it too).
pub fn explain(
    windows: &[Window],
    host: HostFacts<'_>,
    event: EventFacts<'_>,
    tolerance_ms: i64,
    limit: usize,
) -> Candidates {
    let (from, to) = (event.spooled.after, event.spooled.before);
    let mut picked: Vec<(i64, &Window, std::sync::Arc<Compiled>)> = Vec::new();
    for window in windows {
        let gap = distance(window.start, window.effective_end(), from, to);
        let near = gap <= NEAR_MS;
        if !near && !may_hold_host(window, host) {
            continue;
        }
        let Ok(compiled) = compile(window) else {
            continue;
        };
        let in_scope = || compiled.covers_host(host) && holds_subject(&compiled, event);
        if !(near || in_scope()) {
            continue;
        }
        picked.push((gap, window, compiled));
    }
    picked.sort_by_key(|(gap, window, _)| (*gap, window.id));
    let omitted = picked.len().saturating_sub(limit);
    picked.truncate(limit);
    let who = person(event.actor);
    let candidates = picked
        .into_iter()
        .map(|(_, window, compiled)| {
            let decision = decide(&compiled, host, event, who, tolerance_ms);
            let says = decision.describe(host.hostname, event.subject, &window.implementers);
            Candidate {
                window: WindowSummary::from(window),
                decision,
                says,
            }
        })
        .collect();
    Candidates {
        person: who.map(str::to_owned),
        candidates,
        omitted,
    }
}
