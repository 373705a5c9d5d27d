//! Heartbeats: every `[heartbeat] interval_secs` the agent tells the
//! collector it is alive, with the host's inventory (sysinfo), its own
//! health (spool depth, coverage, baseline size, tamper flag, CPU and
//! memory) and its clock; the answer carries commands (baseline accepts),
//! whose results travel with the next heartbeat, sent at once. An accept of
//! a state subject (`package:nginx`...) first collects that subject's
//! source here, off the detector's thread, so the detector compares the
//! reviewed state with the state as it is now.

use std::sync::Arc;
use std::time::Duration;

use driftwatch_common::api::v1::{
    AgentCommand, AgentHealth, CommandResult, Heartbeat, HeartbeatResponse, Inventory,
};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::engine::EngineMsg;
use crate::ship::Client;
use crate::sources::poll::{Poll, Poller};
use crate::status::{Status, StatusHandle};

pub struct Heartbeats {
    pub client: Client,
    pub host_id: Uuid,
    pub interval: Duration,
    pub status: StatusHandle,
    pub engine: mpsc::Sender<EngineMsg>,
    /// The enabled state sources, for accepts of state subjects.
    pub sources: Arc<Poller>,
}

impl Heartbeats {
    pub async fn run(self, cancel: CancellationToken) {
        let mut probe = Probe::new();
        // Results not yet acknowledged by a successful heartbeat.
        let mut results: Vec<CommandResult> = Vec::new();
        loop {
            let mut heartbeat = Heartbeat {
                host_id: self.host_id,
                sent_at: OffsetDateTime::now_utc(),
                inventory: probe.inventory(),
                health: probe.health(&self.status.snapshot()),
                last_seq: self.status.snapshot().spool.last_seq,
                results: results.clone(),
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
