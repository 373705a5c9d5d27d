//! The collector's configuration: where it listens and how (TLS or plain HTTP), where its
//! database lives, request limits, alert timing and the alert sinks.
//!
//! # The file: `/etc/driftwatch/collector.toml`
//!
//! ```toml
//! listen = "127.0.0.1:8443"          # default "127.0.0.1:8443"
//! plain_http = true                  # either this or [tls]; refused on a non-loopback
//! allow_plain_http_on_network = false  # address unless this is also true
//! state_dir = "/var/lib/driftwatch-collector"   # absolute; holds collector.db
//! max_body_bytes = 1048576           # 1024..=256 MiB, after gzip decompression
//! max_export_rows = 100000           # 1..=10000000; events in one evidence export or bundle
//! hold_secs = 300                    # 0..=86400; untraced drift waits this long before alerting
//! burst_secs = 10                    # 0..=3600; one host's drift within this of the first = one alert
//! clock_skew_tolerance_secs = 60     # 0..=86400
//! silent_after_secs = 300            # 10..=604800; no heartbeat for this long = silent agent
//! emergency_approval_secs = 86400    # 60..=2592000; an emergency window not approved by then alerts
//!
//! [audit]                            # the audit trail's anchor outside collector.db
//! signing_key_file = "/etc/driftwatch/audit-signing.key"  # absolute; 0600, created at first
//!                                    # start; default state_dir/audit-signing.key; the systemd
//!                                    # credential `driftwatch-audit-key` wins when present
//! checkpoint_interval_secs = 3600    # 1..=86400; a signed checkpoint of the head this often
//!
//! [tls]                              # PEM files, absolute paths
//! cert = "/etc/driftwatch/collector.crt"
//! key = "/etc/driftwatch/collector.key"
//! client_ca = "/etc/driftwatch/agents-ca.pem"  # optional: agents must present a certificate
//!                                    # from this CA whose DNS name (SAN) is their hostname
//!
//! [limits]
//! header_read_timeout_secs = 10      # 1..=300; request headers and TLS handshake
//! idle_timeout_secs = 60             # 1..=3600; no byte either way for this long closes
//! max_connections = 1024             # 8..=65536; more wait in the accept queue
//! auth_failures_per_minute = 30      # 1..=100000; per client address, sustained
//! auth_failure_burst = 20            # 1..=100000; per client address, at once
//! lockout_failures = 10              # 1..=1000; failures in a row that lock a token id
//! lockout_secs = 300                 # 1..=86400
//! max_streams = 256                  # 1..=65536; live drift streams open at once (then 503)
//! stream_heartbeat_secs = 15         # 1..=300; a comment on each open stream this often
//!
//! [metrics]
//! require_token = true               # default true: a metrics, admin or auditor token
//! listen = "127.0.0.1:9464"          # optional: serve /metrics here only
//! heartbeat_age_hosts = 500          # 0..=10000; the stalest hosts with a heartbeat age series
//!
//! [retention]                        # default: keep everything; the audit log is never pruned
//! delivered_alerts_days = 90         # 1..=36500; alerts delivered to every sink this long ago
//! resolved_drift_days = 365          # 1..=36500; resolved/accepted drift unchanged this long,
//!                                    # with its events, history and finished commands
//! interval_secs = 3600               # 1..=86400; pruning runs at start, then this often
//!
//! [dashboard]                        # the web console under /ui/
//! session_ttl_secs = 28800           # 60..=604800; a session ends this long after sign-in
//! session_idle_secs = 1800           # 60..=604800; or after this long unused (at most the ttl)
//!
//! [[alert]]                          # any number of sinks, each delivered independently
//! type = "jsonl"                     # jsonl | webhook | syslog
//! name = "file"                      # default: the type; unique; [A-Za-z0-9_.-], at most 64
//! retry_max_secs = 300               # 1..=86400; longest wait between retries of a failing sink
//! path = "/var/lib/driftwatch-collector/alerts.jsonl"   # jsonl: absolute path
//!
//! [[alert]]
//! type = "webhook"
//! url = "https://hooks.example/driftwatch"    # http or https; the path and query are never logged
//! format = "json"                    # json (versioned alert) | slack (text and blocks)
//! ca_file = "/etc/driftwatch/hooks-ca.pem"    # optional: trust only this CA (PEM)
//! secret_file = "/etc/driftwatch/hook.secret" # optional: sent as `Authorization: Bearer <secret>`
//! secret_header = "X-Hook-Token"     # optional: send the secret as is in this header instead
//! timeout_secs = 10                  # 1..=300, per attempt
//!
//! [[alert]]
//! type = "syslog"
//! address = "127.0.0.1:514"          # host:port
//! protocol = "udp"                   # udp (one datagram, at most 2048 bytes) | tcp (RFC 6587
//!                                    # octet counting); tls is not supported yet
//! facility = "auth"                  # kern, user, mail, daemon, auth, syslog, lpr, news, uucp,
//!                                    # cron, authpriv, ftp, local0..local7
//! app_name = "driftwatch"            # 1..=48 printable ASCII characters
//! timeout_secs = 10                  # tcp: connect and write
//! ```
//!
//! Secrets never appear in this file: `secret_file` names a file the collector reads at start.
//!
//! Exactly one of `[tls]` and `plain_http = true` is required: there is no silent default
//! to clear text. Plain HTTP carries bearer tokens and agent credentials unprotected, and a
//! forged acknowledgement would make an agent delete events it has not delivered, so it is
//! accepted on a loopback address (a local test, or a TLS-terminating proxy on the same
//! host) and elsewhere only with `allow_plain_http_on_network = true` as a stated decision.
//!
//! # Errors
//!
//! As for the agent's file: every problem, each with file, line, column and dotted key
//! (`alert[1].path`); syntax and type errors come alone.

mod compile;
mod dashboard;
mod limits;
mod raw;
mod retention;
mod store;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{ConfigError, ConfigErrors};
pub use dashboard::*;
pub use limits::*;
pub use retention::*;
pub use store::*;

/// The shipped configuration (installed by packaging as /etc/driftwatch/collector.toml).
pub const DEFAULT_COLLECTOR_TOML: &str = include_str!("../examples/collector.toml");

/// Where the service looks for its configuration unless told otherwise.
pub const DEFAULT_COLLECTOR_CONFIG_PATH: &str = "/etc/driftwatch/collector.toml";

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_COLLECTOR_STATE_DIR: &str = "/var/lib/driftwatch-collector";
/// The database file inside `state_dir`.
pub const DB_FILE_NAME: &str = "collector.db";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const MIN_MAX_BODY_BYTES: u64 = 1024;
pub const MAX_MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_MAX_EXPORT_ROWS: u64 = 100_000;
pub const MAX_MAX_EXPORT_ROWS: u64 = 10_000_000;
pub const DEFAULT_HOLD_SECS: u64 = 300;
pub const MAX_HOLD_SECS: u64 = 86_400;
pub const DEFAULT_BURST_SECS: u64 = 10;
pub const MAX_BURST_SECS: u64 = 3_600;
pub const DEFAULT_CLOCK_SKEW_TOLERANCE_SECS: u64 = 60;
pub const MAX_CLOCK_SKEW_TOLERANCE_SECS: u64 = 86_400;
pub const DEFAULT_SILENT_AFTER_SECS: u64 = 300;
pub const MIN_SILENT_AFTER_SECS: u64 = 10;
pub const MAX_SILENT_AFTER_SECS: u64 = 604_800;
pub const DEFAULT_EMERGENCY_APPROVAL_SECS: u64 = 86_400;
pub const MIN_EMERGENCY_APPROVAL_SECS: u64 = 60;
pub const MAX_EMERGENCY_APPROVAL_SECS: u64 = 2_592_000;
pub const DEFAULT_RETRY_MAX_SECS: u64 = 300;
pub const MAX_RETRY_MAX_SECS: u64 = 86_400;
pub const DEFAULT_SINK_TIMEOUT_SECS: u64 = 10;
pub const MAX_SINK_TIMEOUT_SECS: u64 = 300;
/// The audit signing key inside `state_dir` when `[audit] signing_key_file` is not set.
pub const DEFAULT_AUDIT_KEY_FILE_NAME: &str = "audit-signing.key";
/// The systemd credential (`LoadCredential=`) that holds the audit signing key; when
/// `$CREDENTIALS_DIRECTORY` has it, it wins over the file.
pub const AUDIT_KEY_CREDENTIAL: &str = "driftwatch-audit-key";
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 3_600;
pub const MAX_CHECKPOINT_INTERVAL_SECS: u64 = 86_400;
pub const DEFAULT_SYSLOG_APP_NAME: &str = "driftwatch";
/// `auth` (security and authorization messages).
pub const DEFAULT_SYSLOG_FACILITY: u8 = 4;
/// The facilities of RFC 5424 section 6.2.1 by their usual names, with their codes.
pub const SYSLOG_FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// Where the configuration came from, for messages.
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub transport: Transport,
    /// Plain HTTP may listen on a non-loopback address (checked again for `--listen`).
    pub allow_plain_http_on_network: bool,
    /// Directory holding [`DB_FILE_NAME`].
    pub state_dir: PathBuf,
    pub max_body_bytes: u64,
    /// Most events one evidence export or close-out bundle holds (it is built in memory).
    pub max_export_rows: u64,
    /// How long untraced drift waits before it alerts.
    pub hold: Duration,
    /// One host's untraced drift first seen within this of the first goes into one alert.
    pub burst: Duration,
    /// Widens a window's start and planned end (never its close) around an event's spool
    /// interval; and how far an agent's claimed time may lie outside that interval.
    pub clock_skew_tolerance: Duration,
    /// No heartbeat for this long: the agent is silent.
    pub silent_after: Duration,
    /// An emergency window (work done first) still unapproved this long after it was
    /// recorded raises an alert.
    pub emergency_approval: Duration,
    pub alerts: Vec<AlertSink>,
    /// `[limits]`: timeouts, connection cap, failed-authentication throttling.
    pub limits: Limits,
    /// `[metrics]`: who may read `/metrics`, and on which address.
    pub metrics: MetricsAccess,
    /// `[tls] client_ca`: agents must present a certificate from this CA (PEM) whose DNS
    /// name is their enrolled hostname.
    pub tls_client_ca: Option<PathBuf>,
    /// `[audit]`: where the checkpoint signing key lives and how often the head is signed.
    pub audit: AuditSettings,
    /// `[retention]`: what is pruned after how long (default: nothing).
    pub retention: Retention,
    /// `[dashboard]`: how long web console sessions last.
    pub dashboard: Dashboard,
    /// `[store]`: SQLite in `state_dir` (default) or PostgreSQL.
    pub store: StoreSettings,
}

/// The audit trail's anchor outside the database: an Ed25519 key that signs every entry
/// and, periodically and at every export, a checkpoint of the head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// The key file (0600, created at first start); `None`: [`DEFAULT_AUDIT_KEY_FILE_NAME`]
    /// in `state_dir`.
    pub signing_key_file: Option<PathBuf>,
    /// A checkpoint is signed this often when the head moved.
    pub checkpoint_interval: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            signing_key_file: None,
            checkpoint_interval: Duration::from_secs(DEFAULT_CHECKPOINT_INTERVAL_SECS),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Tls { cert: PathBuf, key: PathBuf },
    PlainHttp,
}

/// One alert channel. Each alert is delivered to each sink independently, and the
/// delivery state is kept per sink `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSink {
    /// Unique among the sinks; names the sink in the delivery status and metrics.
    pub name: String,
    /// Retries of a failing delivery back off exponentially up to this.
    pub retry_max: Duration,
    pub target: SinkTarget,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkTarget {
    /// One JSON object per line, appended and synced.
    JsonLines {
        path: PathBuf,
    },
    Webhook(Webhook),
    Syslog(Syslog),
}

/// An HTTP POST per alert; any 2xx answer is a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// `http://` or `https://`, checked.
    pub url: String,
    pub format: WebhookFormat,
    /// Trust only the certificates in this PEM file (not the system's roots).
    pub ca_file: Option<PathBuf>,
    /// A file holding the secret; read at start, never logged.
    pub secret_file: Option<PathBuf>,
    /// The header carrying the secret as is; unset: `Authorization: Bearer <secret>`.
    pub secret_header: Option<String>,
    /// A file holding the key that signs every request (HMAC-SHA256 over the timestamp and
    /// the body, in `X-Driftwatch-Signature`); read at start, never logged.
    pub signing_secret_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"version": 1, "alert": <the alert as the API shows it>}`.
    Json,
    /// Slack-compatible: `text` plus `blocks`.
    Slack,
}

/// RFC 5424 messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syslog {
    /// `host:port`, resolved at each delivery.
    pub address: String,
    pub protocol: SyslogProtocol,
    /// 0..=23 (RFC 5424 section 6.2.1).
    pub facility: u8,
    pub app_name: String,
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogProtocol {
    /// One datagram per message (RFC 5426).
    Udp,
    /// Octet-counting framing (RFC 6587 section 3.4.1).
    Tcp,
}

impl SinkTarget {
    /// `jsonl`, `webhook` or `syslog`: the `type` of the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkTarget::JsonLines { .. } => "jsonl",
            SinkTarget::Webhook(_) => "webhook",
            SinkTarget::Syslog(_) => "syslog",
        }
    }
}

impl CollectorConfig {
    /// Reads and validates a file, reporting every problem with file, line, column and key.
    pub fn load(path: &Path) -> Result<CollectorConfig, ConfigErrors> {
        let unplaced = |message: String| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: None,
                message,
            }])
        };
        let bytes = std::fs::read(path)
            .map_err(|err| unplaced(format!("cannot read the file: {err}").to_lowercase()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| unplaced("invalid utf-8: a TOML file must be utf-8 encoded".into()))?;
        Self::from_toml(&text, path)
    }

    /// Validates TOML text; `source` names it in errors.
    pub fn from_toml(text: &str, source: &Path) -> Result<CollectorConfig, ConfigErrors> {
        compile::from_toml(text, source)
    }

    /// The SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join(DB_FILE_NAME)
    }

    /// The audit signing key file (the systemd credential, when present, is looked up by
    /// the collector at start: see [`AUDIT_KEY_CREDENTIAL`]).
    pub fn audit_key_path(&self) -> PathBuf {
        self.audit
            .signing_key_file
            .clone()
            .unwrap_or_else(|| self.state_dir.join(DEFAULT_AUDIT_KEY_FILE_NAME))
    }

    /// Whether this configuration may listen on `addr` (the file's `listen`, or an override
    /// from the command line): plain HTTP only on loopback unless explicitly allowed.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), String> {
        if self.transport == Transport::PlainHttp
            && !addr.ip().is_loopback()
            && !self.allow_plain_http_on_network
        {
            return Err(format!(
                "plain HTTP on {addr} would send tokens in clear text over the network; \
                 configure [tls] cert and key, listen on a loopback address, or set \
                 allow_plain_http_on_network = true if a TLS proxy fronts this collector"
            ));
        }
        Ok(())
    }
}
