//! Heartbeats: every `[heartbeat] interval_secs` the agent tells the
//! collector it is alive, with the host's inventory (sysinfo), its own
//! health (spool depth, coverage, baseline size, tamper flag, CPU and
//! memory) and its clock; the answer carries commands (baseline accepts),
//! whose results travel with the next heartbeat, sent at once. An accept of
//! a state subject (`package:nginx`...) first collects that subject's
//! source here, off the detector's thread, so the detector compares the
//! reviewed state with the state as it is now.
//!
//! A run's first heartbeat waits for its startup scan to be spooled, so the
//! collector bounds what that scan found from the previous run's last heartbeat.
//! Each heartbeat carries the anchor of the baseline the detector runs on, and each
//! command result the anchor after it; `DiskBaseline` re-verifies the baseline on
//! disk whenever its files change, so a baseline replaced under the daemon is
//! reported without a restart.

use std::sync::Arc;
use std::time::Duration;

use driftwatch_common::api::v1::BaselineAnchor;
use driftwatch_common::api::v1::{
    AgentCommand, AgentHealth, CommandResult, Heartbeat, HeartbeatResponse, Inventory,
};
use driftwatch_common::hash::ContentHash;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::baseline::store::{BaselineStore, StorePaths};
use crate::daemon::engine::EngineMsg;
use crate::daemon::ship::Client;
use crate::daemon::status::{Status, StatusHandle};
use crate::observe::sources::poll::{Poll, Poller};

pub struct Heartbeats {
    pub client: Client,
    pub host_id: Uuid,
    pub interval: Duration,
    pub status: StatusHandle,
    pub engine: mpsc::Sender<EngineMsg>,
    /// The enabled state sources, for accepts of state subjects.
    pub sources: Arc<Poller>,
    /// The baseline files, checked under the running detector.
    pub baseline: StorePaths,
}

impl Heartbeats {
    pub async fn run(self, cancel: CancellationToken) {
        // A process's first heartbeat waits until its startup scan is in the spool: a
        // change that scan finds was made while the agent was down, and the collector then
        // bounds its time from the last heartbeat of the previous run, not from this start
        // (otherwise stop, change and restart inside a window would read as authorized).
        while !self.status.snapshot().ready {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let mut probe = Probe::new();
        let mut on_disk = DiskBaseline::new(self.baseline.clone());
        // Results not yet acknowledged by a successful heartbeat.
        let mut results: Vec<CommandResult> = Vec::new();
        loop {
            let (baseline, disk_tampered) = on_disk.judge(self.status.snapshot().baseline).await;
            if disk_tampered {
                self.status.update(|s| s.baseline_tampered = true);
            }
            let mut heartbeat = Heartbeat {
                host_id: self.host_id,
                sent_at: OffsetDateTime::now_utc(),
                inventory: probe.inventory(),
                health: probe.health(&self.status.snapshot()),
                // The last seq committed to the spool when this heartbeat is built: the
                // collector bounds each event's spool time with it (read after commit).
                last_seq: self.status.snapshot().spool.last_seq,
                results: results.clone(),
                baseline,
            };
            driftwatch_common::limits::fit_heartbeat(&mut heartbeat);
            let body = serde_json::to_vec(&heartbeat).expect("heartbeats always serialize");
            let mut again_now = false;
            match self
                .client
                .post::<HeartbeatResponse>("heartbeat", body, true)
                .await
            {
                Ok(response) => {
                    results.clear();
                    let skew = (response.server_time - heartbeat.sent_at).as_seconds_f64();
                    self.status.update(|s| {
                        s.heartbeat.last_ok_at = Some(OffsetDateTime::now_utc());
                        s.heartbeat.consecutive_failures = 0;
                        s.heartbeat.last_error = None;
                        s.heartbeat.clock_skew_secs = Some(skew);
                    });
                    for command in response.commands {
                        let fresh_state = self.collect_for(&command).await;
                        let (reply, answer) = oneshot::channel();
                        if self
                            .engine
                            .send(EngineMsg::Command {
                                command: Box::new(command),
                                fresh_state,
                                reply,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                        if let Ok(result) = answer.await {
                            results.push(result);
                        }
                    }
                    again_now = !results.is_empty();
                }
                Err(err) => {
                    let message = err.to_string();
                    self.status.update(|s| {
                        s.heartbeat.consecutive_failures += 1;
                        s.heartbeat.failures_total += 1;
                        s.heartbeat.last_error = Some(message.clone());
                    });
                    warn!(error = %message, "heartbeat failed");
                }
            }
            if again_now {
                info!(results = results.len(), "reporting command results");
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

impl Heartbeats {
    /// For a command about a state subject, its source's current state.
    async fn collect_for(&self, command: &AgentCommand) -> Option<Box<Poll>> {
        let AgentCommand::BaselineAccept { subject, .. } = command;
        if subject.namespace() == "file" {
            return None;
        }
        let namespace = subject.namespace().to_owned();
        let sources = Arc::clone(&self.sources);
        tokio::task::spawn_blocking(move || sources.poll_namespace(&namespace))
            .await
            .ok()
            .map(Box::new)
    }
}

/// The baseline on disk, under the running detector. The detector keeps the baseline it
/// verified at start (its connection stays on that file even if another is renamed over
/// it), and local commands that change it are refused while the daemon runs, so a baseline
/// that changes on disk without the detector is a replacement, a rollback or an edit made
/// outside driftwatch. Its anchor is what heartbeats then report, so the collector alerts
/// without waiting for a restart. Only a difference that holds for two heartbeats counts
/// (the detector's own accept commits before it publishes the new anchor, and a
/// replacement renames key and database one after the other).
struct DiskBaseline {
    paths: StorePaths,
    /// The files' identity when last read, and what was read.
    last: Option<(Vec<FileIdentity>, Result<BaselineAnchor, String>)>,
    /// A difference seen at the previous heartbeat (the disk root, or the error).
    pending: Option<Result<ContentHash, String>>,
    warned: bool,
}

/// Enough of `stat` to tell that a file was replaced or written.
type FileIdentity = Option<(u64, u64, u64, i64)>;

impl DiskBaseline {
    fn new(paths: StorePaths) -> Self {
        DiskBaseline {
            paths,
            last: None,
            pending: None,
            warned: false,
        }
    }

    fn identity(&self) -> Vec<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        // Commits land in the write-ahead log first: it is part of what changed.
        let mut wal = self.paths.db.as_os_str().to_owned();
        wal.push("-wal");
        [
            &self.paths.db,
            &self.paths.key,
            &std::path::PathBuf::from(wal),
        ]
        .iter()
        .map(|path| {
            std::fs::metadata(path).ok().map(|m| {
                (
                    m.dev(),
                    m.ino(),
                    m.size(),
                    m.mtime_nsec() + m.mtime() * 1_000_000_000,
                )
            })
        })
        .collect()
    }

    /// What to report: the detector's anchor, or the one on disk when it differs; `true`
    /// when the baseline on disk does not verify.
    async fn judge(&mut self, running: Option<BaselineAnchor>) -> (Option<BaselineAnchor>, bool) {
        let Some(running) = running else {
            return (None, false);
        };
        let identity = self.identity();
        let disk = match &self.last {
            Some((seen, disk)) if *seen == identity => disk.clone(),
            _ => {
                let paths = self.paths.clone();
                let disk = tokio::task::spawn_blocking(move || {
                    BaselineStore::open(&paths)
                        .and_then(|store| store.verify_anchor())
                        .map_err(|err| err.to_string())
                })
                .await
                .unwrap_or_else(|err| Err(err.to_string()));
                self.last = Some((identity, disk.clone()));
                disk
            }
        };
        let difference = match &disk {
            Ok(anchor) if anchor.root == running.root => None,
            Ok(anchor) => Some(Ok(anchor.root)),
            Err(why) => Some(Err(why.clone())),
        };
        let held = difference.is_some() && difference == self.pending;
        self.pending = difference;
        if !held {
            return (Some(running), false);
        }
        if !self.warned {
            self.warned = true;
            match &disk {
                Ok(anchor) => error!(
                    running = %running.root,
                    on_disk = %anchor.root,
                    "the baseline on disk is not the one the agent runs on: it was replaced, \
                     rolled back or edited outside driftwatch; reporting it to the collector"
                ),
                Err(why) => error!(error = %why, "the baseline on disk no longer verifies"),
            }
        }
        match disk {
            Ok(anchor) => (Some(anchor), false),
            Err(_) => (Some(running), true),
        }
    }
}

/// Inventory and the agent's own resource use.
pub struct Probe {
    system: Option<System>,
    pid: Option<Pid>,
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl Probe {
    pub fn new() -> Self {
        Probe {
            system: System::new().ok(),
            pid: sysinfo::get_current_pid().ok(),
        }
    }

    pub fn inventory(&mut self) -> Inventory {
        let memory_bytes = self.system.as_mut().map_or(0, |system| {
            system.refresh_memory();
            system.total_memory()
        });
        Inventory {
            hostname: System::host_name().unwrap_or_default(),
            os: System::long_os_version().unwrap_or_default(),
            kernel: System::kernel_version().unwrap_or_default(),
            uptime_secs: System::uptime().unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory_bytes,
        }
    }

    pub fn health(&mut self, status: &Status) -> AgentHealth {
        let (cpu_percent, rss_bytes) = match (self.system.as_mut(), self.pid) {
            (Some(system), Some(pid)) => {
                system.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    true,
                    ProcessRefreshKind::nothing().with_cpu().with_memory(),
                );
                system
                    .process(pid)
                    .map_or((0.0, 0), |p| (p.cpu_usage(), p.memory()))
            }
            _ => (0.0, 0),
        };
        AgentHealth {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            cpu_percent,
            rss_bytes,
            spool_depth: status.spool.events,
            spool_full: status.spool_full,
            baseline_entries: status.baseline_entries,
            baseline_tampered: status.baseline_tampered,
            coverage: status.coverage.clone(),
        }
    }
}
