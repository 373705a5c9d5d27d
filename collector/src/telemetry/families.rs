//! Every metric family the collector exposes, described here with its help text and,
//! for histograms, its buckets: `promtool check metrics` wants both. Histograms are
//! observed once per batch or per delivery attempt, never per event, so ingest pays
//! nothing per event for them. The per-host heartbeat age is not kept in the recorder (a
//! series per host would live forever once set): it is rendered at each scrape from the
//! hosts table, bounded (`heartbeat_age`).

use std::sync::{Mutex, OnceLock};

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Time to ingest one batch: from the checked request to its commit (and the alerts it
/// raised), seconds.
pub const INGEST_SECONDS: &str = "driftwatch_ingest_seconds";
/// Time to match one batch's events against the approved windows, seconds.
pub const MATCH_SECONDS: &str = "driftwatch_match_seconds";
/// Time of one delivery attempt to a sink (any outcome), seconds, by `sink`.
pub const ALERT_DELIVERY_SECONDS: &str = "driftwatch_alert_delivery_seconds";
/// From an alert's creation to its delivery by a sink (hold, grouping and retries
/// included), seconds, by `sink`.
pub const ALERT_DELIVERY_DELAY_SECONDS: &str = "driftwatch_alert_delivery_delay_seconds";

/// Alerts wait `hold_secs` to group a burst, then retries back off up to `retry_max_secs`.
const DELIVERY_DELAY_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0,
];
/// A batch is at most `batch_max_events` (default 500) events in one transaction.
const INGEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Matching is an index lookup per event: a whole batch takes micro- to milliseconds.
const MATCH_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];
/// A webhook round trip or a syslog write; sinks time out after tens of seconds.
const DELIVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the process-wide recorder, describes every family and sets
/// `driftwatch_build_info` (called once, by `super::prometheus`).
///
/// # Panics
///
/// If another metrics recorder was installed first (nothing in this crate does that).
pub(super) fn install() -> PrometheusHandle {
    let handle = builder()
        .install_recorder()
        .expect("no other metrics recorder is installed");
    describe();
    let labels: Vec<metrics::Label> = driftwatch_common::build_info::labels()
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, *v))
        .collect();
    metrics::gauge!("driftwatch_build_info", labels).set(1.0);
    start_counters_at_zero();
    // The gauge of open streams moves by increments: it starts at 0 (and is rendered).
    metrics::gauge!(crate::app::OPEN_STREAMS).set(0.0);
    handle
}

/// Counters exist from the start, at 0: `increase()` then sees the first event (from a
/// series that did not exist it sees nothing), and rules can tell "none" from "absent".
fn start_counters_at_zero() {
    use crate::anchor::Problem;
    for name in [
        "driftwatch_chain_alerts_total",
        "driftwatch_clock_claims_false_total",
        "driftwatch_auth_failures_total",
        "driftwatch_auth_throttled_total",
        "driftwatch_connections_evicted_total",
        "driftwatch_alerts_delivered_total",
        "driftwatch_alert_delivery_failures_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for result in ["accepted", "duplicate", "forged"] {
        metrics::counter!("driftwatch_events_ingested_total", "result" => result).increment(0);
    }
    for reason in ["missing", "mismatch"] {
        metrics::counter!("driftwatch_client_cert_refusals_total", "reason" => reason).increment(0);
    }
    for problem in [Problem::RolledBack, Problem::Edited, Problem::Replaced] {
        metrics::counter!("driftwatch_baseline_anchor_alerts_total", "problem" => problem.name())
            .increment(0);
    }
}

/// The exposition of everything in the recorder, with the process figures read now.
pub fn render() -> String {
    let handle = super::prometheus();
    static PROCESS: OnceLock<Mutex<metrics_process::Collector>> = OnceLock::new();
    let process = PROCESS.get_or_init(|| {
        let collector = metrics_process::Collector::default();
        collector.describe();
        Mutex::new(collector)
    });
    process.lock().unwrap_or_else(|e| e.into_inner()).collect();
    handle.render()
}

fn builder() -> PrometheusBuilder {
    let buckets = [
        (INGEST_SECONDS, INGEST_BUCKETS),
        (MATCH_SECONDS, MATCH_BUCKETS),
        (ALERT_DELIVERY_SECONDS, DELIVERY_BUCKETS),
        (ALERT_DELIVERY_DELAY_SECONDS, DELIVERY_DELAY_BUCKETS),
    ];
    buckets
        .into_iter()
        .fold(PrometheusBuilder::new(), |builder, (name, values)| {
            builder
                .set_buckets_for_metric(Matcher::Full(name.into()), values)
                .expect("bucket lists are not empty")
        })
}

/// Help text for every family (a family with no sample yet is not rendered at all).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "driftwatch_build_info",
        "Always 1; the labels say which build of the collector runs (version, git commit, rustc)"
    );
    describe_histogram!(
        INGEST_SECONDS,
        Unit::Seconds,
        "Time to ingest one batch of drift events, from the checked request to its commit"
    );
    describe_histogram!(
        MATCH_SECONDS,
        Unit::Seconds,
        "Time to match one batch's events against the approved change windows"
    );
    describe_histogram!(
        ALERT_DELIVERY_SECONDS,
        Unit::Seconds,
        "Time of one alert delivery attempt to a sink, whatever its outcome"
    );
    describe_histogram!(
        ALERT_DELIVERY_DELAY_SECONDS,
        Unit::Seconds,
        "Time from an alert's creation to its delivery by a sink (hold, grouping and retries included)"
    );
    describe_counter!(
        "driftwatch_events_ingested_total",
        "Drift events received from agents, by result: accepted, duplicate (already stored) or forged (refused)"
    );
    describe_counter!(
        "driftwatch_chain_alerts_total",
        "Breaks found in agents' event hash chains (gaps, forgeries, splices), each raising an alert"
    );
    describe_counter!(
        "driftwatch_clock_claims_false_total",
        "Events whose claimed time lies outside what the collector saw of their spooling"
    );
    describe_counter!(
        "driftwatch_baseline_anchor_alerts_total",
        "Heartbeats reporting a baseline other than the one the collector expects, by problem"
    );
    describe_counter!(
        "driftwatch_client_cert_refusals_total",
        "Agent requests refused for their TLS client certificate, by reason (missing, mismatch)"
    );
    describe_counter!(
        "driftwatch_auth_failures_total",
        "Requests with a missing, unknown or revoked token"
    );
    describe_counter!(
        "driftwatch_auth_throttled_total",
        "Requests refused because their source failed authentication too often"
    );
    describe_counter!(
        "driftwatch_connections_evicted_total",
        "Idle connections closed to make room under the connection limit"
    );
    describe_counter!(
        "driftwatch_alert_deliveries_total",
        "Alert delivery attempts per sink, by outcome (delivered, failed)"
    );
    describe_counter!(
        "driftwatch_alerts_delivered_total",
        "Alerts delivered to every configured sink"
    );
    describe_counter!(
        "driftwatch_alert_delivery_failures_total",
        "Failed alert delivery attempts, all sinks together (each is retried)"
    );
    describe_gauge!(
        "driftwatch_alert_dead_letters",
        "Alert deliveries a sink will never accept, set aside until an admin retries or drops them"
    );
    describe_gauge!(
        "driftwatch_drift_open",
        "Drift items still open (untraced or unexpected, waiting for a person)"
    );
    describe_gauge!(
        "driftwatch_drift_untraced_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest open untraced drift item; 0 when there is none"
    );
    describe_gauge!("driftwatch_agents", "Enrolled hosts");
    describe_gauge!(
        "driftwatch_agents_silent",
        "Enrolled hosts with no heartbeat within silent_after"
    );
    describe_gauge!(
        "driftwatch_alerts_undelivered",
        "Alerts not yet delivered to every sink"
    );
    describe_gauge!(
        "driftwatch_alert_deliveries_pending",
        "Alerts a sink has not delivered yet"
    );
    describe_gauge!(
        "driftwatch_alert_deliveries_failing",
        "Alerts whose last delivery attempt to a sink failed"
    );
    describe_gauge!(
        crate::app::OPEN_STREAMS,
        "Live drift streams (/api/v1/drift/stream) open now"
    );
    describe_gauge!(
        "driftwatch_windows_indexed",
        "Approved change windows in the matcher's index"
    );
}
