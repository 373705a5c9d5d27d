//! TOML text → validated [`CollectorConfig`], collecting every error with its place.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{AlertToml, CollectorToml};
use super::*;
use crate::diagnostics::{Diagnostics, parse};
use crate::error::ConfigErrors;

pub(super) fn from_toml(text: &str, source: &Path) -> Result<CollectorConfig, ConfigErrors> {
    let (raw, mut diag) = parse::<CollectorToml>(text, source)?;
    let config = compile(raw, source, &mut diag);
    diag.result(config)
}

/// The semantic checks; the result is only meaningful when `diag` collected no errors.
fn compile(raw: CollectorToml, source: &Path, diag: &mut Diagnostics<'_>) -> CollectorConfig {
    let listen = match &raw.listen {
        None => DEFAULT_LISTEN.parse().expect("the default address parses"),
        Some(text) => text.get_ref().parse::<SocketAddr>().unwrap_or_else(|_| {
            diag.at(
                text.span(),
                "listen",
                format!(
                    "expected an IP address and port such as `0.0.0.0:8443` or `[::1]:8443`, got `{}`",
                    text.get_ref()
                ),
            );
            DEFAULT_LISTEN.parse().expect("the default address parses")
        }),
    };

    let plain_http = raw.plain_http.as_ref().is_some_and(|b| *b.get_ref());
    let allow_network = raw
        .allow_plain_http_on_network
        .as_ref()
        .is_some_and(|b| *b.get_ref());
    let transport = match (&raw.tls, plain_http) {
        (Some(tls), true) => {
            diag.at(
                tls.span(),
                "tls",
                "both [tls] and plain_http = true are set; keep one",
            );
            Transport::PlainHttp
        }
        (Some(tls), false) => {
            let mut path = |value: &Option<Spanned<String>>, name: &str| match value {
                None => {
                    diag.at(
                        tls.span(),
                        "tls",
                        format!("missing `{name}`: [tls] needs both `cert` and `key` (PEM files)"),
                    );
                    PathBuf::new()
                }
                Some(p) => diag.absolute(p, &format!("tls.{name}")),
            };
            let cert = path(&tls.get_ref().cert, "cert");
            let key = path(&tls.get_ref().key, "key");
            Transport::Tls { cert, key }
        }
        (None, true) => Transport::PlainHttp,
        (None, false) => {
            match &raw.plain_http {
                Some(off) => diag.at(
                    off.span(),
                    "plain_http",
                    "plain_http = false but no [tls] is configured: set [tls] cert and key",
                ),
                None => diag.unplaced(
                    "tls",
                    "no transport configured: set [tls] cert and key, or plain_http = true \
                     (for loopback, or behind a TLS proxy)",
                ),
            }
            Transport::PlainHttp
        }
    };
    if let Some(allow) = &raw.allow_plain_http_on_network
        && *allow.get_ref()
        && !plain_http
    {
        diag.at(
            allow.span(),
            "allow_plain_http_on_network",
            "only meaningful with plain_http = true; remove it",
        );
    }

    let state_dir = match &raw.state_dir {
        None => PathBuf::from(DEFAULT_COLLECTOR_STATE_DIR),
        Some(dir) => diag.absolute(dir, "state_dir"),
    };

    let max_body_bytes = diag.in_range_or(
        &raw.max_body_bytes,
        "max_body_bytes",
        MIN_MAX_BODY_BYTES..=MAX_MAX_BODY_BYTES,
        DEFAULT_MAX_BODY_BYTES,
    );
    let max_export_rows = diag.in_range_or(
        &raw.max_export_rows,
        "max_export_rows",
        1..=MAX_MAX_EXPORT_ROWS,
        DEFAULT_MAX_EXPORT_ROWS,
    );
    let hold = diag.in_range_or(
        &raw.hold_secs,
        "hold_secs",
        0..=MAX_HOLD_SECS,
        DEFAULT_HOLD_SECS,
    );
    let burst = diag.in_range_or(
        &raw.burst_secs,
        "burst_secs",
        0..=MAX_BURST_SECS,
        DEFAULT_BURST_SECS,
    );
    let skew = diag.in_range_or(
        &raw.clock_skew_tolerance_secs,
        "clock_skew_tolerance_secs",
        0..=MAX_CLOCK_SKEW_TOLERANCE_SECS,
        DEFAULT_CLOCK_SKEW_TOLERANCE_SECS,
    );
    let silent = diag.in_range_or(
        &raw.silent_after_secs,
        "silent_after_secs",
        MIN_SILENT_AFTER_SECS..=MAX_SILENT_AFTER_SECS,
        DEFAULT_SILENT_AFTER_SECS,
    );

    let emergency = diag.in_range_or(
        &raw.emergency_approval_secs,
        "emergency_approval_secs",
        MIN_EMERGENCY_APPROVAL_SECS..=MAX_EMERGENCY_APPROVAL_SECS,
        DEFAULT_EMERGENCY_APPROVAL_SECS,
    );

    let alerts = raw
        .alert
        .iter()
        .enumerate()
        .filter_map(|(index, alert)| compile_alert(index, alert, diag))
        .collect();

    let config = CollectorConfig {
        source: source.to_path_buf(),
        listen,
        transport,
        allow_plain_http_on_network: allow_network,
        state_dir,
        max_body_bytes,
        max_export_rows,
        hold: Duration::from_secs(hold),
        burst: Duration::from_secs(burst),
        clock_skew_tolerance: Duration::from_secs(skew),
        silent_after: Duration::from_secs(silent),
        emergency_approval: Duration::from_secs(emergency),
        alerts,
    };
    if let Err(why) = config.check_listen(listen) {
        match (&raw.plain_http, &raw.listen) {
            (Some(plain), _) => diag.at(plain.span(), "plain_http", why),
            (None, Some(listen)) => diag.at(listen.span(), "listen", why),
            (None, None) => diag.unplaced("plain_http", &why),
        }
    }
    config
}

const ALERT_TYPES: &str = "jsonl, webhook, slack, syslog";

fn compile_alert(
    index: usize,
    raw: &Spanned<AlertToml>,
    diag: &mut Diagnostics<'_>,
) -> Option<AlertSink> {
    let key = format!("alert[{index}]");
    let alert = raw.get_ref();
    let Some(kind) = &alert.kind else {
        diag.at(
            raw.span(),
            &key,
            format!("missing `type`: one of {ALERT_TYPES}"),
        );
        return None;
    };
    match kind.get_ref().as_str() {
        "jsonl" => {
            for (name, value) in [
                ("url", &alert.url),
                ("address", &alert.address),
                ("protocol", &alert.protocol),
                ("format", &alert.format),
            ] {
                if let Some(value) = value {
                    diag.at(
                        value.span(),
                        format!("{key}.{name}"),
                        format!("`{name}` does not apply to a jsonl sink (only `path` does)"),
                    );
                }
            }
            match &alert.path {
                None => {
                    diag.at(
                        raw.span(),
                        &key,
                        "missing `path`: the file the jsonl sink appends to",
                    );
                    None
                }
                Some(path) => {
                    let path = diag.absolute(path, &format!("{key}.path"));
                    Some(AlertSink::JsonLines { path })
                }
            }
        }
        "webhook" | "slack" | "syslog" => {
            diag.at(
                kind.span(),
                format!("{key}.type"),
                format!(
                    "`{}` alert sinks are not supported yet; only `jsonl` is implemented",
                    kind.get_ref()
                ),
            );
            None
        }
        other => {
            diag.at(
                kind.span(),
                format!("{key}.type"),
                format!("unknown alert type `{other}`, expected one of {ALERT_TYPES}"),
            );
            None
        }
    }
}

impl Diagnostics<'_> {
    /// The value when set and within `range`, `default` when unset; out of range is reported.
    fn in_range_or(
        &mut self,
        value: &Option<Spanned<i64>>,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
        default: u64,
    ) -> u64 {
        self.between_or(
            value.as_ref(),
            key,
            *range.start(),
            *range.end(),
            default,
            "",
        )
    }

    /// An absolute path without `..`, normalised; anything else is reported.
    fn absolute(&mut self, value: &Spanned<String>, key: &str) -> PathBuf {
        let text = value.get_ref();
        let normal: PathBuf = Path::new(text).components().collect();
        if !text.starts_with('/') {
            self.at(
                value.span(),
                key,
                format!("must be an absolute path (starting with `/`), got `{text}`"),
            );
        } else if normal.components().any(|c| c == Component::ParentDir) {
            self.at(
                value.span(),
                key,
                format!("must not contain `..` components, got `{text}`"),
            );
        }
        normal
    }
}
