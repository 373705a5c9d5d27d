//! Turning a stream of kernel notifications into settled work.
//!
//! Notifications are hints, never facts: each only says "look here again".
//! A path is handed over once nothing has happened to it for `settle` (or,
//! under continuous churn, once its first notification is `max_delay` old),
//! together with its directory and the other half of a rename. An editor's
//! save (write a temporary file, rename the original away, write the new one,
//! chmod it, delete the backup) touches each path within milliseconds, so it
//! comes out as one look at each path, and the comparison with the baseline
//! then finds one change. Writes to other files of the same directory do not
//! hold a settled path back.
//!
//! Memory is bounded: a directory with more than [`GROUP_MAX`] distinct paths
//! collapses into one look at the whole directory, and more than
//! [`TOTAL_MAX`] paths pending at once, or a lost notification, become one
//! rescan of everything ([`Batch::rescan`]).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::EventMask;

use crate::observe::scan::ScopeEntry;

/// Distinct paths one directory may hold before it collapses into one subtree look.
pub const GROUP_MAX: usize = 1000;
/// Distinct paths pending in all before everything becomes one rescan.
pub const TOTAL_MAX: usize = 100_000;
/// Renames remembered per directory for linking (linking is best effort).
const RENAMES_MAX: usize = 1000;

/// What one notification asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hint {
    /// Look at `path` again; `subtree` when it may be a directory that
    /// appeared, vanished or moved (look at everything below it too).
    Touched { path: PathBuf, subtree: bool },
    /// `from` was renamed to `to` (both looked at, the results linked).
    Renamed { from: PathBuf, to: PathBuf },
    /// Notifications were lost (kernel queue overflow, or ours was full):
    /// anything may have changed.
    Overflow,
}

/// One inotify notification, its watch descriptor already resolved to the
/// watched directory.
#[derive(Clone, Copy, Debug)]
pub struct Notification<'a> {
    pub mask: EventMask,
    /// The watched directory the event came from.
    pub dir: &'a Path,
    /// The entry of `dir` it is about; `None` when it is about `dir` itself.
    pub name: Option<&'a OsStr>,
    /// Links the two halves of a rename.
    pub cookie: u32,
}

/// The last half-seen rename, waiting for its other half. The kernel queues
/// both halves of a rename next to each other, so one is enough.
#[derive(Debug, Default)]
pub struct PendingMove {
    from: Option<(u32, PathBuf)>,
}

/// Translates one notification. Reads never get here: the watch does not ask
/// for them (IN_OPEN, IN_ACCESS, IN_CLOSE_NOWRITE change nothing).
pub fn hints(event: &Notification<'_>, pending: &mut PendingMove) -> Vec<Hint> {
    let mask = event.mask;
    if mask.contains(EventMask::Q_OVERFLOW) {
        return vec![Hint::Overflow];
    }
    let path = match event.name {
        Some(name) => event.dir.join(name),
        None => event.dir.to_path_buf(),
    };
    let is_dir = mask.contains(EventMask::ISDIR);
    let touched = |path: PathBuf, subtree: bool| vec![Hint::Touched { path, subtree }];
    if mask.contains(EventMask::MOVED_FROM) {
        // Looked at now as a removal; linked if the other half follows.
        pending.from = Some((event.cookie, path.clone()));
        return touched(path, true);
    }
    if mask.contains(EventMask::MOVED_TO) {
        return match pending.from.take() {
            Some((cookie, from)) if cookie == event.cookie => {
                vec![Hint::Renamed { from, to: path }]
            }
            // Moved in from outside the watched area.
            _ => touched(path, true),
        };
    }
    if mask.intersects(EventMask::CREATE | EventMask::DELETE) {
        return touched(path, is_dir);
    }
    if mask.intersects(EventMask::CLOSE_WRITE | EventMask::MODIFY | EventMask::ATTRIB) {
        return touched(path, false);
    }
    if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::UNMOUNT) {
        return touched(event.dir.to_path_buf(), true);
    }
    // IN_IGNORED (the watch is gone: the reader forgets it) and anything unasked.
    Vec::new()
}

/// Settled work for the detector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Paths and subtrees to compare again, sorted, nothing covered twice.
    pub scope: Vec<ScopeEntry>,
    /// Renames seen, to link the removal and the appearance.
    pub renames: Vec<(PathBuf, PathBuf)>,
    /// Notifications were lost: compare everything.
    pub rescan: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.scope.is_empty() && !self.rescan
    }

    /// Adds another batch's work to this one.
    pub fn merge(&mut self, other: Batch) {
        self.scope.extend(other.scope);
        self.scope = normalize(std::mem::take(&mut self.scope));
        self.renames.extend(other.renames);
        self.rescan |= other.rescan;
    }
}

#[derive(Debug)]
struct Touch {
    first: Instant,
    last: Instant,
    /// Look at its subtree too.
    subtree: bool,
}

/// The pending paths of one directory.
#[derive(Debug)]
struct Group {
    first: Instant,
    last: Instant,
    paths: BTreeMap<PathBuf, Touch>,
    renames: Vec<(PathBuf, PathBuf)>,
    /// Too many paths: the whole directory is looked at, as one.
    collapsed: bool,
    /// No path is due before this (it may be earlier than the truth: then it is recomputed).
    next_due: Instant,
}

/// Holds hints until their paths settle.
#[derive(Debug)]
pub struct Coalescer {
    settle: Duration,
    max_delay: Duration,
    groups: HashMap<PathBuf, Group>,
    total: usize,
    rescan: bool,
}

impl Coalescer {
    pub fn new(settle: Duration, max_delay: Duration) -> Self {
        Coalescer {
            settle,
            max_delay: max_delay.max(settle),
            groups: HashMap::new(),
            total: 0,
            rescan: false,
        }
    }

    pub fn push(&mut self, hint: Hint, now: Instant) {
        match hint {
            Hint::Overflow => self.overflow(),
            Hint::Touched { path, subtree } => {
                let dir = parent(&path);
                self.add(dir, path, subtree, None, now);
            }
            Hint::Renamed { from, to } => {
                let dir = parent(&from);
                self.add(
                    dir.clone(),
                    from.clone(),
                    true,
                    Some((from, to.clone())),
                    now,
                );
                self.add(dir, to, true, None, now);
            }
        }
    }

    fn overflow(&mut self) {
        // A rescan of everything covers whatever was pending.
        self.rescan = true;
        self.groups.clear();
        self.total = 0;
    }

    fn add(
        &mut self,
        dir: PathBuf,
        path: PathBuf,
        subtree: bool,
        rename: Option<(PathBuf, PathBuf)>,
        now: Instant,
    ) {
        if self.rescan {
            return;
        }
        let due = now + self.settle;
        let group = self.groups.entry(dir.clone()).or_insert_with(|| Group {
            first: now,
            last: now,
            paths: BTreeMap::new(),
            renames: Vec::new(),
            collapsed: false,
            next_due: due,
        });
        group.last = now;
        if let Some(rename) = rename
            && group.renames.len() < RENAMES_MAX
        {
            group.renames.push(rename);
        }
        if group.collapsed {
            return;
        }
        group.next_due = group.next_due.min(due);
        let before = group.paths.len();
        let touch = group.paths.entry(path).or_insert(Touch {
            first: now,
            last: now,
            subtree,
        });
        touch.last = now;
        touch.subtree |= subtree;
        self.total += group.paths.len() - before;
        if group.paths.len() > GROUP_MAX {
            self.total -= group.paths.len() - 1;
            group.paths.clear();
            group.paths.insert(
                dir,
                Touch {
                    first: group.first,
                    last: now,
                    subtree: true,
                },
            );
            group.collapsed = true;
        }
        if self.total > TOTAL_MAX {
            self.overflow();
        }
    }

    fn deadline(&self, touch: &Touch) -> Instant {
        (touch.last + self.settle).min(touch.first + self.max_delay)
    }

    fn group_deadline(&self, group: &Group) -> Instant {
        (group.last + self.settle).min(group.first + self.max_delay)
    }

    /// When the next path may settle, if any is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.rescan {
            return Some(Instant::now());
        }
        self.groups
            .values()
            .map(|g| {
                if g.collapsed {
                    self.group_deadline(g)
                } else {
                    g.next_due
                }
            })
            .min()
    }

    /// Every path that has settled by `now` (with its directory and the
    /// other half of its renames), as one batch.
    pub fn take_due(&mut self, now: Instant) -> Option<Batch> {
        if self.rescan {
            self.rescan = false;
            return Some(Batch {
                rescan: true,
                ..Batch::default()
            });
        }
        let mut scope = Vec::new();
        let mut renames = Vec::new();
        let dirs: Vec<PathBuf> = self.groups.keys().cloned().collect();
        for dir in dirs {
            let group = &self.groups[&dir];
            let due: Vec<PathBuf> = if group.collapsed {
                if now < self.group_deadline(group) {
                    continue;
                }
                group.paths.keys().cloned().collect()
            } else {
                if now < group.next_due {
                    continue;
                }
                let mut due: Vec<PathBuf> = group
                    .paths
                    .iter()
                    .filter(|(_, touch)| now >= self.deadline(touch))
                    .map(|(path, _)| path.clone())
                    .collect();
                // Both halves of a rename go together, so they can be linked.
                for (from, to) in &group.renames {
                    if due.contains(from) || due.contains(to) {
                        for half in [from, to] {
                            if group.paths.contains_key(half) && !due.contains(half) {
                                due.push(half.clone());
                            }
                        }
                    }
                }
                due
            };
            let settle = self.settle;
            let max_delay = self.max_delay;
            let group = self.groups.get_mut(&dir).expect("listed above");
            let mut taken = Vec::new();
            for path in due {
                if let Some(touch) = group.paths.remove(&path) {
                    taken.push(ScopeEntry {
                        path,
                        subtree: touch.subtree,
                    });
                }
            }
            let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut group.renames)
                .into_iter()
                .partition(|(from, to)| {
                    !group.paths.contains_key(from) && !group.paths.contains_key(to)
                });
            group.renames = kept;
            renames.extend(done);
            group.next_due = group
                .paths
                .values()
                .map(|t| (t.last + settle).min(t.first + max_delay))
                .min()
                .unwrap_or(now + settle);
            self.total -= taken.len();
            if group.paths.is_empty() {
                self.groups.remove(&dir);
            }
            if !taken.is_empty() {
                // The directory's own entry list changed too (an entry appeared or went).
                scope.push(ScopeEntry::single(dir));
                scope.extend(taken);
            }
        }
        if scope.is_empty() {
            return None;
        }
        Some(Batch {
            scope: normalize(scope),
            renames,
            rescan: false,
        })
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().unwrap_or(path).to_path_buf()
}

/// Sorts, removes duplicates and drops entries a subtree entry already covers.
pub fn normalize(mut scope: Vec<ScopeEntry>) -> Vec<ScopeEntry> {
    // Subtree before single for the same path, so the single is dropped.
    scope.sort_by(|a, b| a.path.cmp(&b.path).then(b.subtree.cmp(&a.subtree)));
    let mut out: Vec<ScopeEntry> = Vec::with_capacity(scope.len());
    let mut covering: Vec<PathBuf> = Vec::new();
    for entry in scope {
        while covering
            .last()
            .is_some_and(|root| !entry.path.starts_with(root))
        {
            covering.pop();
        }
        if !covering.is_empty() || out.last() == Some(&entry) {
            continue;
        }
        if entry.subtree {
            covering.push(entry.path.clone());
        }
        out.push(entry);
    }
    out
}

#[cfg(test)]
mod tests;
