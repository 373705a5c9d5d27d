//! Polling the enabled sources for the daemon, off the detector's thread.
//!
//! Each source is collected on its own thread and waited for at most
//! `timeout`: a source that hangs (a stuck NFS mount, a FIFO where a file
//! should be) is reported as timed out and never holds up the detector,
//! which only ever receives a finished [`Poll`]. A thread cannot be killed,
//! so a source whose previous collection is still running is not started
//! again: it stays timed out until that collection ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use driftwatch_common::api::v1::{SourceCondition, SourceCoverage, SubjectKey};
use driftwatch_config::SourceSettings;
use time::OffsetDateTime;

use super::{Collection, Fields, SourceError, StateSource, configured, namespaces_of};

/// The longest the daemon waits for one collection of a source.
pub const COLLECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for a collection when polling every `interval`: at most
/// [`COLLECT_TIMEOUT`], and no longer than the interval (a source slower than
/// its schedule could not keep up anyway).
pub fn collect_timeout(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(1), COLLECT_TIMEOUT)
}

/// How one source answered.
#[derive(Debug)]
pub enum Outcome {
    Collected(Collection),
    /// The facility does not exist on this host.
    Unavailable(String),
    /// It exists but could not be read.
    Failed(String),
    /// No answer in time.
    TimedOut(String),
}

/// One source's answer to a poll.
#[derive(Debug)]
pub struct SourceResult {
    /// The source's policy name (`package`, `user`...).
    pub name: &'static str,
    /// The subject namespaces it reports (`user` reports users and groups).
    pub namespaces: &'static [&'static str],
    pub outcome: Outcome,
}

/// What polling some sources gave.
#[derive(Debug)]
pub struct Poll {
    pub results: Vec<SourceResult>,
    pub finished_at: OffsetDateTime,
}

impl Poll {
    /// Namespaces whose source answered: only these can be compared.
    pub fn covered(&self) -> Vec<&'static str> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Collected(_)))
            .flat_map(|r| r.namespaces.iter().copied())
            .collect()
    }

    /// Every subject collected, by key.
    pub fn state(&self) -> Collection {
        let mut state = Collection::new();
        for result in &self.results {
            if let Outcome::Collected(collection) = &result.outcome {
                state.extend(collection.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        state
    }

    /// The current fields of `subject` (`Ok(None)`: absent), or why its source
    /// cannot say.
    pub fn current(&self, subject: &SubjectKey) -> Result<Option<&Fields>, String> {
        let namespace = subject.namespace();
        let Some(result) = self
            .results
            .iter()
            .find(|r| r.namespaces.contains(&namespace))
        else {
            return Err(format!(
                "no enabled state source of this host's policy reports `{namespace}:` subjects"
            ));
        };
        match &result.outcome {
            Outcome::Collected(collection) => Ok(collection.get(subject)),
            Outcome::Unavailable(why) | Outcome::Failed(why) | Outcome::TimedOut(why) => {
                Err(why.clone())
            }
        }
    }

    /// Each source's condition, for status and heartbeats.
    pub fn coverage(&self) -> Vec<SourceCoverage> {
        self.results
            .iter()
            .map(|r| {
                let (condition, subjects, detail) = match &r.outcome {
                    // Answered, but maybe blind to some fields: said in the detail (I9).
                    Outcome::Collected(c) => (
                        SourceCondition::Ok,
                        c.len() as u64,
                        super::unreadable_note(r.name, c),
                    ),
                    Outcome::Unavailable(why) => {
                        (SourceCondition::Unavailable, 0, Some(why.clone()))
                    }
                    Outcome::Failed(why) => (SourceCondition::Failed, 0, Some(why.clone())),
                    Outcome::TimedOut(why) => (SourceCondition::TimedOut, 0, Some(why.clone())),
                };
                SourceCoverage {
                    name: r.name.to_owned(),
                    condition,
                    subjects,
                    detail,
                }
            })
            .collect()
    }
}

struct Polled {
    source: Arc<dyn StateSource>,
    /// A collection of this source is running (possibly hung).
    busy: Arc<AtomicBool>,
}

/// The enabled sources of one configuration, collected with a timeout.
pub struct Poller {
    sources: Vec<Polled>,
    timeout: Duration,
}

impl Poller {
    /// The sources `settings` enables.
    pub fn new(settings: &SourceSettings, timeout: Duration) -> Poller {
        Poller::with_sources(
            configured(settings).into_iter().map(Arc::from).collect(),
            timeout,
        )
    }

    pub fn with_sources(sources: Vec<Arc<dyn StateSource>>, timeout: Duration) -> Poller {
        Poller {
            sources: sources
                .into_iter()
                .map(|source| Polled {
                    source,
                    busy: Arc::new(AtomicBool::new(false)),
                })
                .collect(),
            timeout,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Collects every source (blocks for at most the timeout).
    pub fn poll(&self) -> Poll {
        self.run(self.sources.iter().collect())
    }

    /// Collects only the source that reports `namespace` subjects (none if
    /// it is not enabled: the poll then says so through [`Poll::current`]).
    pub fn poll_namespace(&self, namespace: &str) -> Poll {
        self.run(
            self.sources
                .iter()
                .filter(|p| namespaces_of(p.source.as_ref()).contains(&namespace))
                .collect(),
        )
    }

    fn run(&self, sources: Vec<&Polled>) -> Poll {
        let (tx, rx) = mpsc::channel::<(usize, Result<Collection, SourceError>)>();
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(sources.len());
        for (index, polled) in sources.iter().enumerate() {
            if polled.busy.swap(true, Ordering::AcqRel) {
                outcomes.push(Some(Outcome::TimedOut(format!(
                    "{}: its previous collection has not finished yet",
                    polled.source.namespace()
                ))));
                continue;
            }
            outcomes.push(None);
            let source = Arc::clone(&polled.source);
            let busy = Arc::clone(&polled.busy);
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("source-{}", source.namespace()))
                .spawn(move || {
                    let result = source.collect();
                    busy.store(false, Ordering::Release);
                    let _ = tx.send((index, result));
                });
            if let Err(err) = spawned {
                polled.busy.store(false, Ordering::Release);
                outcomes[index] = Some(Outcome::Failed(format!(
                    "{}: cannot start a thread to collect it: {err}",
                    polled.source.namespace()
                )));
            }
        }
        drop(tx);
        let deadline = Instant::now() + self.timeout;
        while outcomes.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((index, result)) = rx.recv_timeout(left) else {
                break;
            };
            outcomes[index] = Some(match result {
                Ok(collection) => Outcome::Collected(collection),
                Err(err @ SourceError::Unavailable { .. }) => Outcome::Unavailable(err.to_string()),
                Err(err) => Outcome::Failed(err.to_string()),
            });
        }
        let results = sources
            .iter()
            .zip(outcomes)
            .map(|(polled, outcome)| SourceResult {
                name: polled.source.namespace(),
                namespaces: namespaces_of(polled.source.as_ref()),
                outcome: outcome.unwrap_or_else(|| {
                    Outcome::TimedOut(format!(
                        "{}: no answer within {} s",
                        polled.source.namespace(),
                        self.timeout.as_secs_f64()
                    ))
                }),
            })
            .collect();
        Poll {
            results,
            finished_at: OffsetDateTime::now_utc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::sources::fields;

    /// A source that answers after `delay` with one module, or fails.
    struct Fake {
        namespace: &'static str,
        delay: Duration,
        fail: bool,
    }

    impl StateSource for Fake {
        fn namespace(&self) -> &'static str {
            self.namespace
        }

        fn collect(&self) -> Result<Collection, SourceError> {
            std::thread::sleep(self.delay);
            if self.fail {
                return Err(SourceError::Read {
                    source_name: self.namespace,
                    path: "/proc/modules".into(),
                    cause: std::io::Error::other("boom"),
                });
            }
            Ok(Collection::from([(
                SubjectKey(format!("{}:x", self.namespace)),
                fields([("size", "1")]),
            )]))
        }
    }

    fn fake(namespace: &'static str, delay_ms: u64, fail: bool) -> Arc<dyn StateSource> {
        Arc::new(Fake {
            namespace,
            delay: Duration::from_millis(delay_ms),
            fail,
        })
    }

    #[test]
    fn a_hanging_source_times_out_without_holding_up_the_others() {
        let poller = Poller::with_sources(
            vec![
                fake("module", 0, false),
                fake("sysctl", 2_000, false),
                fake("package", 0, true),
            ],
            Duration::from_millis(300),
        );
        let started = Instant::now();
        let poll = poller.poll();
        assert!(started.elapsed() < Duration::from_millis(1_500));
        let conditions: Vec<_> = poll.coverage().iter().map(|c| c.condition).collect();
        assert_eq!(
            conditions,
            [
                SourceCondition::Ok,
                SourceCondition::TimedOut,
                SourceCondition::Failed
            ]
        );
        assert_eq!(poll.covered(), ["module"]);
        assert_eq!(poll.state().len(), 1);
        assert!(
            poll.current(&SubjectKey("sysctl:x".into()))
                .unwrap_err()
                .contains("no answer within")
        );
        // Still running: not started a second time, still timed out.
        let again = poller.poll_namespace("sysctl");
        match &again.results[0].outcome {
            Outcome::TimedOut(why) => assert!(why.contains("previous collection"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_timeout_follows_the_interval_within_bounds() {
        assert_eq!(
            collect_timeout(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            collect_timeout(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(collect_timeout(Duration::from_secs(300)), COLLECT_TIMEOUT);
    }

    #[test]
    fn a_namespace_without_an_enabled_source_says_so() {
        let poller = Poller::with_sources(vec![fake("module", 0, false)], COLLECT_TIMEOUT);
        let poll = poller.poll_namespace("package");
        assert!(poll.results.is_empty());
        let why = poll
            .current(&SubjectKey("package:nginx".into()))
            .unwrap_err();
        assert!(why.contains("no enabled state source"), "{why}");
        let poll = poller.poll_namespace("module");
        assert_eq!(
            poll.current(&SubjectKey("module:x".into())).unwrap(),
            Some(&fields([("size", "1")]))
        );
        assert_eq!(poll.current(&SubjectKey("module:y".into())).unwrap(), None);
    }
}
