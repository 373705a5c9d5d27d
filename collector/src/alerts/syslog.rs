//! RFC 5424 messages over UDP (one datagram each, RFC 5426) or TCP (octet counting,
//! RFC 6587 section 3.4.1).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use super::{AlertSink, BoxFuture, DeliveryError};
use crate::store::Alert;
use driftwatch_config::collector::{Syslog as Config, SyslogProtocol};

/// The largest UDP message: what RFC 5426 says every receiver should accept.
pub const MAX_UDP_MESSAGE: usize = 2048;
/// The largest TCP message; longer summaries are cut.
pub const MAX_TCP_MESSAGE: usize = 64 * 1024;
/// The SD-ID of our structured data. No enterprise number is registered for driftwatch,
/// so this uses 32473, the one RFC 5612 reserves for documentation and examples.
pub const SD_ID: &str = "driftwatch@32473";

pub struct Syslog {
    name: String,
    config: Config,
    /// The HOSTNAME field: this collector's name.
    hostname: String,
}

impl Syslog {
    pub fn new(name: String, config: Config) -> Self {
        // The systemd unit hides /proc/sys (ProcSubset=pid): then /etc/hostname, else the
        // NILVALUE.
        let hostname = ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|path| {
                std::fs::read_to_string(path)
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_default();
        Syslog {
            name,
            config,
            hostname,
        }
    }

    fn message(&self, alert: &Alert) -> Vec<u8> {
        let limit = match self.config.protocol {
            SyslogProtocol::Udp => MAX_UDP_MESSAGE,
            SyslogProtocol::Tcp => MAX_TCP_MESSAGE,
        };
        let header = Header {
            facility: self.config.facility,
            app_name: &self.config.app_name,
            hostname: &self.hostname,
            procid: std::process::id(),
        };
        let line = format_message(&header, alert, limit);
        match self.config.protocol {
            SyslogProtocol::Udp => line,
            SyslogProtocol::Tcp => octet_counted(&line),
        }
    }

    async fn send(&self, alert: &Alert) -> Result<(), String> {
        let bytes = self.message(alert);
        let address = &self.config.address;
        let targets: Vec<std::net::SocketAddr> = tokio::net::lookup_host(address)
            .await
            .map_err(|e| format!("cannot resolve {address}: {e}"))?
            .collect();
        let target = *targets
            .first()
            .ok_or_else(|| format!("{address} resolves to no address"))?;
        match self.config.protocol {
            SyslogProtocol::Udp => {
                let local = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(local)
                    .await
                    .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
                socket
                    .send_to(&bytes, target)
                    .await
                    .map_err(|e| format!("cannot send to {target}: {e}"))?;
            }
            SyslogProtocol::Tcp => {
                // One connection per alert: alerts are rare, and nothing stale is kept.
                let mut stream = TcpStream::connect(target)
                    .await
                    .map_err(|e| format!("cannot connect to {target}: {e}"))?;
                stream
                    .write_all(&bytes)
                    .await
                    .and(stream.shutdown().await)
                    .map_err(|e| format!("cannot write to {target}: {e}"))?;
            }
        }
        Ok(())
    }
}

impl AlertSink for Syslog {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> Value {
        json!({
            "type": "syslog",
            "address": self.config.address,
            "protocol": match self.config.protocol {
                SyslogProtocol::Udp => "udp",
                SyslogProtocol::Tcp => "tcp",
            },
            "facility": self.config.facility,
            "app_name": self.config.app_name,
        })
    }

    fn timeout(&self) -> Duration {
        self.config.timeout
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move { self.send(alert).await.map_err(DeliveryError::from) })
    }
}

/// The fixed parts of every message.
pub struct Header<'a> {
    /// 0..=23.
    pub facility: u8,
    pub app_name: &'a str,
    pub hostname: &'a str,
    pub procid: u32,
}

/// RFC 5424 severity by alert kind: a broken event chain, a baseline other than the
/// anchored one or an altered audit log is tampering (critical); drift nobody approved, a
/// silent agent and a host clock that lies about event times need someone now (error); the
/// rest is a warning, except an audit checkpoint, which is only kept (informational).
pub fn severity(kind: &str) -> u8 {
    match kind {
        "chain" | "baseline_anchor" | crate::audit::ops::TAMPERED_KIND => 2,
        "untraced_drift" | "agent_silent" | "clock_claim" => 3,
        "agent_health" | "emergency_unapproved" => 4,
        crate::audit::CHECKPOINT_KIND => 6,
        _ => 5,
    }
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`, at most `limit` bytes: the
/// free-text MSG is cut (on a character boundary) to fit.
pub fn format_message(header: &Header<'_>, alert: &Alert, limit: usize) -> Vec<u8> {
    let pri = u32::from(header.facility) * 8 + u32::from(severity(&alert.kind));
    let timestamp = jiff::Timestamp::from_millisecond(alert.created_at)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "-".into());
    let host = alert.body["host"]["hostname"].as_str();
    let mut sd = format!(
        "[{SD_ID} alert_id=\"{}\" kind=\"{}\"",
        alert.id,
        escape_param(&alert.kind)
    );
    if let Some(host) = host {
        sd.push_str(&format!(" host=\"{}\"", escape_param(host)));
    }
    sd.push(']');
    let head = format!(
        "<{pri}>1 {timestamp} {} {} {} {} {sd} ",
        header_field(header.hostname, 255),
        header_field(header.app_name, 48),
        header.procid,
        header_field(&alert.kind, 32),
    );
    let summary = alert.body["summary"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{} alert", alert.kind));
    // Control characters would end the line on receivers that split on newlines (and
    // they, and bidi controls, would reach whoever reads the log on a terminal): escaped.
    let summary = driftwatch_common::pathbytes::escape_text(&summary);
    let room = limit.saturating_sub(head.len());
    let mut message = head.into_bytes();
    message.extend_from_slice(truncate(&summary, room).as_bytes());
    message
}

/// A header field: printable US-ASCII, at most `max` long, `-` (the NILVALUE) when empty.
fn header_field(value: &str, max: usize) -> String {
    let printable: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if printable.is_empty() {
        "-".into()
    } else {
        printable
    }
}

/// SD-PARAM values escape `"`, `\` and `]` with a backslash (RFC 5424 section 6.3.3).
pub fn escape_param(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`.
pub fn octet_counted(message: &[u8]) -> Vec<u8> {
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend_from_slice(message);
    framed
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn alert(kind: &str, hostname: &str, summary: &str) -> Alert {
        Alert {
            id: Uuid::parse_str("0190a0b0-c0d0-7e00-8000-000000000001").unwrap(),
            kind: kind.into(),
            host_id: None,
            created_at: 1_795_428_000_123,
            body: json!({ "host": { "hostname": hostname }, "summary": summary }),
            delivered_at: None,
            attempts: 0,
            last_error: None,
            deliveries: Vec::new(),
        }
    }

    const HEADER: Header<'static> = Header {
        facility: 4,
        app_name: "driftwatch",
        hostname: "collector-1",
        procid: 42,
    };

    #[test]
    fn a_whole_message() {
        let message = format_message(
            &HEADER,
            &alert(
                "untraced_drift",
                "web-1",
                "untraced change on web-1: user:mallory",
            ),
            MAX_UDP_MESSAGE,
        );
        assert_eq!(
            String::from_utf8(message).unwrap(),
            "<35>1 2026-11-23T10:00:00.123Z collector-1 driftwatch 42 untraced_drift \
             [driftwatch@32473 alert_id=\"0190a0b0-c0d0-7e00-8000-000000000001\" \
             kind=\"untraced_drift\" host=\"web-1\"] untraced change on web-1: user:mallory"
        );
    }

    #[test]
    fn pri_is_facility_times_eight_plus_severity() {
        let pri = |facility, kind| {
            let header = Header { facility, ..HEADER };
            let text =
                String::from_utf8(format_message(&header, &alert(kind, "h", "s"), 512)).unwrap();
            text[1..text.find('>').unwrap()].parse::<u32>().unwrap()
        };
        assert_eq!(pri(0, "chain"), 2);
        assert_eq!(pri(0, "baseline_anchor"), 2);
        assert_eq!(pri(4, "untraced_drift"), 35);
        assert_eq!(pri(10, "agent_silent"), 83);
        assert_eq!(pri(16, "agent_health"), 132);
        assert_eq!(pri(23, "emergency_unapproved"), 188);
        assert_eq!(pri(23, "something_new"), 189);
        assert_eq!(pri(4, "audit_checkpoint"), 38);
    }

    #[test]
    fn sd_values_escape_quote_backslash_and_bracket() {
        assert_eq!(escape_param(r#"a"b\c]d[e"#), r#"a\"b\\c\]d[e"#);
        let text = String::from_utf8(format_message(
            &HEADER,
            &alert("chain", "evil\"] host=\"x", "s"),
            MAX_UDP_MESSAGE,
        ))
        .unwrap();
        assert!(text.contains(r#" host="evil\"\] host=\"x"]"#), "{text}");
    }

    #[test]
    fn udp_messages_are_bounded_on_a_character_boundary() {
        let long = "é".repeat(5000);
        let message = format_message(&HEADER, &alert("chain", "h", &long), MAX_UDP_MESSAGE);
        assert!(message.len() <= MAX_UDP_MESSAGE && message.len() >= MAX_UDP_MESSAGE - 1);
        let text = String::from_utf8(message).expect("still utf-8");
        assert!(text.ends_with('é'));
        // Newlines in a summary do not split the message.
        let text =
            String::from_utf8(format_message(&HEADER, &alert("chain", "h", "a\nb"), 512)).unwrap();
        assert!(text.ends_with("a\\x0ab"), "{text}");
        let text = String::from_utf8(format_message(
            &HEADER,
            &alert("chain", "h", "x\u{1b}[2J\u{202e}y"),
            512,
        ))
        .unwrap();
        assert!(text.ends_with("x\\x1b[2J\\xe2\\x80\\xaey"), "{text}");
    }

    #[test]
    fn nil_values_and_octet_counting() {
        let header = Header {
            hostname: "",
            ..HEADER
        };
        let mut bare = alert("agent_health", "h", "s");
        bare.body = json!({});
        let text = String::from_utf8(format_message(&header, &bare, 512)).unwrap();
        assert!(
            text.starts_with("<36>1 2026-11-23T10:00:00.123Z - driftwatch 42 agent_health [driftwatch@32473 alert_id=\"0190a0b0-c0d0-7e00-8000-000000000001\" kind=\"agent_health\"] agent_health alert"),
            "{text}"
        );
        assert_eq!(octet_counted(b"<1>1 - - - - - -"), b"16 <1>1 - - - - - -");
        assert_eq!(octet_counted("é".as_bytes()), b"2 \xc3\xa9");
    }
}
