//! State beyond files in the detector: a finished [`Poll`] of the sources is
//! compared with the baseline's state entries and the reported state, and
//! the events go through the same spool commit and hash chain as files.
//!
//! Only namespaces whose source answered are compared: a source that is
//! unavailable, failed or timed out leaves its subjects unverified (a
//! coverage signal in status and heartbeats), never "everything removed".

use std::collections::BTreeMap;

use driftwatch_common::api::v1::{
    CommandOutcome, SeenBy, SourceCondition, SubjectKey, SubjectState,
};
use tracing::{info, warn};
use uuid::Uuid;

use super::Engine;
use crate::baseline::store::{AcceptedState, NewHistory};
use crate::daemon::detect::{Look, Verdict, decide_all};
use crate::daemon::events::StatePending;
use crate::observe::sources::poll::Poll;
use crate::observe::sources::{Collection, Fields, diff_states};

/// The events a poll calls for, in subject order: drift not reported in
/// this state before, and `restored` for open drift back in its baseline
/// state ([`decide_all`], the decision files take too). `covered`: the
/// namespaces whose source answered.
pub fn state_events(
    baseline: &Collection,
    current: &Collection,
    covered: &[&str],
    reported: &BTreeMap<SubjectKey, Option<Fields>>,
) -> Vec<StatePending> {
    let covers = |subject: &SubjectKey| covered.contains(&subject.namespace());
    let only_covered = |collection: &Collection| -> Collection {
        collection
            .iter()
            .filter(|(subject, _)| covers(subject))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let differing = diff_states(&only_covered(baseline), &only_covered(current))
        .into_iter()
        .map(|change| {
            let now = change.after.clone();
            (change.subject.clone(), now, StatePending::drift(change))
        });
    let look = |subject: &SubjectKey| {
        if covers(subject) {
            // Not among the differences: as in the baseline.
            Look::Clean(current.get(subject).cloned())
        } else {
            Look::Unknown
        }
    };
    let mut pending: Vec<StatePending> = decide_all(differing, reported, look, |_, a, b| a == b)
        .into_iter()
        .map(|verdict| match verdict {
            Verdict::Report(event) => event,
            Verdict::Restored { key, last, now } => StatePending::restored(key, last, now),
        })
        .collect();
    pending.sort_by(|a, b| a.subject.cmp(&b.subject));
    pending
}

impl Engine {
    /// Compares a poll of the sources and commits the events it calls for.
    pub(super) fn sources(&mut self, poll: &Poll, seen_by: SeenBy) -> anyhow::Result<()> {
        let pending = state_events(
            &self.baseline_state,
            &poll.state(),
            &poll.covered(),
            self.reported.subjects(),
        );
        let count = self.commit(&pending, seen_by)?;
        self.publish_sources(poll, count);
        Ok(())
    }

    /// Status and heartbeat coverage: when the sources were polled and how
    /// each answered; a change of a source's condition is logged once.
    fn publish_sources(&self, poll: &Poll, events: u64) {
        let coverage = poll.coverage();
        let before = self.status.snapshot().coverage.sources;
        for source in &coverage {
            let previous = before.iter().find(|b| b.name == source.name);
            let was = previous.map(|b| b.condition);
            let detail = source.detail.as_deref().unwrap_or("");
            if source.condition == SourceCondition::Ok
                && source.detail.is_some()
                && previous.is_none_or(|b| b.detail != source.detail)
            {
                // Answered, but some fields are out of the agent's sight (I9).
                warn!(source = %source.name, reason = %detail, "state source partly unreadable: those fields are not compared");
            }
            match (was, source.condition) {
                (Some(was), now) if was == now => {}
                (None, SourceCondition::Ok) => {}
                (_, SourceCondition::Ok) => {
                    info!(source = %source.name, subjects = source.subjects, "state source readable again")
                }
                (_, SourceCondition::Unavailable) => {
                    info!(source = %source.name, reason = %detail, "state source not available on this host: its subjects are not tracked")
                }
                (_, condition) => {
                    warn!(source = %source.name, condition = condition.name(), reason = %detail, "state source could not be read: its subjects are unverified until it can")
                }
            }
        }
        tracing::debug!(sources = coverage.len(), events, "state sources compared");
        let at = poll.finished_at;
        let open = self.open_drift();
        self.status.update(|s| {
            s.coverage.sources = coverage;
            s.coverage.last_source_poll_at = Some(at);
            s.open_drift = open;
        });
    }

    /// A baseline accept of a state subject: applies only when the subject,
    /// collected just now, is exactly in the reviewed state.
    pub(super) fn accept_state(
        &mut self,
        subject: &SubjectKey,
        named: Option<&SubjectState>,
        fresh: Option<&Poll>,
        command_id: Uuid,
        window_id: Option<Uuid>,
    ) -> anyhow::Result<CommandOutcome> {
        let named = match named {
            None => None,
            Some(SubjectState::Fields { fields }) => Some(fields),
            Some(SubjectState::File(_)) => {
                anyhow::bail!(
                    "`{subject}` is a state subject, but the accepted state is a file state"
                )
            }
        };
        let Some(poll) = fresh else {
            anyhow::bail!("the current state of `{subject}` was not collected");
        };
        let current = match poll.current(subject) {
            Ok(current) => current.cloned(),
            Err(why) => anyhow::bail!("cannot read the current state of `{subject}`: {why}"),
        };
        if named != current.as_ref() {
            return Ok(CommandOutcome::Mismatch {
                current: current.map(|fields| SubjectState::Fields { fields }),
            });
        }
        let detail = serde_json::json!({
            "reason": "change window close-out accepted at the collector",
            "command_id": command_id,
            "window_id": window_id,
            "subjects": [{
                "subject": subject,
                "kind": if current.is_some() { "present" } else { "absent" },
                "fields": current,
            }],
        })
        .to_string();
        self.store.accept_with_state(
            &[],
            &[AcceptedState {
                subject: subject.clone(),
                fields: current,
            }],
            NewHistory {
                action: "accept",
                actor: format!("collector (command {command_id})"),
                detail,
            },
        )?;
        // Re-verified as a whole, like after a file accept.
        self.baseline = self.store.load_lean()?;
        self.baseline_state = self.store.state()?;
        // The drift is now the baseline: nothing is open on the subject any more.
        self.spool.forget_subject(subject)?;
        self.reported.forget_subject(subject);
        self.publish_coverage();
        Ok(CommandOutcome::Applied)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use driftwatch_common::api::v1::ChangeKind;

    use super::*;
    use crate::daemon::detect::Remember;
    use crate::daemon::detect::Reported;
    use crate::observe::sources::fields;

    fn collection(entries: &[(&str, Fields)]) -> Collection {
        entries
            .iter()
            .map(|(k, f)| (SubjectKey((*k).to_owned()), f.clone()))
            .collect()
    }

    fn user(uid: &str) -> Fields {
        fields([
            ("uid", uid),
            ("gid", uid),
            ("gecos", ""),
            ("home", "/home/x"),
            ("shell", "/bin/sh"),
        ])
    }

    /// (subject, kind, summary) of the events.
    fn brief(events: &[StatePending]) -> Vec<(String, ChangeKind, String)> {
        events
            .iter()
            .map(|e| (e.subject.0.clone(), e.kind, e.summary.clone()))
            .collect()
    }

    /// Applies committed events to the reported state, as the engine does.
    fn remember(reported: &mut BTreeMap<SubjectKey, Option<Fields>>, events: &[StatePending]) {
        let mut all = Reported::new(HashMap::new(), std::mem::take(reported));
        all.remember(events);
        *reported = all.subjects().clone();
    }

    #[test]
    fn drift_is_reported_once_per_state_and_restored_when_back() {
        let baseline = collection(&[
            ("user:bob", user("1001")),
            ("group:sudo", fields([("gid", "27"), ("members", "")])),
        ]);
        let covered = ["user", "group"];
        let mut reported = BTreeMap::new();

        let with_eve = collection(&[
            ("user:bob", user("1001")),
            ("user:eve", user("0")),
            ("group:sudo", fields([("gid", "27"), ("members", "")])),
        ]);
        let events = state_events(&baseline, &with_eve, &covered, &reported);
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].subject.0, "user:eve");
        assert_eq!(events[0].kind, ChangeKind::Added);
        assert!(
            events[0].summary.starts_with("user eve added with uid 0"),
            "{}",
            events[0].summary
        );
        assert_eq!(events[0].before, None);
        assert_eq!(events[0].after, Some(user("0")));
        remember(&mut reported, &events);

        // The same state again: nothing new.
        assert!(state_events(&baseline, &with_eve, &covered, &reported).is_empty());

        // A further change of the same subject is reported, relative to the baseline.
        let eve_1002 = collection(&[
            ("user:bob", user("1001")),
            ("user:eve", user("1002")),
            ("group:sudo", fields([("gid", "27"), ("members", "")])),
        ]);
        let events = state_events(&baseline, &eve_1002, &covered, &reported);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, ChangeKind::Added);
        assert_eq!(events[0].after, Some(user("1002")));
        remember(&mut reported, &events);

        // Gone again, as in the baseline: restored, and the open drift is forgotten.
        let events = state_events(&baseline, &baseline, &covered, &reported);
        assert_eq!(
            brief(&events),
            [(
                "user:eve".to_owned(),
                ChangeKind::Restored,
                "user eve is back in its baseline state".to_owned()
            )]
        );
        assert_eq!(events[0].before, Some(user("1002")));
        assert_eq!(events[0].after, None);
        remember(&mut reported, &events);
        assert!(reported.is_empty());
    }

    #[test]
    fn a_source_that_did_not_answer_is_never_everything_removed() {
        let baseline = collection(&[
            ("package:nginx", fields([("version", "1")])),
            ("user:bob", user("1001")),
        ]);
        // The package source failed: only users are compared.
        let current = collection(&[("user:bob", user("1001"))]);
        assert!(state_events(&baseline, &current, &["user", "group"], &BTreeMap::new()).is_empty());
        // Open drift on a package is not called restored while packages are unverified.
        let reported = BTreeMap::from([(
            SubjectKey("package:nginx".into()),
            Some(fields([("version", "2")])),
        )]);
        assert!(state_events(&baseline, &current, &["user", "group"], &reported).is_empty());
        // Once packages answer again and match the baseline, it is restored.
        let current = collection(&[
            ("package:nginx", fields([("version", "1")])),
            ("user:bob", user("1001")),
        ]);
        let events = state_events(
            &baseline,
            &current,
            &["package", "user", "group"],
            &reported,
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, ChangeKind::Restored);
        assert_eq!(events[0].after, Some(fields([("version", "1")])));
    }

    #[test]
    fn changes_and_removals_carry_worded_summaries_in_subject_order() {
        let baseline = collection(&[
            (
                "package:nginx",
                fields([("version", "1.22.1-9"), ("arch", "amd64")]),
            ),
            (
                "package:telnet",
                fields([("version", "0.17"), ("arch", "amd64")]),
            ),
        ]);
        let current = collection(&[(
            "package:nginx",
            fields([("version", "1.24.0-1"), ("arch", "amd64")]),
        )]);
        let events = state_events(&baseline, &current, &["package"], &BTreeMap::new());
        assert_eq!(
            brief(&events),
            [
                (
                    "package:nginx".to_owned(),
                    ChangeKind::Content,
                    "package nginx: version 1.22.1-9 -> 1.24.0-1".to_owned()
                ),
                (
                    "package:telnet".to_owned(),
                    ChangeKind::Removed,
                    "package telnet removed (was arch amd64, version 0.17)".to_owned()
                ),
            ]
        );
        assert_eq!(events[0].changed, ["version"]);
        assert_eq!(events[1].remember, Remember::Drifted(None));
    }
}
