//! The baseline anchored at the collector (issue 8, I8). Pure: the store keeps the state,
//! `App` feeds it what heartbeats and events say.
//!
//! Each host has an *expected* baseline root. It is set at enrollment (or, for a host
//! enrolled before agents reported roots, by its first reported root, recorded as such) and
//! moves only by
//! - an accept the collector issued, once the agent answers `applied` with its new root, and
//! - a local re-baseline the agent reported as an event on the reserved subject
//!   [`BASELINE_SUBJECT`] (that event is itself drift, judged by the matcher).
//!
//! Every heartbeat carries the root the agent runs on. A root other than the expected one is
//! an alert (`baseline_anchor`): *rolled back* when it is a root this host was expected to
//! run on before, *edited* when the baseline has the expected creation time (changed in
//! place with the key), otherwise *replaced*. One alert per change of condition: the same
//! wrong root is not alerted again, a return to the expected root clears the condition.
//! While the agent says it emitted events the collector has not stored yet (a re-baseline
//! event may be among them), the verdict waits, at most [`GRACE_MS`].

use driftwatch_common::api::v1::{BASELINE_SUBJECT, BaselineAnchor, DriftEvent, SubjectState};
use driftwatch_common::hash::ContentHash;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Millis;

/// How long a differing root waits for the host's outstanding events before it alerts.
pub const GRACE_MS: i64 = 5 * 60 * 1000;

/// The root a host is expected to run on, and what put it there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    pub anchor: BaselineAnchor,
    /// `enrollment`, `first_heartbeat`, `accept:<command id>`, `rebaseline:<event id>`.
    pub source: String,
    pub since: Millis,
}

/// A reported root that differs from the expected one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub root: ContentHash,
    pub since: Millis,
    /// Alerted already (the condition is not alerted twice).
    pub alerted: bool,
}

/// What the store keeps per host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorState {
    pub expected: Option<Expected>,
    pub mismatch: Option<Mismatch>,
}

/// Why a host's baseline is not the one the collector expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// A root this host was expected to run on earlier: an older copy was restored.
    RolledBack,
    /// Same creation time, other content: changed in place (with the key).
    Edited,
    /// Another baseline altogether.
    Replaced,
}

impl Problem {
    pub fn name(self) -> &'static str {
        match self {
            Problem::RolledBack => "rolled_back",
            Problem::Edited => "edited",
            Problem::Replaced => "replaced",
        }
    }
}

/// What one heartbeat says, with what the collector knows about it.
#[derive(Clone, Debug)]
pub struct Beat<'a> {
    /// Applied accepts, in order, of commands the collector issued to this host and that
    /// were still pending, each with the root the agent reported after it.
    pub applied: Vec<(Uuid, &'a BaselineAnchor)>,
    /// The root the agent runs on (`None`: an older agent; no verdict).
    pub reported: Option<&'a BaselineAnchor>,
    /// The reported root was expected for this host at some earlier time.
    pub reported_known: bool,
    /// The agent emitted events the collector has not stored yet.
    pub events_outstanding: bool,
    pub now: Millis,
}

/// The new state, the roots newly expected (for the host's root history) and an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub state: AnchorState,
    pub moved: Vec<Expected>,
    pub alert: Option<Problem>,
}

impl Judgement {
    /// Whether anything must be stored.
    pub fn changes(&self, before: &AnchorState) -> bool {
        self.state != *before || !self.moved.is_empty() || self.alert.is_some()
    }
}

/// The anchor a host reports at enrollment: the first expected root.
pub fn at_enrollment(anchor: &BaselineAnchor, now: Millis) -> Judgement {
    let expected = Expected {
        anchor: anchor.clone(),
        source: "enrollment".into(),
        since: now,
    };
    Judgement {
        state: AnchorState {
            expected: Some(expected.clone()),
            mismatch: None,
        },
        moved: vec![expected],
        alert: None,
    }
}

pub fn on_heartbeat(before: &AnchorState, beat: &Beat<'_>) -> Judgement {
    let mut state = before.clone();
    let mut moved = Vec::new();
    // An accept applied to a baseline already alerted as wrong does not make it right.
    let trusted = !state.mismatch.as_ref().is_some_and(|m| m.alerted);
    if trusted {
        for (command_id, anchor) in &beat.applied {
            if state.expected.as_ref().map(|e| e.anchor.root) == Some(anchor.root) {
                continue;
            }
            let expected = Expected {
                anchor: (*anchor).clone(),
                source: format!("accept:{command_id}"),
                since: beat.now,
            };
            state.expected = Some(expected.clone());
            moved.push(expected);
        }
    }
    let Some(reported) = beat.reported else {
        return Judgement {
            state,
            moved,
            alert: None,
        };
    };
    let Some(expected) = &state.expected else {
        // Enrolled before agents reported roots: the first one reported is taken.
        let expected = Expected {
            anchor: reported.clone(),
            source: "first_heartbeat".into(),
            since: beat.now,
        };
        state.expected = Some(expected.clone());
        state.mismatch = None;
        moved.push(expected);
        return Judgement {
            state,
            moved,
            alert: None,
        };
    };
    if expected.anchor.root == reported.root {
        state.mismatch = None;
        return Judgement {
            state,
            moved,
            alert: None,
        };
    }
    let same = state.mismatch.as_ref().filter(|m| m.root == reported.root);
    if same.is_some_and(|m| m.alerted) {
        return Judgement {
            state,
            moved,
            alert: None,
        };
    }
    let since = same.map_or(beat.now, |m| m.since);
    let waiting = beat.events_outstanding && beat.now - since < GRACE_MS;
    let alert = (!waiting).then(|| {
        if beat.reported_known {
            Problem::RolledBack
        } else if reported.created_at == expected.anchor.created_at {
            Problem::Edited
        } else {
            Problem::Replaced
        }
    });
    state.mismatch = Some(Mismatch {
        root: reported.root,
        since,
        alerted: alert.is_some(),
    });
    Judgement {
        state,
        moved,
        alert,
    }
}

/// A reported local re-baseline (the event itself is drift, judged by the matcher).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebaseline {
    pub event_id: Uuid,
    /// The baseline it replaced (`None`: none, or one that did not verify).
    pub from: Option<BaselineAnchor>,
    pub to: BaselineAnchor,
}

/// A reported local re-baseline moves the expected root to the one it names. When it did
/// not start from the expected baseline, that is alerted as well (unless already alerted):
/// an approved re-baseline must not launder a baseline swapped before it.
pub fn on_rebaseline(
    before: &AnchorState,
    rebaseline: &Rebaseline,
    from_known: bool,
    now: Millis,
) -> Judgement {
    let alert = match (&before.expected, &rebaseline.from) {
        (None, _) => None,
        (Some(expected), Some(from)) if expected.anchor.root == from.root => None,
        (Some(_), Some(from))
            if before
                .mismatch
                .as_ref()
                .is_some_and(|m| m.alerted && m.root == from.root) =>
        {
            None
        }
        (Some(_), None) => Some(Problem::Replaced),
        (Some(expected), Some(from)) => Some(if from_known {
            Problem::RolledBack
        } else if from.created_at == expected.anchor.created_at {
            Problem::Edited
        } else {
            Problem::Replaced
        }),
    };
    let expected = Expected {
        anchor: rebaseline.to.clone(),
        source: format!("rebaseline:{}", rebaseline.event_id),
        since: now,
    };
    let mut state = before.clone();
    state.expected = Some(expected.clone());
    if state
        .mismatch
        .as_ref()
        .is_some_and(|m| m.root == rebaseline.to.root)
    {
        state.mismatch = None;
    }
    Judgement {
        state,
        moved: vec![expected],
        alert,
    }
}

/// The re-baseline an event reports (the `root` and `created_at` fields of its `before` and
/// `after`), if it is one.
pub fn rebaseline_of(event: &DriftEvent) -> Option<Rebaseline> {
    if event.subject.0 != BASELINE_SUBJECT {
        return None;
    }
    let anchor = |state: &Option<SubjectState>| match state {
        Some(SubjectState::Fields { fields }) => Some(BaselineAnchor {
            root: fields.get("root")?.parse().ok()?,
            created_at: fields.get("created_at")?.clone(),
        }),
        _ => None,
    };
    Some(Rebaseline {
        event_id: event.id,
        from: anchor(&event.before),
        to: anchor(&event.after)?,
    })
}

/// The alert's words.
pub fn summary(problem: Problem, hostname: &str) -> String {
    match problem {
        Problem::RolledBack => format!(
            "the baseline on {hostname} was rolled back to an older copy: accepts made since are gone"
        ),
        Problem::Edited => format!(
            "the baseline on {hostname} was edited on the host (with its key) without a reported re-baseline"
        ),
        Problem::Replaced => {
            format!("the baseline on {hostname} was replaced by one the collector never accepted")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(n: u8, created: &str) -> BaselineAnchor {
        BaselineAnchor {
            root: ContentHash([n; 32]),
            created_at: created.into(),
        }
    }

    fn beat<'a>(reported: Option<&'a BaselineAnchor>, now: Millis) -> Beat<'a> {
        Beat {
            applied: Vec::new(),
            reported,
            reported_known: false,
            events_outstanding: false,
            now,
        }
    }

    fn expecting(a: &BaselineAnchor) -> AnchorState {
        at_enrollment(a, 0).state
    }

    #[test]
    fn the_first_root_of_an_older_enrollment_is_taken_and_recorded() {
        let a = anchor(1, "t1");
        let judged = on_heartbeat(&AnchorState::default(), &beat(Some(&a), 5));
        assert_eq!(judged.alert, None);
        assert_eq!(judged.moved.len(), 1);
        assert_eq!(judged.moved[0].source, "first_heartbeat");
        assert_eq!(judged.state.expected.unwrap().anchor, a);
    }

    #[test]
    fn a_differing_root_alerts_once_per_condition() {
        let a = anchor(1, "t1");
        let b = anchor(2, "t2");
        let c = anchor(3, "t1");
        let first = on_heartbeat(&expecting(&a), &beat(Some(&b), 10));
        assert_eq!(first.alert, Some(Problem::Replaced));
        let again = on_heartbeat(&first.state, &beat(Some(&b), 20));
        assert_eq!(again.alert, None);
        assert!(!again.changes(&first.state));
        // Another wrong root is another condition; same creation time: edited.
        let edited = on_heartbeat(&again.state, &beat(Some(&c), 30));
        assert_eq!(edited.alert, Some(Problem::Edited));
        // Back to the expected root clears it; going wrong again alerts again.
        let back = on_heartbeat(&edited.state, &beat(Some(&a), 40));
        assert_eq!((back.alert, back.state.mismatch.clone()), (None, None));
        assert_eq!(
            on_heartbeat(&back.state, &beat(Some(&b), 50)).alert,
            Some(Problem::Replaced)
        );
    }

    #[test]
    fn a_root_expected_before_is_a_rollback() {
        let old = anchor(1, "t1");
        let now = anchor(2, "t1");
        let mut b = beat(Some(&old), 10);
        b.reported_known = true;
        assert_eq!(
            on_heartbeat(&expecting(&now), &b).alert,
            Some(Problem::RolledBack)
        );
    }

    #[test]
    fn applied_accepts_move_the_expected_root_without_an_alert() {
        let a = anchor(1, "t1");
        let b = anchor(2, "t1");
        let id = Uuid::now_v7();
        let mut hb = beat(Some(&b), 10);
        hb.applied = vec![(id, &b)];
        let judged = on_heartbeat(&expecting(&a), &hb);
        assert_eq!(judged.alert, None);
        assert_eq!(judged.moved[0].source, format!("accept:{id}"));
        assert_eq!(judged.state.expected.unwrap().anchor, b);
    }

    #[test]
    fn an_accept_on_a_baseline_alerted_as_wrong_does_not_launder_it() {
        let a = anchor(1, "t1");
        let evil = anchor(2, "t9");
        let evil_accepted = anchor(3, "t9");
        let alerted = on_heartbeat(&expecting(&a), &beat(Some(&evil), 10));
        let mut hb = beat(Some(&evil_accepted), 20);
        hb.applied = vec![(Uuid::now_v7(), &evil_accepted)];
        let judged = on_heartbeat(&alerted.state, &hb);
        assert!(judged.moved.is_empty());
        assert_eq!(judged.alert, Some(Problem::Replaced));
    }

    #[test]
    fn outstanding_events_delay_the_verdict_within_the_grace() {
        let a = anchor(1, "t1");
        let b = anchor(2, "t2");
        let mut hb = beat(Some(&b), 10);
        hb.events_outstanding = true;
        let waiting = on_heartbeat(&expecting(&a), &hb);
        assert_eq!(waiting.alert, None);
        assert!(waiting.state.mismatch.is_some());
        // The re-baseline event arrives: b is now expected, the condition is gone.
        let rebaseline = Rebaseline {
            event_id: Uuid::now_v7(),
            from: Some(a.clone()),
            to: b.clone(),
        };
        let moved = on_rebaseline(&waiting.state, &rebaseline, false, 20);
        assert_eq!((moved.state.mismatch.clone(), moved.alert), (None, None));
        assert_eq!(on_heartbeat(&moved.state, &beat(Some(&b), 30)).alert, None);
        // Without it, the grace runs out even while events stay outstanding.
        let mut late = beat(Some(&b), 10 + GRACE_MS);
        late.events_outstanding = true;
        assert_eq!(
            on_heartbeat(&waiting.state, &late).alert,
            Some(Problem::Replaced)
        );
    }

    #[test]
    fn a_rebaseline_from_a_swapped_baseline_still_alerts_the_swap() {
        let a = anchor(1, "t1");
        let swapped = anchor(2, "t5");
        let rebaseline = Rebaseline {
            event_id: Uuid::now_v7(),
            from: Some(swapped.clone()),
            to: anchor(3, "t6"),
        };
        let judged = on_rebaseline(&expecting(&a), &rebaseline, false, 10);
        assert_eq!(judged.alert, Some(Problem::Replaced));
        assert_eq!(judged.state.expected.unwrap().anchor, rebaseline.to);
        // Already alerted from a heartbeat: not twice.
        let alerted = on_heartbeat(&expecting(&a), &beat(Some(&swapped), 5));
        assert_eq!(
            on_rebaseline(&alerted.state, &rebaseline, false, 10).alert,
            None
        );
    }

    #[test]
    fn no_reported_root_is_no_verdict() {
        let a = anchor(1, "t1");
        let judged = on_heartbeat(&expecting(&a), &beat(None, 10));
        assert!(!judged.changes(&expecting(&a)));
    }
}
