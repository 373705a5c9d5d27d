//! `[limits]` (what keeps the collector up under abuse), `[metrics]` (who may read
//! `/metrics`, and where) and `[tls] client_ca`: compiled here so the rest of `compile`
//! stays as it was.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostics::Diagnostics;

pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
pub const MAX_HEADER_READ_TIMEOUT_SECS: u64 = 300;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
pub const MAX_IDLE_TIMEOUT_SECS: u64 = 3_600;
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1_024;
pub const MIN_MAX_CONNECTIONS: u64 = 8;
pub const MAX_MAX_CONNECTIONS: u64 = 65_536;
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u64 = 30;
pub const DEFAULT_AUTH_FAILURE_BURST: u64 = 20;
pub const MAX_AUTH_FAILURES: u64 = 100_000;
pub const DEFAULT_LOCKOUT_FAILURES: u64 = 10;
pub const MAX_LOCKOUT_FAILURES: u64 = 1_000;
pub const DEFAULT_LOCKOUT_SECS: u64 = 300;
pub const MAX_LOCKOUT_SECS: u64 = 86_400;
pub const DEFAULT_MAX_STREAMS: u64 = 256;
pub const MAX_MAX_STREAMS: u64 = 65_536;
pub const DEFAULT_STREAM_HEARTBEAT_SECS: u64 = 15;
pub const MAX_STREAM_HEARTBEAT_SECS: u64 = 300;

/// Connection and authentication limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A request's headers (and a TLS handshake) must arrive within this; hyper also
    /// starts this clock while an HTTP/1.1 keep-alive connection waits for its next request.
    pub header_read_timeout: Duration,
    /// A connection on which no byte moved for this long is closed (keep-alive, a stalled
    /// body, HTTP/2).
    pub idle_timeout: Duration,
    /// Connections served at once; beyond it new ones wait in the kernel's accept queue.
    pub max_connections: u32,
    /// Failed authentications one client address may make per minute (sustained)...
    pub auth_failures_per_minute: u32,
    /// ... and in a burst; beyond that the address gets 429 until it has earned one back.
    pub auth_failure_burst: u32,
    /// Failures in a row with one token id before that id is locked...
    pub lockout_failures: u32,
    /// ... for this long (429 with Retry-After, even with the right secret).
    pub lockout: Duration,
    /// Live drift streams (`/api/v1/drift/stream`) open at once; beyond: 503 Retry-After.
    pub max_streams: u32,
    /// A comment line on each open stream this often, so proxies keep it open.
    pub stream_heartbeat: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS as u32,
            auth_failures_per_minute: DEFAULT_AUTH_FAILURES_PER_MINUTE as u32,
            auth_failure_burst: DEFAULT_AUTH_FAILURE_BURST as u32,
            lockout_failures: DEFAULT_LOCKOUT_FAILURES as u32,
            lockout: Duration::from_secs(DEFAULT_LOCKOUT_SECS),
            max_streams: DEFAULT_MAX_STREAMS as u32,
            stream_heartbeat: Duration::from_secs(DEFAULT_STREAM_HEARTBEAT_SECS),
        }
    }
}

/// Who may read `/metrics` and where it is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsAccess {
    /// `/metrics` answers only a bearer token of the `metrics`, `admin` or `auditor` role.
    /// Default true.
    pub require_token: bool,
    /// Serve `/metrics` (and `/healthz`) on this address only, with the main listener's
    /// transport; unset: on the main listener.
    pub listen: Option<SocketAddr>,
    /// At most this many hosts get a `driftwatch_agent_heartbeat_age_seconds` series (the
    /// stalest); the rest are counted. 0 = none. Default [`DEFAULT_HEARTBEAT_AGE_HOSTS`].
    pub heartbeat_age_hosts: usize,
}

/// `metrics.heartbeat_age_hosts` when the file does not set it.
pub const DEFAULT_HEARTBEAT_AGE_HOSTS: u64 = 500;
/// Largest `metrics.heartbeat_age_hosts` accepted.
pub const MAX_HEARTBEAT_AGE_HOSTS: u64 = 10_000;

impl Default for MetricsAccess {
    fn default() -> Self {
        MetricsAccess {
            require_token: true,
            listen: None,
            heartbeat_age_hosts: DEFAULT_HEARTBEAT_AGE_HOSTS as usize,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsToml {
    pub header_read_timeout_secs: Option<Spanned<i64>>,
    pub idle_timeout_secs: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub auth_failures_per_minute: Option<Spanned<i64>>,
    pub auth_failure_burst: Option<Spanned<i64>>,
    pub lockout_failures: Option<Spanned<i64>>,
    pub lockout_secs: Option<Spanned<i64>>,
    pub max_streams: Option<Spanned<i64>>,
    pub stream_heartbeat_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsToml {
    pub require_token: Option<Spanned<bool>>,
    pub listen: Option<Spanned<String>>,
    pub heartbeat_age_hosts: Option<Spanned<i64>>,
}

pub(super) fn compile_limits(raw: Option<&LimitsToml>, diag: &mut Diagnostics<'_>) -> Limits {
    let empty = LimitsToml::default();
    let raw = raw.unwrap_or(&empty);
    let mut get = |value: &Option<Spanned<i64>>, key: &str, min: u64, max: u64, default: u64| {
        diag.between_or(
            value.as_ref(),
            &format!("limits.{key}"),
            min,
            max,
            default,
            "",
        )
    };
    let header = get(
        &raw.header_read_timeout_secs,
        "header_read_timeout_secs",
        1,
        MAX_HEADER_READ_TIMEOUT_SECS,
        DEFAULT_HEADER_READ_TIMEOUT_SECS,
    );
    let idle = get(
        &raw.idle_timeout_secs,
        "idle_timeout_secs",
        1,
        MAX_IDLE_TIMEOUT_SECS,
        DEFAULT_IDLE_TIMEOUT_SECS,
    );
    let max_connections = get(
        &raw.max_connections,
        "max_connections",
        MIN_MAX_CONNECTIONS,
        MAX_MAX_CONNECTIONS,
        DEFAULT_MAX_CONNECTIONS,
    );
    let per_minute = get(
        &raw.auth_failures_per_minute,
        "auth_failures_per_minute",
        1,
        MAX_AUTH_FAILURES,
        DEFAULT_AUTH_FAILURES_PER_MINUTE,
    );
    let burst = get(
        &raw.auth_failure_burst,
        "auth_failure_burst",
        1,
        MAX_AUTH_FAILURES,
        DEFAULT_AUTH_FAILURE_BURST,
    );
    let lockout_failures = get(
        &raw.lockout_failures,
        "lockout_failures",
        1,
        MAX_LOCKOUT_FAILURES,
        DEFAULT_LOCKOUT_FAILURES,
    );
    let lockout = get(
        &raw.lockout_secs,
        "lockout_secs",
        1,
        MAX_LOCKOUT_SECS,
        DEFAULT_LOCKOUT_SECS,
    );
    let max_streams = get(
        &raw.max_streams,
        "max_streams",
        1,
        MAX_MAX_STREAMS,
        DEFAULT_MAX_STREAMS,
    );
    let stream_heartbeat = get(
        &raw.stream_heartbeat_secs,
        "stream_heartbeat_secs",
        1,
        MAX_STREAM_HEARTBEAT_SECS,
        DEFAULT_STREAM_HEARTBEAT_SECS,
    );
    // The ranges above keep every value within u32.
    let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Limits {
        header_read_timeout: Duration::from_secs(header),
        idle_timeout: Duration::from_secs(idle),
        max_connections: small(max_connections),
        auth_failures_per_minute: small(per_minute),
        auth_failure_burst: small(burst),
        lockout_failures: small(lockout_failures),
        lockout: Duration::from_secs(lockout),
        max_streams: small(max_streams),
        stream_heartbeat: Duration::from_secs(stream_heartbeat),
    }
}

pub(super) fn compile_metrics(
    raw: Option<&MetricsToml>,
    main_listen: SocketAddr,
    diag: &mut Diagnostics<'_>,
) -> MetricsAccess {
    let Some(raw) = raw else {
        return MetricsAccess::default();
    };
    let require_token = raw.require_token.as_ref().is_none_or(|b| *b.get_ref());
    let listen = raw
        .listen
        .as_ref()
        .and_then(|text| match text.get_ref().parse::<SocketAddr>() {
            Ok(addr) if addr == main_listen && addr.port() != 0 => {
                diag.at(
                    text.span(),
                    "metrics.listen",
                    format!("{addr} is the main `listen` address; pick another or remove it"),
                );
                None
            }
            Ok(addr) => Some(addr),
            Err(_) => {
                diag.at(
                    text.span(),
                    "metrics.listen",
                    format!(
                        "expected an IP address and port such as `127.0.0.1:9464`, got `{}`",
                        text.get_ref()
                    ),
                );
                None
            }
        });
    let heartbeat_age_hosts = diag.between_or(
        raw.heartbeat_age_hosts.as_ref(),
        "metrics.heartbeat_age_hosts",
        0,
        MAX_HEARTBEAT_AGE_HOSTS,
        DEFAULT_HEARTBEAT_AGE_HOSTS,
        "hosts with a heartbeat age series; 0 = none",
    );
    MetricsAccess {
        require_token,
        listen,
        heartbeat_age_hosts: heartbeat_age_hosts as usize,
    }
}

/// `tls.client_ca`: an absolute path, only meaningful with `[tls]`.
pub(super) fn compile_client_ca(
    raw: Option<&Spanned<String>>,
    tls_configured: bool,
    diag: &mut Diagnostics<'_>,
) -> Option<PathBuf> {
    let value = raw?;
    let path = diag.absolute(value, "tls.client_ca");
    if !tls_configured {
        diag.at(
            value.span(),
            "tls.client_ca",
            "client certificates need TLS: set [tls] cert and key",
        );
    }
    Some(path)
}
