//! The daemon's live state: kept in memory by its tasks, written every
//! second (when it changed) to `status.json` in the state directory, and
//! read by `driftwatch-agent status`, which also checks that the daemon is
//! still alive (it holds `agent.lock`) and reads the spool's depth directly.
//!
//! A failed or hung state source is a problem; an unavailable one is only shown.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use driftwatch_common::api::v1::{Coverage, SourceCondition};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Exit;
use crate::cli::report::Format;
use crate::daemon::spool::{self, Depth, Spool};

/// File name of the status in the state directory.
pub const FILE_NAME: &str = "status.json";
/// The lock the running daemon holds in the state directory.
pub const LOCK_NAME: &str = "agent.lock";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub agent_version: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    /// Baseline loaded, startup scan done, watching.
    pub ready: bool,
    /// `starting`, `startup scan`, `running`, `reloading`, `stopping`, `stopped`.
    pub phase: String,
    pub config: PathBuf,
    pub host_id: Option<Uuid>,
    pub collector_url: Option<String>,
    pub baseline_entries: u64,
    pub baseline_tampered: bool,
    /// The root of the baseline the detector runs on (reported in heartbeats).
    #[serde(default)]
    pub baseline: Option<driftwatch_common::api::v1::BaselineAnchor>,
    pub spool: Depth,
    pub spool_max_events: u64,
    pub spool_max_bytes: u64,
    /// New events are being held back: the spool is at its bound.
    pub spool_full: bool,
    /// Subjects reported and not (yet) back in their baseline state.
    pub open_drift: u64,
    pub watch_enabled: bool,
    pub watches: u64,
    pub coverage: Coverage,
    pub events_spooled: u64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_event_at: Option<OffsetDateTime>,
    pub delivery: Delivery,
    pub heartbeat: Exchange,
    pub last_scan: Option<ScanRecord>,
    pub last_reload: Option<ReloadRecord>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Delivery {
    pub batches_acked: u64,
    pub events_acked: u64,
    pub duplicates: u64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_ack_at: Option<OffsetDateTime>,
    pub consecutive_failures: u64,
    /// Failed delivery attempts since the daemon started (for metrics).
    #[serde(default)]
    pub failures_total: u64,
    pub last_error: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_retry_at: Option<OffsetDateTime>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Exchange {
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_ok_at: Option<OffsetDateTime>,
    pub consecutive_failures: u64,
    /// Failed heartbeats since the daemon started (for metrics).
    #[serde(default)]
    pub failures_total: u64,
    pub last_error: Option<String>,
    /// Collector clock minus agent clock at the last exchange, in seconds.
    pub clock_skew_secs: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanRecord {
    /// `startup`, `periodic`, `rescan`, `fallback`, `reload`.
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub seconds: f64,
    pub entries: u64,
    pub events: u64,
    pub errors: u64,
    pub full_hash: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReloadRecord {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub ok: bool,
    /// Why the new configuration was refused (the old one stays in force).
    pub errors: Vec<String>,
}

impl Status {
    /// What an operator should look at, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.baseline_tampered {
            problems.push("the baseline failed its integrity check".to_owned());
        }
        if self.spool_full {
            problems.push(format!(
                "spool full ({} events, {} bytes): new events are held back until the collector \
                 acknowledges older ones",
                self.spool.events, self.spool.bytes
            ));
        }
        if !self.coverage.unwatched.is_empty() {
            problems.push(format!(
                "{} subtree(s) without a real-time watch (scanned periodically)",
                self.coverage.unwatched.len()
            ));
        }
        for source in &self.coverage.sources {
            // Unavailable is how the host is (no rpm on Debian), not a fault.
            if matches!(
                source.condition,
                SourceCondition::Failed | SourceCondition::TimedOut
            ) {
                problems.push(format!(
                    "state source {} {}: {}",
                    source.name,
                    source.condition.name(),
                    source.detail.as_deref().unwrap_or("no detail")
                ));
            }
        }
        if self.delivery.consecutive_failures > 0 {
            problems.push(format!(
                "delivery failing ({} attempts): {}",
                self.delivery.consecutive_failures,
                self.delivery
                    .last_error
                    .as_deref()
                    .unwrap_or("unknown error")
            ));
        }
        if self.heartbeat.consecutive_failures > 0 {
            problems.push(format!(
                "heartbeat failing: {}",
                self.heartbeat
                    .last_error
                    .as_deref()
                    .unwrap_or("unknown error")
            ));
        }
        if let Some(reload) = &self.last_reload
            && !reload.ok
        {
            problems.push("the last configuration reload was refused".to_owned());
        }
        problems
    }
}

/// The shared, updatable status of a running daemon.
#[derive(Clone, Default)]
pub struct StatusHandle {
    inner: Arc<Mutex<(Status, u64)>>,
}

impl StatusHandle {
    pub fn new(status: Status) -> Self {
        StatusHandle {
            inner: Arc::new(Mutex::new((status, 1))),
        }
    }

    pub fn update(&self, change: impl FnOnce(&mut Status)) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut guard.0);
        guard.1 += 1;
    }

    pub fn snapshot(&self) -> Status {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    fn versioned(&self) -> (Status, u64) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes the status file now.
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        let (mut status, _) = self.versioned();
        status.updated_at = Some(OffsetDateTime::now_utc());
        write_atomically(
            &state_dir.join(FILE_NAME),
            serde_json::to_vec_pretty(&status)
                .expect("status always serializes")
                .as_slice(),
        )
    }

    /// Writes the status file once a second when it changed, until `cancel`.
    pub async fn run_writer(self, state_dir: PathBuf, cancel: tokio_util::sync::CancellationToken) {
        let mut written = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let version = self.versioned().1;
            if version != written {
                if let Err(err) = self.write(&state_dir) {
                    tracing::warn!(error = %err, "cannot write the status file");
                }
                written = version;
            }
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Whether a daemon holds the lock of `state_dir` right now.
pub fn daemon_running(state_dir: &Path) -> bool {
    let Ok(file) = File::open(state_dir.join(LOCK_NAME)) else {
        return false;
    };
    // A shared lock is refused while the daemon holds its exclusive one.
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

/// What `driftwatch-agent status` prints.
#[derive(Debug, Serialize)]
struct Report {
    running: bool,
    state_dir: PathBuf,
    /// Read from the spool itself (not from the status file).
    spool: Option<Depth>,
    problems: Vec<String>,
    status: Option<Status>,
}

/// `driftwatch-agent status`: exit 0 when the daemon runs without problems,
/// 3 when it runs with problems, 2 when it does not run.
pub fn print(state_dir: &Path, format: Format) -> anyhow::Result<Exit> {
    let running = daemon_running(state_dir);
    let status_path = state_dir.join(FILE_NAME);
    let status: Option<Status> = match std::fs::read(&status_path) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a valid status file", status_path.display()))?,
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read {}", status_path.display()));
        }
    };
    let spool = Spool::open_read_only(&state_dir.join(spool::FILE_NAME))
        .ok()
        .flatten()
        .and_then(|s| s.depth().ok());
    let mut problems = status.as_ref().map(Status::problems).unwrap_or_default();
    if !running {
        problems.insert(0, "the agent daemon is not running".to_owned());
    }
    let report = Report {
        running,
        state_dir: state_dir.to_owned(),
        spool,
        problems,
        status,
    };
    match format {
        Format::Json => {
            let mut out = serde_json::to_string_pretty(&report)?;
            out.push('\n');
            std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())?;
        }
        Format::Text => print_text(&report)?,
    }
    Ok(if !report.running {
        Exit::Error
    } else if report.problems.is_empty() {
        Exit::Clean
    } else {
        Exit::Incomplete
    })
}

fn print_text(report: &Report) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let time = |t: &Option<OffsetDateTime>| {
        t.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "never".into())
    };
    let _ = writeln!(
        out,
        "driftwatch agent: {}",
        if report.running {
            "running"
        } else {
            "not running"
        }
    );
    if let Some(s) = &report.status {
        let _ = writeln!(
            out,
            "  pid {}, version {}, {}",
            s.pid, s.agent_version, s.phase
        );
        let _ = writeln!(out, "  started       {}", time(&s.started_at));
        let _ = writeln!(out, "  updated       {}", time(&s.updated_at));
        let _ = writeln!(
            out,
            "  host id       {}",
            s.host_id
                .map_or_else(|| "not enrolled".to_owned(), |id| id.to_string())
        );
        let _ = writeln!(
            out,
            "  collector     {}",
            s.collector_url.as_deref().unwrap_or("none configured")
        );
        let _ = writeln!(
            out,
            "  baseline      {} entries{}",
            s.baseline_entries,
            if s.baseline_tampered {
                ", TAMPERED"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "  watch         {}, {} directories watched, {} unwatched subtree(s), {} lost notification batch(es)",
            if s.watch_enabled { "on" } else { "off" },
            s.watches,
            s.coverage.unwatched.len(),
            s.coverage.dropped_event_batches
        );
        for subtree in &s.coverage.unwatched {
            let _ = writeln!(out, "                unwatched: {subtree}");
        }
        if s.coverage.last_source_poll_at.is_some() || !s.coverage.sources.is_empty() {
            let _ = writeln!(
                out,
                "  sources       last poll {}",
                time(&s.coverage.last_source_poll_at)
            );
            for source in &s.coverage.sources {
                let _ = match source.condition {
                    SourceCondition::Ok => writeln!(
                        out,
                        "                {}: ok, {} subject(s){}",
                        source.name,
                        source.subjects,
                        // Fields it could not read (coverage, I9).
                        source
                            .detail
                            .as_deref()
                            .map(|d| format!("; {d}"))
                            .unwrap_or_default()
                    ),
                    condition => writeln!(
                        out,
                        "                {}: {}: {}",
                        source.name,
                        condition.name(),
                        source.detail.as_deref().unwrap_or("no detail")
                    ),
                };
            }
        }
        let _ = writeln!(out, "  open drift    {} subject(s)", s.open_drift);
        let _ = writeln!(
            out,
            "  events        {} spooled since start, last {}",
            s.events_spooled,
            time(&s.last_event_at)
        );
        let _ = writeln!(
            out,
            "  delivery      {} events acknowledged, last ack {}",
            s.delivery.events_acked,
            time(&s.delivery.last_ack_at)
        );
        let _ = writeln!(
            out,
            "  heartbeat     last ok {}",
            time(&s.heartbeat.last_ok_at)
        );
        if let Some(scan) = &s.last_scan {
            let _ = writeln!(
                out,
                "  last scan     {} at {}: {} entries, {} events, {} errors, {:.1}s{}",
                scan.kind,
                time(&Some(scan.finished_at)),
                scan.entries,
                scan.events,
                scan.errors,
                scan.seconds,
                if scan.full_hash { ", full re-hash" } else { "" }
            );
        }
        if let Some(reload) = &report.status.as_ref().and_then(|s| s.last_reload.clone()) {
            let _ = writeln!(
                out,
                "  last reload   {} at {}",
                if reload.ok { "applied" } else { "REFUSED" },
                time(&Some(reload.at))
            );
            for error in &reload.errors {
                let _ = writeln!(out, "                {error}");
            }
        }
    } else {
        let _ = writeln!(out, "  no status file in {}", report.state_dir.display());
    }
    if let Some(depth) = &report.spool {
        let _ = writeln!(
            out,
            "  spool         {} event(s), {} bytes waiting; last seq {}, acknowledged up to {}",
            depth.events, depth.bytes, depth.last_seq, depth.acked_seq
        );
    }
    if report.problems.is_empty() {
        let _ = writeln!(out, "no problems");
    } else {
        for problem in &report.problems {
            let _ = writeln!(out, "problem: {problem}");
        }
    }
    std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())
}

#[cfg(test)]
mod tests {
    use driftwatch_common::api::v1::SourceCoverage;

    use super::*;

    fn source(name: &str, condition: SourceCondition, detail: Option<&str>) -> SourceCoverage {
        SourceCoverage {
            name: name.into(),
            condition,
            subjects: 0,
            detail: detail.map(Into::into),
        }
    }

    #[test]
    fn a_failed_or_hung_source_is_a_problem_an_unavailable_one_is_not() {
        let mut status = Status::default();
        status.coverage.sources = vec![
            source("package", SourceCondition::Unavailable, Some("no dpkg")),
            source("user", SourceCondition::Ok, None),
        ];
        assert!(status.problems().is_empty(), "{:?}", status.problems());
        status.coverage.sources.push(source(
            "module",
            SourceCondition::TimedOut,
            Some("module: no answer within 30 s"),
        ));
        assert_eq!(
            status.problems(),
            ["state source module timed out: module: no answer within 30 s"]
        );
    }
}
