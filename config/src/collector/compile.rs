//! TOML text → validated [`CollectorConfig`], collecting every error with its place.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{AlertToml, AuditToml, CollectorToml};
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

    let alerts = compile_alerts(&raw.alert, diag);
    let audit = compile_audit(raw.audit.as_ref(), diag);
    let retention = super::retention::compile_retention(raw.retention.as_ref(), diag);
    let dashboard = super::dashboard::compile_dashboard(raw.dashboard.as_ref(), diag);
    let store = super::store::compile_store(raw.store.as_ref(), diag);
    let limits = super::limits::compile_limits(raw.limits.as_ref(), diag);
    let metrics = super::limits::compile_metrics(raw.metrics.as_ref(), listen, diag);
    let tls_client_ca = super::limits::compile_client_ca(
        raw.tls
            .as_ref()
            .and_then(|tls| tls.get_ref().client_ca.as_ref()),
        matches!(transport, Transport::Tls { .. }),
        diag,
    );

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
        audit,
        limits,
        metrics,
        tls_client_ca,
        retention,
        dashboard,
        store,
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

fn compile_audit(raw: Option<&AuditToml>, diag: &mut Diagnostics<'_>) -> AuditSettings {
    let Some(raw) = raw else {
        return AuditSettings::default();
    };
    let signing_key_file = raw
        .signing_key_file
        .as_ref()
        .map(|path| diag.absolute(path, "audit.signing_key_file"));
    let interval = diag.in_range_or(
        &raw.checkpoint_interval_secs,
        "audit.checkpoint_interval_secs",
        1..=MAX_CHECKPOINT_INTERVAL_SECS,
        DEFAULT_CHECKPOINT_INTERVAL_SECS,
    );
    AuditSettings {
        signing_key_file,
        checkpoint_interval: Duration::from_secs(interval),
    }
}

const ALERT_TYPES: &str = "jsonl, webhook, syslog";

/// The keys each sink type takes besides `type`, `name` and `retry_max_secs`.
const JSONL_KEYS: &[&str] = &["path"];
const WEBHOOK_KEYS: &[&str] = &[
    "url",
    "format",
    "ca_file",
    "secret_file",
    "secret_header",
    "signing_secret_file",
    "timeout_secs",
];
const SYSLOG_KEYS: &[&str] = &[
    "address",
    "protocol",
    "facility",
    "app_name",
    "timeout_secs",
];

/// Every sink, then the names checked for uniqueness.
fn compile_alerts(raw: &[Spanned<AlertToml>], diag: &mut Diagnostics<'_>) -> Vec<AlertSink> {
    let mut sinks = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (index, alert) in raw.iter().enumerate() {
        let Some(sink) = compile_alert(index, alert, diag) else {
            continue;
        };
        if seen.contains(&sink.name) {
            let (span, key) = match &alert.get_ref().name {
                Some(name) => (name.span(), format!("alert[{index}].name")),
                None => (alert.span(), format!("alert[{index}]")),
            };
            diag.at(
                span,
                key,
                format!(
                    "another sink is already named `{}`: give each sink a distinct `name`",
                    sink.name
                ),
            );
            continue;
        }
        seen.push(sink.name.clone());
        sinks.push(sink);
    }
    sinks
}

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
    let kind_name = kind.get_ref().as_str();
    let allowed = match kind_name {
        "jsonl" => JSONL_KEYS,
        "webhook" => WEBHOOK_KEYS,
        "syslog" => SYSLOG_KEYS,
        "slack" => {
            diag.at(
                kind.span(),
                format!("{key}.type"),
                "unknown alert type `slack`: use type = \"webhook\" with format = \"slack\"",
            );
            return None;
        }
        other => {
            diag.at(
                kind.span(),
                format!("{key}.type"),
                format!("unknown alert type `{other}`, expected one of {ALERT_TYPES}"),
            );
            return None;
        }
    };
    let mut ok = true;
    for (name, span) in typed_keys(alert) {
        if !allowed.contains(&name) {
            diag.at(
                span,
                format!("{key}.{name}"),
                format!(
                    "`{name}` does not apply to a {kind_name} sink (it takes {})",
                    allowed.join(", ")
                ),
            );
            ok = false;
        }
    }

    let name = match &alert.name {
        None => kind_name.to_owned(),
        Some(name) => {
            let text = name.get_ref();
            let valid = !text.is_empty()
                && text.len() <= 64
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !valid {
                diag.at(
                    name.span(),
                    format!("{key}.name"),
                    format!(
                        "a sink name is 1 to 64 letters, digits, `_`, `.` or `-`, got `{text}`"
                    ),
                );
                ok = false;
            }
            text.clone()
        }
    };
    let retry_max = diag.in_range_or(
        &alert.retry_max_secs,
        &format!("{key}.retry_max_secs"),
        1..=MAX_RETRY_MAX_SECS,
        DEFAULT_RETRY_MAX_SECS,
    );
    let timeout = Duration::from_secs(diag.in_range_or(
        &alert.timeout_secs,
        &format!("{key}.timeout_secs"),
        1..=MAX_SINK_TIMEOUT_SECS,
        DEFAULT_SINK_TIMEOUT_SECS,
    ));

    let target = match kind_name {
        "jsonl" => match &alert.path {
            None => {
                diag.at(
                    raw.span(),
                    &key,
                    "missing `path`: the file the jsonl sink appends to",
                );
                None
            }
            Some(path) => Some(SinkTarget::JsonLines {
                path: diag.absolute(path, &format!("{key}.path")),
            }),
        },
        "webhook" => compile_webhook(&key, raw, timeout, diag),
        _ => compile_syslog(&key, raw, timeout, diag),
    };
    let target = target?;
    ok.then(|| AlertSink {
        name,
        retry_max: Duration::from_secs(retry_max),
        target,
    })
}

/// The type-specific keys that are set, with their spans.
fn typed_keys(alert: &AlertToml) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let strings = [
        ("path", &alert.path),
        ("url", &alert.url),
        ("format", &alert.format),
        ("ca_file", &alert.ca_file),
        ("secret_file", &alert.secret_file),
        ("secret_header", &alert.secret_header),
        ("signing_secret_file", &alert.signing_secret_file),
        ("address", &alert.address),
        ("protocol", &alert.protocol),
        ("facility", &alert.facility),
        ("app_name", &alert.app_name),
    ];
    let mut set: Vec<_> = strings
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| (name, v.span())))
        .collect();
    if let Some(timeout) = &alert.timeout_secs {
        set.push(("timeout_secs", timeout.span()));
    }
    set.sort_by_key(|(_, span)| span.start);
    set
}

fn compile_webhook(
    key: &str,
    raw: &Spanned<AlertToml>,
    timeout: Duration,
    diag: &mut Diagnostics<'_>,
) -> Option<SinkTarget> {
    let alert = raw.get_ref();
    let Some(url) = &alert.url else {
        diag.at(
            raw.span(),
            key,
            "missing `url`: where the webhook sink posts alerts (http:// or https://)",
        );
        return None;
    };
    let text = url.get_ref();
    let host = match check_http_url(text) {
        Ok(host) => Some(host),
        Err(why) => {
            diag.at(url.span(), format!("{key}.url"), why);
            None
        }
    };
    let format = match alert.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
        None | Some((_, "json")) => WebhookFormat::Json,
        Some((_, "slack")) => WebhookFormat::Slack,
        Some((value, other)) => {
            diag.at(
                value.span(),
                format!("{key}.format"),
                format!("unknown webhook format `{other}`, expected json or slack"),
            );
            WebhookFormat::Json
        }
    };
    let ca_file = alert
        .ca_file
        .as_ref()
        .map(|path| diag.absolute(path, &format!("{key}.ca_file")));
    let secret_file = alert
        .secret_file
        .as_ref()
        .map(|path| diag.absolute(path, &format!("{key}.secret_file")));
    let secret_header = alert.secret_header.as_ref().map(|header| {
        let name = header.get_ref();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            diag.at(
                header.span(),
                format!("{key}.secret_header"),
                format!("`{name}` is not an HTTP header name"),
            );
        } else if alert.secret_file.is_none() {
            diag.at(
                header.span(),
                format!("{key}.secret_header"),
                "`secret_header` needs `secret_file` (the secret itself never goes in this file)",
            );
        }
        name.clone()
    });
    let signing_secret_file = alert
        .signing_secret_file
        .as_ref()
        .map(|path| diag.absolute(path, &format!("{key}.signing_secret_file")));
    if secret_file.is_some()
        && text.starts_with("http://")
        && host.as_deref().is_some_and(|h| !is_loopback_host(h))
    {
        diag.at(
            url.span(),
            format!("{key}.url"),
            "a secret would be sent in clear text: use https:// (plain http only to a loopback host)",
        );
    }
    Some(SinkTarget::Webhook(Webhook {
        url: text.clone(),
        format,
        ca_file,
        secret_file,
        secret_header,
        signing_secret_file,
        timeout,
    }))
}

/// The host of an `http://` or `https://` URL, or why it is not one.
fn check_http_url(text: &str) -> Result<String, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("expected an http:// or https:// URL, got `{text}`"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "unsupported URL scheme `{scheme}`: a webhook URL starts with http:// or https://"
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a URL must not contain spaces or control characters".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("credentials in the URL are refused: put the secret in `secret_file`".into());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(format!("the URL `{text}` has no host"));
    }
    Ok(host.to_owned())
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn compile_syslog(
    key: &str,
    raw: &Spanned<AlertToml>,
    timeout: Duration,
    diag: &mut Diagnostics<'_>,
) -> Option<SinkTarget> {
    let alert = raw.get_ref();
    let address = match &alert.address {
        None => {
            diag.at(
                raw.span(),
                key,
                "missing `address`: the syslog receiver as host:port, such as `127.0.0.1:514`",
            );
            return None;
        }
        Some(address) => {
            if let Err(why) = check_host_port(address.get_ref()) {
                diag.at(address.span(), format!("{key}.address"), why);
            }
            address.get_ref().clone()
        }
    };
    let protocol = match alert.protocol.as_ref().map(|p| (p, p.get_ref().as_str())) {
        None | Some((_, "udp")) => SyslogProtocol::Udp,
        Some((_, "tcp")) => SyslogProtocol::Tcp,
        Some((value, "tls")) => {
            diag.at(
                value.span(),
                format!("{key}.protocol"),
                "syslog over TLS (RFC 5425) is not supported yet: use udp or tcp",
            );
            SyslogProtocol::Tcp
        }
        Some((value, other)) => {
            diag.at(
                value.span(),
                format!("{key}.protocol"),
                format!("unknown syslog protocol `{other}`, expected udp or tcp"),
            );
            SyslogProtocol::Udp
        }
    };
    let facility = match &alert.facility {
        None => DEFAULT_SYSLOG_FACILITY,
        Some(value) => SYSLOG_FACILITIES
            .iter()
            .find(|(name, _)| name == value.get_ref())
            .map(|(_, code)| *code)
            .unwrap_or_else(|| {
                let names: Vec<&str> = SYSLOG_FACILITIES.iter().map(|(n, _)| *n).collect();
                diag.at(
                    value.span(),
                    format!("{key}.facility"),
                    format!(
                        "unknown syslog facility `{}`, expected one of {}",
                        value.get_ref(),
                        names.join(", ")
                    ),
                );
                DEFAULT_SYSLOG_FACILITY
            }),
    };
    let app_name = match &alert.app_name {
        None => DEFAULT_SYSLOG_APP_NAME.to_owned(),
        Some(value) => {
            let text = value.get_ref();
            // RFC 5424 APP-NAME: 1*48PRINTUSASCII.
            if text.is_empty() || text.len() > 48 || !text.bytes().all(|b| (33..=126).contains(&b))
            {
                diag.at(
                    value.span(),
                    format!("{key}.app_name"),
                    format!(
                        "an app_name is 1 to 48 printable ASCII characters without spaces, got `{text}`"
                    ),
                );
            }
            text.clone()
        }
    };
    Some(SinkTarget::Syslog(Syslog {
        address,
        protocol,
        facility,
        app_name,
        timeout,
    }))
}

/// `host:port` or `[v6]:port`, with a port from 1 to 65535.
fn check_host_port(text: &str) -> Result<(), String> {
    let expected =
        || format!("expected host:port such as `127.0.0.1:514` or `[::1]:514`, got `{text}`");
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (v6, port) = rest.split_once("]:").ok_or_else(expected)?;
            v6.parse::<std::net::Ipv6Addr>().map_err(|_| expected())?;
            (v6, port)
        }
        None => text.rsplit_once(':').ok_or_else(expected)?,
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if !host_ok || host.contains(':') && !text.starts_with('[') {
        return Err(expected());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "the port must be a number from 1 to 65535, got `{port}`"
        )),
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
    pub(super) fn absolute(&mut self, value: &Spanned<String>, key: &str) -> PathBuf {
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
