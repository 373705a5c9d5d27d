//! The drift lifecycle, per (host, subject): what an event or a decision does to the drift
//! item tracking the subject. Pure; the store applies the result in the event's transaction.
//!
//! ```text
//!             untraced event                     security resolves
//!  (none) ──────────────────► open ──────────────────────────────► resolved
//!     │                      ▲  │  restored event (automatic, recorded)   ▲
//!     │ authorized event     │  └──────────────────────────────────────────┤
//!     ▼                      │ untraced event                              │
//!  authorized ───────────────┘                                             │
//!     │  └────────────── restored event ───────────────────────────────────┘
//!     └── window closed (close-out) ──► accepted
//! ```
//! An open item becomes authorized when every event that needed review is later covered
//! by an approved window (an emergency window approved after the fact).

use std::fmt;
use std::str::FromStr;

use driftwatch_common::api::v1::{BASELINE_SUBJECT, DriftEvent, SubjectState};
use driftwatch_common::attrs::{Attribute, AttributeSet};
use driftwatch_common::state::FileState;
use serde::{Deserialize, Serialize};

use crate::matcher::Outcome;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    /// Needs a person: some change on it is untraced or not the approved state.
    Open,
    /// Every change on it is covered by a window; waits for close-out.
    Authorized,
    /// Closed with a reason (by security, or automatically when restored).
    Resolved,
    /// Accepted at close-out: the agents take the reviewed state as baseline.
    Accepted,
}

impl DriftStatus {
    pub fn name(self) -> &'static str {
        match self {
            DriftStatus::Open => "open",
            DriftStatus::Authorized => "authorized",
            DriftStatus::Resolved => "resolved",
            DriftStatus::Accepted => "accepted",
        }
    }

    /// Open and authorized items are active: at most one per (host, subject).
    pub fn is_active(self) -> bool {
        matches!(self, DriftStatus::Open | DriftStatus::Authorized)
    }
}

impl fmt::Display for DriftStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DriftStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [
            DriftStatus::Open,
            DriftStatus::Authorized,
            DriftStatus::Resolved,
            DriftStatus::Accepted,
        ]
        .into_iter()
        .find(|status| status.name() == s)
        .ok_or_else(|| {
            format!("unknown drift status `{s}`, expected open, authorized, resolved or accepted")
        })
    }
}

/// Why security closed untraced drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionCategory {
    /// An unauthorized change, handled as an incident.
    ConfirmedUnauthorized,
    /// An emergency change approved after the fact; names its ticket.
    EmergencyChange,
    /// Noise: the policy should be tuned.
    FalsePositive,
    /// Set by the collector: the subject went back to its baseline state.
    Restored,
}

impl ResolutionCategory {
    pub fn name(self) -> &'static str {
        match self {
            ResolutionCategory::ConfirmedUnauthorized => "confirmed_unauthorized",
            ResolutionCategory::EmergencyChange => "emergency_change",
            ResolutionCategory::FalsePositive => "false_positive",
            ResolutionCategory::Restored => "restored",
        }
    }
}

/// What one event does to the active item of its subject (`None`: there is none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Record the event without an item (a restore with nothing open).
    Nothing,
    /// Start an item with this status.
    Open(DriftStatus),
    /// Keep the item, with this status (the same or another).
    Update(DriftStatus),
    /// The subject is back to baseline: resolve the item automatically.
    AutoResolve,
}

/// Whether a further event on an active item writes a history row (and so reaches the
/// live stream, whose cursor is the history row's number): a status change does, and so
/// does a further change of an item that needs review (`open` → `open`, the stream's
/// `changed`), so a person watching the inbox sees it change again. A further change
/// under the window that authorized the item does not: nobody has to look at it.
pub fn records_history(before: DriftStatus, after: DriftStatus) -> bool {
    before != after || after == DriftStatus::Open
}

pub fn step(active: Option<DriftStatus>, outcome: &Outcome) -> Step {
    let review = outcome.needs_review();
    match (active, outcome) {
        (None, Outcome::Restored) => Step::Nothing,
        (Some(_), Outcome::Restored) => Step::AutoResolve,
        (None, _) if review => Step::Open(DriftStatus::Open),
        (None, _) => Step::Open(DriftStatus::Authorized),
        (Some(_), _) if review => Step::Update(DriftStatus::Open),
        // An authorized change does not cover an earlier untraced one.
        (Some(status), _) => Step::Update(status),
    }
}

/// What an event does to the alert hold of the active item it updates. The store writes
/// it: [`HoldChange::Hold`] starts the hold again (`untraced_since` = the event's arrival,
/// an alert due, no alert sent for it yet); [`HoldChange::Keep`] leaves all three as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldChange {
    Keep,
    Hold,
}

/// The hold after an event moved an item from `before` to `after`. Authorized drift that
/// an untraced change reopens is held afresh; an unapproved change of a subject whose drift
/// was already alerted on (`alerted`) is news: it is held and alerted on its own (a change
/// before that alert joins it, so the hold is kept).
pub fn hold_change(
    before: DriftStatus,
    after: DriftStatus,
    alerted: bool,
    outcome: &Outcome,
) -> HoldChange {
    let reopened = before == DriftStatus::Authorized && after == DriftStatus::Open;
    if reopened || (outcome.needs_review() && alerted) {
        HoldChange::Hold
    } else {
        HoldChange::Keep
    }
}

/// The hold after a refused restore left the item `after` ([`after_refused_restore`]):
/// open drift is alerted again, authorized drift keeps waiting for its close-out.
pub fn hold_after_refused_restore(after: DriftStatus) -> HoldChange {
    if after == DriftStatus::Open {
        HoldChange::Hold
    } else {
        HoldChange::Keep
    }
}

/// The history line of an item a refused restore kept: what differs, and why it matters.
pub fn refused_restore_reason(event_id: uuid::Uuid, differs: &str) -> String {
    format!(
        "event {event_id} claims the subject is restored, but it is not in the state the \
         collector accepted ({differs}): the agent's baseline moved on the host"
    )
}

/// The comment of the resolution the collector records when `event_id` restored a subject.
pub fn restored_comment(event_id: uuid::Uuid) -> String {
    format!("the subject returned to its baseline state (event {event_id})")
}

/// Only open drift is resolved by a person; `Err` says why an item in `status` is not.
pub fn check_resolvable(status: DriftStatus) -> Result<(), String> {
    if status == DriftStatus::Open {
        return Ok(());
    }
    Err(format!(
        "{status}, only open drift is resolved by a person{}",
        if status == DriftStatus::Authorized {
            " (authorized drift is accepted when its window is closed)"
        } else {
            ""
        }
    ))
}

/// Who the history names for what the collector did on its own (events, restores).
pub const BY_COLLECTOR: &str = "collector";

/// The history line of an event that moved an item.
pub fn event_reason(event_id: uuid::Uuid, outcome: &Outcome) -> String {
    format!("event {event_id} ({})", outcome.name())
}

/// The history line of drift accepted when its window was closed.
pub fn close_out_reason(window_id: uuid::Uuid, ticket: &str) -> String {
    format!("close-out of window {window_id} ({ticket})")
}

/// The status of an item once every event on it that needed review is covered by an
/// approved window (an emergency approved after the fact): open drift becomes authorized
/// and names that window; anything else stays as it is. No alert is due any more either way.
pub fn after_covered(status: DriftStatus) -> DriftStatus {
    match status {
        DriftStatus::Open => DriftStatus::Authorized,
        other => other,
    }
}

/// The history line of drift [`after_covered`] authorized.
pub fn covered_reason(window_id: uuid::Uuid) -> String {
    format!("covered after the fact by window {window_id}")
}

/// Whether accepting drift on `subject` at close-out sends the agent a baseline-accept
/// command. Not for the agent's own baseline ([`BASELINE_SUBJECT`]): a reported
/// re-baseline is already the baseline the agent runs on; accepting it records the approval.
pub fn accept_needs_command(subject: &str) -> bool {
    subject != BASELINE_SUBJECT
}

/// The reason of drift kept open because a `restored` event did not bring the subject back
/// to the state the collector accepted.
pub const RESTORE_MISMATCH: &str = "restore_mismatch";

/// The status of an active item after a `restored` event that [`restore_verdict`] refused:
/// open drift stays open and is alerted again (reason [`RESTORE_MISMATCH`]); drift an
/// approved window covers stays authorized, waiting for its close-out (the local
/// re-baseline behind the claim is reported, and judged, on its own subject).
pub fn after_refused_restore(active: DriftStatus) -> DriftStatus {
    match active {
        DriftStatus::Authorized => DriftStatus::Authorized,
        _ => DriftStatus::Open,
    }
}

/// Whether a `restored` event really brings its subject back to the state the collector
/// last accepted for it: the `before` of the event that opened the active drift item (the
/// baseline at that time: the initial one, or the state a close-out accepted). `restored`
/// is the agent's word for "back to MY baseline", and the agent's baseline can move on the
/// host (a local re-init or accept); the collector takes it only when it can see the
/// state is the accepted one. `Err` says what differs.
///
/// Files compare their type, content hash, link target and device number, and every
/// attribute the opening event named as changed (a drift on `mode` must see the mode back);
/// other attributes are the rule's business (a rewrite that keeps the content may move
/// times). A content hash known on only one side does not prove a return. A subject under
/// a `growing` rule compares without its content (it may legitimately have grown).
/// State subjects compare every field.
pub fn restore_verdict(opening: &DriftEvent, restored: &DriftEvent) -> Result<(), String> {
    let accepted = opening.before.as_ref();
    let reported = restored.after.as_ref();
    match (accepted, reported) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err("the subject did not exist in the accepted state".into()),
        (Some(_), None) => Err("the subject exists in the accepted state but is gone".into()),
        (Some(SubjectState::Fields { fields: a }), Some(SubjectState::Fields { fields: b })) => {
            if a == b {
                Ok(())
            } else {
                let differ: Vec<&str> = a
                    .keys()
                    .chain(b.keys())
                    .filter(|k| a.get(*k) != b.get(*k))
                    .map(String::as_str)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                Err(format!("fields differ: {}", differ.join(", ")))
            }
        }
        (Some(SubjectState::File(a)), Some(SubjectState::File(b))) => {
            let growing = opening.changed.iter().any(|c| c == "growing");
            let mut set =
                AttributeSet::of(&[Attribute::Type, Attribute::LinkTarget, Attribute::Rdev]);
            if !growing {
                set = set.with(Attribute::Hash);
                if a.content_hash.is_some() != b.content_hash.is_some() {
                    return Err("the content hash is known on one side only".into());
                }
            }
            for name in &opening.changed {
                if let Ok(attr) = name.parse::<Attribute>()
                    && !(growing && matches!(attr, Attribute::Hash | Attribute::Size))
                {
                    set = set.with(attr);
                }
            }
            let differ = FileState::changed_attributes(a, b, set, None);
            if differ.is_empty() {
                Ok(())
            } else {
                let names: Vec<&str> = differ.iter().map(|a| a.name()).collect();
                Err(format!("{} differ", names.join(", ")))
            }
        }
        _ => Err("the subject's kind of state changed".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_further_change_is_history_only_while_the_item_needs_review() {
        use super::{DriftStatus as S, records_history};
        assert!(
            records_history(S::Open, S::Open),
            "changed again, still open"
        );
        assert!(records_history(S::Authorized, S::Open), "reopened");
        assert!(records_history(S::Open, S::Authorized));
        assert!(!records_history(S::Authorized, S::Authorized));
    }

    use driftwatch_common::api::v1::{ChangeKind, SeenBy, SubjectKey};
    use driftwatch_common::hash::ContentHash;
    use driftwatch_common::state::FileKind;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn an_event_holds_the_item_again_only_when_it_is_news() {
        use DriftStatus::*;
        use HoldChange::{Hold, Keep};
        let untraced = Outcome::Untraced;
        let authorized = Outcome::Authorized {
            window_id: Uuid::nil(),
        };
        // Reopened: an untraced change on authorized drift.
        assert_eq!(hold_change(Authorized, Open, false, &untraced), Hold);
        // Already alerted: a further unapproved change is alerted on its own.
        assert_eq!(hold_change(Open, Open, true, &untraced), Hold);
        // Not alerted yet: it joins the hold that runs.
        assert_eq!(hold_change(Open, Open, false, &untraced), Keep);
        // An approved change neither reopens nor re-alerts.
        assert_eq!(hold_change(Open, Open, true, &authorized), Keep);
        assert_eq!(hold_change(Authorized, Authorized, true, &authorized), Keep);
        assert_eq!(hold_after_refused_restore(Open), Hold);
        assert_eq!(hold_after_refused_restore(Authorized), Keep);
    }

    #[test]
    fn covered_drift_is_authorized_only_when_it_was_open() {
        use DriftStatus::*;
        assert_eq!(after_covered(Open), Authorized);
        for status in [Authorized, Resolved, Accepted] {
            assert_eq!(after_covered(status), status);
        }
    }

    #[test]
    fn only_open_drift_is_resolved_by_a_person() {
        use DriftStatus::*;
        assert_eq!(check_resolvable(Open), Ok(()));
        let authorized = check_resolvable(Authorized).unwrap_err();
        assert!(
            authorized.contains("accepted when its window is closed"),
            "{authorized}"
        );
        for status in [Resolved, Accepted] {
            let refused = check_resolvable(status).unwrap_err();
            assert!(refused.starts_with(status.name()), "{refused}");
            assert!(!refused.contains("window"), "{refused}");
        }
    }

    #[test]
    fn each_event_moves_the_item_as_documented() {
        let authorized = Outcome::Authorized {
            window_id: Uuid::nil(),
        };
        let unexpected = Outcome::UnexpectedState {
            window_id: Uuid::nil(),
            expected: "version 1".into(),
        };
        use DriftStatus::*;
        #[rustfmt::skip]
        let cases = [
            (None, &Outcome::Untraced, Step::Open(Open)),
            (None, &unexpected, Step::Open(Open)),
            (None, &authorized, Step::Open(Authorized)),
            (None, &Outcome::Restored, Step::Nothing),
            (Some(Open), &authorized, Step::Update(Open)),
            (Some(Open), &Outcome::Untraced, Step::Update(Open)),
            (Some(Authorized), &authorized, Step::Update(Authorized)),
            (Some(Authorized), &Outcome::Untraced, Step::Update(Open)),
            (Some(Authorized), &unexpected, Step::Update(Open)),
            (Some(Open), &Outcome::Restored, Step::AutoResolve),
            (Some(Authorized), &Outcome::Restored, Step::AutoResolve),
        ];
        for (active, outcome, expected) in cases {
            assert_eq!(step(active, outcome), expected, "{active:?} + {outcome:?}");
        }
    }

    fn file_event(kind: ChangeKind, changed: &[&str], state: Option<FileState>) -> DriftEvent {
        DriftEvent {
            id: Uuid::now_v7(),
            host_id: Uuid::nil(),
            seq: 1,
            prev_hash: DriftEvent::GENESIS,
            subject: SubjectKey::file(b"/etc/app.conf"),
            kind,
            changed: changed.iter().map(ToString::to_string).collect(),
            before: state.clone().map(SubjectState::File),
            after: state.map(SubjectState::File),
            diff: None,
            summary: None,
            actor: None,
            seen_by: SeenBy::Watch,
            observed_at: time::OffsetDateTime::UNIX_EPOCH,
            provenance: None,
            related: None,
            mac: None,
        }
    }

    fn file(content: &str, mode: u32, ctime: i64) -> FileState {
        FileState {
            kind: FileKind::File,
            mode,
            uid: 0,
            gid: 0,
            size: content.len() as u64,
            mtime_ns: ctime,
            ctime_ns: ctime,
            inode: ctime as u64,
            device: 1,
            nlink: 1,
            rdev: None,
            link_target: None,
            content_hash: Some(ContentHash::of(content.as_bytes())),
            xattrs: None,
        }
    }

    #[test]
    fn a_restore_counts_only_back_in_the_accepted_state() {
        // Opened on content: its `before` is the accepted state.
        let opening = file_event(
            ChangeKind::Content,
            &["hash", "size"],
            Some(file("a", 0o644, 1)),
        );
        let restored = |state| file_event(ChangeKind::Restored, &[], Some(state));
        // Rewritten with the accepted content (new times, new inode): restored.
        assert_eq!(
            restore_verdict(&opening, &restored(file("a", 0o644, 9))),
            Ok(())
        );
        // The local baseline moved to the drifted content: not a return.
        let moved = restore_verdict(&opening, &restored(file("x", 0o644, 9)));
        assert!(moved.unwrap_err().contains("hash"));
        // A mode the opening drift did not name is the rule's business.
        assert_eq!(
            restore_verdict(&opening, &restored(file("a", 0o600, 9))),
            Ok(())
        );
        let on_mode = file_event(ChangeKind::Attributes, &["mode"], Some(file("a", 0o644, 1)));
        assert!(restore_verdict(&on_mode, &restored(file("a", 0o600, 9))).is_err());
        // A hash known on one side only proves nothing.
        let mut unread = file("a", 0o644, 9);
        unread.content_hash = None;
        assert!(restore_verdict(&opening, &restored(unread)).is_err());
        // Added, then removed again: back to "absent".
        let added = file_event(ChangeKind::Added, &[], None);
        assert_eq!(
            restore_verdict(&added, &file_event(ChangeKind::Restored, &[], None)),
            Ok(())
        );
        assert!(restore_verdict(&added, &restored(file("a", 0o644, 9))).is_err());
    }

    #[test]
    fn a_refused_restore_keeps_the_item_as_it_was() {
        use DriftStatus::*;
        assert_eq!(after_refused_restore(Open), Open);
        assert_eq!(after_refused_restore(Authorized), Authorized);
    }

    #[test]
    fn state_subjects_restore_on_every_field() {
        let fields = |v: &str| {
            Some(SubjectState::Fields {
                fields: [("version".to_owned(), v.to_owned())].into(),
            })
        };
        let mut opening = file_event(ChangeKind::Content, &["version"], None);
        opening.before = fields("1");
        let mut restored = file_event(ChangeKind::Restored, &[], None);
        restored.after = fields("1");
        assert_eq!(restore_verdict(&opening, &restored), Ok(()));
        restored.after = fields("2");
        assert_eq!(
            restore_verdict(&opening, &restored),
            Err("fields differ: version".into())
        );
    }

    #[test]
    fn statuses_parse_by_name() {
        assert_eq!("open".parse::<DriftStatus>().unwrap(), DriftStatus::Open);
        assert!("closed".parse::<DriftStatus>().is_err());
        assert!(DriftStatus::Authorized.is_active());
        assert!(!DriftStatus::Accepted.is_active());
    }
}
