//! When an event can have reached its agent's spool, on the collector's clock. Pure.
//!
//! An event's `observed_at` is the agent's claim; root on the host can set the clock before
//! the change. What the collector saw itself is the heartbeats (each reports the last
//! sequence number the agent had spooled when it sent it) and the arrival of batches. So
//! event `seq` was spooled after the last heartbeat received that reported a lower number
//! (else after the host enrolled) and before the first heartbeat received that reported
//! `seq` or more, or before its batch arrived, whichever is earlier: [`SpoolBounds`].
//!
//! The lower bound is the heartbeat's arrival, not the moment the agent read its spool
//! just before sending it: later by the heartbeat's transit (milliseconds, at most the
//! agent's request timeout), which the clock tolerance covers.
//!
//! Heartbeat marks (arrival, reported seq) are kept per host, and only those that can still
//! bound an event that has not arrived yet ([`retained`]): an idle host keeps one.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// One heartbeat as the collector received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolMark {
    /// Collector clock.
    pub received_at: Millis,
    /// The last sequence number the agent said it had spooled.
    pub last_seq: u64,
}

/// `[after, before]` on the collector's clock: when an event can have been spooled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolBounds {
    pub after: Millis,
    pub before: Millis,
}

impl SpoolBounds {
    /// The agent's claim moved inside the bounds: the time shown for an event (corrected
    /// claim when it is plausible, else the nearest instant the collector can vouch for).
    pub fn clamp(&self, at: Millis) -> Millis {
        at.clamp(self.after, self.before.max(self.after))
    }
}

/// Whether an event's `observed_at` agrees with its bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockClaim {
    /// Within the bounds, give or take the tolerance.
    #[default]
    Consistent,
    /// Claims a time before the event can have been spooled (a clock set back, or slow).
    BeforeBounds,
    /// Claims a time after the collector already knew of the event (a clock set forward).
    AfterBounds,
}

impl ClockClaim {
    pub fn name(self) -> &'static str {
        match self {
            ClockClaim::Consistent => "consistent",
            ClockClaim::BeforeBounds => "before_bounds",
            ClockClaim::AfterBounds => "after_bounds",
        }
    }

    pub fn from_name(name: &str) -> Option<ClockClaim> {
        [
            ClockClaim::Consistent,
            ClockClaim::BeforeBounds,
            ClockClaim::AfterBounds,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }

    pub fn is_false(self) -> bool {
        self != ClockClaim::Consistent
    }
}

/// What the collector records about an event's time: the bounds, whether the agent's
/// claim agrees, and when the bounds straddle the edge of a window that would otherwise
/// have covered the event, which window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolTime {
    pub spooled_after: Millis,
    pub spooled_before: Millis,
    pub clock_claim: ClockClaim,
    /// A window covering the host and subject that was open during part of the bounds
    /// only: the event is not provably inside it (untraced, not authorized by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_provably_in: Option<uuid::Uuid>,
}

impl SpoolTime {
    pub fn bounds(&self) -> SpoolBounds {
        SpoolBounds {
            after: self.spooled_after,
            before: self.spooled_before,
        }
    }
}

/// Bounds the spooling of events of one host, from its heartbeat marks.
#[derive(Clone, Debug)]
pub struct Bounder {
    marks: Vec<SpoolMark>,
    /// `suffix_min[i]`: the lowest seq reported from mark `i` on (non-decreasing in `i`).
    suffix_min: Vec<u64>,
    /// `prefix_max[i]`: the highest seq reported up to mark `i` (non-decreasing in `i`).
    prefix_max: Vec<u64>,
    enrolled_at: Millis,
}

impl Bounder {
    /// `marks` in any order; `enrolled_at` bounds events no heartbeat preceded.
    pub fn new(mut marks: Vec<SpoolMark>, enrolled_at: Millis) -> Bounder {
        marks.sort_by_key(|m| m.received_at);
        let mut suffix_min = vec![0; marks.len()];
        let mut low = u64::MAX;
        for (i, mark) in marks.iter().enumerate().rev() {
            low = low.min(mark.last_seq);
            suffix_min[i] = low;
        }
        let mut high = 0;
        let prefix_max = marks
            .iter()
            .map(|m| {
                high = high.max(m.last_seq);
                high
            })
            .collect();
        Bounder {
            marks,
            suffix_min,
            prefix_max,
            enrolled_at,
        }
    }

    /// The bounds of event `seq` that arrived in a batch received at `arrived_at`.
    /// Logarithmic in the number of marks, so a batch costs no query per event.
    pub fn bounds(&self, seq: u64, arrived_at: Millis) -> SpoolBounds {
        // The last mark that reported less than `seq`: the last `i` with suffix_min[i] < seq.
        let after = match self.suffix_min.partition_point(|&low| low < seq) {
            0 => self.enrolled_at,
            n => self.marks[n - 1].received_at.max(self.enrolled_at),
        };
        // The first mark that reported `seq` or more: the first `i` with prefix_max[i] >= seq.
        let first = self.prefix_max.partition_point(|&high| high < seq);
        let before = self
            .marks
            .get(first)
            .map_or(arrived_at, |m| m.received_at.min(arrived_at));
        SpoolBounds {
            after,
            before: before.max(after),
        }
    }
}

/// Whether `observed_at` (agent clock) can be true for an event spooled within `bounds`.
pub fn check_claim(observed_at: Millis, bounds: SpoolBounds, tolerance_ms: i64) -> ClockClaim {
    if observed_at < bounds.after.saturating_sub(tolerance_ms) {
        ClockClaim::BeforeBounds
    } else if observed_at > bounds.before.saturating_add(tolerance_ms) {
        ClockClaim::AfterBounds
    } else {
        ClockClaim::Consistent
    }
}

/// The marks worth keeping once events up to `stored_seq` are stored: those that still
/// give the lower or the upper bound of some later event. Bounds of later events computed
/// from these equal the bounds computed from all marks; an event at or below `stored_seq`
/// arriving late (a gap filled) gets honest but possibly wider bounds.
pub fn retained(marks: &[SpoolMark], stored_seq: u64) -> Vec<SpoolMark> {
    let mut marks = marks.to_vec();
    marks.sort_by_key(|m| m.received_at);
    let n = marks.len();
    // The lowest seq reported after mark i (u64::MAX when none).
    let mut later_min = vec![u64::MAX; n];
    for i in (0..n.saturating_sub(1)).rev() {
        later_min[i] = later_min[i + 1].min(marks[i + 1].last_seq);
    }
    let mut earlier_max = 0u64;
    let mut kept = Vec::new();
    for (i, mark) in marks.iter().enumerate() {
        // Lower bound of some seq N > stored_seq: last_seq < N <= every later report.
        let lower = mark.last_seq.max(stored_seq) < later_min[i];
        // Upper bound of some N > stored_seq: every earlier report < N <= last_seq.
        let upper = earlier_max.max(stored_seq) < mark.last_seq;
        if lower || upper {
            kept.push(*mark);
        }
        earlier_max = earlier_max.max(mark.last_seq);
    }
    kept
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn mark(received_at: Millis, last_seq: u64) -> SpoolMark {
        SpoolMark {
            received_at,
            last_seq,
        }
    }

    /// The definition, over every mark.
    fn brute_bounds(
        marks: &[SpoolMark],
        enrolled: Millis,
        seq: u64,
        arrived: Millis,
    ) -> SpoolBounds {
        let after = marks
            .iter()
            .filter(|m| m.last_seq < seq)
            .map(|m| m.received_at)
            .max()
            .unwrap_or(enrolled)
            .max(enrolled);
        let before = marks
            .iter()
            .filter(|m| m.last_seq >= seq)
            .map(|m| m.received_at)
            .min()
            .unwrap_or(arrived)
            .min(arrived)
            .max(after);
        SpoolBounds { after, before }
    }

    #[test]
    fn heartbeats_around_an_event_bound_it() {
        let marks = vec![mark(1_000, 3), mark(61_000, 3), mark(121_000, 5)];
        let b = Bounder::new(marks, 0);
        // Seq 4 and 5: after the last report of 3, before the report of 5.
        assert_eq!(
            b.bounds(4, 500_000),
            SpoolBounds {
                after: 61_000,
                before: 121_000
            }
        );
        // Seq 6: after the report of 5, before its batch.
        assert_eq!(
            b.bounds(6, 130_000),
            SpoolBounds {
                after: 121_000,
                before: 130_000
            }
        );
        // Seq 1: before any heartbeat: after enrollment, before the first report.
        assert_eq!(
            b.bounds(1, 500_000),
            SpoolBounds {
                after: 0,
                before: 1_000
            }
        );
        // No heartbeat at all: enrollment to arrival.
        let none = Bounder::new(vec![], 10);
        assert_eq!(
            none.bounds(1, 99),
            SpoolBounds {
                after: 10,
                before: 99
            }
        );
    }

    #[test]
    fn a_claim_is_checked_against_the_bounds_with_the_tolerance() {
        let bounds = SpoolBounds {
            after: 100_000,
            before: 160_000,
        };
        assert_eq!(check_claim(40_000, bounds, 60_000), ClockClaim::Consistent);
        assert_eq!(
            check_claim(39_999, bounds, 60_000),
            ClockClaim::BeforeBounds
        );
        assert_eq!(check_claim(220_000, bounds, 60_000), ClockClaim::Consistent);
        assert_eq!(
            check_claim(220_001, bounds, 60_000),
            ClockClaim::AfterBounds
        );
        assert_eq!(bounds.clamp(10), 100_000);
        assert_eq!(bounds.clamp(120_000), 120_000);
        assert_eq!(bounds.clamp(i64::MAX), 160_000);
    }

    #[test]
    fn an_idle_host_keeps_one_mark() {
        let marks: Vec<_> = (0..100).map(|i| mark(i * 60_000, 7)).collect();
        assert_eq!(retained(&marks, 7), vec![mark(99 * 60_000, 7)]);
        // Events 8.. spooled but not stored: the first report of each seq and the last.
        let marks = vec![
            mark(0, 7),
            mark(1, 7),
            mark(2, 9),
            mark(3, 9),
            mark(4, 9),
            mark(5, 12),
        ];
        assert_eq!(
            retained(&marks, 7),
            vec![mark(1, 7), mark(2, 9), mark(4, 9), mark(5, 12)]
        );
    }

    fn arb_marks() -> impl Strategy<Value = Vec<SpoolMark>> {
        // Mostly increasing reports, sometimes lower (a hostile or re-installed agent).
        prop::collection::vec((1i64..100, 0u64..4, any::<bool>()), 0..30).prop_map(|steps| {
            let (mut at, mut seq) = (0i64, 0u64);
            steps
                .into_iter()
                .map(|(dt, ds, back)| {
                    at += dt;
                    seq = if back {
                        seq.saturating_sub(ds)
                    } else {
                        seq + ds
                    };
                    mark(at, seq)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn bounds_agree_with_the_definition(
            marks in arb_marks(),
            enrolled in -50i64..50,
            seq in 1u64..40,
            arrived in 0i64..4000,
        ) {
            let b = Bounder::new(marks.clone(), enrolled);
            prop_assert_eq!(b.bounds(seq, arrived), brute_bounds(&marks, enrolled, seq, arrived));
        }

        #[test]
        fn pruning_never_changes_the_bounds_of_events_not_stored_yet(
            marks in arb_marks(),
            stored in 0u64..30,
            seq in 1u64..40,
            arrived in 0i64..4000,
        ) {
            // Bounds are computed when a batch arrives: after every mark received so far.
            let arrived = arrived + marks.last().map_or(0, |m| m.received_at);
            let kept = retained(&marks, stored);
            let all = brute_bounds(&marks, 0, seq, arrived);
            let pruned = brute_bounds(&kept, 0, seq, arrived);
            let monotone = marks.windows(2).all(|w| w[0].last_seq <= w[1].last_seq);
            if seq > stored {
                prop_assert_eq!(pruned, all);
            } else if monotone {
                // Late events (a gap filled): never narrower than the truth.
                prop_assert!(pruned.after <= all.after && pruned.before >= all.before);
            }
            // Pruning again changes nothing.
            prop_assert_eq!(retained(&kept, stored), kept.clone());
        }
    }
}
