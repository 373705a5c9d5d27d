//! From comparisons to wire events: what the detector decided to report
//! ([`Pending`]) becomes a [`DriftEvent`] with its id, sequence number and
//! link in the agent's hash chain when the spool commits it.
//!
//! Every event is relative to the baseline: `kind` and `changed` say how the
//! subject now differs from its approved state, `before` is the baseline
//! state and `after` the state just read. A `restored` event says the subject
//! is back in its baseline state: `before` is the drifted state reported
//! last, `after` the current one.
//!
//! [`StatePending`] is the same for state subjects, with the change in words
//! (`summary`). [`link_renames`] links the two halves of a rename (`related`);
//! [`RebaselinePending`] is a local re-baseline reported as drift on
//! `driftwatch:baseline`.

use std::collections::HashMap;
use std::path::Path;

use driftwatch_common::api::v1::{
    Actor, ChangeKind, DriftEvent, Provenance, SeenBy, SubjectKey, SubjectState,
};
use driftwatch_common::hash::ContentHash;
use driftwatch_common::pathbytes::PathBytes;
use driftwatch_common::state::FileState;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::baseline::check::{Drift, DriftKind};
use crate::daemon::detect::{Remember, Remembers, Reported};
use crate::observe::sources::{Fields, StateChange};

/// An event decided on but not yet committed (no sequence number yet).
#[derive(Clone, Debug)]
pub struct Pending {
    pub id: Uuid,
    pub path: PathBytes,
    pub kind: ChangeKind,
    pub changed: Vec<String>,
    pub before: Option<FileState>,
    pub after: Option<FileState>,
    pub diff: Option<String>,
    pub actor: Option<Actor>,
    pub provenance: Option<Provenance>,
    /// The other half of a rename.
    pub related: Option<Uuid>,
    pub remember: Remember,
    /// The new content of a small text file, for the (masked) diff; never sent.
    pub new_snapshot: Option<Vec<u8>>,
}

impl Pending {
    /// The event for drift found by a comparison with the baseline.
    pub fn drift(drift: &Drift) -> Pending {
        Pending {
            id: Uuid::now_v7(),
            path: drift.path.clone(),
            kind: change_kind(drift.kind),
            changed: drift.changed.iter().map(|a| a.name().to_owned()).collect(),
            before: drift.before.clone(),
            after: drift.after.clone(),
            // Filled in by `Engine::enrich`: the masked diff, the actor, the provenance.
            diff: None,
            actor: None,
            provenance: None,
            related: None,
            remember: Remember::Drifted(drift.after.clone()),
            new_snapshot: drift.new_snapshot.clone(),
        }
    }

    /// The event for a subject back in its baseline state.
    pub fn restored(
        path: PathBytes,
        reported: Option<FileState>,
        now: Option<FileState>,
    ) -> Pending {
        Pending {
            id: Uuid::now_v7(),
            path,
            kind: ChangeKind::Restored,
            changed: Vec::new(),
            before: reported,
            after: now,
            diff: None,
            actor: None,
            provenance: None,
            related: None,
            remember: Remember::Forget,
            new_snapshot: None,
        }
    }
}

impl Remembers for Pending {
    fn remember_in(&self, reported: &mut Reported) {
        reported.remember_file(&self.path, &self.remember);
    }
}

impl Remembers for StatePending {
    fn remember_in(&self, reported: &mut Reported) {
        reported.remember_subject(&self.subject, &self.remember);
    }
}

/// What the spool adds when it commits an event: its place in the agent's
/// hash chain, and how and when it was seen.
pub struct Stamp {
    pub host_id: Uuid,
    pub seq: u64,
    pub prev_hash: ContentHash,
    pub seen_by: SeenBy,
    pub observed_at: OffsetDateTime,
}

/// An event decided on, not yet committed: its wire form once stamped.
pub trait WireEvent {
    fn id(&self) -> Uuid;
    fn finalize(&self, stamp: Stamp) -> DriftEvent;
}

impl WireEvent for Pending {
    fn id(&self) -> Uuid {
        self.id
    }

    fn finalize(&self, stamp: Stamp) -> DriftEvent {
        DriftEvent {
            id: self.id,
            host_id: stamp.host_id,
            seq: stamp.seq,
            prev_hash: stamp.prev_hash,
            subject: SubjectKey::file(self.path.as_bytes()),
            kind: self.kind,
            changed: self.changed.clone(),
            before: self.before.clone().map(SubjectState::File),
            after: self.after.clone().map(SubjectState::File),
            diff: self.diff.clone(),
            summary: None,
            actor: self.actor.clone(),
            seen_by: stamp.seen_by,
            observed_at: stamp.observed_at,
            provenance: self.provenance.clone(),
            related: self.related,
            mac: None,
        }
    }
}

/// An event about a state subject (`package:nginx`, `user:eve`...) decided
/// on but not yet committed. Like [`Pending`], relative to the baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatePending {
    pub id: Uuid,
    pub subject: SubjectKey,
    pub kind: ChangeKind,
    /// Names of the fields that differ from the baseline.
    pub changed: Vec<String>,
    pub before: Option<Fields>,
    pub after: Option<Fields>,
    /// The change in words ("user eve added with uid 0").
    pub summary: String,
    pub remember: Remember<Fields>,
}

impl StatePending {
    /// The event for a difference from the baseline found in a poll.
    pub fn drift(change: StateChange) -> StatePending {
        StatePending {
            id: Uuid::now_v7(),
            remember: Remember::Drifted(change.after.clone()),
            subject: change.subject,
            kind: change.kind,
            changed: change.changed,
            before: change.before,
            after: change.after,
            summary: change.summary,
        }
    }

    /// The event for a state subject back in its baseline state.
    pub fn restored(
        subject: SubjectKey,
        reported: Option<Fields>,
        now: Option<Fields>,
    ) -> StatePending {
        StatePending {
            id: Uuid::now_v7(),
            kind: ChangeKind::Restored,
            changed: Vec::new(),
            before: reported,
            after: now,
            summary: format!(
                "{} {} is back in its baseline state",
                subject.namespace(),
                subject.name()
            ),
            subject,
            remember: Remember::Forget,
        }
    }
}

impl WireEvent for StatePending {
    fn id(&self) -> Uuid {
        self.id
    }

    fn finalize(&self, stamp: Stamp) -> DriftEvent {
        let state =
            |fields: &Option<Fields>| fields.clone().map(|fields| SubjectState::Fields { fields });
        DriftEvent {
            id: self.id,
            host_id: stamp.host_id,
            seq: stamp.seq,
            prev_hash: stamp.prev_hash,
            subject: self.subject.clone(),
            kind: self.kind,
            changed: self.changed.clone(),
            before: state(&self.before),
            after: state(&self.after),
            diff: None,
            summary: Some(self.summary.clone()),
            actor: Some(polled_state_actor()),
            seen_by: stamp.seen_by,
            observed_at: stamp.observed_at,
            provenance: None,
            related: None,
            mac: None,
        }
    }
}

/// A change of the agent's own baseline made on the host without a collector command
/// (`baseline init [--force]`, `baseline accept` on an enrolled host), reported on the
/// reserved subject [`BASELINE_SUBJECT`](driftwatch_common::api::v1::BASELINE_SUBJECT) so the
/// collector judges it like any drift (untraced unless a window covers that subject) and
/// moves the root it expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebaselinePending {
    pub id: Uuid,
    /// The baseline before (`None`: there was none, or it did not verify; see `before_note`).
    pub before: Option<driftwatch_common::api::v1::BaselineAnchor>,
    /// Why there is no `before` root, if there is none.
    pub before_note: Option<String>,
    pub after: driftwatch_common::api::v1::BaselineAnchor,
    /// `init`, `reinit` or `accept`.
    pub action: String,
    /// The history row's detail (reason, subjects...).
    pub detail: String,
    pub actor: Actor,
}

impl RebaselinePending {
    fn fields(
        anchor: &driftwatch_common::api::v1::BaselineAnchor,
    ) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::from([
            ("root".to_owned(), anchor.root.to_hex()),
            ("created_at".to_owned(), anchor.created_at.clone()),
        ])
    }
}

impl WireEvent for RebaselinePending {
    fn id(&self) -> Uuid {
        self.id
    }

    fn finalize(&self, stamp: Stamp) -> DriftEvent {
        let before = match (&self.before, &self.before_note) {
            (Some(anchor), _) => Some(Self::fields(anchor)),
            (None, Some(note)) => Some(std::collections::BTreeMap::from([(
                "unverified".to_owned(),
                note.clone(),
            )])),
            (None, None) => None,
        };
        let mut after = Self::fields(&self.after);
        after.insert("action".into(), self.action.clone());
        let who = self
            .actor
            .login_user
            .as_deref()
            .or(self.actor.user.as_deref())
            .unwrap_or("unknown");
        DriftEvent {
            id: self.id,
            host_id: stamp.host_id,
            seq: stamp.seq,
            prev_hash: stamp.prev_hash,
            subject: SubjectKey(driftwatch_common::api::v1::BASELINE_SUBJECT.to_owned()),
            kind: if before.is_some() {
                ChangeKind::Content
            } else {
                ChangeKind::Added
            },
            changed: vec!["root".into()],
            before: before.map(|fields| SubjectState::Fields { fields }),
            after: Some(SubjectState::Fields { fields: after }),
            diff: None,
            summary: Some(format!(
                "baseline {} on the host by {who} without a collector command: {}",
                match self.action.as_str() {
                    "accept" => "accept",
                    "reinit" => "re-initialised",
                    _ => "initialised",
                },
                self.detail
            )),
            actor: Some(self.actor.clone()),
            seen_by: stamp.seen_by,
            observed_at: stamp.observed_at,
            provenance: None,
            related: None,
            mac: None,
        }
    }
}

/// State sources are polled, not watched: nobody can be named as the author.
pub fn polled_state_actor() -> Actor {
    Actor {
        source: "none".into(),
        reason: Some(
            "state sources are polled: the process or person that changed them is not observed"
                .into(),
        ),
        ..Actor::default()
    }
}

pub fn change_kind(kind: DriftKind) -> ChangeKind {
    match kind {
        DriftKind::Added => ChangeKind::Added,
        DriftKind::Removed => ChangeKind::Removed,
        DriftKind::Content => ChangeKind::Content,
        DriftKind::Attributes => ChangeKind::Attributes,
    }
}

/// Links the two halves of each rename `(from, to)`: the removal at `from`
/// (or below it, for a directory) and the appearance at the same place under
/// `to` point at each other through `related`.
pub fn link_renames(pending: &mut [Pending], renames: &[(PathBytes, PathBytes)]) {
    if renames.is_empty() {
        return;
    }
    let by_path: HashMap<Vec<u8>, usize> = pending
        .iter()
        .enumerate()
        .map(|(i, p)| (p.path.as_bytes().to_vec(), i))
        .collect();
    let mut links = Vec::new();
    for (from, to) in renames {
        for (index, event) in pending.iter().enumerate() {
            if event.kind != ChangeKind::Removed {
                continue;
            }
            let Ok(rest) = event.path.as_path().strip_prefix(from.as_path()) else {
                continue;
            };
            let target = if rest.as_os_str().is_empty() {
                to.as_path().to_path_buf()
            } else {
                to.as_path().join(rest)
            };
            let target = PathBytes::from(target.as_path());
            if let Some(&other) = by_path.get(target.as_bytes())
                && matches!(
                    pending[other].kind,
                    ChangeKind::Added | ChangeKind::Content | ChangeKind::Attributes
                )
            {
                links.push((index, other));
            }
        }
    }
    for (a, b) in links {
        pending[a].related = Some(pending[b].id);
        pending[b].related = Some(pending[a].id);
    }
}

/// The path of a `file:` subject key, if it is one.
pub fn file_subject_path(subject: &SubjectKey) -> Option<std::path::PathBuf> {
    if subject.namespace() != "file" {
        return None;
    }
    let bytes = driftwatch_common::pathbytes::unescape(subject.name()).ok()?;
    let path = PathBytes(bytes).into_path_buf();
    Path::new(&path).is_absolute().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(path: &str, kind: ChangeKind) -> Pending {
        Pending {
            id: Uuid::now_v7(),
            path: PathBytes(path.as_bytes().to_vec()),
            kind,
            changed: Vec::new(),
            before: None,
            after: None,
            diff: None,
            actor: None,
            provenance: None,
            related: None,
            remember: Remember::Forget,
            new_snapshot: None,
        }
    }

    fn pb(path: &str) -> PathBytes {
        PathBytes(path.as_bytes().to_vec())
    }

    #[test]
    fn renames_link_removal_and_appearance_including_children() {
        let mut events = vec![
            pending("/t/a", ChangeKind::Removed),
            pending("/t/b", ChangeKind::Added),
            pending("/t/d/x", ChangeKind::Removed),
            pending("/t/e/x", ChangeKind::Added),
            pending("/t/unrelated", ChangeKind::Added),
        ];
        link_renames(
            &mut events,
            &[(pb("/t/a"), pb("/t/b")), (pb("/t/d"), pb("/t/e"))],
        );
        assert_eq!(events[0].related, Some(events[1].id));
        assert_eq!(events[1].related, Some(events[0].id));
        assert_eq!(events[2].related, Some(events[3].id));
        assert_eq!(events[3].related, Some(events[2].id));
        assert_eq!(events[4].related, None);
    }

    #[test]
    fn a_rename_over_a_changed_target_links_to_its_content_event() {
        let mut events = vec![
            pending("/t/new", ChangeKind::Removed),
            pending("/t/conf", ChangeKind::Content),
        ];
        link_renames(&mut events, &[(pb("/t/new"), pb("/t/conf"))]);
        assert_eq!(events[0].related, Some(events[1].id));
    }

    #[test]
    fn file_subjects_round_trip_to_paths() {
        let key = SubjectKey::file(b"/etc/a\nb");
        assert_eq!(
            file_subject_path(&key).unwrap(),
            std::path::PathBuf::from("/etc/a\nb")
        );
        assert_eq!(file_subject_path(&SubjectKey("package:x".into())), None);
        assert_eq!(file_subject_path(&SubjectKey("file:relative".into())), None);
    }
}
