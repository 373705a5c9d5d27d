//! Progress on long scans: a live line on a terminal, a log line every
//! ten seconds otherwise (so journald and CI logs show the scan is alive).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Default)]
struct Counters {
    entries: AtomicU64,
    bytes: AtomicU64,
    done: AtomicBool,
}

/// Shared counters, updated by scan workers, shown by a reporter thread.
pub struct Progress {
    counters: Arc<Counters>,
    reporter: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting. `expected` is the number of entries, when known
    /// (check knows the baseline size); `enabled` is false for `--quiet`.
    pub fn start(label: &'static str, expected: Option<u64>, enabled: bool) -> Progress {
        let counters = Arc::new(Counters::default());
        let reporter = enabled.then(|| {
            let counters = Arc::clone(&counters);
            std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || report(label, expected, &counters))
                .expect("spawning the progress thread")
        });
        Progress { counters, reporter }
    }

    /// Counters only, for tests and library callers.
    pub fn silent() -> Progress {
        Progress::start("", None, false)
    }

    pub fn add_entry(&self) {
        self.counters.entries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_bytes(&self, bytes: u64) {
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn entries(&self) -> u64 {
        self.counters.entries.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.counters.done.store(true, Ordering::Relaxed);
        if let Some(handle) = self.reporter.take() {
            // Wake it now rather than at its next tick.
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

fn report(label: &'static str, expected: Option<u64>, counters: &Counters) {
    let started = Instant::now();
    let tick = Duration::from_millis(100);
    if std::io::stderr().is_terminal() {
        let bar = match expected {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {pos}/{len} entries, {prefix} ({elapsed})",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template(
                    "{spinner} {msg}: {pos} entries, {prefix} ({elapsed})",
                )
                .expect("valid template"),
            ),
        };
        bar.set_message(label);
        while !counters.done.load(Ordering::Relaxed) {
            bar.set_position(counters.entries.load(Ordering::Relaxed));
            bar.set_prefix(format_bytes(counters.bytes.load(Ordering::Relaxed)));
            std::thread::park_timeout(tick);
        }
        bar.finish_and_clear();
    } else {
        let every = Duration::from_secs(10);
        let mut next = started + every;
        while !counters.done.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                tracing::info!(
                    entries = counters.entries.load(Ordering::Relaxed),
                    read = %format_bytes(counters.bytes.load(Ordering::Relaxed)),
                    elapsed_secs = started.elapsed().as_secs(),
                    "{label} in progress"
                );
                next += every;
            }
            std::thread::park_timeout(tick);
        }
    }
}

pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_bytes_with_binary_units() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn counts_from_many_threads() {
        let progress = Progress::silent();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..1000).for_each(|_| progress.add_entry()));
            }
        });
        assert_eq!(progress.entries(), 4000);
    }
}
