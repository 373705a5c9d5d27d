//! Which content snapshots `baseline init` keeps: the snapshot budget.
//!
//! Configuration paths (`snapshots.config_like`: `/etc`, `*.conf`...) always keep theirs.
//! Every other snapshot counts its compressed size against `snapshots.budget` (ad-hoc use:
//! 8 MiB; a policy: no limit unless `--snapshot-budget` sets one), first come first kept in
//! the order the scan's workers finish (the walk's order, roughly); content already kept
//! costs nothing again (the store keeps one blob per content). Once a snapshot does not fit,
//! the budget is spent: later candidates are not even copied or compressed, which is what
//! keeps init near the hashing ceiling on text-heavy trees. What was left out is counted and
//! printed, so nobody expects a diff that cannot be shown.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use driftwatch_common::hash::ContentHash;
use serde::Serialize;

/// Shared by the scan's workers during one init.
pub struct SnapshotBudget {
    limit: Option<u64>,
    spent: AtomicBool,
    state: Mutex<Spent>,
    left_out_files: AtomicU64,
    left_out_bytes: AtomicU64,
}

#[derive(Default)]
struct Spent {
    used: u64,
    /// Contents already admitted under the budget.
    seen: HashSet<ContentHash>,
}

/// What the budget did, for the init report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BudgetOutcome {
    /// The budget in compressed bytes (`None`: no limit).
    pub budget: Option<u64>,
    /// Compressed bytes it admitted.
    pub used: u64,
    /// Candidates (files small enough for a snapshot) left without one, and their size.
    pub left_out_files: u64,
    pub left_out_bytes: u64,
}

impl SnapshotBudget {
    pub fn new(limit: Option<u64>) -> Self {
        SnapshotBudget {
            limit,
            spent: AtomicBool::new(limit == Some(0)),
            state: Mutex::new(Spent::default()),
            left_out_files: AtomicU64::new(0),
            left_out_bytes: AtomicU64::new(0),
        }
    }

    /// Whether a snapshot should be read at all (`budgeted`: the path counts against the
    /// budget). False once the budget is spent.
    pub fn wants(&self, budgeted: bool) -> bool {
        !budgeted || self.limit.is_none() || !self.spent.load(Ordering::Relaxed)
    }

    /// Decides about one snapshot of `compressed` bytes: true keeps it.
    pub fn admit(&self, budgeted: bool, hash: &ContentHash, raw: u64, compressed: u64) -> bool {
        let Some(limit) = self.limit.filter(|_| budgeted) else {
            return true;
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.seen.contains(hash) {
            return true;
        }
        if state.used + compressed <= limit && !self.spent.load(Ordering::Relaxed) {
            state.used += compressed;
            state.seen.insert(*hash);
            return true;
        }
        self.spent.store(true, Ordering::Relaxed);
        drop(state);
        self.left_out(raw);
        false
    }

    /// A candidate that got no snapshot because the budget was spent before it was read.
    pub fn left_out(&self, raw: u64) {
        self.left_out_files.fetch_add(1, Ordering::Relaxed);
        self.left_out_bytes.fetch_add(raw, Ordering::Relaxed);
    }

    pub fn outcome(&self) -> BudgetOutcome {
        BudgetOutcome {
            budget: self.limit,
            used: self.state.lock().unwrap_or_else(|e| e.into_inner()).used,
            left_out_files: self.left_out_files.load(Ordering::Relaxed),
            left_out_bytes: self.left_out_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> ContentHash {
        ContentHash::of(&[n])
    }

    #[test]
    fn admits_until_spent_then_counts_what_is_left_out() {
        let budget = SnapshotBudget::new(Some(100));
        assert!(budget.wants(true));
        assert!(budget.admit(true, &hash(1), 400, 60));
        assert!(budget.admit(true, &hash(2), 300, 40));
        // Exactly full: the next one does not fit and spends the budget.
        assert!(!budget.admit(true, &hash(3), 200, 1));
        assert!(!budget.wants(true));
        // A smaller one later is still refused: first come, first kept, then stop reading.
        assert!(!budget.admit(true, &hash(4), 10, 1));
        budget.left_out(1000);
        assert_eq!(
            budget.outcome(),
            BudgetOutcome {
                budget: Some(100),
                used: 100,
                left_out_files: 3,
                left_out_bytes: 1210,
            }
        );
    }

    #[test]
    fn content_already_kept_costs_nothing_again() {
        let budget = SnapshotBudget::new(Some(50));
        assert!(budget.admit(true, &hash(1), 100, 50));
        assert!(budget.admit(true, &hash(1), 100, 50));
        assert_eq!(budget.outcome().used, 50);
        assert_eq!(budget.outcome().left_out_files, 0);
    }

    #[test]
    fn configuration_and_unlimited_are_always_kept() {
        let budget = SnapshotBudget::new(Some(0));
        assert!(!budget.wants(true));
        assert!(budget.wants(false));
        assert!(budget.admit(false, &hash(1), 10_000, 5_000));
        assert_eq!(budget.outcome().used, 0);
        let unlimited = SnapshotBudget::new(None);
        assert!(unlimited.admit(true, &hash(2), u64::MAX / 2, u64::MAX / 2));
        assert!(unlimited.wants(true));
    }
}
