//! The daemon's settings (`driftwatch-agent run`): delivery to the collector,
//! the real-time watch, the spool's bounds, heartbeats and periodic scans.
//!
//! ```toml
//! [scan]
//! interval_secs = 3600            # periodic full scan; 0 = never; default 3600
//! max_read_mib_per_sec = 64       # content read rate of periodic scans; 0 = unlimited
//!
//! [collector]
//! url = "https://collector.example.org:8443"   # https, or http to a loopback address only
//! ca_file = "/etc/driftwatch/ca.pem"           # trust only this CA (PEM); default: the system's
//! client_cert_file = "/etc/driftwatch/agent.pem"   # optional client certificate (PEM) ...
//! client_key_file = "/etc/driftwatch/agent.key"    # ... and its key, both or neither
//! credential_file = "/var/lib/driftwatch/credential.json"  # default: state_dir/credential.json
//! timeout_secs = 30
//! batch_max_events = 500
//! batch_max_bytes = 1048576       # JSON bytes per batch before gzip
//! batch_linger_ms = 100           # wait this long for more events before sending a batch
//! retry_max_secs = 300            # longest pause between retries (exponential, with jitter)
//!
//! [watch]
//! enabled = true
//! settle_ms = 100                 # quiet time before a burst in a directory is compared
//! max_delay_ms = 2000             # a burst never waits longer
//! max_watches = 0                 # 0 = as many as the kernel allows
//! queue_capacity = 65536          # notifications buffered; beyond, a rescan
//! fallback_scan_secs = 300        # how often unwatched subtrees are scanned
//!
//! [spool]
//! max_events = 100000
//! max_bytes = 268435456
//!
//! [heartbeat]
//! interval_secs = 60
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostics::Diagnostics;

/// `scan.interval_secs` when the file does not set it (hourly).
pub const DEFAULT_SCAN_INTERVAL_SECS: u64 = 3600;
/// `scan.max_read_mib_per_sec` when the file does not set it.
pub const DEFAULT_SCAN_MAX_READ_MIB_PER_SEC: u64 = 64;

/// Everything `driftwatch-agent run` needs beyond the policy.
#[derive(Clone, Debug)]
pub struct DaemonSettings {
    /// Periodic full scans (`[scan] interval_secs`); `None` = never.
    pub scan_interval: Option<Duration>,
    /// Read rate limit of periodic scans (`[scan] max_read_mib_per_sec`); `None` = unlimited.
    pub scan_max_read_bytes_per_sec: Option<u64>,
    pub collector: CollectorSettings,
    pub watch: WatchSettings,
    pub spool: SpoolSettings,
    pub heartbeat: HeartbeatSettings,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectorSettings {
    /// Base URL without a trailing `/`; `None`: the URL saved by `enroll`.
    pub url: Option<String>,
    /// Trust only this CA (PEM), instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), both or neither.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Where `enroll` keeps the host id and credential; `None`: `state_dir/credential.json`.
    pub credential_file: Option<PathBuf>,
    pub timeout: Duration,
    pub batch_max_events: usize,
    pub batch_max_bytes: u64,
    pub batch_linger: Duration,
    pub retry_max: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSettings {
    /// Watch in real time; when false only scans find changes.
    pub enabled: bool,
    pub settle: Duration,
    pub max_delay: Duration,
    /// At most this many directories watched; `None`: the kernel's limit.
    pub max_watches: Option<usize>,
    pub queue_capacity: usize,
    pub fallback_scan_interval: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolSettings {
    pub max_events: u64,
    pub max_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatSettings {
    pub interval: Duration,
}

impl Default for CollectorSettings {
    fn default() -> Self {
        CollectorSettings {
            url: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            credential_file: None,
            timeout: Duration::from_secs(30),
            batch_max_events: 500,
            batch_max_bytes: 1 << 20,
            batch_linger: Duration::from_millis(100),
            retry_max: Duration::from_secs(300),
        }
    }
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            enabled: true,
            settle: Duration::from_millis(100),
            max_delay: Duration::from_millis(2000),
            max_watches: None,
            queue_capacity: 65_536,
            fallback_scan_interval: Duration::from_secs(300),
        }
    }
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            max_events: 100_000,
            max_bytes: 256 << 20,
        }
    }
}

impl Default for HeartbeatSettings {
    fn default() -> Self {
        HeartbeatSettings {
            interval: Duration::from_secs(60),
        }
    }
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            scan_interval: Some(Duration::from_secs(DEFAULT_SCAN_INTERVAL_SECS)),
            scan_max_read_bytes_per_sec: Some(DEFAULT_SCAN_MAX_READ_MIB_PER_SEC << 20),
            collector: CollectorSettings::default(),
            watch: WatchSettings::default(),
            spool: SpoolSettings::default(),
            heartbeat: HeartbeatSettings::default(),
        }
    }
}

impl DaemonSettings {
    /// The credential file: the configured one, or `credential.json` in `state_dir`.
    pub fn credential_file(&self, state_dir: &Path) -> PathBuf {
        self.collector
            .credential_file
            .clone()
            .unwrap_or_else(|| state_dir.join("credential.json"))
    }
}

// ---- As written in the file ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CollectorToml {
    pub url: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub client_cert_file: Option<Spanned<String>>,
    pub client_key_file: Option<Spanned<String>>,
    pub credential_file: Option<Spanned<String>>,
    pub timeout_secs: Option<Spanned<i64>>,
    pub batch_max_events: Option<Spanned<i64>>,
    pub batch_max_bytes: Option<Spanned<i64>>,
    pub batch_linger_ms: Option<Spanned<i64>>,
    pub retry_max_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WatchToml {
    pub enabled: Option<bool>,
    pub settle_ms: Option<Spanned<i64>>,
    pub max_delay_ms: Option<Spanned<i64>>,
    pub max_watches: Option<Spanned<i64>>,
    pub queue_capacity: Option<Spanned<i64>>,
    pub fallback_scan_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpoolToml {
    pub max_events: Option<Spanned<i64>>,
    pub max_bytes: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeartbeatToml {
    pub interval_secs: Option<Spanned<i64>>,
}

/// The daemon's tables (and `[scan]` keys) as written.
pub(super) struct DaemonToml<'a> {
    pub scan_interval_secs: Option<&'a Spanned<i64>>,
    pub scan_max_read_mib_per_sec: Option<&'a Spanned<i64>>,
    pub collector: &'a CollectorToml,
    pub watch: &'a WatchToml,
    pub spool: &'a SpoolToml,
    pub heartbeat: &'a HeartbeatToml,
}

// ---- Validation ----

pub(super) fn compile(raw: DaemonToml<'_>, diag: &mut Diagnostics<'_>) -> DaemonSettings {
    let defaults = DaemonSettings::default();
    let mut number = |value: Option<&Spanned<i64>>, key: &str, min, max, default, note: &str| {
        diag.between_or(value, key, min, max, default, note)
    };
    let scan_interval = number(
        raw.scan_interval_secs,
        "scan.interval_secs",
        0,
        31 * 86_400,
        DEFAULT_SCAN_INTERVAL_SECS,
        "seconds between periodic full scans; 0 = never",
    );
    let read_rate = number(
        raw.scan_max_read_mib_per_sec,
        "scan.max_read_mib_per_sec",
        0,
        1 << 20,
        DEFAULT_SCAN_MAX_READ_MIB_PER_SEC,
        "MiB/s read by periodic scans; 0 = unlimited",
    );

    let c = raw.collector;
    let d = &defaults.collector;
    let timeout = number(
        c.timeout_secs.as_ref(),
        "collector.timeout_secs",
        1,
        3600,
        d.timeout.as_secs(),
        "seconds",
    );
    let batch_max_events = number(
        c.batch_max_events.as_ref(),
        "collector.batch_max_events",
        1,
        10_000,
        d.batch_max_events as u64,
        "events per request",
    );
    let batch_max_bytes = number(
        c.batch_max_bytes.as_ref(),
        "collector.batch_max_bytes",
        1024,
        64 << 20,
        d.batch_max_bytes,
        "JSON bytes per request before compression",
    );
    let batch_linger = number(
        c.batch_linger_ms.as_ref(),
        "collector.batch_linger_ms",
        0,
        60_000,
        d.batch_linger.as_millis() as u64,
        "milliseconds",
    );
    let retry_max = number(
        c.retry_max_secs.as_ref(),
        "collector.retry_max_secs",
        1,
        86_400,
        d.retry_max.as_secs(),
        "seconds",
    );

    let w = raw.watch;
    let wd = &defaults.watch;
    let settle = number(
        w.settle_ms.as_ref(),
        "watch.settle_ms",
        0,
        60_000,
        wd.settle.as_millis() as u64,
        "milliseconds",
    );
    let max_delay = number(
        w.max_delay_ms.as_ref(),
        "watch.max_delay_ms",
        1,
        600_000,
        wd.max_delay.as_millis() as u64,
        "milliseconds",
    );
    let max_watches = number(
        w.max_watches.as_ref(),
        "watch.max_watches",
        0,
        u32::MAX as u64,
        0,
        "0 = the kernel's limit",
    );
    let queue_capacity = number(
        w.queue_capacity.as_ref(),
        "watch.queue_capacity",
        16,
        10_000_000,
        wd.queue_capacity as u64,
        "notifications",
    );
    let fallback = number(
        w.fallback_scan_secs.as_ref(),
        "watch.fallback_scan_secs",
        1,
        86_400,
        wd.fallback_scan_interval.as_secs(),
        "seconds",
    );

    let s = raw.spool;
    let max_events = number(
        s.max_events.as_ref(),
        "spool.max_events",
        1,
        100_000_000,
        defaults.spool.max_events,
        "events",
    );
    let max_bytes = number(
        s.max_bytes.as_ref(),
        "spool.max_bytes",
        4096,
        1 << 40,
        defaults.spool.max_bytes,
        "bytes",
    );
    let heartbeat = number(
        raw.heartbeat.interval_secs.as_ref(),
        "heartbeat.interval_secs",
        1,
        86_400,
        defaults.heartbeat.interval.as_secs(),
        "seconds",
    );

    if max_delay < settle {
        let message =
            format!("watch.max_delay_ms ({max_delay}) must be at least watch.settle_ms ({settle})");
        match (&w.max_delay_ms, &w.settle_ms) {
            (Some(delay), _) => diag.at(delay.span(), "watch.max_delay_ms", message),
            (None, Some(settle)) => diag.at(settle.span(), "watch.settle_ms", message),
            (None, None) => {}
        }
    }

    let url = c
        .url
        .as_ref()
        .and_then(|url| match check_url(url.get_ref()) {
            Ok(url) => Some(url),
            Err(why) => {
                diag.at(url.span(), "collector.url", why);
                None
            }
        });
    let mut file = |value: &Option<Spanned<String>>, key: &str| -> Option<PathBuf> {
        let value = value.as_ref()?;
        match absolute_file(value.get_ref()) {
            Ok(path) => Some(path),
            Err(why) => {
                diag.at(value.span(), key, why);
                None
            }
        }
    };
    let ca_file = file(&c.ca_file, "collector.ca_file");
    let client_cert_file = file(&c.client_cert_file, "collector.client_cert_file");
    let client_key_file = file(&c.client_key_file, "collector.client_key_file");
    let credential_file = file(&c.credential_file, "collector.credential_file");
    match (&c.client_cert_file, &c.client_key_file) {
        (Some(cert), None) => diag.at(
            cert.span(),
            "collector.client_cert_file",
            "a client certificate needs its key: set collector.client_key_file too",
        ),
        (None, Some(key)) => diag.at(
            key.span(),
            "collector.client_key_file",
            "a client key needs its certificate: set collector.client_cert_file too",
        ),
        _ => {}
    }

    DaemonSettings {
        scan_interval: (scan_interval > 0).then(|| Duration::from_secs(scan_interval)),
        scan_max_read_bytes_per_sec: (read_rate > 0).then_some(read_rate << 20),
        collector: CollectorSettings {
            url,
            ca_file,
            client_cert_file,
            client_key_file,
            credential_file,
            timeout: Duration::from_secs(timeout),
            batch_max_events: batch_max_events as usize,
            batch_max_bytes,
            batch_linger: Duration::from_millis(batch_linger),
            retry_max: Duration::from_secs(retry_max),
        },
        watch: WatchSettings {
            enabled: w.enabled.unwrap_or(true),
            settle: Duration::from_millis(settle),
            max_delay: Duration::from_millis(max_delay),
            max_watches: (max_watches > 0).then_some(max_watches as usize),
            queue_capacity: queue_capacity as usize,
            fallback_scan_interval: Duration::from_secs(fallback),
        },
        spool: SpoolSettings {
            max_events,
            max_bytes,
        },
        heartbeat: HeartbeatSettings {
            interval: Duration::from_secs(heartbeat),
        },
    }
}

/// Checks a collector URL and returns it without a trailing `/`.
///
/// `https://HOST[:PORT][/PATH]`, or `http://` to a loopback address only:
/// credentials and drift details never cross a network in clear text.
pub fn check_url(url: &str) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "must be an absolute URL such as `https://collector.example.org:8443`, got `{url}`"
        ));
    };
    if scheme != "https" && scheme != "http" {
        return Err(format!(
            "scheme must be `https` (or `http` to a loopback address), got `{scheme}`"
        ));
    }
    if rest.contains(['?', '#']) {
        return Err("must not have a query or fragment".to_owned());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "must not contain a user or password: the agent authenticates with its credential file"
                .to_owned(),
        );
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return Err(format!("unclosed `[` in the host of `{url}`")),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("has no valid host: `{url}`"));
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!(
            "port must be a number from 1 to 65535, got `{port}`"
        ));
    }
    if scheme == "http" && !is_loopback(host) {
        return Err(format!(
            "plain `http` is only allowed to a loopback address (127.0.0.1, ::1, localhost), \
             got `{host}`: use `https`"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn absolute_file(path: &str) -> Result<PathBuf, String> {
    if !path.starts_with('/') {
        return Err(format!("must be an absolute path, got `{path}`"));
    }
    if path.contains('\0') {
        return Err("must not contain a NUL character".to_owned());
    }
    Ok(Path::new(path).components().collect())
}
