//! Retention (pure): which rows a prune removes, when a prune round is due, and the audit
//! entry that records each prune.
//!
//! What may go, each only when `[retention]` names a number of days for it (default: keep
//! everything): alerts delivered to every sink before the cut-off (with their per-sink
//! delivery rows), and drift items closed for good (resolved or accepted) whose last change
//! is before the cut-off, with their events, history and finished commands (an item with a
//! command still pending stays). Open and authorized drift, windows, hosts, people, tokens,
//! checkpoints and the audit log are never pruned: the audit log is the record of what was
//! decided, and each prune is itself an entry in it (`retention.pruned`: what, how many
//! rows, the cut-off), which `audit verify` and evidence reports show, so that a record
//! missing after a prune is explained rather than taken for tampering. Heartbeats are not
//! stored as rows (a host keeps its latest; its spool marks prune themselves).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{AuditEntry, NewAudit};
use crate::clock::{Millis, rfc3339};
use driftwatch_config::collector::Retention;

/// The audit entry's action.
pub const PRUNED_ACTION: &str = "retention.pruned";
/// Who prunes: the collector itself, by its configuration.
pub const PRUNE_ACTOR: &str = "collector:retention";

/// Most drift items, and most alerts, one prune removes: each prune is one write
/// transaction, and ingest waits for it, so a large backlog goes in several.
pub const PRUNE_BATCH: u32 = 1_000;

/// Rows older than these instants (collector clock, exclusive) are removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunePlan {
    /// Alerts whose `delivered_at` is before this.
    pub delivered_alerts_before: Option<Millis>,
    /// Resolved or accepted drift items last updated before this.
    pub resolved_drift_before: Option<Millis>,
}

/// Whether a prune that removed `counts` may have left more of what its plan names.
pub fn more_left(counts: &PruneCounts) -> bool {
    counts.drift >= u64::from(PRUNE_BATCH) || counts.alerts >= u64::from(PRUNE_BATCH)
}

/// How many rows one prune removed, per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneCounts {
    pub alerts: u64,
    pub alert_deliveries: u64,
    pub drift: u64,
    pub drift_history: u64,
    pub events: u64,
    pub commands: u64,
}

impl PruneCounts {
    pub fn total(&self) -> u64 {
        self.alerts
            + self.alert_deliveries
            + self.drift
            + self.drift_history
            + self.events
            + self.commands
    }
}

/// Totals batch after batch of one prune round.
impl std::ops::AddAssign for PruneCounts {
    fn add_assign(&mut self, batch: PruneCounts) {
        self.alerts += batch.alerts;
        self.alert_deliveries += batch.alert_deliveries;
        self.drift += batch.drift;
        self.drift_history += batch.drift_history;
        self.events += batch.events;
        self.commands += batch.commands;
    }
}

/// The cut-off for rows kept for `keep` at `now`: a row strictly older goes. Saturates
/// rather than wrapping for absurd values (so it prunes nothing it should not).
pub fn cutoff(now: Millis, keep: Duration) -> Millis {
    let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    now.saturating_sub(keep)
}

/// What a prune at `now` removes under `retention`; `None` when it keeps everything.
pub fn plan(retention: &Retention, now: Millis) -> Option<PrunePlan> {
    let plan = PrunePlan {
        delivered_alerts_before: retention.delivered_alerts.map(|keep| cutoff(now, keep)),
        resolved_drift_before: retention.resolved_drift.map(|keep| cutoff(now, keep)),
    };
    (plan != PrunePlan::default()).then_some(plan)
}

/// Whether a prune round is due: at the first round, then every `interval`.
pub fn due(last: Option<Millis>, now: Millis, interval: Duration) -> bool {
    match last {
        None => true,
        Some(last) => {
            now.saturating_sub(last) >= i64::try_from(interval.as_millis()).unwrap_or(i64::MAX)
        }
    }
}

/// The `retention.pruned` entry of a prune that removed `counts` under `plan`.
pub fn audit_entry(plan: &PrunePlan, counts: &PruneCounts, at: Millis) -> NewAudit {
    NewAudit::new(
        at,
        PRUNE_ACTOR,
        PRUNED_ACTION,
        "retention",
        json!({
            "delivered_alerts_before": plan.delivered_alerts_before.map(rfc3339),
            "resolved_drift_before": plan.resolved_drift_before.map(rfc3339),
            "rows": counts,
            "audit_log": "never pruned",
        }),
    )
}

/// One prune as the audit log records it, for reports that must say what was pruned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Its audit entry.
    pub seq: u64,
    pub at: String,
    /// One sentence: what went, how many rows, before when.
    pub what: String,
}

/// Every prune the log records, oldest first.
pub fn pruned(entries: &[AuditEntry]) -> Vec<Pruned> {
    entries
        .iter()
        .filter(|e| e.action == PRUNED_ACTION && e.actor == PRUNE_ACTOR)
        .map(|entry| {
            let details: serde_json::Value =
                serde_json::from_str(&entry.details).unwrap_or_default();
            let rows: PruneCounts =
                serde_json::from_value(details["rows"].clone()).unwrap_or_default();
            let mut parts = Vec::new();
            if let Some(before) = details["resolved_drift_before"].as_str()
                && rows.drift + rows.events > 0
            {
                parts.push(format!(
                    "{} resolved or accepted drift item(s) with {} event(s), {} history row(s) \
                     and {} command(s) last changed before {before}",
                    rows.drift, rows.events, rows.drift_history, rows.commands
                ));
            }
            if let Some(before) = details["delivered_alerts_before"].as_str()
                && rows.alerts > 0
            {
                parts.push(format!(
                    "{} alert(s) delivered before {before}",
                    rows.alerts
                ));
            }
            if parts.is_empty() {
                parts.push("nothing".into());
            }
            Pruned {
                seq: entry.seq,
                at: rfc3339(entry.at),
                what: format!("retention removed {}", parts.join("; ")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Millis = 86_400_000;
    const NOW: Millis = 1_800_000_000_000;

    fn days(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n * 86_400))
    }

    #[test]
    fn the_cutoff_is_now_minus_what_is_kept_and_never_wraps() {
        assert_eq!(cutoff(NOW, Duration::from_secs(86_400)), NOW - DAY);
        assert_eq!(cutoff(NOW, Duration::ZERO), NOW);
        assert!(cutoff(NOW, Duration::MAX) < 0, "before any stored time");
        assert_eq!(cutoff(i64::MIN + 5, Duration::from_secs(1)), i64::MIN);
    }

    #[test]
    fn keeping_everything_plans_nothing_and_each_kind_has_its_own_cutoff() {
        assert_eq!(plan(&Retention::default(), NOW), None);
        let retention = Retention {
            delivered_alerts: days(30),
            resolved_drift: None,
            ..Retention::default()
        };
        assert_eq!(
            plan(&retention, NOW),
            Some(PrunePlan {
                delivered_alerts_before: Some(NOW - 30 * DAY),
                resolved_drift_before: None,
            })
        );
        let both = Retention {
            delivered_alerts: days(30),
            resolved_drift: days(365),
            ..Retention::default()
        };
        assert_eq!(
            plan(&both, NOW).unwrap().resolved_drift_before,
            Some(NOW - 365 * DAY)
        );
    }

    #[test]
    fn a_full_batch_may_have_left_more() {
        let full = PruneCounts {
            drift: u64::from(PRUNE_BATCH),
            ..PruneCounts::default()
        };
        assert!(more_left(&full));
        let alerts = PruneCounts {
            alerts: u64::from(PRUNE_BATCH),
            ..PruneCounts::default()
        };
        assert!(more_left(&alerts));
        let partial = PruneCounts {
            drift: u64::from(PRUNE_BATCH) - 1,
            events: 50_000,
            ..PruneCounts::default()
        };
        assert!(
            !more_left(&partial),
            "events do not count: they follow their items"
        );
    }

    #[test]
    fn a_round_is_due_first_then_every_interval() {
        let hour = Duration::from_secs(3600);
        assert!(due(None, NOW, hour));
        assert!(!due(Some(NOW), NOW + 3_599_999, hour));
        assert!(due(Some(NOW), NOW + 3_600_000, hour));
        // A clock set back does not make it due.
        assert!(!due(Some(NOW), NOW - DAY, hour));
    }

    #[test]
    fn the_log_says_what_each_prune_removed() {
        let plan = PrunePlan {
            delivered_alerts_before: Some(NOW - DAY),
            resolved_drift_before: Some(NOW - 2 * DAY),
        };
        let counts = PruneCounts {
            alerts: 4,
            alert_deliveries: 4,
            drift: 2,
            drift_history: 5,
            events: 7,
            commands: 1,
        };
        let new = audit_entry(&plan, &counts, NOW);
        let entry = AuditEntry {
            seq: 9,
            at: new.at,
            actor: new.actor.clone(),
            action: new.action.clone(),
            target: new.target.clone(),
            details: new.details.to_string(),
            prev_hash: [0; 32],
            hash: [0; 32],
            signature: None,
        };
        let forged_by_a_person = AuditEntry {
            actor: "mallory".into(),
            seq: 10,
            ..entry.clone()
        };
        let found = pruned(&[entry, forged_by_a_person]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].seq, 9);
        assert!(
            found[0]
                .what
                .contains("2 resolved or accepted drift item(s) with 7 event(s)"),
            "{}",
            found[0].what
        );
        assert!(
            found[0].what.contains(&format!(
                "4 alert(s) delivered before {}",
                rfc3339(NOW - DAY)
            )),
            "{}",
            found[0].what
        );
    }
}
