//! How long a failing sink waits before it tries an alert again.

use std::time::Duration;

/// The first retry comes after about this long; each further failure doubles it.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The wait after the `failures`-th failed attempt (1 = the first failure): exponential
/// from [`FIRST_RETRY`], capped at `max`, then "equal jitter": a random point in the upper
/// half, so sinks that failed together do not retry in lockstep and the wait never
/// collapses to zero. `random` is any random number.
pub fn retry_delay(failures: u32, max: Duration, random: u64) -> Duration {
    let exponent = failures.saturating_sub(1).min(32);
    let full = FIRST_RETRY
        .saturating_mul(1u32 << exponent.min(31))
        .min(max)
        .max(Duration::from_millis(2));
    let full_ms = full.as_millis() as u64;
    let half = full_ms / 2;
    Duration::from_millis(half + random % (full_ms - half + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(300);

    #[test]
    fn doubles_from_one_second_up_to_the_cap() {
        // The jitter range of the n-th failure is [full/2, full]: random = full/2 is its top.
        let full = [
            1000u64, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000, 300000,
        ];
        for (failures, &full_ms) in (1..).zip(&full) {
            let top = retry_delay(failures, MAX, full_ms / 2);
            let bottom = retry_delay(failures, MAX, 0);
            assert_eq!(top, Duration::from_millis(full_ms), "failure {failures}");
            assert_eq!(
                bottom,
                Duration::from_millis(full_ms / 2),
                "failure {failures}"
            );
            // The modulus keeps any random number inside the range.
            let any = retry_delay(failures, MAX, u64::MAX);
            assert!(any >= bottom && any <= top);
        }
        // Far past the cap (and past any shift width) it stays capped.
        for failures in [12, 31, 32, 33, 1000, u32::MAX] {
            assert!(retry_delay(failures, MAX, u64::MAX) <= MAX);
            assert!(retry_delay(failures, MAX, 0) >= MAX / 2);
        }
    }

    #[test]
    fn jitter_spreads_and_stays_in_the_upper_half() {
        let delays: std::collections::BTreeSet<_> =
            (0..100).map(|r| retry_delay(4, MAX, r * 7919)).collect();
        assert!(delays.len() > 50, "spread: {delays:?}");
        assert!(
            delays
                .iter()
                .all(|d| (4000..=8000).contains(&(d.as_millis() as u64)))
        );
        // A tiny cap still waits a little.
        assert_eq!(
            retry_delay(9, Duration::from_millis(1), 0),
            Duration::from_millis(1)
        );
    }
}
