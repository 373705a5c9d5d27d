//! I/O throttling for background scans: a shared byte budget per second.
//!
//! Scan workers call [`Throttle::consume`] after reading a file's content; a
//! worker that got ahead of the budget sleeps until the rate is back under
//! it. The daemon's periodic scans use it so that a weekly re-hash of /usr
//! does not compete with the host's own work (the systemd unit also runs the
//! agent with the idle I/O class).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate limit shared by the threads of one scan.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    started: Instant,
    bytes: u64,
}

impl Throttle {
    /// # Panics
    ///
    /// If `bytes_per_sec` is 0 (no limit is expressed as no throttle).
    pub fn new(bytes_per_sec: u64) -> Self {
        assert!(bytes_per_sec > 0, "a throttle needs a positive rate");
        Throttle {
            bytes_per_sec,
            state: Mutex::new(State {
                started: Instant::now(),
                bytes: 0,
            }),
        }
    }

    /// Accounts for `bytes` just read and sleeps as long as the budget requires.
    pub fn consume(&self, bytes: u64) {
        let wait = self.account(bytes, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// How long a reader must wait after reading `bytes` at `now`.
    fn account(&self, bytes: u64, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.bytes = state.bytes.saturating_add(bytes);
        let due = Duration::from_secs_f64(state.bytes as f64 / self.bytes_per_sec as f64);
        let elapsed = now.saturating_duration_since(state.started);
        // Start a new accounting window now and then, so an idle period does
        // not bank an unlimited burst.
        if elapsed > Duration::from_secs(10) && due < elapsed {
            state.started = now;
            state.bytes = 0;
            return Duration::ZERO;
        }
        due.saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_ahead_of_the_budget_wait_for_it() {
        let throttle = Throttle::new(1000);
        let start = throttle.state.lock().unwrap().started;
        assert_eq!(throttle.account(500, start), Duration::from_millis(500));
        // 1500 bytes at 1000 B/s are due at 1.5 s; at 1 s the reader waits 0.5 s.
        assert_eq!(
            throttle.account(1000, start + Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(
            throttle.account(0, start + Duration::from_secs(2)),
            Duration::ZERO
        );
    }

    #[test]
    fn idle_time_does_not_bank_a_burst() {
        let throttle = Throttle::new(1000);
        let start = throttle.state.lock().unwrap().started;
        assert_eq!(
            throttle.account(10, start + Duration::from_secs(60)),
            Duration::ZERO
        );
        // The window restarted at 60 s: 2000 more bytes take 2 s.
        assert_eq!(
            throttle.account(2000, start + Duration::from_secs(60)),
            Duration::from_secs(2)
        );
    }
}
