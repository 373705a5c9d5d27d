//! Exponential backoff with jitter between delivery attempts.
//!
//! The pause doubles from `base` up to `max`; half of it is fixed and half
//! random ("equal jitter"), so agents that lost the collector at the same
//! moment spread their retries out, yet none retries in a tight loop.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// After a success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The pause before the next attempt, given a random number.
    pub fn next_with(&mut self, random: u64) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let spread = half.as_millis() as u64;
        half + Duration::from_millis(if spread == 0 {
            0
        } else {
            random % (spread + 1)
        })
    }

    /// The pause before the next attempt.
    pub fn pause(&mut self) -> Duration {
        // Without randomness the fixed half still spaces the retries out.
        self.next_with(getrandom::u64().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_with_bounded_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let ceilings = [1, 2, 4, 8, 16, 30, 30, 30];
        for ceiling in ceilings {
            let ceiling = Duration::from_secs(ceiling);
            let low = backoff.clone().next_with(0);
            let high = backoff.clone().next_with(u64::MAX - 7);
            assert_eq!(low, ceiling / 2, "the fixed half");
            assert!(
                high >= ceiling / 2 && high <= ceiling,
                "{high:?} within {ceiling:?}"
            );
            backoff.next_with(12345);
        }
    }

    #[test]
    fn a_success_starts_over() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(60));
        for _ in 0..10 {
            backoff.next_with(0);
        }
        assert_eq!(backoff.attempts(), 10);
        backoff.reset();
        assert_eq!(backoff.next_with(0), Duration::from_millis(50));
    }

    #[test]
    fn many_failures_never_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        for _ in 0..100 {
            assert!(backoff.next_with(u64::MAX) <= Duration::from_secs(300));
        }
    }

    #[test]
    fn random_pauses_differ() {
        let mut a = Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
        let pauses: std::collections::HashSet<Duration> = (0..20).map(|_| a.pause()).collect();
        assert!(pauses.len() > 1, "jitter spreads retries: {pauses:?}");
    }
}
