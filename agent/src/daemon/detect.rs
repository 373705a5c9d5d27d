//! The one decision every observation goes through, whether it came from the
//! watch, a scan or the startup scan: given how a subject compares with its
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

use driftwatch_common::attrs::AttributeSet;
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
fn decide_by<T>(
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

fn same_state(a: Option<&FileState>, b: Option<&FileState>, attributes: AttributeSet) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => FileState::changed_attributes(a, b, attributes, None).is_empty(),
        _ => false,
    }
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
}
