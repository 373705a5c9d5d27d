//! Content writes: a fanotify group in fd mode (through nix). Each event
//! carries an open descriptor of the written file, whose path is read back
//! from /proc/self/fd.

use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};

use super::{Operation, Shared, UserNames, process_actor};

/// A fanotify group with a filesystem mark on each distinct file system of `paths`.
pub(super) fn listen(paths: &[PathBuf]) -> Result<Fanotify, String> {
    let fanotify = Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
        EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
    )
    .map_err(|errno| match errno {
        Errno::EPERM => "fanotify needs CAP_SYS_ADMIN, which the agent does not have".to_owned(),
        Errno::ENOSYS => "this kernel has no fanotify".to_owned(),
        other => format!("fanotify_init failed: {other}"),
    })?;
    let mut devices = Vec::new();
    for (existing, device) in super::entries::existing_ancestors(paths) {
        if devices.contains(&device) {
            continue;
        }
        fanotify
            .mark(
                MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
                MaskFlags::FAN_MODIFY | MaskFlags::FAN_CLOSE_WRITE,
                nix::fcntl::AT_FDCWD,
                Some(existing.as_path()),
            )
            .map_err(|errno| {
                format!(
                    "cannot watch the file system of {}: {errno}",
                    existing.display()
                )
            })?;
        devices.push(device);
    }
    Ok(fanotify)
}

/// Reads and remembers events until `state.stop`; `busy` is set from before
/// each read until its events are remembered.
pub(super) fn read_loop(fanotify: &Fanotify, state: &Shared, busy: &AtomicBool) {
    let own_pid = std::process::id() as i32;
    let mut users = UserNames::load();
    while !state.stop.load(Ordering::Relaxed) {
        // Wake up twice a second to notice `stop`.
        let mut fds = [PollFd::new(fanotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(500u16)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(errno) => {
                state.listener_stopped(format!(
                    "content writes are no longer attributed: waiting for fanotify events failed: {errno}"
                ));
                return;
            }
        }
        busy.store(true, Ordering::SeqCst);
        let events = match fanotify.read_events() {
            Ok(events) => events,
            Err(Errno::EAGAIN) => {
                busy.store(false, Ordering::SeqCst);
                continue;
            }
            Err(errno) => {
                state.listener_stopped(format!(
                    "content writes are no longer attributed: reading fanotify events failed: {errno}"
                ));
                return;
            }
        };
        for event in events {
            if event.mask().contains(MaskFlags::FAN_Q_OVERFLOW) {
                state.overflowed("writes");
                continue;
            }
            // The agent itself (its own state files) is never the subject of drift.
            if event.pid() == own_pid {
                continue;
            }
            let Some(fd) = event.fd() else { continue };
            let Ok(path) = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
                continue;
            };
            let Some(path) = state.as_policy_path(path, false) else {
                continue;
            };
            let actor = process_actor(event.pid() as u32, &mut users);
            state.remember(path, Operation::Write, actor, false);
        }
        busy.store(false, Ordering::SeqCst);
    }
}
