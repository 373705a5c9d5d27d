//! The one decision every observation goes through, files and state
//! subjects alike, whether it came from the watch, a scan, the startup scan
//! or a poll of the state sources: given how a subject compares with its
//! baseline now and what the agent reported about it last, is there
//! something new to say?
//!
//! - It differs from the baseline and nothing was reported: report it.
//! - It differs and the last report showed another state: report again (one
//!   change, one event; the same state is never reported twice).
//! - It is back in its baseline state after a report: `restored`.
//! - Otherwise: nothing.
//!
//! "Another state" is judged with the rule's own attributes, the comparison
//! a check uses, so a rewrite that changes nothing the policy watches is quiet;
//! for state subjects (`package:nginx`...), every field counts.
//!
//! [`decide_all`] applies that rule to one comparison: the subjects found
//! different, then every subject with open drift that the comparison did
//! not mention, looked at once more ([`Look`]). [`Reported`] is the open
//! drift itself (the state last reported per subject), kept here and changed
//! only by [`Reported::remember`], after the spool committed the events (the
//! spool keeps the same rows in the same transaction, for restarts).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use driftwatch_common::api::v1::SubjectKey;
use driftwatch_common::attrs::AttributeSet;
use driftwatch_common::pathbytes::PathBytes;
use driftwatch_common::state::FileState;

use crate::observe::sources::Fields;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Emit a drift event (added, removed, content, attributes).
    Report,
    /// Emit a `restored` event and forget the open drift.
    Restored,
    /// Nothing new.
    Quiet,
}

/// `differs`: the subject now differs from its baseline. `current`: its state
/// now (`None` = absent). `reported`: what was reported last (`None` = nothing
/// open; `Some(None)` = reported absent).
pub fn decide(
    differs: bool,
    current: Option<&FileState>,
    reported: Option<&Option<FileState>>,
    attributes: AttributeSet,
) -> Decision {
    decide_by(differs, current, reported, |a, b| {
        same_state(a, b, attributes)
    })
}

/// The same decision for a state subject (`package:nginx`...), whose fields
/// are compared exactly.
pub fn decide_fields(
    differs: bool,
    current: Option<&Fields>,
    reported: Option<&Option<Fields>>,
) -> Decision {
    decide_by(differs, current, reported, |a, b| a == b)
}

/// The decision, given what "the same state" means for the subject.
pub fn decide_by<T>(
    differs: bool,
    current: Option<&T>,
    reported: Option<&Option<T>>,
    same: impl Fn(Option<&T>, Option<&T>) -> bool,
) -> Decision {
    match (differs, reported) {
        (true, None) => Decision::Report,
        (true, Some(last)) if same(last.as_ref(), current) => Decision::Quiet,
        (true, Some(_)) => Decision::Report,
        (false, Some(_)) => Decision::Restored,
        (false, None) => Decision::Quiet,
    }
}

pub fn same_state(a: Option<&FileState>, b: Option<&FileState>, attributes: AttributeSet) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => FileState::changed_attributes(a, b, attributes, None).is_empty(),
        _ => false,
    }
}

/// How a subject with open drift looks when it is looked at once more.
pub enum Look<T, D> {
    /// It differs from its baseline: its state now, and the event that would report it.
    Differs { now: Option<T>, event: D },
    /// It is in its baseline state (`None`: absent, as in the baseline).
    Clean(Option<T>),
    /// It cannot be judged now (out of the comparison's scope, unreadable, no
    /// longer covered, its source did not answer): nothing is said about it.
    Unknown,
}

/// What [`decide_all`] calls for.
#[derive(Debug, PartialEq)]
pub enum Verdict<K, T, D> {
    /// Report this drift event.
    Report(D),
    /// The subject is back in its baseline state: `last` was reported, `now` is read.
    Restored {
        key: K,
        last: Option<T>,
        now: Option<T>,
    },
}

/// The decisions of one comparison, for files and state subjects alike.
///
/// `differing`: the subjects the comparison found different from their
/// baseline (key, state now, the event that reports it). `reported`: the
/// open drift of this kind of subject. `look`: looks once more at a subject
/// with open drift that `differing` does not name. `same`: whether two
/// states of a subject are the same as far as its rule compares them.
pub fn decide_all<K, T, D, M>(
    differing: impl IntoIterator<Item = (K, Option<T>, D)>,
    reported: &M,
    mut look: impl FnMut(&K) -> Look<T, D>,
    same: impl Fn(&K, Option<&T>, Option<&T>) -> bool,
) -> Vec<Verdict<K, T, D>>
where
    K: Ord + Clone,
    T: Clone,
    M: OpenDrift<K, T>,
{
    let mut verdicts = Vec::new();
    let mut handled = BTreeSet::new();
    for (key, now, event) in differing {
        let decision = decide_by(true, now.as_ref(), reported.last(&key), |a, b| {
            same(&key, a, b)
        });
        if decision == Decision::Report {
            verdicts.push(Verdict::Report(event));
        }
        handled.insert(key);
    }
    for key in reported.open_keys() {
        if handled.contains(&key) {
            continue;
        }
        let last = reported.last(&key);
        match look(&key) {
            Look::Differs { now, event } => {
                if decide_by(true, now.as_ref(), last, |a, b| same(&key, a, b)) == Decision::Report
                {
                    verdicts.push(Verdict::Report(event));
                }
            }
            Look::Clean(now) => {
                if decide_by(false, now.as_ref(), last, |a, b| same(&key, a, b))
                    == Decision::Restored
                {
                    let last = last.cloned().flatten();
                    verdicts.push(Verdict::Restored { key, last, now });
                }
            }
            Look::Unknown => {}
        }
    }
    verdicts
}

/// Open drift of one kind of subject: the state last reported per subject
/// (`None`: reported absent).
pub trait OpenDrift<K, T> {
    fn last(&self, key: &K) -> Option<&Option<T>>;
    /// The subjects with open drift.
    fn open_keys(&self) -> Vec<K>;
}

impl<T> OpenDrift<PathBytes, T> for HashMap<PathBytes, Option<T>> {
    fn last(&self, key: &PathBytes) -> Option<&Option<T>> {
        self.get(key)
    }

    fn open_keys(&self) -> Vec<PathBytes> {
        self.keys().cloned().collect()
    }
}

impl<T> OpenDrift<SubjectKey, T> for BTreeMap<SubjectKey, Option<T>> {
    fn last(&self, key: &SubjectKey) -> Option<&Option<T>> {
        self.get(key)
    }

    fn open_keys(&self) -> Vec<SubjectKey> {
        self.keys().cloned().collect()
    }
}

/// The reported state: every subject with open drift and the state it was
/// last reported in. Loaded from the spool at start; changed only by
/// [`remember`](Self::remember) once the spool committed the events, and
/// by an applied baseline accept ([`forget_file`](Self::forget_file),
/// [`forget_subject`](Self::forget_subject)).
#[derive(Debug, Default)]
pub struct Reported {
    files: HashMap<PathBytes, Option<FileState>>,
    subjects: BTreeMap<SubjectKey, Option<Fields>>,
}

impl Reported {
    pub fn new(
        files: HashMap<PathBytes, Option<FileState>>,
        subjects: BTreeMap<SubjectKey, Option<Fields>>,
    ) -> Reported {
        Reported { files, subjects }
    }

    /// Open drift on files, by exact path bytes.
    pub fn files(&self) -> &HashMap<PathBytes, Option<FileState>> {
        &self.files
    }

    /// Open drift on state subjects (`package:nginx`...).
    pub fn subjects(&self) -> &BTreeMap<SubjectKey, Option<Fields>> {
        &self.subjects
    }

    /// How many subjects (files and state) have open drift.
    pub fn open(&self) -> u64 {
        (self.files.len() + self.subjects.len()) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.subjects.is_empty()
    }

    /// Records what committed events said, in their order.
    pub fn remember<E: Remembers>(&mut self, committed: &[E]) {
        for event in committed {
            event.remember_in(self);
        }
    }

    pub fn remember_file(&mut self, path: &PathBytes, what: &Remember<FileState>) {
        match what {
            Remember::Drifted(state) => {
                self.files.insert(path.clone(), state.clone());
            }
            Remember::Forget => {
                self.files.remove(path);
            }
        }
    }

    pub fn remember_subject(&mut self, subject: &SubjectKey, what: &Remember<Fields>) {
        match what {
            Remember::Drifted(fields) => {
                self.subjects.insert(subject.clone(), fields.clone());
            }
            Remember::Forget => {
                self.subjects.remove(subject);
            }
        }
    }

    /// The file's drift became its baseline (an applied accept).
    pub fn forget_file(&mut self, path: &PathBytes) {
        self.files.remove(path);
    }

    /// The state subject's drift became its baseline (an applied accept).
    pub fn forget_subject(&mut self, subject: &SubjectKey) {
        self.subjects.remove(subject);
    }
}

/// What the spool remembers about a subject once its event is committed
/// (`T`: a file's state, or a state subject's [`Fields`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remember<T = FileState> {
    /// The subject was reported in this state (`None`: reported absent).
    Drifted(Option<T>),
    /// The subject is back in its baseline state: nothing is open any more.
    Forget,
}

/// An event that, once committed, changes the reported state.
pub trait Remembers {
    fn remember_in(&self, reported: &mut Reported);
}

#[cfg(test)]
mod tests {
    use driftwatch_common::hash::ContentHash;
    use driftwatch_common::state::FileKind;

    use super::*;

    fn file(content: &str, mode: u32, ctime: i64) -> FileState {
        FileState {
            kind: FileKind::File,
            mode,
            uid: 0,
            gid: 0,
            size: content.len() as u64,
            mtime_ns: ctime,
            ctime_ns: ctime,
            inode: 1,
            device: 1,
            nlink: 1,
            rdev: None,
            link_target: None,
            content_hash: Some(ContentHash::of(content.as_bytes())),
            xattrs: None,
        }
    }

    /// (name, differs, current, reported, expected)
    type Case<'a> = (
        &'a str,
        bool,
        Option<&'a FileState>,
        Option<Option<FileState>>,
        Decision,
    );

    #[test]
    fn decisions() {
        let content = AttributeSet::builtin("content").unwrap();
        let a = file("a", 0o644, 1);
        let a_touched = file("a", 0o644, 2);
        let b = file("b", 0o644, 3);
        let b_chmod = file("b", 0o600, 4);
        use Decision::*;
        #[rustfmt::skip]
        let cases: &[Case<'_>] = &[
            ("first drift is reported",             true,  Some(&b),         None,                  Report),
            ("same drifted state is not repeated",  true,  Some(&b),         Some(Some(b.clone())), Quiet),
            ("a touch the policy ignores is quiet", true,  Some(&a_touched), Some(Some(a.clone())), Quiet),
            ("a further change is reported",        true,  Some(&b_chmod),   Some(Some(b.clone())), Report),
            ("removal after a content report",      true,  None,             Some(Some(b.clone())), Report),
            ("removal reported once",               true,  None,             Some(None),            Quiet),
            ("reappearance after removal",          true,  Some(&b),         Some(None),            Report),
            ("back to the baseline",                false, Some(&a),         Some(Some(b.clone())), Restored),
            ("gone again, as in the baseline",      false, None,             Some(Some(b.clone())), Restored),
            ("clean and nothing open",              false, Some(&a),         None,                  Quiet),
        ];
        for (name, differs, current, reported, expected) in cases {
            assert_eq!(
                decide(*differs, *current, reported.as_ref(), content),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn state_decisions_compare_every_field() {
        let v1 = crate::observe::sources::fields([("version", "1")]);
        let v2 = crate::observe::sources::fields([("version", "2")]);
        use Decision::*;
        assert_eq!(decide_fields(true, Some(&v2), None), Report);
        assert_eq!(
            decide_fields(true, Some(&v2), Some(&Some(v2.clone()))),
            Quiet
        );
        assert_eq!(decide_fields(true, None, Some(&Some(v2.clone()))), Report);
        assert_eq!(decide_fields(true, None, Some(&None)), Quiet);
        assert_eq!(decide_fields(false, Some(&v1), Some(&Some(v2))), Restored);
        assert_eq!(decide_fields(false, Some(&v1), None), Quiet);
    }

    /// Files: drift reported once, open drift the comparison did not name is
    /// looked at again (restored, changed further, or not judged).
    #[test]
    fn one_comparison_decides_drift_and_restored_together() {
        let content = AttributeSet::builtin("content").unwrap();
        let b = file("b", 0o644, 3);
        let c = file("c", 0o644, 5);
        let key = |p: &str| PathBytes::from(std::path::Path::new(p));
        let reported: HashMap<PathBytes, Option<FileState>> = HashMap::from([
            (key("/etc/same"), Some(b.clone())),
            (key("/etc/back"), Some(b.clone())),
            (key("/etc/again"), Some(b.clone())),
            (key("/etc/unreadable"), Some(b.clone())),
        ]);
        let differing = [
            (key("/etc/same"), Some(b.clone()), "same"),
            (key("/etc/new"), Some(b.clone()), "new"),
        ];
        let mut looked = Vec::new();
        let look = |path: &PathBytes| {
            looked.push(path.clone());
            match path.to_string().as_str() {
                "/etc/back" => Look::Clean(Some(file("a", 0o644, 9))),
                "/etc/again" => Look::Differs {
                    now: Some(c.clone()),
                    event: "again",
                },
                _ => Look::Unknown,
            }
        };
        let same =
            |_: &PathBytes, x: Option<&FileState>, y: Option<&FileState>| same_state(x, y, content);
        let mut verdicts = decide_all(differing, &reported, look, same);
        verdicts.sort_by_key(|v| format!("{v:?}"));
        assert_eq!(
            verdicts,
            [
                Verdict::Report("again"),
                Verdict::Report("new"),
                Verdict::Restored {
                    key: key("/etc/back"),
                    last: Some(b.clone()),
                    now: Some(file("a", 0o644, 9)),
                },
            ]
        );
        // Subjects the comparison named are not looked at twice.
        looked.sort();
        assert_eq!(
            looked,
            [key("/etc/again"), key("/etc/back"), key("/etc/unreadable")]
        );
    }

    /// The reported state changes by committed events only, files and state alike.
    #[test]
    fn reported_state_follows_committed_events() {
        struct File(PathBytes, Remember<FileState>);
        impl Remembers for File {
            fn remember_in(&self, reported: &mut Reported) {
                reported.remember_file(&self.0, &self.1);
            }
        }
        let path = PathBytes::from(std::path::Path::new("/etc/x"));
        let mut reported = Reported::default();
        reported.remember(&[File(path.clone(), Remember::Drifted(None))]);
        reported.remember_subject(
            &SubjectKey("user:eve".into()),
            &Remember::Drifted(Some(crate::observe::sources::fields([("uid", "0")]))),
        );
        assert_eq!(reported.open(), 2);
        assert_eq!(reported.files().get(&path), Some(&None));
        reported.remember(&[File(path.clone(), Remember::Forget)]);
        reported.forget_subject(&SubjectKey("user:eve".into()));
        assert!(reported.is_empty());
    }
}
