//! Logs (tracing to stderr, which journald captures) and the Prometheus recorder.

mod families;
pub mod heartbeat_age;

use std::sync::OnceLock;

use metrics_exporter_prometheus::PrometheusHandle;

pub use families::{
    ALERT_DELIVERY_DELAY_SECONDS, ALERT_DELIVERY_SECONDS, INGEST_SECONDS, MATCH_SECONDS, render,
};

/// The process-wide recorder behind `/metrics`, installed on first use (every family
/// described, `driftwatch_build_info` set: `families`).
///
/// # Panics
///
/// If another metrics recorder was installed first (nothing in this crate does that).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(families::install)
}

/// Logs to stderr: `DRIFTWATCH_LOG` filters (default `info`), `json` = true for JSON lines.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
