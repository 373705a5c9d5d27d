//! An HTTP POST per alert: a versioned JSON document, or a Slack-compatible message.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{AlertSink, BoxFuture, DeliveryError, FailureKind};
use crate::clock::rfc3339;
use crate::store::Alert;
use driftwatch_config::collector::{Webhook as Config, WebhookFormat};

/// The version of the generic JSON payload; a receiver checks it before reading `alert`.
pub const PAYLOAD_VERSION: u32 = 1;
/// How many subjects a Slack message lists before "and N more".
pub const SLACK_SUBJECTS: usize = 10;

/// How many items a generic payload carries before it counts the rest.
pub const GENERIC_ITEMS: usize = 100;
/// Slack's limits (Block Kit): a section's text, a header's text, blocks per message.
pub const SLACK_SECTION_CHARS: usize = 3000;
pub const SLACK_HEADER_CHARS: usize = 150;
pub const SLACK_MAX_BLOCKS: usize = 50;
/// The longest subject a Slack message shows whole; longer ones are cut with `…`.
pub const SLACK_SUBJECT_CHARS: usize = 300;
/// How much of a receiver's answer to a failed request is kept (bytes).
pub const MAX_RESPONSE_BYTES: usize = 1024;
/// The headers of a signed request (see README, "Verifying webhook signatures").
pub const SIGNATURE_HEADER: &str = "x-driftwatch-signature";
pub const TIMESTAMP_HEADER: &str = "x-driftwatch-timestamp";
/// The signature scheme's version: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
pub const SIGNATURE_VERSION: &str = "v0";

pub struct Webhook {
    name: String,
    config: Config,
    client: reqwest::Client,
    /// The secret header, marked sensitive so it is never printed.
    secret: Option<(HeaderName, HeaderValue)>,
    /// The key that signs each request; never printed.
    signing_key: Option<SigningKey>,
}

/// An HMAC key read from `signing_secret_file` (no `Debug`: never printed).
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        SigningKey(key.into())
    }

    /// `v0=` and the hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(format!("{SIGNATURE_VERSION}:{timestamp}:").as_bytes());
        mac.update(body);
        format!(
            "{SIGNATURE_VERSION}={}",
            crate::identity::hex(&mac.finalize().into_bytes())
        )
    }
}

/// Reads a secret file (trimmed, not empty); `private`: refused when every user on the
/// host may read it (0600 or 0640, or a systemd credential, are fine).
fn read_secret_file(
    name: &str,
    key: &str,
    path: &std::path::Path,
    private: bool,
) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "alert sink `{name}`: cannot read {key} {}: {e}",
            path.display()
        )
    })?;
    let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode());
    if private && mode & 0o007 != 0 {
        return Err(format!(
            "alert sink `{name}`: {key} {} is open to every user (mode {:o}): chmod 0600 (or 0640 for the service's group)",
            path.display(),
            mode & 0o777
        ));
    }
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!(
            "alert sink `{name}`: {key} {} is empty",
            path.display()
        ));
    }
    Ok(secret.to_owned())
}

impl Webhook {
    /// Reads the CA and the secret files; a problem is a clear error at start.
    pub fn new(name: String, config: Config) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A redirect would carry the secret to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("driftwatch-collector/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                format!(
                    "alert sink `{name}`: cannot read ca_file {}: {e}",
                    ca.display()
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certs| !certs.is_empty())
                .ok_or_else(|| {
                    format!(
                        "alert sink `{name}`: ca_file {} holds no PEM certificate",
                        ca.display()
                    )
                })?;
            // Only this CA: not the system's roots.
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|e| format!("alert sink `{name}`: cannot build the HTTP client: {e}"))?;
        let secret = match &config.secret_file {
            None => None,
            Some(path) => {
                let secret = read_secret_file(&name, "secret_file", path, false)?;
                let (header, value) = match &config.secret_header {
                    None => (AUTHORIZATION, format!("Bearer {secret}")),
                    Some(header) => (
                        HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                            format!("alert sink `{name}`: `{header}` is not a header name")
                        })?,
                        secret,
                    ),
                };
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    format!(
                        "alert sink `{name}`: secret_file {} holds characters a header cannot carry",
                        path.display()
                    )
                })?;
                value.set_sensitive(true);
                Some((header, value))
            }
        };
        let signing_key = match &config.signing_secret_file {
            None => None,
            Some(path) => Some(SigningKey::new(read_secret_file(
                &name,
                "signing_secret_file",
                path,
                true,
            )?)),
        };
        Ok(Webhook {
            name,
            config,
            client,
            secret,
            signing_key,
        })
    }

    async fn post(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let payload = match self.config.format {
            WebhookFormat::Json => generic_payload(alert),
            WebhookFormat::Slack => slack_payload(alert),
        };
        // Serialized once: the bytes signed are the bytes sent.
        let body = serde_json::to_vec(&payload).map_err(|e| e.to_string())?;
        let mut request = self
            .client
            .post(&self.config.url)
            .header(CONTENT_TYPE, "application/json");
        if let Some((header, value)) = &self.secret {
            request = request.header(header.clone(), value.clone());
        }
        if let Some(key) = &self.signing_key {
            let timestamp = jiff::Timestamp::now().as_second();
            request = request
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, key.sign(timestamp, &body));
        }
        let target = redacted_url(&self.config.url);
        // `without_url`: the path and query may carry a token (Slack's do).
        let mut response = request.body(body).send().await.map_err(|e| {
            DeliveryError::transient(format!(
                "POST to {target} failed: {}",
                error_chain(e.without_url())
            ))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
        let answer = read_bounded(&mut response).await;
        let shown = driftwatch_common::pathbytes::escape_text(answer.trim());
        let message = if shown.is_empty() {
            format!("POST to {target} answered HTTP {status}")
        } else {
            format!("POST to {target} answered HTTP {status}: {shown}")
        };
        Err(DeliveryError {
            message,
            kind: classify(status.as_u16(), retry_after, answer),
        })
    }
}

/// A 4xx other than 408 (timeout) and 429 (too many requests) will never be accepted:
/// permanent. Everything else (5xx, 408, 429, a 3xx not followed) may pass later.
pub fn classify(status: u16, retry_after: Option<Duration>, answer: String) -> FailureKind {
    if (400..500).contains(&status) && status != 408 && status != 429 {
        FailureKind::Permanent {
            status: Some(status),
            response: answer,
        }
    } else {
        FailureKind::Transient { retry_after }
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let secs = at.as_second().saturating_sub(now.as_second());
    Some(Duration::from_secs(secs.max(0) as u64))
}

/// The start of a receiver's answer, at most [`MAX_RESPONSE_BYTES`], as text.
async fn read_bounded(response: &mut reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(MAX_RESPONSE_BYTES);
    // A cut multibyte character decodes as U+FFFD at the end: harmless.
    String::from_utf8_lossy(&bytes).into_owned()
}

impl AlertSink for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> Value {
        let mut described = json!({
            "type": "webhook",
            "url": redacted_url(&self.config.url),
            "format": match self.config.format {
                WebhookFormat::Json => "json",
                WebhookFormat::Slack => "slack",
            },
            "ca_file": self.config.ca_file,
            "secret_file": self.config.secret_file,
            "secret_header": self.secret.as_ref().map(|(h, _)| h.as_str()),
        });
        // Only when set, so a sink configured before signing existed keeps its digest.
        if let Some(path) = &self.config.signing_secret_file {
            described["signing_secret_file"] = json!(path);
        }
        described
    }

    fn digest_extra(&self) -> String {
        // The full URL changes the digest (a new Slack channel is a change) without
        // appearing in the audit details.
        self.config.url.clone()
    }

    fn timeout(&self) -> Duration {
        self.config.timeout
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(self.post(alert))
    }
}

fn error_chain(err: reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Scheme, host and port only: what may be logged and audited.
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hidden = rest.len() > authority.len() && &rest[authority.len()..] != "/";
    format!("{scheme}://{authority}/{}", if hidden { "…" } else { "" })
}

/// `{"version": 1, "alert": {...}}`: the alert as `GET /api/v1/alerts` shows it, without
/// the delivery bookkeeping. A burst lists its first [`GENERIC_ITEMS`] items, with
/// `items_total` and `items_omitted` counting the rest (the API has them all).
pub fn generic_payload(alert: &Alert) -> Value {
    let mut body = alert.body.clone();
    if let Some(items) = body.get_mut("items").and_then(Value::as_array_mut) {
        let total = items.len();
        if total > GENERIC_ITEMS {
            items.truncate(GENERIC_ITEMS);
            body["items_total"] = json!(total);
            body["items_omitted"] = json!(total - GENERIC_ITEMS);
        }
    }
    json!({
        "version": PAYLOAD_VERSION,
        "alert": {
            "id": alert.id,
            "kind": alert.kind,
            "host_id": alert.host_id,
            "created_at": rfc3339(alert.created_at),
            "body": body,
        },
    })
}

/// Slack's `text` (the notification and fallback) plus `blocks`: host, kind, the subjects
/// (at most [`SLACK_SUBJECTS`], and as many as fit in one section) and how long the drift
/// was held. Every text stays within Slack's limits (counted in UTF-16 units, which is
/// never less than characters), so no alert can make Slack refuse the message.
pub fn slack_payload(alert: &Alert) -> Value {
    let body = &alert.body;
    let host = body["host"]["hostname"].as_str();
    let summary = body["summary"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{} alert", alert.kind));
    let text = cut_escaped(
        &format!("driftwatch: {}", escape_mrkdwn(&summary)),
        SLACK_SECTION_CHARS - 2,
    );
    let mut facts = vec![format!(
        "*Kind:* `{}`",
        cut_escaped(&escape_mrkdwn(&alert.kind), 64)
    )];
    if let Some(host) = host {
        facts.push(format!(
            "*Host:* {}",
            cut_escaped(&escape_mrkdwn(host), 300)
        ));
    }
    if let Some(held) = body["held_secs"].as_i64() {
        facts.push(format!("*Held:* {}", human_duration(held)));
    }
    let tickets = tickets_of(body);
    if !tickets.is_empty() {
        let shown: Vec<String> = tickets
            .iter()
            .take(5)
            .map(|t| cut_escaped(&escape_mrkdwn(t), 100))
            .collect();
        let more = match tickets.len() {
            n if n > 5 => format!(" and {} more", n - 5),
            _ => String::new(),
        };
        facts.push(format!("*Ticket:* {}{more}", shown.join(", ")));
    }
    facts.push(format!("*Alert:* `{}`", alert.id));
    let title = plain_title(&summary);
    let mut blocks = vec![json!({ "type": "header", "text": { "type": "plain_text",
        "text": cut_chars(&title, SLACK_HEADER_CHARS) } })];
    if utf16_len(&title) > SLACK_HEADER_CHARS {
        // The header was cut: the whole summary (within a section's limit) below it.
        blocks.push(
            json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("*{text}*") } }),
        );
    }
    blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn",
        "text": cut_escaped(&facts.join("\n"), SLACK_SECTION_CHARS) } }));
    let subjects = subjects_of(body);
    if !subjects.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": slack_subjects(&subjects) },
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": format!("raised {}", rfc3339(alert.created_at)) }],
    }));
    debug_assert!(blocks.len() <= SLACK_MAX_BLOCKS);
    json!({ "text": text, "blocks": blocks })
}

/// The subjects of an alert's items, in order.
pub fn subjects_of(body: &Value) -> Vec<&str> {
    body["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["subject"].as_str()).collect())
        .unwrap_or_default()
}

/// The distinct tickets an alert names: its own (`ticket`) and its items' windows'.
pub fn tickets_of(body: &Value) -> Vec<&str> {
    let mut tickets: Vec<&str> = Vec::new();
    let items = body["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let found = std::iter::once(&body["ticket"]).chain(items.iter().map(|i| &i["ticket"]));
    for ticket in found.filter_map(Value::as_str) {
        if !ticket.is_empty() && !tickets.contains(&ticket) {
            tickets.push(ticket);
        }
    }
    tickets
}

/// `*Subjects:*` and one line per subject, as many as fit in a section (at most
/// [`SLACK_SUBJECTS`]), then "…and N more".
fn slack_subjects(subjects: &[&str]) -> String {
    let mut text = String::from("*Subjects:*");
    // Room kept for the longest possible "…and N more" line.
    let reserve = format!("\n…and {} more", subjects.len())
        .encode_utf16()
        .count();
    let mut listed = 0;
    for subject in subjects.iter().take(SLACK_SUBJECTS) {
        let shown = cut_escaped(
            &escape_mrkdwn(&subject.replace('`', "'")),
            SLACK_SUBJECT_CHARS,
        );
        let line = format!("\n• `{shown}`");
        if utf16_len(&text) + utf16_len(&line) + reserve > SLACK_SECTION_CHARS {
            break;
        }
        text.push_str(&line);
        listed += 1;
    }
    if listed < subjects.len() {
        text.push_str(&format!("\n…and {} more", subjects.len() - listed));
    }
    text
}

fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// At most `max` UTF-16 units of `text`, ending in `…` when cut.
fn cut_chars(text: &str, max: usize) -> String {
    if utf16_len(text) <= max {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        if used + c.len_utf16() > max - 1 {
            break;
        }
        used += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

/// Like [`cut_chars`] for escaped mrkdwn: never cuts inside an `&amp;`-style entity or a
/// `\xNN` escape (a cut escape would show as something else).
fn cut_escaped(text: &str, max: usize) -> String {
    let cut = cut_chars(text, max);
    if cut.len() == text.len() {
        return cut;
    }
    let mut kept = cut.trim_end_matches('…').to_owned();
    let tail_start = kept.len().saturating_sub(6);
    let tail = kept.get(tail_start..).unwrap_or_default().to_owned();
    if let Some(at) = tail.rfind(['&', '\\']) {
        let open = &tail[at..];
        let whole = if open.starts_with('&') {
            open.contains(';')
        } else {
            open.len() >= 4
        };
        if !whole {
            kept.truncate(tail_start + at);
        }
    }
    kept.push('…');
    kept
}

/// A header is plain text: control and bidi characters as `\xNN`, nothing else changed.
fn plain_title(summary: &str) -> String {
    format!(
        "driftwatch: {}",
        driftwatch_common::pathbytes::escape_text(summary)
    )
}

/// Slack's three control characters (as entities), and control and bidi characters as `\xNN` (people read it).
fn escape_mrkdwn(text: &str) -> String {
    driftwatch_common::pathbytes::escape_text(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn human_duration(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn drift_alert(subjects: usize) -> Alert {
        let items: Vec<Value> = (0..subjects)
            .map(|i| json!({ "subject": format!("file:/etc/app/{i}.conf") }))
            .collect();
        Alert {
            id: Uuid::parse_str("0190a0b0-c0d0-7e00-8000-000000000001").unwrap(),
            kind: "untraced_drift".into(),
            host_id: Some(Uuid::nil()),
            created_at: 1_795_428_000_000,
            body: json!({
                "kind": "untraced_drift",
                "host": { "id": Uuid::nil(), "hostname": "web<1>" },
                "summary": format!("{subjects} untraced changes on web<1>"),
                "held_secs": 330,
                "items": items,
            }),
            delivered_at: Some(5),
            attempts: 3,
            last_error: Some("x".into()),
            deliveries: Vec::new(),
        }
    }

    #[test]
    fn the_generic_payload_is_versioned_and_has_no_bookkeeping() {
        let payload = generic_payload(&drift_alert(2));
        assert_eq!(payload["version"], 1);
        assert_eq!(payload["alert"]["kind"], "untraced_drift");
        assert_eq!(payload["alert"]["created_at"], "2026-11-23T10:00:00Z");
        assert_eq!(
            payload["alert"]["body"]["items"][1]["subject"],
            "file:/etc/app/1.conf"
        );
        let alert = payload["alert"].as_object().unwrap();
        assert!(!alert.contains_key("attempts") && !alert.contains_key("last_error"));
    }

    #[test]
    fn slack_lists_host_kind_held_time_and_bounded_subjects() {
        let payload = slack_payload(&drift_alert(13));
        assert_eq!(
            payload["text"],
            "driftwatch: 13 untraced changes on web&lt;1&gt;"
        );
        let blocks = payload["blocks"].as_array().unwrap();
        let facts = blocks[1]["text"]["text"].as_str().unwrap();
        assert!(facts.contains("*Kind:* `untraced_drift`"), "{facts}");
        assert!(facts.contains("*Host:* web&lt;1&gt;"), "{facts}");
        assert!(facts.contains("*Held:* 5 min"), "{facts}");
        let subjects = blocks[2]["text"]["text"].as_str().unwrap();
        assert_eq!(
            subjects.matches("• `file:/etc/app/").count(),
            SLACK_SUBJECTS
        );
        assert!(subjects.contains("/etc/app/9.conf") && !subjects.contains("/etc/app/10.conf"));
        assert!(subjects.ends_with("…and 3 more"), "{subjects}");
        // No items (an agent went silent): no subject block.
        let mut silent = drift_alert(0);
        silent.body =
            json!({ "host": { "hostname": "db-1" }, "summary": "no heartbeat from db-1" });
        let payload = slack_payload(&silent);
        assert_eq!(payload["blocks"].as_array().unwrap().len(), 3);
        assert!(
            !payload["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("Held")
        );
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration(1), "1 s");
        assert_eq!(human_duration(300), "5 min");
        assert_eq!(human_duration(9000), "2 h 30 min");
    }

    #[test]
    fn urls_are_logged_without_path_or_query() {
        assert_eq!(
            redacted_url("https://hooks.example/services/T0/B0/secret"),
            "https://hooks.example/…"
        );
        assert_eq!(
            redacted_url("http://127.0.0.1:9000/"),
            "http://127.0.0.1:9000/"
        );
        assert_eq!(redacted_url("http://h:1?token=x"), "http://h:1/…");
    }

    #[test]
    fn a_missing_or_empty_secret_file_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = |secret_file: std::path::PathBuf| Config {
            url: "https://hooks.example/".into(),
            format: WebhookFormat::Json,
            ca_file: None,
            secret_file: Some(secret_file),
            secret_header: None,
            signing_secret_file: None,
            timeout: Duration::from_secs(1),
        };
        let missing = Webhook::new("hook".into(), config(dir.path().join("none"))).err();
        assert!(missing.unwrap().contains("cannot read secret_file"));
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let empty = Webhook::new("hook".into(), config(dir.path().join("empty"))).err();
        assert!(empty.unwrap().contains("is empty"));
        std::fs::write(dir.path().join("ok"), "s3cret\n").unwrap();
        let hook = Webhook::new("hook".into(), config(dir.path().join("ok"))).unwrap();
        let described = hook.describe().to_string();
        assert!(!described.contains("s3cret"), "{described}");
        assert!(format!("{:?}", hook.secret).contains("Sensitive"));
    }

    /// HMAC-SHA256 by RFC 2104's definition, from SHA-256 alone: an independent check of
    /// the `hmac` crate as used here.
    fn rfc2104_hmac_sha256(key: &[u8], message: &[u8]) -> String {
        use sha2::Digest;
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(message)
            .finalize();
        let outer = Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize();
        crate::identity::hex(&outer)
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_version_timestamp_and_body() {
        // RFC 4231 test case 2 checks the reference itself.
        assert_eq!(
            rfc2104_hmac_sha256(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = br#"{"version":1,"alert":{"id":"x"}}"#;
        for key in [&b"s3cret"[..], &[0xa5; 100][..]] {
            let signed = SigningKey::new(key).sign(1_795_428_000, body);
            let mut message = b"v0:1795428000:".to_vec();
            message.extend_from_slice(body);
            assert_eq!(signed, format!("v0={}", rfc2104_hmac_sha256(key, &message)));
        }
        // Another timestamp or body, another signature.
        let key = SigningKey::new("s3cret");
        assert_ne!(key.sign(1, body), key.sign(2, body));
        assert_ne!(key.sign(1, body), key.sign(1, b"{}"));
    }

    /// The fenced block in README.md that follows `marker` (the documented snippets).
    fn readme_snippet(marker: &str, fence: &str) -> String {
        let readme = include_str!("../../../README.md");
        let after = &readme[readme.find(marker).expect("the README section")..];
        let start = after.find(&format!("```{fence}\n")).expect("the snippet") + fence.len() + 4;
        let end = start + after[start..].find("```").expect("its end");
        after[start..end].to_owned()
    }

    /// Runs the README's shell and Python verification snippets (they need openssl and
    /// python3, which `.ci/run` installs) on a signature made here.
    #[test]
    fn the_documented_verification_snippets_accept_our_signature_and_refuse_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("hook.key");
        std::fs::write(&secret, "s3cret key\n").unwrap();
        let body = dir.path().join("body.json");
        let payload =
            br#"{"version":1,"alert":{"kind":"chain","body":{"summary":"a \"quoted\" $x"}}}"#;
        std::fs::write(&body, payload).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let key = SigningKey::new("s3cret key");
        let shell = readme_snippet("Verifying webhook signatures", "sh");
        let python = readme_snippet("Verifying webhook signatures", "python");
        let run_shell = |timestamp: i64, signature: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&shell)
                .arg("verify")
                .arg(&secret)
                .arg(&body)
                .env("TS", timestamp.to_string())
                .env("SIG", signature)
                .output()
                .expect("sh runs")
        };
        let good = run_shell(now, &key.sign(now, payload));
        assert!(
            good.status.success(),
            "{}",
            String::from_utf8_lossy(&good.stderr)
        );
        let forged = run_shell(now, &SigningKey::new("other").sign(now, payload));
        assert!(!forged.status.success());
        let replayed = run_shell(now - 301, &key.sign(now - 301, payload));
        assert!(!replayed.status.success(), "older than 5 min");
        assert!(String::from_utf8_lossy(&replayed.stderr).contains("timestamp"));

        let program = format!(
            "{python}\nimport sys\nok = verify(open(sys.argv[1], 'rb').read().strip(), sys.argv[2], sys.argv[3], open(sys.argv[4], 'rb').read())\nsys.exit(0 if ok else 1)\n"
        );
        let run_python = |timestamp: i64, signature: &str| {
            std::process::Command::new("python3")
                .arg("-c")
                .arg(&program)
                .arg(&secret)
                .arg(timestamp.to_string())
                .arg(signature)
                .arg(&body)
                .status()
                .expect("python3 runs")
                .success()
        };
        assert!(run_python(now, &key.sign(now, payload)));
        assert!(!run_python(now, &key.sign(now + 1, payload)));
        assert!(!run_python(now - 301, &key.sign(now - 301, payload)));
    }

    #[test]
    fn a_4xx_but_408_and_429_is_permanent_and_retry_after_is_read() {
        for status in [400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(
                classify(status, None, "invalid_blocks".into()),
                FailureKind::Permanent {
                    status: Some(status),
                    response: "invalid_blocks".into()
                },
                "{status}"
            );
        }
        let pause = Some(Duration::from_secs(30));
        for status in [408, 429, 500, 502, 503, 504, 301] {
            assert_eq!(
                classify(status, pause, String::new()),
                FailureKind::Transient { retry_after: pause },
                "{status}"
            );
        }
        let now: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    fn alert_with_subjects(subjects: &[String], hostname: &str) -> Alert {
        let mut alert = drift_alert(0);
        let items: Vec<Value> = subjects.iter().map(|s| json!({ "subject": s })).collect();
        alert.body = json!({
            "kind": "untraced_drift",
            "host": { "hostname": hostname },
            "summary": format!("{} untraced changes on {hostname}: {}", subjects.len(), subjects.join(", ")),
            "held_secs": 30,
            "ticket": subjects.first(),
            "items": items,
        });
        alert
    }

    /// Every text of a Slack message within Slack's limits.
    fn assert_within_slack_limits(payload: &Value) {
        let units = |v: &Value| v.as_str().unwrap().encode_utf16().count();
        assert!(units(&payload["text"]) <= SLACK_SECTION_CHARS);
        let blocks = payload["blocks"].as_array().unwrap();
        assert!(blocks.len() <= SLACK_MAX_BLOCKS);
        for block in blocks {
            match block["type"].as_str().unwrap() {
                "header" => assert!(units(&block["text"]["text"]) <= SLACK_HEADER_CHARS),
                "section" => assert!(
                    units(&block["text"]["text"]) <= SLACK_SECTION_CHARS,
                    "{} units",
                    units(&block["text"]["text"])
                ),
                "context" => assert!(units(&block["elements"][0]["text"]) <= SLACK_SECTION_CHARS),
                other => panic!("unexpected block {other}"),
            }
        }
    }

    #[test]
    fn a_burst_of_long_paths_stays_within_slack_limits_and_counts_the_rest() {
        // The incident: 14 paths of about 300 characters made a 4,487-character section.
        let subjects: Vec<String> = (0..14)
            .map(|i| format!("file:/srv/app/{}/{i}.conf", "deep/".repeat(60)))
            .collect();
        let payload = slack_payload(&alert_with_subjects(&subjects, "web-1"));
        assert_within_slack_limits(&payload);
        let blocks = payload["blocks"].as_array().unwrap();
        let listed = blocks
            .iter()
            .map(|b| b["text"]["text"].as_str().unwrap_or(""))
            .find(|t| t.starts_with("*Subjects:*"))
            .unwrap();
        let shown = listed.matches("\n• `").count();
        assert!((1..14).contains(&shown), "{shown}");
        assert!(
            listed.ends_with(&format!("…and {} more", 14 - shown)),
            "{listed}"
        );
        // The header is plain text and cut; the whole summary follows in a section.
        assert_eq!(blocks[0]["type"], "header");
        assert!(blocks[0]["text"]["text"].as_str().unwrap().ends_with('…'));
        assert!(
            blocks[1]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with("*driftwatch: 14 untraced changes on web-1")
        );
    }

    #[test]
    fn the_generic_payload_lists_a_bounded_number_of_items_and_counts_the_rest() {
        let subjects: Vec<String> = (0..250).map(|i| format!("file:/etc/{i}")).collect();
        let payload = generic_payload(&alert_with_subjects(&subjects, "web-1"));
        let body = &payload["alert"]["body"];
        assert_eq!(body["items"].as_array().unwrap().len(), GENERIC_ITEMS);
        assert_eq!(body["items"][99]["subject"], "file:/etc/99");
        assert_eq!(body["items_total"], 250);
        assert_eq!(body["items_omitted"], 150);
        let small = generic_payload(&drift_alert(3));
        assert_eq!(small["alert"]["body"]["items"].as_array().unwrap().len(), 3);
        assert!(small["alert"]["body"].get("items_omitted").is_none());
    }

    #[test]
    fn a_world_readable_signing_secret_is_refused_and_a_private_one_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.key");
        std::fs::write(&path, "k3y\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = Config {
            url: "https://hooks.example/".into(),
            format: WebhookFormat::Json,
            ca_file: None,
            secret_file: None,
            secret_header: None,
            signing_secret_file: Some(path.clone()),
            timeout: Duration::from_secs(1),
        };
        let refused = Webhook::new("hook".into(), config.clone()).err().unwrap();
        assert!(
            refused.contains("open to every user (mode 644)"),
            "{refused}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let hook = Webhook::new("hook".into(), config).unwrap();
        let key = hook.signing_key.as_ref().unwrap();
        assert_eq!(key.sign(5, b"x"), SigningKey::new("k3y").sign(5, b"x"));
        let described = hook.describe();
        assert_eq!(described["signing_secret_file"], json!(path));
        assert!(!described.to_string().contains("k3y"));
    }

    use proptest::prelude::*;

    /// Subjects a hostile host could report: long, many, multibyte, mrkdwn and entity
    /// characters, backticks, controls and bidi overrides.
    fn hostile_subject() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z/._-]{1,40}",
            "[`*_~<>&|\\\\:\"\\]\\[ ]{1,200}",
            "[é漢字😀\u{202e}\u{200b}\u{1b}\n&<>]{1,400}",
            "(file:/[a-zA-Z0-9&<>`*😀é]{1,60}){1,140}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn slack_messages_stay_within_limits_whatever_the_subjects(
            subjects in prop::collection::vec(hostile_subject(), 0..300),
            hostname in "[a-zé😀<>&`*\u{202e}]{1,253}",
        ) {
            let alert = alert_with_subjects(&subjects, &hostname);
            let payload = slack_payload(&alert);
            assert_within_slack_limits(&payload);
            if !subjects.is_empty() {
                let blocks = payload["blocks"].as_array().unwrap();
                let listed = blocks
                    .iter()
                    .filter_map(|b| b["text"]["text"].as_str())
                    .find(|t| t.starts_with("*Subjects:*"))
                    .unwrap();
                let shown = listed.matches("\n• `").count();
                prop_assert!(shown >= 1, "the first subject is always named");
                if shown < subjects.len() {
                    let suffix = format!("…and {} more", subjects.len() - shown);
                    prop_assert!(listed.ends_with(&suffix));
                }
            }
            // The generic payload: bounded list, the rest counted.
            let generic = generic_payload(&alert);
            let items = generic["alert"]["body"]["items"].as_array().unwrap().len();
            prop_assert_eq!(items, subjects.len().min(GENERIC_ITEMS));
            if subjects.len() > GENERIC_ITEMS {
                prop_assert_eq!(
                    generic["alert"]["body"]["items_omitted"].as_u64(),
                    Some((subjects.len() - GENERIC_ITEMS) as u64)
                );
            }
        }
    }
}
