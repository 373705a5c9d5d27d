//! Local changes of the agent's own baseline (`baseline init [--force]`, `baseline accept`)
//! made on the host, not by a collector command.
//!
//! - While the daemon runs (it holds `agent.lock`) they are refused: the daemon keeps the
//!   baseline it verified at start open, so a baseline replaced under it would be used by
//!   nobody until a restart, and the drift it reported would then turn into `restored`
//!   events. Stopping the agent first makes the change an explicit, visible step. The
//!   command holds the lock itself while it works, so the daemon cannot start half-way.
//! - On an enrolled host the change is spooled as a drift event on the reserved subject
//!   [`BASELINE_SUBJECT`] (old and new roots, who ran it, the history detail): the
//!   collector judges it like any drift (an alert unless an approved window covers that
//!   subject) and moves the root it expects (issue 8). The spool is opened before anything
//!   is written: if the change cannot be reported, nothing is changed.
//! - Standalone hosts (not enrolled) keep the history row only.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use driftwatch_common::api::v1::{Actor, BASELINE_SUBJECT, BaselineAnchor, SeenBy};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::baseline::store::StorePaths;
use crate::cli::commands::Target;
use crate::daemon::enroll::Credential;
use crate::daemon::events::RebaselinePending;
use crate::daemon::spool::{self, Limits, Spool};
use crate::daemon::status;

/// Held for the duration of a local baseline change of the agent's own baseline.
pub struct Guard {
    /// `agent.lock`, held so the daemon cannot start while the baseline changes.
    _lock: Option<File>,
    /// Set on an enrolled host: where the change is reported.
    report: Option<(Spool, Limits)>,
}

impl Guard {
    /// For a command that changes `target`'s baseline: refuses while the daemon runs, and on
    /// an enrolled host opens the spool the change will be reported to. `None` when the
    /// baseline is not the agent's own (an ad-hoc `--db` elsewhere).
    pub fn acquire(target: &Target, doing: &str) -> anyhow::Result<Option<Guard>> {
        let state_dir = &target.config.state_dir;
        if !is_agent_baseline(&target.store, state_dir) {
            return Ok(None);
        }
        let lock = lock(state_dir, doing)?;
        let credential_path = target.config.daemon.credential_file(state_dir);
        let report = match Credential::read(&credential_path)? {
            None => None,
            Some(_) => {
                let limits = Limits {
                    max_events: target.config.daemon.spool.max_events,
                    max_bytes: target.config.daemon.spool.max_bytes,
                };
                let spool = Spool::open(&state_dir.join(spool::FILE_NAME))
                    .map_err(anyhow::Error::from)
                    .and_then(|spool| {
                        let depth = spool.depth()?;
                        if depth.events + 1 > limits.max_events
                            || depth.bytes + 4096 > limits.max_bytes
                        {
                            bail!("the spool is full");
                        }
                        Ok(spool)
                    })
                    .with_context(|| {
                        format!(
                            "this host is enrolled ({}): {doing} must be reported to the collector, \
                             but it cannot be spooled; nothing was changed",
                            credential_path.display()
                        )
                    })?;
                Some((spool, limits))
            }
        };
        Ok(Some(Guard {
            _lock: lock,
            report,
        }))
    }

    /// Whether the change will be reported (the host is enrolled).
    pub fn reports(&self) -> bool {
        self.report.is_some()
    }

    /// Spools the change (enrolled hosts only; a no-op otherwise).
    pub fn report(
        &mut self,
        before: Result<Option<BaselineAnchor>, String>,
        after: BaselineAnchor,
        action: &str,
        detail: &str,
    ) -> anyhow::Result<()> {
        let Some((spool, limits)) = &mut self.report else {
            return Ok(());
        };
        let (before, before_note) = match before {
            Ok(anchor) => (anchor, None),
            Err(note) => (None, Some(note)),
        };
        let event = RebaselinePending {
            id: Uuid::now_v7(),
            before,
            before_note,
            after,
            action: action.to_owned(),
            detail: detail.to_owned(),
            actor: command_actor(),
        };
        let committed = spool
            .commit(&[event], SeenBy::Scan, OffsetDateTime::now_utc(), *limits)
            .map_err(anyhow::Error::from)
            .and_then(|c| {
                if c.refused > 0 {
                    bail!("the spool is full")
                }
                Ok(c)
            })
            .with_context(|| {
                format!(
                    "the baseline WAS changed ({action}) but the change could not be spooled for \
                     the collector, which will alert on the root it does not expect"
                )
            })?;
        if let Some(event) = committed.events.first() {
            eprintln!(
                "reported to the collector as event {} (seq {}) on {BASELINE_SUBJECT}: it alerts unless an approved change window covers {BASELINE_SUBJECT} on this host",
                event.id, event.seq
            );
        }
        Ok(())
    }
}

/// The baseline of `paths` is the agent's own: the one in its state directory.
fn is_agent_baseline(paths: &StorePaths, state_dir: &Path) -> bool {
    let own = StorePaths::in_state_dir(state_dir).db;
    let canonical = |db: &Path| -> Option<PathBuf> {
        let dir = db.parent().filter(|d| !d.as_os_str().is_empty())?;
        Some(std::fs::canonicalize(dir).ok()?.join(db.file_name()?))
    };
    match (canonical(&paths.db), canonical(&own)) {
        (Some(a), Some(b)) => a == b,
        // The state directory does not exist yet: only the default layout can be it.
        _ => paths.db == own,
    }
}

/// Takes `agent.lock`; refuses while the daemon holds it.
fn lock(state_dir: &Path, doing: &str) -> anyhow::Result<Option<File>> {
    let path = state_dir.join(status::LOCK_NAME);
    let file = match File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(file) => file,
        // No state directory yet (a first init), or not ours to write: no daemon can hold
        // it unless it is running, which the shared check still tells.
        Err(_) if !status::daemon_running(state_dir) => return Ok(None),
        Err(_) => refuse(state_dir, doing)?,
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => refuse(state_dir, doing),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

fn refuse<T>(state_dir: &Path, doing: &str) -> anyhow::Result<T> {
    bail!(
        "the agent daemon is running with the state directory {} (it holds {}): {doing} is \
         refused while it runs. Stop the agent first (systemctl stop driftwatch-agent), or \
         have the change accepted through the collector (close-out of a change window)",
        state_dir.display(),
        status::LOCK_NAME
    )
}

/// Who ran the command, as /proc tells it (not the environment): the process's user and
/// uid, and the audit login user behind sudo where the kernel keeps it.
fn command_actor() -> Actor {
    let mut users = crate::observe::attribution::UserNames::load();
    Actor {
        source: "command".into(),
        reason: Some("a local baseline command (the agent's own process)".into()),
        ..crate::observe::attribution::process_actor(std::process::id(), &mut users)
    }
}
