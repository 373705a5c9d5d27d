//! The decisions evidence reports, checked against the audit entries that recorded them.
//!
//! The `windows` and `drift` tables are not chained; the audit log is. So every decision a
//! bundle or an export shows (who requested a window and what, who approved or rejected it
//! and when, who closed or cancelled it and which drift the close-out accepted, who
//! resolved drift and how) must agree with its entry, or the evidence says so: an
//! `UPDATE windows SET decided_by = 'erin'` no longer yields "approved by erin". Pure.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};
use uuid::Uuid;

use super::{AuditEntry, Finding};
use crate::clock::rfc3339;
use crate::drift::{DriftStatus, ResolutionCategory};
use crate::store::DriftItem;
use crate::windows::{Window, WindowStatus};

/// The details of a `window.requested` entry: everything the approval is about.
pub fn request_details(window: &Window) -> Value {
    json!({
        "ticket": window.ticket, "kind": window.kind, "hosts": window.hosts,
        "subjects": window.subjects, "start": rfc3339(window.start),
        "end": rfc3339(window.end), "time_zone": window.time_zone,
        "expected": window.expected, "implementers": window.implementers,
        "schedule": window.schedule,
    })
}

/// Disagreements between the records of `windows` and `drift` and the audit log.
pub fn check(entries: &[AuditEntry], windows: &[&Window], drift: &[&DriftItem]) -> Vec<Finding> {
    let log = Log::new(entries);
    let mut findings = Vec::new();
    for window in windows {
        log.check_window(window, drift, &mut findings);
    }
    for item in drift {
        log.check_resolution(item, &mut findings);
    }
    findings
}

struct Log<'a> {
    by_target: HashMap<&'a str, Vec<(&'a AuditEntry, Value)>>,
}

const WINDOW_ACTIONS: [&str; 5] = [
    "window.requested",
    "window.approved",
    "window.rejected",
    "window.cancelled",
    "window.closed",
];

impl<'a> Log<'a> {
    fn new(entries: &'a [AuditEntry]) -> Self {
        let mut by_target: HashMap<&str, Vec<_>> = HashMap::new();
        for entry in entries {
            if WINDOW_ACTIONS.contains(&entry.action.as_str()) || entry.action == "drift.resolved"
            {
                let details = serde_json::from_str(&entry.details).unwrap_or(Value::Null);
                by_target
                    .entry(entry.target.as_str())
                    .or_default()
                    .push((entry, details));
            }
        }
        Log { by_target }
    }

    fn of(&self, target: &str, actions: &[&str]) -> Option<&(&'a AuditEntry, Value)> {
        self.by_target
            .get(target)?
            .iter()
            .rev()
            .find(|(e, _)| actions.contains(&e.action.as_str()))
    }

    fn check_window(&self, w: &Window, drift: &[&DriftItem], findings: &mut Vec<Finding>) {
        let target = format!("window:{}", w.id);
        let name = format!("window {} ({})", w.ticket, w.id);
        let mut problem = |seq: u64, text: String| {
            findings.push(Finding {
                seq,
                problem: format!("{name}: {text}; the record disagrees with the audit log"),
            })
        };
        match self.of(&target, &["window.requested"]) {
            None => problem(
                0,
                "no `window.requested` entry: it was not requested through the collector".into(),
            ),
            Some((entry, details)) => {
                if entry.actor != w.requester {
                    problem(
                        entry.seq,
                        format!(
                            "the record says requested by {} but entry {} says {}",
                            w.requester, entry.seq, entry.actor
                        ),
                    );
                }
                let expected = request_details(w);
                for (key, value) in expected.as_object().into_iter().flatten() {
                    // Entries older than a field do not name it.
                    if let Some(logged) = details.get(key)
                        && logged != value
                    {
                        problem(
                            entry.seq,
                            format!(
                                "its {key} is {value} in the record but {logged} in entry {}",
                                entry.seq
                            ),
                        );
                    }
                }
            }
        }
        let decision = self.of(&target, &["window.approved", "window.rejected"]);
        match (&w.decided_by, decision) {
            (Some(by), None) => problem(
                0,
                format!("the record says decided by {by} but no approval or rejection is logged"),
            ),
            (None, Some((entry, _))) => problem(
                entry.seq,
                format!(
                    "entry {} records `{}` by {} but the record shows no decision",
                    entry.seq, entry.action, entry.actor
                ),
            ),
            (Some(by), Some((entry, details))) => {
                let rejected = w.status == WindowStatus::Rejected;
                if (entry.action == "window.rejected") != rejected {
                    problem(
                        entry.seq,
                        format!(
                            "the record's status is {} but entry {} records `{}`",
                            w.status, entry.seq, entry.action
                        ),
                    );
                }
                if &entry.actor != by || Some(entry.at) != w.decided_at {
                    problem(
                        entry.seq,
                        format!(
                            "the record says decided by {by} at {} but entry {} says {} at {}",
                            w.decided_at.map_or("(none)".into(), rfc3339),
                            entry.seq,
                            entry.actor,
                            rfc3339(entry.at)
                        ),
                    );
                }
                if details.get("comment") != Some(&json!(w.decision_comment)) {
                    problem(
                        entry.seq,
                        format!(
                            "the decision comment differs from entry {}'s ({})",
                            entry.seq,
                            details.get("comment").unwrap_or(&Value::Null)
                        ),
                    );
                }
            }
            (None, None) => {}
        }
        let end = self.of(&target, &["window.closed", "window.cancelled"]);
        match (&w.ended_by, end) {
            (Some(by), None) => problem(
                0,
                format!("the record says closed or cancelled by {by} but no such entry is logged"),
            ),
            (None, Some((entry, _))) => problem(
                entry.seq,
                format!(
                    "entry {} records `{}` by {} but the record is {}",
                    entry.seq, entry.action, entry.actor, w.status
                ),
            ),
            (Some(by), Some((entry, details))) => {
                if &entry.actor != by || Some(entry.at) != w.ended_at {
                    problem(
                        entry.seq,
                        format!(
                            "the record says ended by {by} at {} but entry {} says {} at {}",
                            w.ended_at.map_or("(none)".into(), rfc3339),
                            entry.seq,
                            entry.actor,
                            rfc3339(entry.at)
                        ),
                    );
                }
                if let Some(accepted) = details.get("accepted").and_then(Value::as_array) {
                    let logged: BTreeSet<Uuid> = accepted
                        .iter()
                        .filter_map(|a| a.get("drift")?.as_str()?.parse().ok())
                        .collect();
                    for item in drift.iter().filter(|d| d.window_id == Some(w.id)) {
                        let is_accepted = item.status == DriftStatus::Accepted;
                        if is_accepted != logged.contains(&item.id) {
                            problem(
                                entry.seq,
                                format!(
                                    "drift {} ({} on {}) is {} in the record, but the close-out \
                                     (entry {}) {} it",
                                    item.id,
                                    item.subject,
                                    item.hostname,
                                    item.status.name(),
                                    entry.seq,
                                    if is_accepted {
                                        "did not accept"
                                    } else {
                                        "accepted"
                                    }
                                ),
                            );
                        }
                    }
                }
            }
            (None, None) => {}
        }
        if let Some((entry, _)) = self.of(&target, &WINDOW_ACTIONS) {
            let logged = entry.action.trim_start_matches("window.");
            if logged != w.status.to_string() {
                problem(
                    entry.seq,
                    format!(
                        "its status is {} in the record but {logged} by the last entry ({})",
                        w.status, entry.seq
                    ),
                );
            }
        }
    }

    fn check_resolution(&self, item: &DriftItem, findings: &mut Vec<Finding>) {
        let target = format!("drift:{}", item.id);
        let logged = self.of(&target, &["drift.resolved"]);
        let person = item
            .resolution
            .as_ref()
            .filter(|r| r.category != ResolutionCategory::Restored);
        let name = format!("drift {} ({} on {})", item.id, item.subject, item.hostname);
        let mut problem = |seq: u64, text: String| {
            findings.push(Finding {
                seq,
                problem: format!("{name}: {text}; the record disagrees with the audit log"),
            })
        };
        match (person, logged) {
            (Some(r), None) if item.status == DriftStatus::Resolved => problem(
                0,
                format!("the record says resolved by {} but no resolution is logged", r.by),
            ),
            (Some(r), Some((entry, details))) => {
                let same = entry.actor == r.by
                    && entry.at == r.at
                    && details.get("category") == Some(&json!(r.category))
                    && details.get("comment") == Some(&json!(r.comment))
                    && details.get("ticket") == Some(&json!(r.ticket));
                if !same {
                    problem(
                        entry.seq,
                        format!(
                            "the record's resolution ({:?} by {} at {}) differs from entry {} \
                             ({} by {} at {})",
                            r.category,
                            r.by,
                            rfc3339(r.at),
                            entry.seq,
                            details.get("category").unwrap_or(&Value::Null),
                            entry.actor,
                            rfc3339(entry.at)
                        ),
                    );
                }
            }
            (None, Some((entry, _))) => problem(
                entry.seq,
                format!(
                    "entry {} records a resolution by {} but the record is {}",
                    entry.seq,
                    entry.actor,
                    item.status.name()
                ),
            ),
            _ => {}
        }
    }
}
