//! The Prometheus recorder. (Logs: `driftwatch_common::logging`, set up by each binary.)

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process-wide recorder behind `/metrics`, installed on first use.
///
/// # Panics
///
/// If another metrics recorder was installed first (nothing in this crate does that).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("no other metrics recorder is installed")
    })
}
