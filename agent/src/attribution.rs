//! Who made a change, where the kernel lets us see it.
//!
//! With CAP_SYS_ADMIN the agent listens with fanotify on every file system
//! that holds a policy path (a *filesystem* mark: under systemd's
//! ProtectSystem the agent has its own mount namespace, where mount marks see
//! nothing). Each write event carries the writer's pid; the listener resolves
//! it through /proc right away (process name, executable, uid, audit login uid
//! = the person behind sudo, session) and remembers the last writer of each
//! path for a while. When a drift is detected, [`Attribution::actor_for`]
//! answers from that memory, and says why when it cannot: no privilege, the
//! writer exited before /proc could be read (chmod, mv and rm usually do), or
//! no write was seen (fanotify's fd mode reports writes, not renames,
//! removals or metadata changes).
//!
//! Attribution is best effort and never blocks detection.

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use driftwatch_common::api::v1::Actor;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};

/// How long a write is remembered for the drift it causes.
const REMEMBER: Duration = Duration::from_secs(120);
/// Bound on remembered paths (oldest dropped first).
const MAX_REMEMBERED: usize = 50_000;
/// Audit's "no login uid" value.
const UNSET_LOGIN_UID: u32 = u32::MAX;

/// The attribution listener; stops when dropped.
pub struct Attribution {
    state: Arc<Shared>,
    listener: Option<JoinHandle<()>>,
    /// Why attribution is off, when it is.
    unavailable: Option<String>,
}

#[derive(Default)]
struct Shared {
    recent: Mutex<HashMap<PathBuf, (Actor, Instant)>>,
    stop: AtomicBool,
}

impl Attribution {
    /// Starts listening on the file systems holding `paths`. Never fails:
    /// without the privilege (or kernel support) it records why and every
    /// actor says so.
    pub fn start(paths: &[PathBuf]) -> Attribution {
        match listen(paths) {
            Ok((fanotify, marked)) => {
                let state = Arc::new(Shared::default());
                let shared = Arc::clone(&state);
                let listener = std::thread::Builder::new()
                    .name("attribution".into())
                    .spawn(move || read_loop(&fanotify, &shared))
                    .expect("spawning the attribution thread");
                tracing::info!(filesystems = marked, "attribution: fanotify listening");
                Attribution {
                    state,
                    listener: Some(listener),
                    unavailable: None,
                }
            }
            Err(reason) => {
                tracing::warn!(%reason, "attribution unavailable: actors will be unknown");
                Attribution::unavailable(reason)
            }
        }
    }

    /// Attribution switched off, with the reason every actor will carry.
    pub fn unavailable(reason: String) -> Attribution {
        Attribution {
            state: Arc::new(Shared::default()),
            listener: None,
            unavailable: Some(reason),
        }
    }

    /// Why attribution is off, if it is (reported in heartbeats as coverage).
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// The last writer of `path` seen in the last two minutes.
    pub fn actor_for(&self, path: &Path) -> Actor {
        if let Some(reason) = &self.unavailable {
            return Actor {
                source: "none".into(),
                reason: Some(reason.clone()),
                ..Actor::default()
            };
        }
        let recent = self.state.recent.lock().expect("attribution lock poisoned");
        match recent.get(path) {
            Some((actor, at)) if at.elapsed() <= REMEMBER => actor.clone(),
            _ => Actor {
                source: "fanotify".into(),
                reason: Some(
                    "no write by a process was seen: renames, removals and metadata \
                     changes are not attributed yet"
                        .into(),
                ),
                ..Actor::default()
            },
        }
    }
}

impl Drop for Attribution {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
    }
}

/// A fanotify group with a filesystem mark on each distinct file system of `paths`.
fn listen(paths: &[PathBuf]) -> Result<(Fanotify, usize), String> {
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
    for path in paths {
        // A policy path that does not exist yet: mark its nearest existing ancestor's file system.
        let Some((existing, device)) = path.ancestors().find_map(|p| {
            fs::metadata(p)
                .ok()
                .map(|m| (p, std::os::unix::fs::MetadataExt::dev(&m)))
        }) else {
            continue;
        };
        if devices.contains(&device) {
            continue;
        }
        fanotify
            .mark(
                MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
                MaskFlags::FAN_MODIFY | MaskFlags::FAN_CLOSE_WRITE,
                nix::fcntl::AT_FDCWD,
                Some(existing),
            )
            .map_err(|errno| {
                format!(
                    "cannot watch the file system of {}: {errno}",
                    existing.display()
                )
            })?;
        devices.push(device);
    }
    Ok((fanotify, devices.len()))
}

fn read_loop(fanotify: &Fanotify, state: &Shared) {
    let own_pid = std::process::id() as i32;
    let mut users = UserNames::load();
    while !state.stop.load(Ordering::Relaxed) {
        // Wake up twice a second to notice `stop`.
        let mut fds = [PollFd::new(fanotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(500u16)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(errno) => {
                tracing::error!(%errno, "attribution: poll failed; stopping");
                return;
            }
        }
        let events = match fanotify.read_events() {
            Ok(events) => events,
            Err(Errno::EAGAIN) => continue,
            Err(errno) => {
                tracing::error!(%errno, "attribution: reading events failed; stopping");
                return;
            }
        };
        for event in events {
            if event.mask().contains(MaskFlags::FAN_Q_OVERFLOW) {
                tracing::warn!("attribution: fanotify queue overflow; some writers are unknown");
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
            let actor = process_actor(event.pid() as u32, &mut users);
            remember(state, path, actor);
        }
    }
}

fn remember(state: &Shared, path: PathBuf, actor: Actor) {
    let mut recent = state.recent.lock().expect("attribution lock poisoned");
    if recent.len() >= MAX_REMEMBERED {
        recent.retain(|_, (_, at)| at.elapsed() <= REMEMBER);
        if recent.len() >= MAX_REMEMBERED
            && let Some(oldest) = recent
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(p, _)| p.clone())
        {
            recent.remove(&oldest);
        }
    }
    recent.insert(path, (actor, Instant::now()));
}

/// What /proc says about `pid`, read as soon as the event arrives.
pub fn process_actor(pid: u32, users: &mut UserNames) -> Actor {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let read = |name: &str| fs::read_to_string(proc.join(name)).ok();
    let Some(status) = read("status") else {
        return Actor {
            source: "fanotify".into(),
            pid: Some(pid),
            exited: true,
            reason: Some("the process had exited before it could be identified".into()),
            ..Actor::default()
        };
    };
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok());
    let login_uid = read("loginuid")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&uid| uid != UNSET_LOGIN_UID);
    let session = read("sessionid")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&id| id != UNSET_LOGIN_UID);
    Actor {
        source: "fanotify".into(),
        pid: Some(pid),
        comm: read("comm").map(|c| c.trim().to_owned()),
        exe: fs::read_link(proc.join("exe"))
            .ok()
            .map(|p| p.display().to_string()),
        uid,
        user: uid.and_then(|uid| users.name(uid)),
        login_uid,
        login_user: login_uid.and_then(|uid| users.name(uid)),
        session,
        exited: false,
        reason: None,
    }
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
mod tests {
    use super::*;
    use std::process::Command;

    fn is_root() -> bool {
        fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
    }

    #[test]
    fn this_process_is_identified() {
        let actor = process_actor(std::process::id(), &mut UserNames::load());
        assert_eq!(actor.source, "fanotify");
        assert!(!actor.exited);
        assert!(
            actor.comm.is_some() && actor.exe.is_some() && actor.uid.is_some(),
            "{actor:?}"
        );
    }

    #[test]
    fn a_vanished_process_is_marked_exited() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let actor = process_actor(pid, &mut UserNames::load());
        assert!(actor.exited && actor.reason.is_some(), "{actor:?}");
        assert_eq!(actor.pid, Some(pid));
    }

    #[test]
    fn without_privilege_every_actor_says_why() {
        let attribution = Attribution::unavailable("fanotify needs CAP_SYS_ADMIN".into());
        let actor = attribution.actor_for(Path::new("/etc/hosts"));
        assert_eq!(actor.source, "none");
        assert_eq!(
            actor.reason.as_deref(),
            Some("fanotify needs CAP_SYS_ADMIN")
        );
    }

    #[test]
    fn a_write_by_a_known_process_is_attributed() {
        if !is_root() {
            eprintln!("skipped: fanotify filesystem marks need CAP_SYS_ADMIN");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("watched.conf");
        fs::write(&file, "before\n").unwrap();
        let attribution = Attribution::start(&[dir.path().to_owned()]);
        if let Some(reason) = attribution.unavailable_reason() {
            eprintln!("skipped: {reason}");
            return;
        }
        // A writer that lives long enough to be read from /proc.
        let mut writer = Command::new("sh")
            .arg("-c")
            .arg("echo after >> \"$1\"; sleep 2")
            .arg("sh")
            .arg(&file)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let actor = loop {
            let actor = attribution.actor_for(&file);
            if actor.pid.is_some() || Instant::now() > deadline {
                break actor;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        writer.kill().ok();
        writer.wait().ok();
        assert_eq!(actor.pid, Some(writer.id()), "{actor:?}");
        assert_eq!(actor.comm.as_deref(), Some("sh"), "{actor:?}");
        assert_eq!(actor.uid, Some(0));
        assert_eq!(actor.user.as_deref(), Some("root"));
        assert!(actor.exe.is_some_and(|exe| exe.ends_with("sh")
            || exe.contains("dash")
            || exe.contains("bash")));
    }
}
