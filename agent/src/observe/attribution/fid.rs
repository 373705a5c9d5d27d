//! Every change attribution follows (content writes, metadata changes,
//! creations, removals, both sides of renames): one fanotify group in FID
//! mode (`FAN_REPORT_DFID_NAME`) through raw libc calls, since nix has no FID
//! support. Unlike fd mode, the kernel opens no file per event, which keeps
//! the cost low on a busy file system where most events are not ours.
//! Events name a directory by file handle plus an entry name; the
//! handle becomes a path with `open_by_handle_at` on a descriptor of the
//! same file system and a readlink of /proc/self/fd (cached, bounded).

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use driftwatch_common::api::v1::Actor;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::records::{self, DirEntry};
use super::{Operation, Progress, Shared, UserNames, process_actor};

/// What the group listens for. FAN_ONDIR: directories too (a removed or
/// renamed directory takes its subtree with it).
const MASK: u64 = libc::FAN_MODIFY
    | libc::FAN_CLOSE_WRITE
    | libc::FAN_ATTRIB
    | libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_MOVED_FROM
    | libc::FAN_MOVED_TO
    | libc::FAN_ONDIR;

/// The mask bit of each operation this group reports.
const OPERATIONS: [(u64, Operation); 6] = [
    (libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE, Operation::Write),
    (libc::FAN_ATTRIB, Operation::Attrib),
    (libc::FAN_CREATE, Operation::Create),
    (libc::FAN_DELETE, Operation::Delete),
    (libc::FAN_MOVED_FROM, Operation::MovedFrom),
    (libc::FAN_MOVED_TO, Operation::MovedTo),
];

/// Bound on cached directory paths (cleared when full).
const MAX_CACHED_DIRECTORIES: usize = 4096;
/// `MAX_HANDLE_SZ`: the largest file handle the kernel hands out.
const MAX_HANDLE_BYTES: usize = libc::MAX_HANDLE_SZ as usize;

/// A FID-mode group and, per marked file system, a descriptor to resolve handles against.
pub(super) struct FidGroup {
    group: OwnedFd,
    filesystems: Vec<Filesystem>,
    /// The file systems that could not be marked, each with why.
    pub unmarked: Vec<String>,
}

struct Filesystem {
    fsid: [i32; 2],
    /// An O_PATH descriptor of a policy path on it: `open_by_handle_at`'s mount_fd.
    anchor: OwnedFd,
}

/// The nearest existing ancestor of each path, with its device.
fn existing_ancestors(paths: &[PathBuf]) -> Vec<(PathBuf, u64)> {
    paths
        .iter()
        .filter_map(|path| {
            path.ancestors()
                .find_map(|p| fs::metadata(p).ok().map(|m| (p.to_owned(), m.dev())))
        })
        .collect()
}

pub(super) fn listen(paths: &[PathBuf]) -> Result<FidGroup, String> {
    let flags =
        libc::FAN_CLASS_NOTIF | libc::FAN_REPORT_DFID_NAME | libc::FAN_NONBLOCK | libc::FAN_CLOEXEC;
    let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint;
    // SAFETY: fanotify_init takes two integer flag words and touches no memory of ours.
    let raw = unsafe { libc::fanotify_init(flags, event_flags) };
    if raw < 0 {
        return Err(match Errno::last() {
            Errno::EPERM => {
                "fanotify needs CAP_SYS_ADMIN, which the agent does not have".to_owned()
            }
            Errno::EINVAL => {
                "this kernel cannot report file names to fanotify (FAN_REPORT_DFID_NAME needs Linux 5.9)"
                    .to_owned()
            }
            Errno::ENOSYS => "this kernel has no fanotify".to_owned(),
            other => format!("fanotify_init (FID mode) failed: {other}"),
        });
    }
    // SAFETY: `raw` was just returned by fanotify_init and nothing else owns it.
    let group = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut marked_devices = Vec::new();
    let mut filesystems = Vec::new();
    let mut unmarked = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    for (existing, device) in existing_ancestors(paths) {
        if marked_devices.contains(&device) {
            continue;
        }
        marked_devices.push(device);
        match mark_filesystem(group.as_fd(), &existing) {
            Ok(filesystem) => filesystems.push(filesystem),
            Err(why) => {
                unmarked.push(format!(
                    "on the file system of {}: {why}",
                    existing.display()
                ));
                if !reasons.contains(&why) {
                    reasons.push(why);
                }
            }
        }
    }
    if filesystems.is_empty() {
        return Err(match reasons.as_slice() {
            [] => "no policy path exists to mark its file system".to_owned(),
            // One reason for all (typically no CAP_SYS_ADMIN, as an unprivileged
            // FID group can be created but not marked on a whole file system).
            [why] => why.clone(),
            _ => unmarked.join("; "),
        });
    }
    Ok(FidGroup {
        group,
        filesystems,
        unmarked,
    })
}

fn mark_filesystem(group: BorrowedFd<'_>, path: &Path) -> Result<Filesystem, String> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| "a NUL in the path")?;
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call; the
    // other arguments are integers and a descriptor we own.
    let rc = unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
            MASK,
            libc::AT_FDCWD,
            c_path.as_ptr(),
        )
    };
    if rc < 0 {
        return Err(match Errno::last() {
            Errno::EPERM => "fanotify needs CAP_SYS_ADMIN, which the agent does not have".into(),
            Errno::ENODEV | Errno::EOPNOTSUPP => {
                "this file system does not support file handles".into()
            }
            Errno::EXDEV => {
                "it is a subvolume or overlay whose id differs from its file system's".into()
            }
            other => format!("fanotify_mark failed: {other}"),
        });
    }
    let anchor = open_anchor(path).map_err(|err| format!("cannot open it: {err}"))?;
    let stats = nix::sys::statfs::fstatfs(&anchor).map_err(|err| format!("statfs: {err}"))?;
    // SAFETY: libc's fsid_t on Linux is repr(C) `{ __val: [c_int; 2] }`:
    // transmute checks the sizes match and any bit pattern is a valid [i32; 2].
    // It is the value fanotify puts in each event's fsid.
    let fsid: [i32; 2] = unsafe { std::mem::transmute(stats.filesystem_id()) };
    Ok(Filesystem {
        fsid,
        anchor: anchor.into(),
    })
}

/// A descriptor on `path`'s file system for `open_by_handle_at`, which
/// refuses O_PATH descriptors: a directory (the path's own, or its parent
/// on the same file system), so no device or FIFO is ever opened.
fn open_anchor(path: &Path) -> std::io::Result<fs::File> {
    let metadata = fs::metadata(path)?;
    let directory = match path.parent() {
        Some(parent) if !metadata.is_dir() && fs::metadata(parent)?.dev() == metadata.dev() => {
            parent
        }
        _ => path,
    };
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(directory)
}

impl FidGroup {
    /// The group's descriptor (readable while events wait).
    pub(super) fn queue(&self) -> BorrowedFd<'_> {
        self.group.as_fd()
    }
}

/// Reads and remembers events until `state.stop`, telling `progress` how far it got.
pub(super) fn read_loop(group: FidGroup, state: &Shared, progress: &Progress) {
    let own_pid = std::process::id() as i32;
    let mut users = UserNames::load();
    let mut resolver = Resolver::new(group.filesystems);
    // Big enough for hundreds of events per read (each is 24 bytes plus a
    // record of about 40 bytes and a name).
    let mut buffer = vec![0u8; 64 * 1024];
    while !state.stop.load(Ordering::Relaxed) {
        // Wake up twice a second to notice `stop`.
        let mut fds = [PollFd::new(group.group.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(500u16)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(errno) => {
                state.listener_stopped(format!(
                    "changes are no longer attributed: waiting for fanotify events failed: {errno}"
                ));
                return;
            }
        }
        progress.reading();
        // SAFETY: the pointer and length describe `buffer`, which is ours and
        // outlives the call; the kernel writes at most `buffer.len()` bytes.
        let read = unsafe {
            libc::read(
                group.group.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
            )
        };
        let Ok(read) = usize::try_from(read) else {
            let errno = Errno::last();
            progress.idle();
            match errno {
                Errno::EAGAIN | Errno::EINTR => continue,
                errno => {
                    state.listener_stopped(format!(
                        "changes are no longer attributed: reading fanotify events failed: {errno}"
                    ));
                    return;
                }
            }
        };
        // One /proc read per process per batch: `rm -r` of a thousand files is one lookup.
        let mut actors: HashMap<i32, Actor> = HashMap::new();
        for event in records::events(&buffer[..read]) {
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    tracing::warn!(%err, "attribution: skipped a malformed fanotify event");
                    continue;
                }
            };
            if event.mask & libc::FAN_Q_OVERFLOW != 0 {
                state.overflowed();
                continue;
            }
            // The agent's own files (spool, status) are never drift.
            if event.pid == own_pid {
                continue;
            }
            let Some(entry) = event.entry else { continue };
            let on_directory = event.mask & libc::FAN_ONDIR != 0;
            let path = match resolver.path_of(&entry) {
                Ok(path) => path,
                Err(why) => {
                    tracing::debug!(%why, "attribution: event dropped, its directory is unknown");
                    continue;
                }
            };
            if on_directory
                && event.mask & (libc::FAN_DELETE | libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO) != 0
            {
                // A directory moved or went away: cached paths at or below it are wrong now.
                resolver.forget_under(&path);
            }
            let Some(path) = state.as_policy_path(path, on_directory) else {
                continue;
            };
            let actor = actors
                .entry(event.pid)
                .or_insert_with(|| process_actor(event.pid.max(0) as u32, &mut users))
                .clone();
            for (bit, operation) in OPERATIONS {
                if event.mask & bit != 0 {
                    state.remember(path.clone(), operation, actor.clone(), on_directory);
                }
            }
        }
        progress.handled(group.group.as_fd());
    }
}

/// Directory handles to paths, cached.
struct Resolver {
    filesystems: Vec<Filesystem>,
    cache: HashMap<Vec<u8>, PathBuf>,
}

impl Resolver {
    fn new(filesystems: Vec<Filesystem>) -> Self {
        Resolver {
            filesystems,
            cache: HashMap::new(),
        }
    }

    fn forget_under(&mut self, moved: &Path) {
        self.cache.retain(|_, path| !path.starts_with(moved));
    }

    /// The path of the entry an event names.
    fn path_of(&mut self, entry: &DirEntry<'_>) -> Result<PathBuf, String> {
        let directory = self.directory(entry)?;
        Ok(match entry.is_directory_itself() {
            true => directory,
            false => directory.join(OsStr::from_bytes(entry.name)),
        })
    }

    fn directory(&mut self, entry: &DirEntry<'_>) -> Result<PathBuf, String> {
        let mut key = Vec::with_capacity(12 + entry.handle.len());
        key.extend_from_slice(&entry.fsid[0].to_ne_bytes());
        key.extend_from_slice(&entry.fsid[1].to_ne_bytes());
        key.extend_from_slice(&entry.handle_type.to_ne_bytes());
        key.extend_from_slice(entry.handle);
        if let Some(path) = self.cache.get(&key) {
            return Ok(path.clone());
        }
        let filesystem = self
            .filesystems
            .iter()
            .find(|fs| fs.fsid == entry.fsid)
            .ok_or("the event is from a file system that was not marked")?;
        let path = open_by_handle(filesystem.anchor.as_fd(), entry.handle_type, entry.handle)?;
        if self.cache.len() >= MAX_CACHED_DIRECTORIES {
            self.cache.clear();
        }
        self.cache.insert(key, path.clone());
        Ok(path)
    }
}

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct FileHandleBuffer {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_BYTES],
}

/// The current path of the directory `handle` names on `anchor`'s file system.
fn open_by_handle(
    anchor: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
) -> Result<PathBuf, String> {
    if handle.is_empty() || handle.len() > MAX_HANDLE_BYTES {
        return Err(format!("a file handle of {} bytes", handle.len()));
    }
    let mut buffer = FileHandleBuffer {
        handle_bytes: handle.len() as u32,
        handle_type,
        f_handle: [0; MAX_HANDLE_BYTES],
    };
    buffer.f_handle[..handle.len()].copy_from_slice(handle);
    // SAFETY: `buffer` has the layout of `struct file_handle` (repr(C)) followed
    // by `handle_bytes` <= MAX_HANDLE_SZ bytes of handle, and outlives the call;
    // the kernel only reads it. O_PATH opens nothing for reading or writing.
    let raw = unsafe {
        libc::open_by_handle_at(
            anchor.as_raw_fd(),
            (&raw mut buffer).cast::<libc::file_handle>(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(match Errno::last() {
            Errno::ESTALE => "the directory no longer exists".to_owned(),
            Errno::EPERM => "open_by_handle_at needs CAP_DAC_READ_SEARCH".to_owned(),
            other => format!("open_by_handle_at failed: {other}"),
        });
    }
    // SAFETY: `raw` was just returned by open_by_handle_at and nothing else owns it.
    let directory = unsafe { OwnedFd::from_raw_fd(raw) };
    let path = fs::read_link(format!("/proc/self/fd/{}", directory.as_raw_fd()))
        .map_err(|err| format!("reading the directory's path: {err}"))?;
    if !path.is_absolute() || path.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return Err(format!(
            "the directory is not reachable by path ({})",
            path.display()
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_of_an_impossible_size_is_refused_without_a_syscall() {
        let dir = fs::File::open("/").unwrap();
        assert!(open_by_handle(dir.as_fd(), 1, &[]).is_err());
        assert!(open_by_handle(dir.as_fd(), 1, &[0; MAX_HANDLE_BYTES + 1]).is_err());
    }

    #[test]
    fn a_garbage_handle_is_an_error_not_a_panic() {
        let dir = fs::File::open("/").unwrap();
        let result = open_by_handle(dir.as_fd(), 1, &[0xff; 8]);
        assert!(result.is_err(), "{result:?}");
    }
}
