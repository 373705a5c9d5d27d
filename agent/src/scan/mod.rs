//! The scan engine: walks every policy rule and inspects each subject in
//! parallel.
//!
//! One thread walks directories (walkdir, never following symlinks); a pool
//! of `scan.workers` threads `lstat`s and reads the subjects it yields, each
//! through a caller-supplied `inspect` function (init reads everything, check
//! compares with the baseline first). Results come back to the calling thread
//! in arrival order through a bounded channel, so the caller can write them
//! to the store while the scan goes on and memory stays bounded.
//!
//! Errors on one subject are data ([`ScanEvent::Error`]): a scan never stops
//! for an unreadable file. A directory that could not be listed is reported
//! as [`ScanEvent::Incomplete`] so nothing below it is mistaken for removed.

pub mod read;

use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use driftwatch_common::pathbytes::PathBytes;
use driftwatch_config::{AgentConfig, Rule};
use walkdir::WalkDir;

use crate::progress::Progress;

/// One subject found by the walk, ready to be inspected.
pub struct Subject<'a> {
    pub path: &'a Path,
    pub rule: &'a Rule,
    /// `lstat` of the subject, taken by the worker.
    pub meta: Metadata,
}

/// A problem with one subject or directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ScanError {
    pub path: PathBytes,
    pub message: String,
}

pub enum ScanEvent<T> {
    /// What `inspect` returned for a subject.
    Item(T),
    Error(ScanError),
    /// A directory (or subject) whose contents could not be examined: its
    /// baseline descendants are unverified, not removed.
    Incomplete(PathBytes),
}

/// The rules of a policy, with the lookups the walk and the comparison need.
pub struct Policy<'a> {
    config: &'a AgentConfig,
    roots: HashSet<&'a Path>,
}

impl<'a> Policy<'a> {
    pub fn new(config: &'a AgentConfig) -> Self {
        let roots = config.rules.iter().map(|r| r.path.as_path()).collect();
        Policy { config, roots }
    }

    pub fn config(&self) -> &'a AgentConfig {
        self.config
    }

    /// The rule that decides about `path`, if any rule records it: the rule
    /// with the longest root at or above it, provided neither `path` nor a
    /// directory between it and the root is excluded, the include list (if
    /// any) admits it, and it is within reach of a non-recursive rule.
    pub fn rule_for(&self, path: &Path) -> Option<&'a Rule> {
        let rule = path
            .ancestors()
            .find(|dir| self.roots.contains(dir))
            .and_then(|root| self.config.rules.iter().find(|r| r.path == root))?;
        if path == rule.path {
            return (!rule.attributes.is_empty()).then_some(rule);
        }
        let relative = path.strip_prefix(&rule.path).ok()?;
        if !rule.recurse && relative.components().count() > 1 {
            return None;
        }
        let excluded = path
            .ancestors()
            .take_while(|dir| *dir != rule.path)
            .any(|dir| rule.exclude.is_match(dir));
        let included = rule.include.is_empty() || rule.include.is_match(path);
        (!excluded && included && !rule.attributes.is_empty()).then_some(rule)
    }

    /// Walks every rule and inspects each recorded subject on `workers` threads.
    ///
    /// The walk runs on its own thread and hands subjects to the pool in
    /// batches (one hand-off per batch, not per file); only what `inspect`
    /// finds worth reporting crosses back to the caller.
    pub fn scan<T, F, E>(&self, progress: &Progress, inspect: F, mut emit: E) -> io::Result<()>
    where
        T: Send,
        F: Fn(Subject<'_>) -> Option<T> + Sync,
        E: FnMut(ScanEvent<T>),
    {
        const BATCH: usize = 256;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.config.scan.workers)
            .thread_name(|i| format!("scan-{i}"))
            .build()
            .map_err(io::Error::other)?;
        let (tx, rx) = mpsc::sync_channel::<ScanEvent<T>>(1024);
        let inspect = &inspect;
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("walk".into())
                .spawn_scoped(scope, move || {
                    pool.in_place_scope(|tasks| {
                        let mut batch = Vec::with_capacity(BATCH);
                        for found in self.walk() {
                            match found {
                                Found::Subject(path, rule) => batch.push((path, rule)),
                                Found::Unreadable(error) => send_unreadable(&tx, error),
                            }
                            if batch.len() == BATCH {
                                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                                let tx = tx.clone();
                                tasks.spawn(move |_| inspect_batch(full, progress, inspect, &tx));
                            }
                        }
                        inspect_batch(batch, progress, inspect, &tx);
                    });
                })
                .expect("spawning the walk thread");
            for event in rx {
                emit(event);
            }
        });
        Ok(())
    }

    /// Every subject of every rule, in walk order. Nested rule roots are
    /// pruned from their parent's walk: they are walked under their own rule.
    fn walk(&self) -> impl Iterator<Item = Found<'a>> + Send + '_ {
        self.config.rules.iter().flat_map(move |rule| {
            let walker = WalkDir::new(&rule.path)
                .follow_links(false)
                // A rule on /bin (a symlink on merged-/usr systems) records the link itself.
                .follow_root_links(false)
                .same_file_system(rule.one_filesystem)
                .max_depth(if rule.recurse { usize::MAX } else { 1 });
            let pruned = walker.into_iter().filter_entry(move |entry| {
                entry.depth() == 0
                    || !(self.roots.contains(entry.path()) || rule.exclude.is_match(entry.path()))
            });
            pruned.filter_map(move |item| match item {
                Ok(entry) => {
                    let recorded = !rule.attributes.is_empty()
                        && (entry.depth() == 0
                            || rule.include.is_empty()
                            || rule.include.is_match(entry.path()));
                    recorded.then(|| Found::Subject(entry.into_path(), rule))
                }
                Err(err) => walk_error(err),
            })
        })
    }
}

fn inspect_batch<T, F>(
    batch: Vec<(PathBuf, &Rule)>,
    progress: &Progress,
    inspect: &F,
    tx: &mpsc::SyncSender<ScanEvent<T>>,
) where
    F: Fn(Subject<'_>) -> Option<T>,
{
    for (path, rule) in batch {
        progress.add_entry();
        match fs::symlink_metadata(&path) {
            Ok(meta) => {
                if let Some(item) = inspect(Subject {
                    path: &path,
                    rule,
                    meta,
                }) {
                    // The receiver only goes away if the caller panicked.
                    let _ = tx.send(ScanEvent::Item(item));
                }
            }
            // Gone between listing and lstat: for this scan it does not exist.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => send_unreadable(
                tx,
                ScanError {
                    path: PathBytes::from(path),
                    message: err.to_string(),
                },
            ),
        }
    }
}

/// Reports an unreadable subject: its subtree is incomplete, and it is an error.
fn send_unreadable<T>(tx: &mpsc::SyncSender<ScanEvent<T>>, error: ScanError) {
    let _ = tx.send(ScanEvent::Incomplete(error.path.clone()));
    let _ = tx.send(ScanEvent::Error(error));
}

enum Found<'a> {
    Subject(PathBuf, &'a Rule),
    /// A directory that could not be listed (or an entry walkdir could not read).
    Unreadable(ScanError),
}

fn walk_error<'a>(err: walkdir::Error) -> Option<Found<'a>> {
    if err.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) {
        // A rule root that does not exist on this host, or an entry that
        // vanished mid-walk: absent for this scan.
        return None;
    }
    let message = match err.io_error() {
        Some(io_err) => format!("cannot list directory: {io_err}"),
        None => err.to_string(),
    };
    let path = PathBytes::from(err.path().unwrap_or(Path::new("")));
    Some(Found::Unreadable(ScanError { path, message }))
}

#[cfg(test)]
mod tests;
