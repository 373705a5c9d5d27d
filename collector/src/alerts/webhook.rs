//! An HTTP POST per alert: a versioned JSON document, or a Slack-compatible message.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::{AlertSink, BoxFuture};
use crate::clock::rfc3339;
use crate::store::Alert;
use driftwatch_config::collector::{Webhook as Config, WebhookFormat};

/// The version of the generic JSON payload; a receiver checks it before reading `alert`.
pub const PAYLOAD_VERSION: u32 = 1;
/// How many subjects a Slack message lists before "and N more".
pub const SLACK_SUBJECTS: usize = 10;

pub struct Webhook {
    name: String,
    config: Config,
    client: reqwest::Client,
    /// The secret header, marked sensitive so it is never printed.
    secret: Option<(HeaderName, HeaderValue)>,
}

impl Webhook {
    /// Reads the CA and the secret file; a problem is a clear error at start.
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
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "alert sink `{name}`: cannot read secret_file {}: {e}",
                        path.display()
                    )
                })?;
                let secret = text.trim();
                if secret.is_empty() {
                    return Err(format!(
                        "alert sink `{name}`: secret_file {} is empty",
                        path.display()
                    ));
                }
                let (header, value) = match &config.secret_header {
                    None => (AUTHORIZATION, format!("Bearer {secret}")),
                    Some(header) => (
                        HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                            format!("alert sink `{name}`: `{header}` is not a header name")
                        })?,
                        secret.to_owned(),
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
        Ok(Webhook {
            name,
            config,
            client,
            secret,
        })
    }

    async fn post(&self, alert: &Alert) -> Result<(), String> {
        let payload = match self.config.format {
            WebhookFormat::Json => generic_payload(alert),
            WebhookFormat::Slack => slack_payload(alert),
        };
        let mut request = self.client.post(&self.config.url).json(&payload);
        if let Some((header, value)) = &self.secret {
            request = request.header(header.clone(), value.clone());
        }
        let target = redacted_url(&self.config.url);
        // `without_url`: the path and query may carry a token (Slack's do).
        let response = request
            .send()
            .await
            .map_err(|e| format!("POST to {target} failed: {}", error_chain(e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST to {target} answered HTTP {status}"))
        }
    }
}

impl AlertSink for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> Value {
        json!({
            "type": "webhook",
            "url": redacted_url(&self.config.url),
            "format": match self.config.format {
                WebhookFormat::Json => "json",
                WebhookFormat::Slack => "slack",
            },
            "ca_file": self.config.ca_file,
            "secret_file": self.config.secret_file,
            "secret_header": self.secret.as_ref().map(|(h, _)| h.as_str()),
        })
    }

    fn digest_extra(&self) -> String {
        // The full URL changes the digest (a new Slack channel is a change) without
        // appearing in the audit details.
        self.config.url.clone()
    }

    fn timeout(&self) -> Duration {
        self.config.timeout
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), String>> {
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
/// the delivery bookkeeping.
pub fn generic_payload(alert: &Alert) -> Value {
    json!({
        "version": PAYLOAD_VERSION,
        "alert": {
            "id": alert.id,
            "kind": alert.kind,
            "host_id": alert.host_id,
            "created_at": rfc3339(alert.created_at),
            "body": alert.body,
        },
    })
}

/// Slack's `text` (the notification and fallback) plus `blocks`: host, kind, the subjects
/// (at most [`SLACK_SUBJECTS`]) and how long the drift was held.
pub fn slack_payload(alert: &Alert) -> Value {
    let body = &alert.body;
    let host = body["host"]["hostname"].as_str();
    let summary = body["summary"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{} alert", alert.kind));
    let text = format!("driftwatch: {}", escape_mrkdwn(&summary));
    let mut facts = vec![format!("*Kind:* `{}`", escape_mrkdwn(&alert.kind))];
    if let Some(host) = host {
        facts.push(format!("*Host:* {}", escape_mrkdwn(host)));
    }
    if let Some(held) = body["held_secs"].as_i64() {
        facts.push(format!("*Held:* {}", human_duration(held)));
    }
    if let Some(ticket) = body["ticket"].as_str() {
        facts.push(format!("*Ticket:* {}", escape_mrkdwn(ticket)));
    }
    facts.push(format!("*Alert:* `{}`", alert.id));
    let mut blocks = vec![
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("*{text}*") } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": facts.join("\n") } }),
    ];
    let subjects: Vec<&str> = body["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["subject"].as_str()).collect())
        .unwrap_or_default();
    if !subjects.is_empty() {
        let mut listed: Vec<String> = subjects
            .iter()
            .take(SLACK_SUBJECTS)
            .map(|s| format!("• `{}`", escape_mrkdwn(&s.replace('`', "'"))))
            .collect();
        if subjects.len() > SLACK_SUBJECTS {
            listed.push(format!("…and {} more", subjects.len() - SLACK_SUBJECTS));
        }
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": format!("*Subjects:*\n{}", listed.join("\n")) },
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": format!("raised {}", rfc3339(alert.created_at)) }],
    }));
    json!({ "text": text, "blocks": blocks })
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
}
