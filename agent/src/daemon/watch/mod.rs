//! The real-time watch: inotify on every directory whose entries the policy
//! records, and the task that coalesces notifications into settled work for
//! the detector ([`coalesce`]).
//!
//! Watches are per directory (non-recursive) and managed here, so that the
//! policy decides what is watched (excluded subtrees, other filesystems and
//! `ignore` rules are not) and so that a refused watch names its subtree.
//! Each rule root's parent (or nearest existing ancestor) is watched too, so
//! a root that is replaced, removed or created is seen.
//!
//! The `inotify` crate is used directly, not `notify`: notify 8 always asks
//! the kernel for IN_OPEN, so every read of a watched file (every process
//! start reads /etc) woke the agent. Measured with 100k watched files: 730k
//! opens of unchanged files in 10 s cost the agent 2.5 CPU seconds through
//! notify; asking only for changes costs nothing (ARCHITECTURE.md).
//!
//! The kernel limits watches (`fs.inotify.max_user_watches`) and queued
//! events: a refused watch (`MaxFilesWatch`) or `[watch] max_watches`
//! leaves its subtree *unwatched*; unwatched subtrees are listed in status
//! and heartbeats and rescanned every `[watch] fallback_scan_secs`, and each
//! fallback scan first tries to watch them again (directories may have gone,
//! or the limit raised). A lost notification (queue overflow) becomes a
//! rescan of everything.
//!
//! Notifications are hints: the detector always re-reads the subject.

pub mod coalesce;
pub mod dirs;

use std::io::Write as _;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use driftwatch_config::WatchSettings;
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::daemon::status::StatusHandle;
use crate::observe::scan::{Policy, ScopeEntry};
use coalesce::{Batch, Coalescer, Hint, Notification, PendingMove};
use dirs::DirTree;

/// What the watch asks the kernel for: changes only. No IN_OPEN, IN_ACCESS or
/// IN_CLOSE_NOWRITE (reads change nothing); IN_ONLYDIR and IN_DONT_FOLLOW so a
/// path swapped for a file or a symlink is refused instead of followed;
/// IN_EXCL_UNLINK so files already unlinked do not keep sending.
fn watch_mask() -> WatchMask {
    WatchMask::ATTRIB
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::CLOSE_WRITE
        | WatchMask::MODIFY
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
        | WatchMask::EXCL_UNLINK
}

/// Watched directories by path and by watch descriptor, each path stored once
/// ([`DirTree`]): the watcher adds (holding the lock across the
/// `inotify_add_watch`, so no event of a new watch is read before its directory is
/// known) and forgets, the reader resolves and marks ended watches.
type Directories = Arc<Mutex<DirTree<WatchDescriptor>>>;

fn directories_len(directories: &Directories) -> usize {
    lock(directories).len()
}

fn lock(directories: &Directories) -> std::sync::MutexGuard<'_, DirTree<WatchDescriptor>> {
    directories.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the notify thread puts hints; never blocks it.
#[derive(Clone)]
struct Sink {
    tx: mpsc::Sender<Hint>,
    /// Set when a hint could not be queued: the coalescer turns it into a rescan.
    lost: Arc<AtomicBool>,
}

impl Sink {
    fn send(&self, hint: Hint) {
        if self.tx.try_send(hint).is_err() {
            self.lost.store(true, Ordering::Relaxed);
        }
    }
}

/// The receiving end of the watch, for [`run_coalescer`].
pub struct Hints {
    rx: mpsc::Receiver<Hint>,
    lost: Arc<AtomicBool>,
}

/// The inotify watches of one policy.
pub struct Watcher {
    watches: Watches,
    /// Directories watched (including the parents of rule roots).
    directories: Directories,
    /// Top-most directories left without a watch, each with the reason.
    unwatched: std::collections::BTreeMap<PathBuf, String>,
    max_watches: Option<usize>,
    /// The kernel refused a watch: add no more until the next retry.
    limit_hit: bool,
    /// The refusal was logged as an error; retries that hit it again say so quietly.
    limit_logged: bool,
    reader: Reader,
}

/// The thread that reads the inotify descriptor; stopped when the watcher is dropped.
struct Reader {
    /// Writing a byte wakes the thread to stop.
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // A failed write means the thread has already ended.
        let _ = self.reader.wake.write_all(b"x");
        if let Some(thread) = self.reader.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Watcher {
    /// Starts inotify; nothing is watched until [`Watcher::watch_policy`].
    pub fn new(settings: &WatchSettings) -> std::io::Result<(Watcher, Hints)> {
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let lost = Arc::new(AtomicBool::new(false));
        let sink = Sink {
            tx,
            lost: Arc::clone(&lost),
        };
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let directories = Directories::default();
        let (wake, woken) = UnixStream::pair()?;
        let thread = std::thread::Builder::new().name("watch".into()).spawn({
            let directories = Arc::clone(&directories);
            move || read_loop(inotify, &woken, &directories, &sink)
        })?;
        Ok((
            Watcher {
                watches,
                directories,
                unwatched: Default::default(),
                max_watches: settings.max_watches,
                limit_hit: false,
                limit_logged: false,
                reader: Reader {
                    wake,
                    thread: Some(thread),
                },
            },
            Hints { rx, lost },
        ))
    }

    /// Watches every directory of the policy and the parent of every rule root.
    pub fn watch_policy(&mut self, policy: &Policy<'_>) {
        self.watch_root_parents(policy);
        self.watch_directories(policy, None);
    }

    /// After a batch: watches directories that appeared in `scope`, forgets
    /// those that went, and keeps the rule roots' parents watched.
    pub fn update(&mut self, policy: &Policy<'_>, scope: &[ScopeEntry]) {
        let subtrees: Vec<ScopeEntry> = scope.iter().filter(|e| e.subtree).cloned().collect();
        if subtrees.is_empty() {
            return;
        }
        for entry in &subtrees {
            // Gone, or replaced by a new directory (the old watch ended with its inode).
            if !entry.path.is_dir() || !self.watch_alive(&entry.path) {
                self.forget_below(&entry.path);
            }
        }
        self.watch_root_parents(policy);
        self.watch_directories(policy, Some(&subtrees));
    }

    /// Tries again to watch the subtrees left unwatched: watches may have been
    /// freed (directories removed) or the limit raised since. What still does
    /// not fit is left unwatched again, with its reason.
    pub fn retry_unwatched(&mut self, policy: &Policy<'_>) {
        if self.unwatched.is_empty() {
            return;
        }
        self.limit_hit = false;
        let retry = std::mem::take(&mut self.unwatched);
        for (root, reason) in retry {
            if self.limit_hit {
                // Refused again: no need to walk the rest only to be refused.
                self.leave_unwatched(&root, &reason);
            } else {
                self.watch_directories(policy, Some(&[ScopeEntry::subtree(root)]));
            }
        }
        if self.unwatched.is_empty() {
            info!(
                watches = self.watch_count(),
                "every subtree of the policy is watched again"
            );
            self.limit_logged = false;
        }
    }

    fn watch_root_parents(&mut self, policy: &Policy<'_>) {
        let config = policy.config();
        for rule in &config.rules {
            let Some(parent) = rule
                .path
                .parent()
                .into_iter()
                .flat_map(Path::ancestors)
                .find(|dir| dir.is_dir())
            else {
                continue;
            };
            if !lock(&self.directories).contains(parent) {
                self.add(parent);
            }
        }
    }

    fn watch_directories(&mut self, policy: &Policy<'_>, scope: Option<&[ScopeEntry]>) {
        for found in policy.directories(scope) {
            match found {
                Ok(dir) => {
                    if !lock(&self.directories).contains(&dir) && !self.covered_by_unwatched(&dir) {
                        self.add(&dir);
                    }
                }
                // An unlistable directory: the scans report it; it cannot be watched either.
                Err(err) => debug!(path = %err.path, error = %err.message, "not watched"),
            }
        }
    }

    fn covered_by_unwatched(&self, dir: &Path) -> bool {
        dir.ancestors().any(|a| self.unwatched.contains_key(a))
    }

    fn add(&mut self, dir: &Path) {
        if self.limit_hit {
            self.leave_unwatched(dir, "the kernel's inotify watch limit was reached");
            return;
        }
        if let Some(max) = self.max_watches
            && self.watch_count() >= max
        {
            self.leave_unwatched(dir, &format!("[watch] max_watches = {max} reached"));
            return;
        }
        let mut directories = lock(&self.directories);
        match self.watches.add(dir, watch_mask()) {
            Ok(wd) => {
                let id = wd.get_watch_descriptor_id();
                if let Err(err) = directories.insert(dir, wd.clone(), id) {
                    drop(directories);
                    let _ = self.watches.remove(wd);
                    warn!(path = %dir.display(), error = %err, "cannot watch a directory; it is scanned periodically instead");
                    self.leave_unwatched(dir, &err.to_string());
                }
            }
            Err(err) => match Errno::from_raw(err.raw_os_error().unwrap_or(0)) {
                // The per-user watch limit (fs.inotify.max_user_watches).
                Errno::ENOSPC => {
                    drop(directories);
                    if self.limit_logged {
                        debug!(path = %dir.display(), "inotify watch limit still reached");
                    } else {
                        error!(
                            path = %dir.display(),
                            watches = directories_len(&self.directories),
                            "inotify watch limit reached (fs.inotify.max_user_watches): the rest \
                             of the policy falls back to periodic scanning until watches are \
                             freed or the limit is raised"
                        );
                        self.limit_logged = true;
                    }
                    self.limit_hit = true;
                    self.leave_unwatched(dir, "the kernel's inotify watch limit was reached");
                }
                // Gone between the walk and the watch, or no longer a directory:
                // nothing to watch (the change itself was notified).
                Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP => {}
                _ => {
                    drop(directories);
                    warn!(path = %dir.display(), error = %err, "cannot watch a directory; it is scanned periodically instead");
                    self.leave_unwatched(dir, &err.to_string());
                }
            },
        }
    }

    fn leave_unwatched(&mut self, dir: &Path, reason: &str) {
        if !self.covered_by_unwatched(dir) {
            // A new top-most entry replaces the ones below it.
            let below: Vec<PathBuf> = self
                .unwatched
                .keys()
                .filter(|p| p.starts_with(dir))
                .cloned()
                .collect();
            for path in below {
                self.unwatched.remove(&path);
            }
            self.unwatched.insert(dir.to_path_buf(), reason.to_owned());
        }
    }

    /// Whether the watch on `dir` still exists (the kernel ends a watch when
    /// its directory is deleted; the reader then forgets its descriptor).
    fn watch_alive(&self, dir: &Path) -> bool {
        lock(&self.directories).alive(dir).unwrap_or(true)
    }

    /// A directory went away or was moved: its watches and any unwatched entry
    /// below it are forgotten. A moved directory's watches would follow it to
    /// its new name; they are removed, and the new name is watched afresh.
    fn forget_below(&mut self, dir: &Path) {
        let below = lock(&self.directories).remove_below(dir);
        for wd in below {
            // Already ended by the kernel when the directory was deleted.
            let _ = self.watches.remove(wd);
        }
        self.unwatched.retain(|p, _| !p.starts_with(dir));
    }

    pub fn watch_count(&self) -> usize {
        directories_len(&self.directories)
    }

    /// Subtrees without a watch, for status and heartbeats.
    pub fn unwatched(&self) -> Vec<String> {
        self.unwatched
            .iter()
            .map(|(path, reason)| format!("{} ({reason})", path.display()))
            .collect()
    }

    /// The unwatched subtrees as a scan scope.
    pub fn unwatched_scope(&self) -> Vec<ScopeEntry> {
        self.unwatched
            .keys()
            .cloned()
            .map(ScopeEntry::subtree)
            .collect()
    }
}

/// Reads notifications until woken through `stop`, resolving each watch
/// descriptor to its directory; lost or unreadable notifications become a rescan.
fn read_loop(mut inotify: Inotify, stop: &UnixStream, directories: &Directories, sink: &Sink) {
    // Room for many events per read (each is 16 bytes plus its name).
    let mut buffer = vec![0u8; 64 * 1024];
    let mut pending = PendingMove::default();
    loop {
        let mut fds = [
            PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                error!(%errno, "the real-time watch cannot wait for notifications; it stops");
                sink.send(Hint::Overflow);
                return;
            }
        }
        if fds[1].any().unwrap_or(true) {
            return;
        }
        let events = match inotify.read_events(&mut buffer) {
            Ok(events) => events,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(err) => {
                // We can no longer say what changed: everything is looked at again.
                warn!(error = %err, "reading inotify failed; rescanning");
                sink.send(Hint::Overflow);
                continue;
            }
        };
        let mut directories = lock(directories);
        for event in events {
            if event.mask.contains(inotify::EventMask::Q_OVERFLOW) {
                sink.send(Hint::Overflow);
                continue;
            }
            // A watch removed by us a moment ago may still have queued events.
            let id = event.wd.get_watch_descriptor_id();
            let Some(dir) = directories.path_of(id) else {
                continue;
            };
            let notification = Notification {
                mask: event.mask,
                dir: &dir,
                name: event.name,
                cookie: event.cookie,
            };
            for hint in coalesce::hints(&notification, &mut pending) {
                sink.send(hint);
            }
            if event.mask.contains(inotify::EventMask::IGNORED) {
                directories.ended(id);
            }
        }
    }
}

/// Coalesces hints and hands settled batches to the detector (one at a
/// time: while the detector is busy, new hints keep being merged). The
/// watch knows only its own [`Batch`]: the detector's message type says how
/// to carry one (`From<Batch>`), so the watch does not depend on the engine.
pub async fn run_coalescer<M: From<Batch> + Send>(
    mut hints: Hints,
    settings: WatchSettings,
    detector: mpsc::Sender<M>,
    status: StatusHandle,
    cancel: CancellationToken,
) {
    let mut coalescer = Coalescer::new(settings.settle, settings.max_delay);
    let mut pending: Option<Batch> = None;
    let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
    loop {
        let deadline = coalescer
            .next_deadline()
            .map_or_else(far, tokio::time::Instant::from_std);
        tokio::select! {
            _ = cancel.cancelled() => return,
            hint = hints.rx.recv() => match hint {
                Some(hint) => {
                    if hint == Hint::Overflow {
                        warn!("the kernel dropped notifications (inotify queue overflow); rescanning");
                    }
                    push(&mut coalescer, hint, &status);
                }
                None => return,
            },
            _ = tokio::time::sleep_until(deadline) => {}
            permit = detector.reserve(), if pending.is_some() => match permit {
                Ok(permit) => {
                    let batch = pending.take().expect("guarded by the branch condition");
                    permit.send(M::from(batch));
                }
                Err(_) => return,
            },
        }
        // Hints were lost only while the queue was full, so this runs while draining it.
        if hints.lost.swap(false, Ordering::Relaxed) {
            warn!("the watch queue was full and notifications were lost; rescanning");
            push(&mut coalescer, Hint::Overflow, &status);
        }
        if let Some(batch) = coalescer.take_due(Instant::now()) {
            match &mut pending {
                Some(waiting) => waiting.merge(batch),
                None => pending = Some(batch),
            }
        }
    }
}

fn push(coalescer: &mut Coalescer, hint: Hint, status: &StatusHandle) {
    if hint == Hint::Overflow {
        status.update(|s| s.coverage.dropped_event_batches += 1);
    }
    coalescer.push(hint, Instant::now());
}

#[cfg(test)]
mod tests {
    use driftwatch_config::AgentConfig;

    use super::*;

    fn unwatched_names(watcher: &Watcher) -> Vec<String> {
        watcher
            .unwatched
            .keys()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn subtrees_refused_a_watch_are_watched_once_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        for sub in ["a", "b", "c"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let config = AgentConfig::adhoc(&root);
        let policy = Policy::new(&config);
        // Room for the root's parent, the root and one subdirectory.
        let settings = WatchSettings {
            max_watches: Some(3),
            ..WatchSettings::default()
        };
        let (mut watcher, _hints) = Watcher::new(&settings).unwrap();
        watcher.watch_policy(&policy);
        assert_eq!(watcher.watch_count(), 3);
        let refused = unwatched_names(&watcher);
        assert_eq!(refused.len(), 2, "{refused:?}");
        // Walk order is the directory's: whichever subdirectory got the watch.
        let lucky = ["a", "b", "c"]
            .into_iter()
            .find(|name| !refused.iter().any(|r| r == name))
            .unwrap();

        // Nothing freed: the retry leaves both unwatched, with their reason.
        watcher.retry_unwatched(&policy);
        assert_eq!(unwatched_names(&watcher), refused);
        assert!(watcher.unwatched()[0].contains("max_watches = 3"));

        // It goes away (the batch that saw it reports the subtree): one watch is free.
        std::fs::remove_dir(root.join(lucky)).unwrap();
        watcher.update(&policy, &[ScopeEntry::subtree(root.join(lucky))]);
        assert_eq!(watcher.watch_count(), 2);
        watcher.retry_unwatched(&policy);
        assert_eq!(watcher.watch_count(), 3);
        let still = unwatched_names(&watcher);
        assert_eq!(still.len(), 1, "{still:?}");
        let now_watched = refused.iter().find(|r| **r != still[0]).unwrap();
        assert!(lock(&watcher.directories).contains(&root.join(now_watched)));
    }
}
