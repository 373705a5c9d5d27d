//! Summary figures of an export and the reproducible sample. Pure.
//!
//! Percentiles use the nearest-rank method: of `n` sorted durations, the p-th percentile
//! is the one at rank `ceil(p / 100 * n)` (1-based), so it is always an observed value;
//! the median is the 50th percentile (the lower middle for an even count).
//!
//! The sample: each event is keyed by `SHA-256("<seed>:<event id>")` (seed in decimal, id
//! as a lowercase hyphenated UUID); events sorted by key (bytewise), the first N are the
//! sample, ranked 1..=N. The same seed and the same population give the same sample,
//! and anyone can redraw it from the export with a few lines of script.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How to describe the sampling in an export.
pub const SAMPLE_ALGORITHM: &str = "events sorted by SHA-256(\"<seed>:<event id>\") \
                                    (seed in decimal, id as lowercase hyphenated UUID); \
                                    the first N are the sample, ranked 1..N";

/// The p-th percentile (0 < p <= 100) by nearest rank; `None` for no values.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// The sample's ranks by event id.
pub fn sample_ranks(ids: &[Uuid], size: u32, seed: u64) -> BTreeMap<Uuid, u32> {
    let mut keyed: Vec<([u8; 32], Uuid)> = ids
        .iter()
        .map(|id| {
            let key = Sha256::digest(format!("{seed}:{}", id.hyphenated()).as_bytes()).into();
            (key, *id)
        })
        .collect();
    keyed.sort_unstable();
    keyed
        .into_iter()
        .take(size as usize)
        .zip(1..)
        .map(|((_, id), rank)| (id, rank))
        .collect()
}

/// What one row contributes to the figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// `authorized`, `unexpected_state`, `untraced` or `restored`.
    pub authorization: &'static str,
    /// Still open (needs a person).
    pub unresolved: bool,
    /// From receipt to resolution, for changes that needed review and were resolved.
    pub resolve_ms: Option<i64>,
}

/// Figures for a set of rows. `changes` excludes restores (a subject back to its
/// baseline needs no authorization; they are counted apart).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub changes: u64,
    pub authorized: u64,
    /// Of `changes`, rounded to 0.1; `None` without changes.
    pub percent_authorized: Option<f64>,
    /// No approved window covered them.
    pub untraced: u64,
    /// In a window, but not the end state it approved.
    pub unexpected_state: u64,
    /// Changes whose drift is still open.
    pub unresolved: u64,
    pub restored: u64,
    /// Changes that needed review and were resolved (the durations below).
    pub resolved: u64,
    pub median_ms_to_resolve: Option<i64>,
    pub p90_ms_to_resolve: Option<i64>,
}

impl Metrics {
    pub fn of(observations: &[Observation]) -> Metrics {
        let mut m = Metrics::default();
        let mut durations = Vec::new();
        for o in observations {
            match o.authorization {
                "restored" => {
                    m.restored += 1;
                    continue;
                }
                "authorized" => m.authorized += 1,
                "unexpected_state" => m.unexpected_state += 1,
                _ => m.untraced += 1,
            }
            m.changes += 1;
            if o.unresolved {
                m.unresolved += 1;
            }
            if let Some(ms) = o.resolve_ms {
                durations.push(ms.max(0));
            }
        }
        durations.sort_unstable();
        m.resolved = durations.len() as u64;
        m.median_ms_to_resolve = percentile(&durations, 50);
        m.p90_ms_to_resolve = percentile(&durations, 90);
        m.percent_authorized = (m.changes > 0)
            .then(|| (m.authorized as f64 * 1000.0 / m.changes as f64).round() / 10.0);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 90), Some(7));
        assert_eq!(percentile(&[1, 2], 50), Some(1), "lower middle");
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 90), Some(9));
        assert_eq!(percentile(&ten, 100), Some(10));
        let eleven: Vec<i64> = (1..=11).collect();
        assert_eq!(percentile(&eleven, 90), Some(10), "rank ceil(9.9) = 10");
    }

    #[test]
    fn metrics_count_changes_and_time_to_resolve() {
        let o = |authorization, unresolved, resolve_ms| Observation {
            authorization,
            unresolved,
            resolve_ms,
        };
        let m = Metrics::of(&[
            o("authorized", false, None),
            o("authorized", false, None),
            o("untraced", true, None),
            o("untraced", false, Some(4000)),
            o("unexpected_state", false, Some(-5)),
            o("restored", false, None),
        ]);
        assert_eq!(
            (m.changes, m.authorized, m.untraced, m.unexpected_state),
            (5, 2, 2, 1)
        );
        assert_eq!((m.unresolved, m.restored, m.resolved), (1, 1, 2));
        assert_eq!(m.percent_authorized, Some(40.0));
        assert_eq!(m.median_ms_to_resolve, Some(0), "clock noise is clamped");
        assert_eq!(m.p90_ms_to_resolve, Some(4000));
        let none = Metrics::of(&[]);
        assert_eq!(
            (none.percent_authorized, none.median_ms_to_resolve),
            (None, None)
        );
        let third = Metrics::of(&[
            o("authorized", false, None),
            o("untraced", true, None),
            o("untraced", true, None),
        ]);
        assert_eq!(third.percent_authorized, Some(33.3));
    }

    #[test]
    fn the_sample_is_reproducible_and_seed_dependent() {
        let ids: Vec<Uuid> = (0..50u128).map(Uuid::from_u128).collect();
        let a = sample_ranks(&ids, 5, 42);
        assert_eq!(a.len(), 5);
        assert_eq!(a, sample_ranks(&ids, 5, 42), "same seed, same sample");
        let mut reversed = ids.clone();
        reversed.reverse();
        assert_eq!(
            a,
            sample_ranks(&reversed, 5, 42),
            "order of rows does not matter"
        );
        assert_ne!(a, sample_ranks(&ids, 5, 43), "another seed, another sample");
        let ranks: Vec<u32> = {
            let mut r: Vec<u32> = a.values().copied().collect();
            r.sort_unstable();
            r
        };
        assert_eq!(ranks, [1, 2, 3, 4, 5]);
        // A larger sample extends the smaller one: the first five keep their ranks.
        let b = sample_ranks(&ids, 8, 42);
        assert!(a.iter().all(|(id, rank)| b.get(id) == Some(rank)));
        assert_eq!(
            sample_ranks(&ids, 500, 1).len(),
            50,
            "at most the population"
        );
        // The documented key: rank 1 is the id with the smallest SHA-256("42:<id>").
        let smallest = ids
            .iter()
            .map(|id| Sha256::digest(format!("42:{}", id.hyphenated()).as_bytes()))
            .min()
            .unwrap();
        let first = a.iter().find(|(_, r)| **r == 1).unwrap().0;
        assert_eq!(
            Sha256::digest(format!("42:{}", first.hyphenated()).as_bytes()),
            smallest
        );
    }
}
