//! Who made a change, where the kernel lets us see it.
//!
//! With CAP_SYS_ADMIN the agent runs a fanotify group in FID mode
//! (`FAN_REPORT_DFID_NAME`, see [`fid`]) with a *filesystem* mark on every
//! file system that holds a policy path (under systemd's ProtectSystem the
//! agent has its own mount namespace, where mount marks see nothing). It hears
//! content writes, metadata changes, creations, removals and both sides of
//! renames. Events carry a directory file handle and a name; the handle is
//! turned into a path with `open_by_handle_at` (CAP_DAC_READ_SEARCH).
//!
//! Each event carries the writer's pid; the listener resolves it through /proc
//! right away (process name, executable, uid, audit login uid = the person
//! behind sudo, session, tty) and remembers, per path and kind of operation,
//! the last process seen, for two minutes. When a drift is detected,
//! [`Attribution::actor_for`] answers from that memory with the operation that
//! explains the drift (a chmod for a mode change, the rename for either side
//! of a move, the unlink for a removal), and says why when it cannot: no
//! privilege, the writer exited before /proc could be read (chmod, mv and rm
//! usually do: the pid is kept), or no such operation was seen.
//!
//! Attribution is best effort and never blocks detection: the listener runs
//! on its own thread, memory is bounded, waiting for it is bounded
//! ([`Attribution::catch_up`]), and a lost kernel event (queue overflow) is
//! reported as a coverage gap.
//!
//! Files: `fid.rs` the fanotify group (raw libc: the workspace's only `unsafe`,
//! each block justified; directory handles resolved through /proc/self/fd and
//! cached with a bound), `records.rs` the event buffer parsed over bytes with every
//! length checked, `memory.rs` the last process per path and operation. The agent's
//! own pid is ignored. Not covered: the pid is the writer's thread group only (no
//! parent chain), and a directory renamed between an event and its reading is named
//! by its new path.

// Raw fanotify FID calls: the only unsafe code in the workspace, each block justified.
#[allow(unsafe_code)]
mod fid;
mod memory;
pub mod records;

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use driftwatch_common::api::v1::{Actor, ChangeKind};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use memory::Memory;

/// How long an operation is remembered for the drift it causes.
const REMEMBER: Duration = Duration::from_secs(120);
/// The longest [`Attribution::catch_up`] delays detection.
const CATCH_UP: Duration = Duration::from_millis(100);
/// Audit's "no login uid" value.
const UNSET_LOGIN_UID: u32 = u32::MAX;

/// What a process did to a path, as fanotify reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Content written.
    Write,
    /// Mode, owner, timestamps or extended attributes changed.
    Attrib,
    Create,
    Delete,
    /// The old name of a rename.
    MovedFrom,
    /// The new name of a rename (also an editor's save over the old file).
    MovedTo,
}

impl Operation {
    /// The operations that can explain a drift of `kind` (the most recent one wins).
    fn explaining(kind: ChangeKind) -> &'static [Operation] {
        use Operation::*;
        match kind {
            ChangeKind::Added => &[Create, MovedTo, Write],
            ChangeKind::Removed => &[Delete, MovedFrom],
            ChangeKind::Content => &[Write, MovedTo, Create],
            ChangeKind::Attributes => &[Attrib, MovedTo, Create],
            ChangeKind::Restored => &[Write, Attrib, Create, Delete, MovedFrom, MovedTo],
        }
    }
}

/// Called with the new coverage gap whenever it changes (a queue overflow).
pub type GapListener = Box<dyn Fn(Option<String>) + Send + Sync>;

/// The attribution listeners; they stop when this is dropped.
pub struct Attribution {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    /// Why no change is attributed, if none is.
    off: Option<String>,
}

/// A listener thread and what tells whether it is behind its kernel queue.
struct Listener {
    thread: JoinHandle<()>,
    /// A duplicate of the group's descriptor: readable while events wait.
    queue: OwnedFd,
    progress: Arc<Progress>,
}

/// How far a listener got, told by the listener thread.
pub(super) struct Progress {
    /// Set from before a read until its events are remembered.
    busy: AtomicBool,
    /// The last time the queue was seen empty after a batch was remembered
    /// (nanoseconds since `epoch`): every event queued before it is remembered.
    drained_at: AtomicU64,
    epoch: Instant,
}

impl Progress {
    fn new() -> Self {
        Progress {
            busy: AtomicBool::new(false),
            drained_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// About to read from the queue.
    pub(super) fn reading(&self) {
        self.busy.store(true, Ordering::SeqCst);
    }

    /// The read returned nothing.
    pub(super) fn idle(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }

    /// A batch is remembered. If the queue is empty now, so is everything
    /// queued before now: under a steady stream of other events, catching up
    /// then waits for one batch, not for a queue that is never empty.
    pub(super) fn handled(&self, queue: BorrowedFd<'_>) {
        let checked = self.nanos(Instant::now());
        if !readable(queue) {
            self.drained_at.fetch_max(checked, Ordering::SeqCst);
        }
        self.busy.store(false, Ordering::SeqCst);
    }
}

fn readable(queue: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(queue, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|ready| ready > 0)
}

impl Listener {
    fn spawn(
        name: &str,
        queue: BorrowedFd<'_>,
        read_loop: impl FnOnce(&Progress) + Send + 'static,
    ) -> std::io::Result<Listener> {
        let queue = queue.try_clone_to_owned()?;
        let progress = Arc::new(Progress::new());
        let told = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || read_loop(&told))?;
        Ok(Listener {
            thread,
            queue,
            progress,
        })
    }

    /// Events queued before `since` are not all remembered yet. Either the
    /// queue was seen drained after `since`, or: checking the queue first, if
    /// it is empty whatever it held was read, and that read is still being
    /// handled exactly while `busy` is set.
    fn is_behind(&self, since: Instant) -> bool {
        if self.thread.is_finished()
            || self.progress.drained_at.load(Ordering::SeqCst) >= self.progress.nanos(since)
        {
            return false;
        }
        readable(self.queue.as_fd()) || self.progress.busy.load(Ordering::SeqCst)
    }
}

struct Shared {
    memory: Mutex<Memory>,
    stop: AtomicBool,
    /// Policy paths: events elsewhere on a marked file system are ignored.
    roots: Vec<Root>,
    /// What is not covered, known at start (`None`: everything is).
    start_gap: Option<String>,
    /// Kernel queue overflows since start (events lost, their writers unknown).
    overflows: AtomicU64,
    last_overflow: Mutex<Option<Instant>>,
    /// Listeners that stopped on an error, each with why.
    stopped: Mutex<Vec<String>>,
    on_gap_change: Option<GapListener>,
}

/// A policy path, as configured and with symbolic links resolved.
struct Root {
    given: PathBuf,
    resolved: PathBuf,
}

impl Root {
    fn new(given: PathBuf) -> Root {
        // Resolve the part that exists; the rest may be created later.
        let resolved = given
            .ancestors()
            .find_map(|existing| {
                let resolved = fs::canonicalize(existing).ok()?;
                let rest = given.strip_prefix(existing).ok()?;
                Some(match rest.as_os_str().is_empty() {
                    true => resolved,
                    false => resolved.join(rest),
                })
            })
            .unwrap_or_else(|| given.clone());
        Root { given, resolved }
    }
}

impl Shared {
    fn new(
        roots: Vec<PathBuf>,
        start_gap: Option<String>,
        on_gap_change: Option<GapListener>,
    ) -> Self {
        Shared {
            memory: Mutex::new(Memory::default()),
            stop: AtomicBool::new(false),
            roots: roots.into_iter().map(Root::new).collect(),
            start_gap,
            overflows: AtomicU64::new(0),
            last_overflow: Mutex::new(None),
            stopped: Mutex::new(Vec::new()),
            on_gap_change,
        }
    }

    /// The path as the policy names it, if an event on `path` can matter for
    /// drift: the path is under a policy root, or (for a directory) holds
    /// one, since renaming or removing a directory moves everything below it.
    /// The kernel reports resolved paths; a root reached through a symbolic
    /// link is matched by its resolved form and named by its policy form.
    fn as_policy_path(&self, path: PathBuf, on_directory: bool) -> Option<PathBuf> {
        for root in &self.roots {
            if path.starts_with(&root.given) {
                return Some(path);
            }
            if let Ok(rest) = path.strip_prefix(&root.resolved) {
                return Some(match rest.as_os_str().is_empty() {
                    true => root.given.clone(),
                    false => root.given.join(rest),
                });
            }
        }
        let holds_a_root =
            |root: &Root| root.given.starts_with(&path) || root.resolved.starts_with(&path);
        (on_directory && self.roots.iter().any(holds_a_root)).then_some(path)
    }

    fn remember(&self, path: PathBuf, operation: Operation, actor: Actor, on_directory: bool) {
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remember(
                path,
                operation,
                actor,
                on_directory,
                Instant::now(),
                REMEMBER,
            );
    }

    /// The kernel dropped events: say so, in the log and in the coverage.
    fn overflowed(&self) {
        let count = self.overflows.fetch_add(1, Ordering::Relaxed) + 1;
        *self.last_overflow.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        tracing::warn!(
            count,
            "attribution: fanotify queue overflow; some writers are unknown"
        );
        if let Some(listener) = &self.on_gap_change {
            listener(self.gap());
        }
    }

    /// A listener gave up (its group is unusable): a coverage gap from now on.
    fn listener_stopped(&self, why: String) {
        tracing::error!(%why, "attribution: a listener stopped; some writers will be unknown");
        self.stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(why);
        if let Some(listener) = &self.on_gap_change {
            listener(self.gap());
        }
    }

    fn gap(&self) -> Option<String> {
        let mut gaps: Vec<String> = self.start_gap.iter().cloned().collect();
        gaps.extend(
            self.stopped
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        let overflows = self.overflows.load(Ordering::Relaxed);
        if overflows > 0 {
            gaps.push(format!(
                "the fanotify queue overflowed {overflows} time(s) since start: \
                 the writers of some changes are unknown"
            ));
        }
        (!gaps.is_empty()).then(|| gaps.join("; "))
    }

    fn overflowed_recently(&self) -> bool {
        self.last_overflow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() <= REMEMBER)
    }
}

impl Attribution {
    /// Starts listening on the file systems holding `paths`. Never fails:
    /// without the privilege (or kernel support) it records why and every
    /// actor says so. `on_gap_change` hears about coverage lost later (queue
    /// overflows).
    pub fn start(paths: &[PathBuf], on_gap_change: Option<GapListener>) -> Attribution {
        let group = fid::listen(paths);
        let mut off = group.as_ref().err().cloned();
        let start_gap = match &group {
            Err(why) => Some(why.clone()),
            Ok(group) if group.unmarked.is_empty() => None,
            Ok(group) => Some(
                group
                    .unmarked
                    .iter()
                    .map(|why| format!("changes are not attributed {why}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        let shared = Arc::new(Shared::new(paths.to_vec(), start_gap, on_gap_change));
        let mut listeners = Vec::new();
        if let Ok(group) = group {
            let state = Arc::clone(&shared);
            let queue = group.queue().try_clone_to_owned();
            let started = queue.and_then(|queue| {
                Listener::spawn("attribution", queue.as_fd(), move |progress| {
                    fid::read_loop(group, &state, progress)
                })
            });
            match started {
                Ok(listener) => listeners.push(listener),
                Err(err) => {
                    let why = format!("cannot start the fanotify listener thread: {err}");
                    shared.listener_stopped(why.clone());
                    off = Some(why);
                }
            }
        }
        match &shared.start_gap {
            Some(gap) => tracing::warn!(%gap, "attribution: some or all actors will be unknown"),
            None => tracing::info!(
                "attribution: fanotify listening for writes, renames, removals, creations and metadata changes"
            ),
        }
        Attribution {
            shared,
            listeners,
            off,
        }
    }

    /// Attribution switched off, with the reason every actor will carry.
    pub fn unavailable(reason: String) -> Attribution {
        Attribution {
            shared: Arc::new(Shared::new(Vec::new(), Some(reason.clone()), None)),
            listeners: Vec::new(),
            off: Some(reason),
        }
    }

    /// What attribution does not cover, as known at start (reported in
    /// heartbeats as coverage); `None` when everything is covered.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.shared.start_gap.as_deref()
    }

    /// The current coverage gap, including queue overflows since start.
    pub fn coverage_gap(&self) -> Option<String> {
        self.shared.gap()
    }

    /// Waits, at most [`CATCH_UP`], until the listeners have remembered every
    /// event the kernel queued before this call, so that a drift detected
    /// right after its change finds its writer even when the listeners are
    /// behind. Returns at once when they are not.
    pub fn catch_up(&self) {
        let since = Instant::now();
        let deadline = since + CATCH_UP;
        for listener in &self.listeners {
            while listener.is_behind(since) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// The process whose recent operation on `path` explains a drift of
    /// `kind`, or why it is unknown.
    pub fn actor_for(&self, path: &Path, kind: ChangeKind) -> Actor {
        if let Some(reason) = &self.off {
            return Actor {
                source: "none".into(),
                reason: Some(reason.clone()),
                ..Actor::default()
            };
        }
        let wanted = Operation::explaining(kind);
        let seen = self
            .shared
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .explaining(path, wanted, Instant::now(), REMEMBER);
        if let Some(actor) = seen {
            return actor;
        }
        let mut reason = format!(
            "fanotify saw no {} of this path by another process in the last {} s",
            describe(wanted),
            REMEMBER.as_secs()
        );
        if self.shared.overflowed_recently() {
            reason.push_str("; the fanotify queue overflowed recently and lost events");
        } else {
            reason.push_str(" (the change may predate the agent's start)");
        }
        Actor {
            source: "fanotify".into(),
            reason: Some(reason),
            ..Actor::default()
        }
    }
}

fn describe(operations: &[Operation]) -> String {
    let names: Vec<&str> = operations
        .iter()
        .map(|op| match op {
            Operation::Write => "write",
            Operation::Attrib => "metadata change",
            Operation::Create => "creation",
            Operation::Delete => "removal",
            Operation::MovedFrom | Operation::MovedTo => "rename",
        })
        .fold(Vec::new(), |mut names, name| {
            if !names.contains(&name) {
                names.push(name);
            }
            names
        });
    names.join(", ")
}

impl Drop for Attribution {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for listener in self.listeners.drain(..) {
            let _ = listener.thread.join();
        }
    }
}

/// What /proc says about `pid`, read as soon as the event arrives. A process
/// that is gone keeps its pid and says so.
pub fn process_actor(pid: u32, users: &mut UserNames) -> Actor {
    if pid == 0 {
        return Actor {
            source: "fanotify".into(),
            reason: Some(
                "the kernel reported no pid: the writer runs outside the agent's pid namespace"
                    .into(),
            ),
            ..Actor::default()
        };
    }
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let read = |name: &str| fs::read_to_string(proc.join(name)).ok();
    let Some(status) = read("status") else {
        return Actor {
            source: "fanotify".into(),
            pid: Some(pid),
            exited: true,
            reason: Some(
                "the process exited before it could be read (short-lived commands such as \
                 chmod, mv and rm often do): only its pid is known"
                    .into(),
            ),
            ..Actor::default()
        };
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
    };
    let uid = field("Uid:")
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok());
    let login_uid = read("loginuid")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&uid| uid != UNSET_LOGIN_UID);
    let session = read("sessionid")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&id| id != UNSET_LOGIN_UID);
    let exe = fs::read_link(proc.join("exe"))
        .ok()
        .map(|p| p.display().to_string());
    let tty = read("stat").as_deref().and_then(controlling_tty);
    // A process exiting while it is read (a zombie, or reaped by now) loses
    // its /proc entries one by one: keep what was read, and say so.
    let exiting = field("State:").is_some_and(|state| state.starts_with(['Z', 'X']))
        || fs::metadata(&proc).is_err();
    Actor {
        source: "fanotify".into(),
        pid: Some(pid),
        // From the same read as the uid, so the two always agree.
        comm: field("Name:").map(str::to_owned),
        exe,
        uid,
        user: uid.and_then(|uid| users.name(uid)),
        login_uid,
        login_user: login_uid.and_then(|uid| users.name(uid)),
        session,
        exited: exiting,
        reason: exiting.then(|| {
            "the process exited before it could be read in full (short-lived commands such \
             as chmod, mv and rm often do): what was read is kept"
                .into()
        }),
        tty,
    }
}

/// The controlling terminal from the text of /proc/PID/stat (field 7,
/// `tty_nr`), by its usual name; `None` without one.
fn controlling_tty(stat: &str) -> Option<String> {
    // The process name (field 2) is in parentheses and may hold spaces or ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields 3 (state), 4 (ppid), 5 (pgrp), 6 (session), 7 (tty_nr).
    let tty_nr: u32 = after_name.split_whitespace().nth(4)?.parse().ok()?;
    if tty_nr == 0 {
        return None;
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    Some(match major {
        // Unix98 pseudo-terminals: majors 136-143 share one numbering.
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        _ => format!("{major}:{minor}"),
    })
}

/// uid -> user name from /etc/passwd, re-read when a uid is unknown (new accounts).
pub struct UserNames {
    names: HashMap<u32, String>,
    loaded_at: Option<Instant>,
}

impl UserNames {
    pub fn load() -> Self {
        let mut names = UserNames {
            names: HashMap::new(),
            loaded_at: None,
        };
        names.reload();
        names
    }

    fn reload(&mut self) {
        let text = fs::read_to_string("/etc/passwd").unwrap_or_default();
        self.names = text
            .lines()
            .filter_map(|line| {
                let mut cols = line.split(':');
                let name = cols.next()?;
                let uid = cols.nth(1)?.parse().ok()?;
                Some((uid, name.to_owned()))
            })
            .collect();
        self.loaded_at = Some(Instant::now());
    }

    pub fn name(&mut self, uid: u32) -> Option<String> {
        let stale = self
            .loaded_at
            .is_none_or(|at| at.elapsed() > Duration::from_secs(60));
        if !self.names.contains_key(&uid) && stale {
            self.reload();
        }
        self.names.get(&uid).cloned()
    }
}

#[cfg(test)]
mod tests;
