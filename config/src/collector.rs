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
//! [tls]                              # PEM files, absolute paths
//! cert = "/etc/driftwatch/collector.crt"
//! key = "/etc/driftwatch/collector.key"
//!
//! [[alert]]                          # any number; only `jsonl` is implemented
//! type = "jsonl"
//! path = "/var/lib/driftwatch-collector/alerts.jsonl"
//! ```
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
mod raw;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{ConfigError, ConfigErrors};

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
    pub clock_skew_tolerance: Duration,
    /// No heartbeat for this long: the agent is silent.
    pub silent_after: Duration,
    /// An emergency window (work done first) still unapproved this long after it was
    /// recorded raises an alert.
    pub emergency_approval: Duration,
    pub alerts: Vec<AlertSink>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Tls { cert: PathBuf, key: PathBuf },
    PlainHttp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertSink {
    /// One JSON object per line, appended and synced.
    JsonLines { path: PathBuf },
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
