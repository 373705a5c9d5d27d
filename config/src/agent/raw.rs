//! `agent.toml` as written: plain serde structs, strict about keys and types, with spans on
//! every value that semantic validation may complain about. Nothing here is checked beyond
//! TOML types; `compile` turns it into an [`AgentConfig`](super::AgentConfig).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// Integers are read as `i64` (TOML's integer type) so that out-of-range values such as
/// `workers = -1` get a range error pointing at the value instead of a serde type error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentToml {
    pub state_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub scan: ScanToml,
    #[serde(default)]
    pub snapshots: SnapshotsToml,
    #[serde(default)]
    pub sources: SourcesToml,
    #[serde(default)]
    pub collector: super::daemon::CollectorToml,
    #[serde(default)]
    pub watch: super::daemon::WatchToml,
    #[serde(default)]
    pub spool: super::daemon::SpoolToml,
    #[serde(default)]
    pub heartbeat: super::daemon::HeartbeatToml,
    #[serde(default)]
    pub metrics: super::metrics::MetricsToml,
    /// Custom attribute groups: name = [attribute names].
    #[serde(default)]
    pub groups: BTreeMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
    /// `[[rule]]` tables; the span of each element is its `[[rule]]` header.
    pub rule: Option<Spanned<Vec<Spanned<RuleToml>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScanToml {
    pub workers: Option<Spanned<i64>>,
    pub full_rehash_interval_hours: Option<Spanned<i64>>,
    /// Daemon: seconds between periodic full scans.
    pub interval_secs: Option<Spanned<i64>>,
    /// Daemon: read rate limit of periodic scans.
    pub max_read_mib_per_sec: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SnapshotsToml {
    pub max_bytes: Option<Spanned<i64>>,
    /// `None` (or empty) means every path may be snapshotted.
    pub include: Option<Vec<Spanned<String>>>,
    /// `None` means the built-in secret list; a list given here replaces it.
    pub exclude: Option<Vec<Spanned<String>>>,
    /// Regular expressions for secret-looking keys; `None` means the built-in list.
    pub secret_keys: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourcesToml {
    /// `None` means every source.
    pub enabled: Option<Vec<Spanned<String>>>,
    pub interval_secs: Option<Spanned<i64>>,
    pub root: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleToml {
    /// Required; optional here so a missing path is one collected error, not a stop.
    pub path: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub recurse: Option<bool>,
    pub one_filesystem: Option<bool>,
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
}
