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
            if WINDOW_ACTIONS.contains(&entry.action.as_str()) || entry.action == "drift.resolved" {
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
                format!(
                    "the record says resolved by {} but no resolution is logged",
                    r.by
                ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{GENESIS, entry_hash};
    use crate::drift::DriftStatus;
    use crate::store::Resolution;
    use crate::windows::{HostScope, WindowKind};

    fn window() -> Window {
        Window {
            id: Uuid::from_u128(7),
            ticket: "CHG-7".into(),
            title: "nginx".into(),
            kind: WindowKind::Normal,
            status: WindowStatus::Closed,
            requester: "alice".into(),
            decided_by: Some("bob".into()),
            decided_at: Some(2_000),
            decision_comment: Some("ok".into()),
            hosts: HostScope {
                names: vec!["web-1".into()],
                ..HostScope::default()
            },
            subjects: vec!["file:/etc/nginx/**".into()],
            start: 0,
            end: 3_600_000,
            time_zone: "UTC".into(),
            expected: vec![],
            implementers: vec![],
            schedule: None,
            created_at: 1_000,
            ended_at: Some(3_000),
            ended_by: Some("carol".into()),
        }
    }

    fn drift(status: DriftStatus) -> DriftItem {
        DriftItem {
            id: Uuid::from_u128(9),
            host_id: Uuid::from_u128(1),
            hostname: "web-1".into(),
            subject: "file:/etc/nginx/nginx.conf".into(),
            status,
            reason: None,
            window_id: Some(Uuid::from_u128(7)),
            opened_at: 0,
            untraced_since: None,
            events: 1,
            last_event_id: Uuid::nil(),
            last_event_at: 0,
            alerted_at: None,
            resolution: None,
            updated_at: 0,
        }
    }

    /// The entries the collector writes for `window()` and its accepted drift.
    fn log(w: &Window) -> Vec<AuditEntry> {
        let target = format!("window:{}", w.id);
        let accepted = json!([{ "drift": Uuid::from_u128(9), "subject": "x" }]);
        let rows = [
            (1_000, "alice", "window.requested", request_details(w)),
            (2_000, "bob", "window.approved", json!({ "comment": "ok" })),
            (
                3_000,
                "carol",
                "window.closed",
                json!({ "comment": null, "accepted": accepted }),
            ),
        ];
        let mut prev = GENESIS;
        rows.into_iter()
            .enumerate()
            .map(|(i, (at, actor, action, details))| {
                let details = details.to_string();
                let seq = i as u64 + 1;
                let hash = entry_hash(&prev, seq, at, actor, action, &target, &details);
                let entry = AuditEntry {
                    seq,
                    at,
                    actor: actor.into(),
                    action: action.into(),
                    target: target.clone(),
                    details,
                    prev_hash: prev,
                    hash,
                    signature: None,
                };
                prev = hash;
                entry
            })
            .collect()
    }

    #[test]
    fn records_that_match_their_entries_pass() {
        let w = window();
        let accepted = drift(DriftStatus::Accepted);
        assert_eq!(check(&log(&w), &[&w], &[&accepted]), vec![]);
    }

    #[test]
    fn a_window_whose_accepted_drift_was_pruned_by_retention_still_passes() {
        // Retention removes accepted drift; the close-out entry still names it. Only the
        // records present are checked, so the absence is no finding (the report names the
        // prune from its `retention.pruned` entry instead).
        let w = window();
        assert_eq!(check(&log(&w), &[&w], &[]), vec![]);
    }

    #[test]
    fn an_edited_record_disagrees_with_the_log() {
        let w = window();
        let entries = log(&w);
        let accepted = drift(DriftStatus::Accepted);
        let mut erin = w.clone();
        erin.decided_by = Some("erin".into());
        let found = check(&entries, &[&erin], &[&accepted]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].problem.contains("decided by erin") && found[0].problem.contains("says bob")
        );
        assert_eq!(found[0].seq, 2);

        let mut wider = w.clone();
        wider.subjects = vec!["file:/**".into()];
        let found = check(&entries, &[&wider], &[&accepted]);
        assert!(found[0].problem.contains("its subjects"), "{found:?}");

        let mut reopened = w.clone();
        reopened.status = WindowStatus::Approved;
        reopened.ended_by = None;
        reopened.ended_at = None;
        assert_eq!(check(&entries, &[&reopened], &[]).len(), 2);

        // Drift the close-out accepted, turned back to authorized in the table.
        let authorized = drift(DriftStatus::Authorized);
        let found = check(&entries, &[&w], &[&authorized]);
        assert!(found[0].problem.contains("accepted it"), "{found:?}");

        // Nothing logged at all: a window inserted by hand.
        assert!(
            check(&[], &[&w], &[])[0]
                .problem
                .contains("not requested through")
        );
    }

    #[test]
    fn resolutions_are_checked_against_their_entry() {
        let mut item = drift(DriftStatus::Resolved);
        item.window_id = None;
        item.resolution = Some(Resolution {
            category: ResolutionCategory::FalsePositive,
            comment: "noise".into(),
            ticket: None,
            by: "sam".into(),
            at: 5_000,
        });
        let target = format!("drift:{}", item.id);
        let details =
            json!({ "category": "false_positive", "comment": "noise", "ticket": null }).to_string();
        let entry = AuditEntry {
            seq: 1,
            at: 5_000,
            actor: "sam".into(),
            action: "drift.resolved".into(),
            target: target.clone(),
            hash: entry_hash(
                &GENESIS,
                1,
                5_000,
                "sam",
                "drift.resolved",
                &target,
                &details,
            ),
            details,
            prev_hash: GENESIS,
            signature: None,
        };
        assert_eq!(check(std::slice::from_ref(&entry), &[], &[&item]), vec![]);
        let mut forged = item.clone();
        forged.resolution.as_mut().unwrap().by = "erin".into();
        assert_eq!(
            check(std::slice::from_ref(&entry), &[], &[&forged]).len(),
            1
        );
        assert_eq!(
            check(&[], &[], &[&item]).len(),
            1,
            "resolved without an entry"
        );
    }
}
