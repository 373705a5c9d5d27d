//! Turning a stream of kernel notifications into settled work.
//!
//! Notifications are hints, never facts: each only says "look here again".
//! They are grouped by directory, and a group is handed over once nothing
//! has happened in that directory for `settle` (or, under continuous churn,
//! once it is `max_delay` old). An editor's save (write a temporary file,
//! rename it over the original, chmod it, delete a backup) happens in one
//! directory within milliseconds, so it comes out as one look at each path,
//! and the comparison with the baseline then finds one change.
//!
//! Memory is bounded: a directory with more than [`GROUP_MAX`] distinct paths
//! collapses into one look at the whole directory, and more than
//! [`TOTAL_MAX`] paths pending at once, or a lost notification, become one
//! rescan of everything ([`Batch::rescan`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::event::{
    AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind, RenameMode,
};

use crate::scan::ScopeEntry;

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

/// Translates one notification. Reads (open, close without write) are
/// dropped: they change nothing, and the agent's own reads would echo.
pub fn hints(event: &notify::Event) -> Vec<Hint> {
    if event.need_rescan() {
        return vec![Hint::Overflow];
    }
    let touched = |subtree: bool| -> Vec<Hint> {
        event
            .paths
            .iter()
            .map(|path| Hint::Touched {
                path: path.clone(),
                subtree,
            })
            .collect()
    };
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => touched(false),
        EventKind::Access(_) => Vec::new(),
        EventKind::Create(CreateKind::File) => touched(false),
        EventKind::Create(_) => touched(true),
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if event.paths.len() == 2 => {
            vec![Hint::Renamed {
                from: event.paths[0].clone(),
                to: event.paths[1].clone(),
            }]
        }
        // One half of a rename, or a move in or out of the watched area: may be a directory.
        EventKind::Modify(ModifyKind::Name(_)) => touched(true),
        EventKind::Modify(_) => touched(false),
        EventKind::Remove(RemoveKind::File) => touched(false),
        EventKind::Remove(_) => touched(true),
        EventKind::Any | EventKind::Other => touched(true),
    }
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
struct Group {
    first: Instant,
    last: Instant,
    /// Path -> look at its subtree too.
    paths: BTreeMap<PathBuf, bool>,
    renames: Vec<(PathBuf, PathBuf)>,
    /// Too many paths: the whole directory is looked at.
    collapsed: bool,
}

/// Groups hints by directory until they settle.
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
        let group = self.groups.entry(dir.clone()).or_insert_with(|| Group {
            first: now,
            last: now,
            paths: BTreeMap::new(),
            renames: Vec::new(),
            collapsed: false,
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
        let before = group.paths.len();
        let entry = group.paths.entry(path).or_insert(subtree);
        *entry |= subtree;
        self.total += group.paths.len() - before;
        if group.paths.len() > GROUP_MAX {
            self.total -= group.paths.len() - 1;
            group.paths.clear();
            group.paths.insert(dir, true);
            group.collapsed = true;
        }
        if self.total > TOTAL_MAX {
            self.overflow();
        }
    }

    /// When the next group settles, if any is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.rescan {
            return Some(Instant::now());
        }
        self.groups
            .values()
            .map(|g| (g.last + self.settle).min(g.first + self.max_delay))
            .min()
    }

    /// Every group that has settled by `now`, as one batch.
    pub fn take_due(&mut self, now: Instant) -> Option<Batch> {
        if self.rescan {
            self.rescan = false;
            return Some(Batch {
                rescan: true,
                ..Batch::default()
            });
        }
        let due: Vec<PathBuf> = self
            .groups
            .iter()
            .filter(|(_, g)| now >= g.last + self.settle || now >= g.first + self.max_delay)
            .map(|(dir, _)| dir.clone())
            .collect();
        if due.is_empty() {
            return None;
        }
        let mut scope = Vec::new();
        let mut renames = Vec::new();
        for dir in due {
            let group = self.groups.remove(&dir).expect("listed above");
            self.total -= group.paths.len();
            // The directory's own entry list changed too (an entry appeared or went).
            scope.push(ScopeEntry::single(dir));
            scope.extend(
                group
                    .paths
                    .into_iter()
                    .map(|(path, subtree)| ScopeEntry { path, subtree }),
            );
            renames.extend(group.renames);
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
