//! `collector.toml` as written: plain serde structs, strict about keys and types, with spans
//! on every value that validation may complain about. `compile` turns it into a
//! [`CollectorConfig`](super::CollectorConfig).

use serde::Deserialize;
use toml::Spanned;

/// Integers are `i64` (TOML's integer type) so a negative value gets a range error at the
/// value rather than a serde type error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CollectorToml {
    pub listen: Option<Spanned<String>>,
    pub plain_http: Option<Spanned<bool>>,
    pub allow_plain_http_on_network: Option<Spanned<bool>>,
    pub tls: Option<Spanned<TlsToml>>,
    pub state_dir: Option<Spanned<String>>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub max_export_rows: Option<Spanned<i64>>,
    pub hold_secs: Option<Spanned<i64>>,
    pub burst_secs: Option<Spanned<i64>>,
    pub clock_skew_tolerance_secs: Option<Spanned<i64>>,
    pub silent_after_secs: Option<Spanned<i64>>,
    pub emergency_approval_secs: Option<Spanned<i64>>,
    pub limits: Option<super::limits::LimitsToml>,
    pub metrics: Option<super::limits::MetricsToml>,
    /// `[[alert]]` tables; the span of each element is its header.
    #[serde(default)]
    pub alert: Vec<Spanned<AlertToml>>,
    /// `[audit]`: the signing key of the audit trail's checkpoints.
    pub audit: Option<AuditToml>,
    /// `[retention]`: what is pruned after how long.
    pub retention: Option<super::retention::RetentionToml>,
    /// `[dashboard]`: the web console's sessions.
    pub dashboard: Option<super::dashboard::DashboardToml>,
    /// `[store]`: the backend and, for PostgreSQL, how to reach it.
    pub store: Option<super::store::StoreToml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditToml {
    pub signing_key_file: Option<Spanned<String>>,
    pub checkpoint_interval_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsToml {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub client_ca: Option<Spanned<String>>,
}

/// One sink. Every key of every sink type is accepted here, so that a key of another type
/// gets "does not apply to a jsonl sink" at the key rather than "unknown field".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertToml {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub retry_max_secs: Option<Spanned<i64>>,
    // jsonl
    pub path: Option<Spanned<String>>,
    // webhook
    pub url: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    pub secret_header: Option<Spanned<String>>,
    pub signing_secret_file: Option<Spanned<String>>,
    // webhook and syslog over TCP
    pub timeout_secs: Option<Spanned<i64>>,
    // syslog
    pub address: Option<Spanned<String>>,
    pub protocol: Option<Spanned<String>>,
    pub facility: Option<Spanned<String>>,
    pub app_name: Option<Spanned<String>>,
}
