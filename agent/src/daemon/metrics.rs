//! The agent's own Prometheus metrics, opt-in (`[metrics]` in agent.toml): served on
//! `listen` and/or written to a node_exporter `textfile`, atomically.
//!
//! Nothing is counted on the detector's path: every value is read from the daemon's
//! [`Status`] (which its tasks keep anyway) at the moment of a scrape or a textfile
//! write, and set in a recorder of this module's own (not the process-wide one). The
//! process figures (CPU, memory, fds, start time) come from `metrics-process`; in the
//! textfile they are prefixed `driftwatch_agent_`, since node_exporter exposes its own
//! `process_*` families and would refuse a second set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use metrics::{Unit, describe_counter, describe_gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::daemon::status::{Status, StatusHandle};

/// One destination's recorder: the values of the last render stay in it.
pub struct Exposition {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl Exposition {
    /// For `/metrics`: the process families under their usual `process_*` names.
    pub fn for_scrape() -> Self {
        Self::new("")
    }

    /// For node_exporter's textfile collector: `driftwatch_agent_process_*`.
    pub fn for_textfile() -> Self {
        Self::new("driftwatch_agent_")
    }

    fn new(process_prefix: &str) -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let process = metrics_process::Collector::new(process_prefix);
        metrics::with_local_recorder(&recorder, || {
            describe();
            process.describe();
            let labels: Vec<metrics::Label> = driftwatch_common::build_info::labels()
                .iter()
                .map(|(k, v)| metrics::Label::new(*k, *v))
                .collect();
            metrics::gauge!("driftwatch_agent_build_info", labels).set(1.0);
        });
        Exposition {
            recorder,
            handle,
            process,
        }
    }

    /// The exposition text of `status` and the process as they are now.
    pub fn render(&self, status: &Status) -> String {
        metrics::with_local_recorder(&self.recorder, || {
            self.process.collect();
            record(status);
        });
        self.handle.render()
    }
}

fn describe() {
    describe_gauge!(
        "driftwatch_agent_build_info",
        "Always 1; the labels say which build of the agent runs (version, git commit, rustc)"
    );
    describe_gauge!(
        "driftwatch_agent_ready",
        "1 once the baseline is loaded, the startup scan done and the watch running"
    );
    describe_gauge!(
        "driftwatch_agent_baseline_entries",
        "Subjects in the baseline the detector compares with"
    );
    describe_gauge!(
        "driftwatch_agent_baseline_tampered",
        "1 when the baseline failed its integrity check"
    );
    describe_gauge!(
        "driftwatch_agent_spool_events",
        "Drift events in the spool not yet acknowledged by the collector"
    );
    describe_gauge!(
        "driftwatch_agent_spool_bytes",
        Unit::Bytes,
        "Bytes of the events in the spool not yet acknowledged"
    );
    describe_gauge!(
        "driftwatch_agent_spool_max_events",
        "The spool's bound in events ([spool] max_events)"
    );
    describe_gauge!(
        "driftwatch_agent_spool_max_bytes",
        Unit::Bytes,
        "The spool's bound in bytes ([spool] max_bytes)"
    );
    describe_gauge!(
        "driftwatch_agent_spool_full",
        "1 while new events are held back because the spool is at its bound"
    );
    describe_counter!(
        "driftwatch_agent_events_spooled_total",
        "Drift events written to the spool since the daemon started"
    );
    describe_counter!(
        "driftwatch_agent_events_delivered_total",
        "Drift events the collector acknowledged since the daemon started (duplicates included)"
    );
    describe_counter!(
        "driftwatch_agent_batches_delivered_total",
        "Batches the collector acknowledged since the daemon started"
    );
    describe_counter!(
        "driftwatch_agent_delivery_failures_total",
        "Failed attempts to deliver a batch since the daemon started (each is retried)"
    );
    describe_gauge!(
        "driftwatch_agent_delivery_consecutive_failures",
        "Delivery attempts failed in a row; 0 once one succeeds"
    );
    describe_gauge!(
        "driftwatch_agent_last_delivery_timestamp_seconds",
        Unit::Seconds,
        "When the collector last acknowledged a batch, Unix time"
    );
    describe_counter!(
        "driftwatch_agent_heartbeat_failures_total",
        "Failed heartbeats since the daemon started"
    );
    describe_gauge!(
        "driftwatch_agent_last_heartbeat_timestamp_seconds",
        Unit::Seconds,
        "When the collector last answered a heartbeat, Unix time"
    );
    describe_gauge!(
        "driftwatch_agent_clock_skew_seconds",
        Unit::Seconds,
        "Collector clock minus agent clock at the last heartbeat"
    );
    describe_gauge!(
        "driftwatch_agent_watches",
        "Directories under a real-time (inotify) watch"
    );
    describe_gauge!(
        "driftwatch_agent_unwatched_subtrees",
        "Subtrees without a real-time watch, scanned periodically instead"
    );
    describe_counter!(
        "driftwatch_agent_dropped_event_batches_total",
        "Kernel event queue overflows since the daemon started (each is followed by a rescan)"
    );
    describe_gauge!(
        "driftwatch_agent_open_drift",
        "Subjects reported as drift and not back in their baseline state"
    );
    describe_gauge!(
        "driftwatch_agent_last_scan_timestamp_seconds",
        Unit::Seconds,
        "When the last scan finished, Unix time"
    );
    describe_gauge!(
        "driftwatch_agent_last_scan_duration_seconds",
        Unit::Seconds,
        "How long the last scan took"
    );
    describe_gauge!(
        "driftwatch_agent_last_scan_errors",
        "Subjects the last scan could not read"
    );
    describe_gauge!(
        "driftwatch_agent_last_reload_ok",
        "1 if the last configuration reload was accepted, 0 if it was refused (absent before any)"
    );
}

fn unix_seconds(at: OffsetDateTime) -> f64 {
    at.unix_timestamp_nanos() as f64 / 1e9
}

/// Sets every family from `status` (in the recorder `with_local_recorder` chose).
fn record(status: &Status) {
    use metrics::{counter, gauge};
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    gauge!("driftwatch_agent_ready").set(flag(status.ready));
    gauge!("driftwatch_agent_baseline_entries").set(status.baseline_entries as f64);
    gauge!("driftwatch_agent_baseline_tampered").set(flag(status.baseline_tampered));
    gauge!("driftwatch_agent_spool_events").set(status.spool.events as f64);
    gauge!("driftwatch_agent_spool_bytes").set(status.spool.bytes as f64);
    gauge!("driftwatch_agent_spool_max_events").set(status.spool_max_events as f64);
    gauge!("driftwatch_agent_spool_max_bytes").set(status.spool_max_bytes as f64);
    gauge!("driftwatch_agent_spool_full").set(flag(status.spool_full));
    counter!("driftwatch_agent_events_spooled_total").absolute(status.events_spooled);
    counter!("driftwatch_agent_events_delivered_total").absolute(status.delivery.events_acked);
    counter!("driftwatch_agent_batches_delivered_total").absolute(status.delivery.batches_acked);
    counter!("driftwatch_agent_delivery_failures_total").absolute(status.delivery.failures_total);
    gauge!("driftwatch_agent_delivery_consecutive_failures")
        .set(status.delivery.consecutive_failures as f64);
    if let Some(at) = status.delivery.last_ack_at {
        gauge!("driftwatch_agent_last_delivery_timestamp_seconds").set(unix_seconds(at));
    }
    counter!("driftwatch_agent_heartbeat_failures_total").absolute(status.heartbeat.failures_total);
    if let Some(at) = status.heartbeat.last_ok_at {
        gauge!("driftwatch_agent_last_heartbeat_timestamp_seconds").set(unix_seconds(at));
    }
    if let Some(skew) = status.heartbeat.clock_skew_secs {
        gauge!("driftwatch_agent_clock_skew_seconds").set(skew);
    }
    gauge!("driftwatch_agent_watches").set(status.watches as f64);
    gauge!("driftwatch_agent_unwatched_subtrees").set(status.coverage.unwatched.len() as f64);
    counter!("driftwatch_agent_dropped_event_batches_total")
        .absolute(status.coverage.dropped_event_batches);
    gauge!("driftwatch_agent_open_drift").set(status.open_drift as f64);
    if let Some(scan) = &status.last_scan {
        gauge!("driftwatch_agent_last_scan_timestamp_seconds").set(unix_seconds(scan.finished_at));
        gauge!("driftwatch_agent_last_scan_duration_seconds").set(scan.seconds);
        gauge!("driftwatch_agent_last_scan_errors").set(scan.errors as f64);
    }
    if let Some(reload) = &status.last_reload {
        gauge!("driftwatch_agent_last_reload_ok").set(flag(reload.ok));
    }
}

/// Binds `addr` now (so a taken address fails the start with a clear error) and serves
/// `GET /metrics` until `cancel`.
pub async fn serve(
    addr: SocketAddr,
    status: StatusHandle,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr} ([metrics] listen)"))?;
    let exposition = Arc::new(Mutex::new(Exposition::for_scrape()));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = {
                let exposition = exposition.lock().unwrap_or_else(|e| e.into_inner());
                exposition.render(&status.snapshot())
            };
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    text,
                )
            }
        }),
    );
    tracing::info!(%addr, "serving metrics");
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
        {
            tracing::warn!(error = %err, "the metrics listener stopped");
        }
    }))
}

/// Writes the metrics to `path` every `interval` until `cancel` (the daemon writes the
/// last one itself when it stops: [`write_final`]).
pub async fn write_textfile(
    path: PathBuf,
    interval: Duration,
    status: StatusHandle,
    cancel: CancellationToken,
) {
    let exposition = Exposition::for_textfile();
    let mut tick = tokio::time::interval(interval);
    let mut failing: Option<String> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let text = exposition.render(&status.snapshot());
        match write_atomically(&path, text.as_bytes()) {
            Ok(()) => {
                if failing.take().is_some() {
                    tracing::info!(path = %path.display(), "metrics textfile written again");
                }
            }
            Err(err) => {
                let message = format!("{err:#}");
                // Once per change of condition, not every interval.
                if failing.as_deref() != Some(message.as_str()) {
                    tracing::warn!(path = %path.display(), error = %message, "cannot write the metrics textfile (does its directory exist, and is it in the unit's ReadWritePaths?)");
                    failing = Some(message);
                }
            }
        }
    }
}

/// The textfile as the daemon stops (`driftwatch_agent_ready 0`), so node_exporter does
/// not go on showing a running agent.
pub fn write_final(path: &Path, status: &Status) {
    let text = Exposition::for_textfile().render(status);
    if let Err(err) = write_atomically(path, text.as_bytes()) {
        tracing::warn!(path = %path.display(), error = %format!("{err:#}"), "cannot write the metrics textfile");
    }
}

/// `<path>.tmp` beside it, mode 0644 (node_exporter runs as another user), renamed into
/// place: a reader sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::ScanRecord;

    #[test]
    fn a_status_renders_every_family_with_help() {
        let mut status = Status {
            ready: true,
            events_spooled: 7,
            watches: 12,
            ..Status::default()
        };
        status.spool.events = 3;
        status.delivery.events_acked = 4;
        status.delivery.failures_total = 2;
        status.last_scan = Some(ScanRecord {
            kind: "startup".into(),
            finished_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            seconds: 1.5,
            entries: 10,
            events: 0,
            errors: 1,
            full_hash: false,
        });
        let text = Exposition::for_scrape().render(&status);
        for line in [
            "driftwatch_agent_ready 1",
            "driftwatch_agent_spool_events 3",
            "driftwatch_agent_events_spooled_total 7",
            "driftwatch_agent_events_delivered_total 4",
            "driftwatch_agent_delivery_failures_total 2",
            "driftwatch_agent_watches 12",
            "driftwatch_agent_last_scan_timestamp_seconds 1700000000",
            "driftwatch_agent_last_scan_duration_seconds 1.5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        assert!(text.contains("# TYPE driftwatch_agent_events_spooled_total counter"));
        assert!(text.contains("driftwatch_agent_build_info{version=\""));
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge"));
        // Every family has its help line.
        for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = family.split(' ').next().unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
        }
        // Before any reload there is no reload figure; values follow the status.
        assert!(!text.contains("driftwatch_agent_last_reload_ok"));
        status.watches = 5;
        let again = Exposition::for_scrape().render(&status);
        assert!(again.lines().any(|l| l == "driftwatch_agent_watches 5"));
    }

    #[test]
    fn the_textfile_is_replaced_whole_and_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("driftwatch.prom");
        let text = Exposition::for_textfile().render(&Status::default());
        assert!(text.contains("# TYPE driftwatch_agent_process_resident_memory_bytes gauge"));
        assert!(
            !text.contains("\nprocess_"),
            "node_exporter has its own process_*"
        );
        write_atomically(&path, text.as_bytes()).unwrap();
        write_atomically(&path, b"second\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["driftwatch.prom"], "no temporary file is left");
        let missing = dir.path().join("absent").join("driftwatch.prom");
        let err = write_atomically(&missing, b"x").unwrap_err();
        assert!(format!("{err:#}").contains("cannot create"), "{err:#}");
    }
}
