//! The Prometheus recorder. (Logs: `driftwatch_common::logging`, set up by each binary.)

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
