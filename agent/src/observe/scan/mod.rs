//! The scan engine: walks every policy rule and inspects each subject in
//! parallel.
//!
//! One thread walks directories (walkdir, never following symlinks); a pool
//! of `scan.workers` threads `lstat`s and reads the subjects it yields, each
//! through a caller-supplied `inspect` function (init reads everything, check
//! compares with the baseline first). Results come back to the calling thread
//! in arrival order through a bounded channel, one message per batch of subjects
//! (a message per subject cost a thread wake-up each), so the caller can write
//! them to the store while the scan goes on and memory stays bounded.
//!
//! Errors on one subject are data ([`ScanEvent::Error`]): a scan never stops
//! for an unreadable file. A directory that could not be listed is reported
//! as [`ScanEvent::Incomplete`] so nothing below it is mistaken for removed.
//!
//! A scan can be limited to a [`Scope`] (some subtrees or single paths, as the
//! daemon's watch asks for): each part is walked under the rule that governs
//! it, with that rule's filters, exactly as the full walk would see it.
//!
//! Nested rule roots are pruned from their parent's walk (each is walked under its
//! own rule), and [`Policy::rule_for`] answers which rule, if any, covers a path.
//! Paths the agent's own sandbox hides ([`crate::observe::sandbox`]) are reported
//! as "not checked" ([`ScanEvent::Incomplete`]) and not entered.

pub mod read;
pub mod throttle;

use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use driftwatch_common::pathbytes::PathBytes;
use driftwatch_config::{AgentConfig, Rule};
use walkdir::WalkDir;

use crate::cli::progress::Progress;

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
    /// Paths the agent's own sandbox hides (see `sandbox`): reported as not
    /// checked, never walked.
    hidden: Vec<PathBuf>,
}

impl<'a> Policy<'a> {
    pub fn new(config: &'a AgentConfig) -> Self {
        Self::hiding(config, crate::observe::sandbox::hidden_paths().to_vec())
    }

    /// A policy whose walk stops at `hidden` paths and reports each as not checked.
    pub fn hiding(config: &'a AgentConfig, hidden: Vec<PathBuf>) -> Self {
        let roots = config.rules.iter().map(|r| r.path.as_path()).collect();
        Policy {
            config,
            roots,
            hidden,
        }
    }

    /// The hidden path at or above `path`, if any.
    fn hidden_at(&self, path: &Path) -> Option<&Path> {
        self.hidden
            .iter()
            .find(|hidden| path.starts_with(hidden))
            .map(PathBuf::as_path)
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
    pub fn scan<T, F, E>(&self, progress: &Progress, inspect: F, emit: E) -> io::Result<()>
    where
        T: Send,
        F: Fn(Subject<'_>) -> Option<T> + Sync,
        E: FnMut(ScanEvent<T>),
    {
        self.scan_scoped(None, progress, inspect, emit)
    }

    /// [`Policy::scan`] limited to `scope` (`None`: the whole policy).
    pub fn scan_scoped<T, F, E>(
        &self,
        scope: Option<&[ScopeEntry]>,
        progress: &Progress,
        inspect: F,
        mut emit: E,
    ) -> io::Result<()>
    where
        T: Send,
        F: Fn(Subject<'_>) -> Option<T> + Sync,
        E: FnMut(ScanEvent<T>),
    {
        const BATCH: usize = 256;
        // A handful of single paths (a watch event) is not worth a pool of threads.
        let small = scope.is_some_and(|s| s.len() <= 16 && s.iter().all(|e| !e.subtree));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(if small { 1 } else { self.config.scan.workers })
            .thread_name(|i| format!("scan-{i}"))
            .build()
            .map_err(io::Error::other)?;
        // Results cross in one message per batch, not per subject: a message per subject
        // cost a futex wake-up each (three per file in `strace -c`), about as much CPU on a
        // tree of small files as hashing them. Four batches in flight: the memory bound of
        // the former 1,024 single results (a result may hold a 64 KiB snapshot).
        let (tx, rx) = mpsc::sync_channel::<Vec<ScanEvent<T>>>(4);
        let inspect = &inspect;
        std::thread::scope(|threads| {
            std::thread::Builder::new()
                .name("walk".into())
                .spawn_scoped(threads, move || {
                    pool.in_place_scope(|tasks| {
                        let mut batch = Vec::with_capacity(BATCH);
                        for found in self.walk(scope) {
                            match found {
                                Walked::Entry(entry) if entry.recorded => {
                                    batch.push((entry.path, entry.rule))
                                }
                                Walked::Entry(_) => {}
                                Walked::Unreadable(error) => send_unreadable(&tx, error),
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
            for events in rx {
                events.into_iter().for_each(&mut emit);
            }
        });
        Ok(())
    }

    /// Every directory whose entries are subjects (what a real-time watch must
    /// cover): below every rule (`scope` `None`) or in `scope`. Directories are
    /// listed even when the include list records none of them, and walk
    /// errors come out as they do in a scan.
    pub fn directories<'s>(
        &'s self,
        scope: Option<&'s [ScopeEntry]>,
    ) -> impl Iterator<Item = Result<PathBuf, ScanError>> + 's {
        self.walk(scope).filter_map(|walked| match walked {
            Walked::Entry(entry)
                if entry.is_dir
                    && !entry.rule.attributes.is_empty()
                    && (entry.rule.recurse || entry.path == entry.rule.path) =>
            {
                Some(Ok(entry.path))
            }
            Walked::Entry(_) => None,
            Walked::Unreadable(error) => Some(Err(error)),
        })
    }

    /// Every entry of every rule (or of `scope`), in walk order. Nested rule
    /// roots are pruned from their parent's walk: they are walked under their own rule.
    fn walk<'s>(
        &'s self,
        scope: Option<&'s [ScopeEntry]>,
    ) -> Box<dyn Iterator<Item = Walked<'a>> + Send + 's> {
        match scope {
            None => Box::new(self.config.rules.iter().flat_map(move |rule| {
                let depth = if rule.recurse { usize::MAX } else { 1 };
                self.walk_from(rule, rule.path.clone(), depth, false)
            })),
            Some(scope) => Box::new(scope.iter().flat_map(move |entry| {
                self.walks_for(entry)
                    .into_iter()
                    .flat_map(move |(rule, start, depth)| self.walk_from(rule, start, depth, true))
            })),
        }
    }

    /// The walks that one scope entry needs: its own path under the rule that
    /// governs it, and (for a subtree) every rule rooted below it.
    fn walks_for(&self, entry: &ScopeEntry) -> Vec<(&'a Rule, PathBuf, usize)> {
        let mut walks = Vec::new();
        if let Some(rule) = self.governing_rule(&entry.path)
            && self.reaches(rule, &entry.path)
        {
            let at_root = entry.path == rule.path;
            let mut depth = match (entry.subtree, rule.recurse) {
                (false, _) => 0,
                (true, true) => usize::MAX,
                (true, false) => usize::from(at_root),
            };
            if depth > 0 && !at_root && rule.one_filesystem && !same_device(&entry.path, &rule.path)
            {
                // A mount point inside the rule: recorded, not entered (as the full walk does).
                depth = 0;
            }
            walks.push((rule, entry.path.clone(), depth));
        }
        if entry.subtree {
            for rule in &self.config.rules {
                if rule.path != entry.path && rule.path.starts_with(&entry.path) {
                    let depth = if rule.recurse { usize::MAX } else { 1 };
                    walks.push((rule, rule.path.clone(), depth));
                }
            }
        }
        walks
    }

    /// The rule with the longest root at or above `path` (whether or not it records `path`).
    fn governing_rule(&self, path: &Path) -> Option<&'a Rule> {
        let root = path.ancestors().find(|dir| self.roots.contains(dir))?;
        self.config.rules.iter().find(|r| r.path == root)
    }

    /// Whether the full walk of `rule` would get to `path`: not below an
    /// excluded directory, within a non-recursive rule's depth, and (for a
    /// rule staying on one filesystem) on the rule root's filesystem.
    fn reaches(&self, rule: &Rule, path: &Path) -> bool {
        if path == rule.path {
            return true;
        }
        let Ok(relative) = path.strip_prefix(&rule.path) else {
            return false;
        };
        if !rule.recurse && relative.components().count() > 1 {
            return false;
        }
        if path
            .ancestors()
            .take_while(|dir| *dir != rule.path)
            .any(|dir| rule.exclude.is_match(dir))
        {
            return false;
        }
        if rule.one_filesystem {
            // The closest existing directory above decides (the path itself may be gone).
            let existing = path
                .parent()
                .into_iter()
                .flat_map(Path::ancestors)
                .take_while(|dir| dir.starts_with(&rule.path))
                .find(|dir| fs::symlink_metadata(dir).is_ok());
            if let Some(dir) = existing
                && !same_device(dir, &rule.path)
            {
                return false;
            }
        }
        true
    }

    fn walk_from(
        &self,
        rule: &'a Rule,
        start: PathBuf,
        max_depth: usize,
        scoped: bool,
    ) -> Box<dyn Iterator<Item = Walked<'a>> + Send + '_> {
        if self.hidden_at(&start).is_some() {
            // A rule root at or below what the sandbox hides: one error, no walk.
            let error = hidden_error(&start);
            return Box::new(std::iter::once(Walked::Unreadable(error)))
                as Box<dyn Iterator<Item = Walked<'a>> + Send + '_>;
        }
        let walker = WalkDir::new(start)
            .follow_links(false)
            // A rule on /bin (a symlink on merged-/usr systems) records the link itself.
            .follow_root_links(false)
            .same_file_system(rule.one_filesystem)
            .max_depth(max_depth);
        let pruned = walker.into_iter().filter_entry(move |entry| {
            entry.depth() == 0
                || !(self.roots.contains(entry.path())
                    || rule.exclude.is_match(entry.path())
                    || self.below_hidden(entry.path()))
        });
        Box::new(pruned.filter_map(move |item| match item {
            Ok(entry) if !self.hidden.is_empty() && self.hidden_at(entry.path()).is_some() => {
                Some(Walked::Unreadable(hidden_error(entry.path())))
            }
            Ok(entry) => {
                let recorded = if scoped {
                    // A scoped walk starts anywhere: the policy's own answer decides.
                    self.rule_for(entry.path())
                        .is_some_and(|found| std::ptr::eq(found, rule))
                } else {
                    !rule.attributes.is_empty()
                        && (entry.depth() == 0
                            || rule.include.is_empty()
                            || rule.include.is_match(entry.path()))
                };
                let is_dir = entry.file_type().is_dir();
                Some(Walked::Entry(WalkedEntry {
                    path: entry.into_path(),
                    rule,
                    is_dir,
                    recorded,
                }))
            }
            Err(err) => walk_error(err),
        }))
    }

    /// Strictly below a hidden path (the hidden path itself is reported, not walked).
    fn below_hidden(&self, path: &Path) -> bool {
        self.hidden
            .iter()
            .any(|hidden| path != hidden && path.starts_with(hidden))
    }
}

/// A path the agent's sandbox hides: its subtree is unverified, not removed.
fn hidden_error(path: &Path) -> ScanError {
    ScanError {
        path: PathBytes::from(path),
        message: crate::observe::sandbox::HIDDEN.to_owned(),
    }
}

/// Whether two existing paths are on one filesystem (unknown counts as yes).
fn same_device(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => true,
    }
}

fn inspect_batch<T, F>(
    batch: Vec<(PathBuf, &Rule)>,
    progress: &Progress,
    inspect: &F,
    tx: &mpsc::SyncSender<Vec<ScanEvent<T>>>,
) where
    F: Fn(Subject<'_>) -> Option<T>,
{
    let mut events = Vec::with_capacity(batch.len());
    for (path, rule) in batch {
        progress.add_entry();
        match fs::symlink_metadata(&path) {
            Ok(meta) => {
                if let Some(item) = inspect(Subject {
                    path: &path,
                    rule,
                    meta,
                }) {
                    events.push(ScanEvent::Item(item));
                }
            }
            // Gone between listing and lstat: for this scan it does not exist.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => events.extend(unreadable(ScanError {
                path: PathBytes::from(path),
                message: err.to_string(),
            })),
        }
    }
    if !events.is_empty() {
        // The receiver only goes away if the caller panicked.
        let _ = tx.send(events);
    }
}

/// An unreadable subject: its subtree is incomplete, and it is an error.
fn unreadable<T>(error: ScanError) -> [ScanEvent<T>; 2] {
    [
        ScanEvent::Incomplete(error.path.clone()),
        ScanEvent::Error(error),
    ]
}

fn send_unreadable<T>(tx: &mpsc::SyncSender<Vec<ScanEvent<T>>>, error: ScanError) {
    let _ = tx.send(unreadable(error).into());
}

/// One part of a limited scan: a path alone, or a path and everything below it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeEntry {
    pub path: PathBuf,
    /// Include everything below `path` (and any rule rooted below it).
    pub subtree: bool,
}

impl ScopeEntry {
    pub fn single(path: impl Into<PathBuf>) -> Self {
        ScopeEntry {
            path: path.into(),
            subtree: false,
        }
    }

    pub fn subtree(path: impl Into<PathBuf>) -> Self {
        ScopeEntry {
            path: path.into(),
            subtree: true,
        }
    }

    /// Whether `path` is part of this entry.
    pub fn covers(&self, path: &Path) -> bool {
        if self.subtree {
            path.starts_with(&self.path)
        } else {
            path == self.path
        }
    }
}

struct WalkedEntry<'a> {
    path: PathBuf,
    rule: &'a Rule,
    is_dir: bool,
    /// The rule records this entry (a directory may only be descended).
    recorded: bool,
}

enum Walked<'a> {
    Entry(WalkedEntry<'a>),
    /// A directory that could not be listed (or an entry walkdir could not read).
    Unreadable(ScanError),
}

fn walk_error<'a>(err: walkdir::Error) -> Option<Walked<'a>> {
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
    Some(Walked::Unreadable(ScanError { path, message }))
}

#[cfg(test)]
mod tests;
