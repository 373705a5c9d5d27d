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

/// Subjects named in the structured data (each `subject=` param), at most.
pub const SD_SUBJECTS: usize = 5;
/// Tickets named in the structured data, at most.
pub const SD_TICKETS: usize = 3;
/// Subjects a burst's MSG lists before "and N more", at most.
pub const MSG_SUBJECTS: usize = 10;
/// The longest subject, ticket or hostname (bytes, before escaping) a message carries.
pub const MAX_VALUE_BYTES: usize = 256;

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`, at most `limit` bytes. The
/// structured data names the alert, its kind and host, how many subjects it covers, the
/// first subjects (`subject=`, repeated) and tickets (`ticket=`) as far as a quarter of the
/// message is left for MSG; a burst's MSG lists its first subjects and counts the rest; the
/// free-text MSG is cut (on a character boundary) to fit.
pub fn format_message(header: &Header<'_>, alert: &Alert, limit: usize) -> Vec<u8> {
    let pri = u32::from(header.facility) * 8 + u32::from(severity(&alert.kind));
    let timestamp = jiff::Timestamp::from_millisecond(alert.created_at)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "-".into());
    let body = &alert.body;
    let host = body["host"]["hostname"].as_str();
    let subjects = super::webhook::subjects_of(body);
    let tickets = super::webhook::tickets_of(body);
    let mut sd = format!(
        "[{SD_ID} alert_id=\"{}\" kind=\"{}\"",
        alert.id,
        sd_value(&alert.kind)
    );
    if let Some(host) = host {
        sd.push_str(&format!(" host=\"{}\"", sd_value(host)));
    }
    if !subjects.is_empty() {
        sd.push_str(&format!(" subjects=\"{}\"", subjects.len()));
    }
    let fixed = format!(
        "<{pri}>1 {timestamp} {} {} {} {} ",
        header_field(header.hostname, 255),
        header_field(header.app_name, 48),
        header.procid,
        header_field(&alert.kind, 32),
    );
    // Room for the SD: all but a quarter of the message (at most 512 bytes kept for MSG).
    let sd_room = limit.saturating_sub(fixed.len() + (limit / 4).min(512) + 2);
    let named = tickets
        .iter()
        .take(SD_TICKETS)
        .map(|t| ("ticket", *t))
        .chain(subjects.iter().take(SD_SUBJECTS).map(|s| ("subject", *s)));
    for (name, value) in named {
        let param = format!(" {name}=\"{}\"", sd_value(value));
        if sd.len() + param.len() + 1 > sd_room {
            break;
        }
        sd.push_str(&param);
    }
    sd.push(']');
    let head = format!("{fixed}{sd} ");
    let summary = body["summary"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{} alert", alert.kind));
    // Control characters would end the line on receivers that split on newlines (and
    // they, and bidi controls, would reach whoever reads the log on a terminal): escaped.
    let mut text = driftwatch_common::pathbytes::escape_text(&summary);
    let room = limit.saturating_sub(head.len());
    if subjects.len() > 1 {
        text.push_str(&burst_subjects(&subjects, room.saturating_sub(text.len())));
    }
    let mut message = head.into_bytes();
    message.extend_from_slice(truncate(&text, room).as_bytes());
    message
}

/// `: a, b, c and N more`: the first subjects of a burst that fit in `room` bytes (at most
/// [`MSG_SUBJECTS`]), the rest counted.
fn burst_subjects(subjects: &[&str], room: usize) -> String {
    let reserve = format!(" and {} more", subjects.len()).len();
    let mut listed = String::new();
    let mut count = 0;
    for subject in subjects.iter().take(MSG_SUBJECTS) {
        let shown = driftwatch_common::pathbytes::escape_text(truncate(subject, MAX_VALUE_BYTES));
        let separator = if count == 0 { ": " } else { ", " };
        if listed.len() + separator.len() + shown.len() + reserve > room {
            break;
        }
        listed.push_str(separator);
        listed.push_str(&shown);
        count += 1;
    }
    match subjects.len() - count {
        0 => listed,
        rest if count == 0 => format!(": {rest} subjects"),
        rest => format!("{listed} and {rest} more"),
    }
}

/// An SD-PARAM value: at most [`MAX_VALUE_BYTES`] of the text, unsafe characters as `\xNN`
/// (a newline would split the message), then RFC 5424's escapes.
fn sd_value(value: &str) -> String {
    escape_param(&driftwatch_common::pathbytes::escape_text(truncate(
        value,
        MAX_VALUE_BYTES,
    )))
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

    fn burst(hostname: &str, subjects: &[String], ticket: Option<&str>) -> Alert {
        let items: Vec<Value> = subjects
            .iter()
            .map(|s| json!({ "subject": s, "ticket": ticket }))
            .collect();
        let mut alert = alert("untraced_drift", hostname, "");
        alert.body = json!({
            "host": { "hostname": hostname },
            "summary": format!("{} untraced changes on {hostname}", subjects.len()),
            "items": items,
        });
        alert
    }

    /// Parses `[SD-ID (SP NAME="VALUE")*]` strictly (RFC 5424 section 6.3): returns the
    /// params with their values unescaped, and the rest of the message after the `]`.
    fn parse_sd(text: &str) -> (Vec<(String, String)>, &str) {
        let mut chars = text.char_indices().peekable();
        assert_eq!(chars.next().map(|c| c.1), Some('['), "{text}");
        let mut id = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if c == ' ' || c == ']' {
                break;
            }
            assert!(
                c.is_ascii_graphic() && !matches!(c, '=' | '"'),
                "SD-ID {c:?}"
            );
            id.push(c);
            chars.next();
        }
        assert_eq!(id, SD_ID);
        let mut params = Vec::new();
        loop {
            match chars.next() {
                Some((at, ']')) => return (params, &text[at + 1..]),
                Some((_, ' ')) => {}
                other => panic!("expected SP or ] got {other:?} in {text}"),
            }
            let mut name = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                assert!(
                    c.is_ascii_graphic() && !matches!(c, ']' | '"' | ' '),
                    "{c:?}"
                );
                name.push(c);
            }
            assert!(!name.is_empty() && name.len() <= 32, "{name}");
            assert_eq!(chars.next().map(|c| c.1), Some('"'));
            let mut value = String::new();
            loop {
                match chars.next().expect("an unterminated value") {
                    (_, '\\') => {
                        let (_, next) = chars.next().unwrap();
                        assert!(matches!(next, '"' | '\\' | ']'), "a bare backslash");
                        value.push(next);
                    }
                    (_, '"') => break,
                    (_, ']') => panic!("an unescaped ] in {name}"),
                    (_, c) => value.push(c),
                }
            }
            params.push((name, value));
        }
    }

    /// The SD and MSG of a whole message (after the six header fields).
    fn sd_and_msg(message: &str) -> (Vec<(String, String)>, String) {
        let mut rest = message;
        for _ in 0..6 {
            rest = &rest[rest.find(' ').unwrap() + 1..];
        }
        let (params, after) = parse_sd(rest);
        (params, after.strip_prefix(' ').unwrap_or(after).to_owned())
    }

    #[test]
    fn a_burst_names_its_subjects_and_ticket_in_sd_and_msg() {
        let subjects: Vec<String> = (0..14)
            .map(|i| format!("file:/etc/app/{i}\"]\\.conf"))
            .collect();
        let message = format_message(
            &HEADER,
            &burst("web-1", &subjects, Some("CHG-1042")),
            MAX_UDP_MESSAGE,
        );
        let text = String::from_utf8(message).unwrap();
        let (params, msg) = sd_and_msg(&text);
        let values = |name: &str| -> Vec<&str> {
            params
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(values("subjects"), ["14"]);
        assert_eq!(values("ticket"), ["CHG-1042"], "distinct tickets");
        assert_eq!(
            values("subject"),
            subjects[..SD_SUBJECTS]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            "escaped and read back exactly"
        );
        assert!(
            text.contains(r#" subject="file:/etc/app/0\"\]\\.conf""#),
            "{text}"
        );
        assert!(
            msg.starts_with(
                "14 untraced changes on web-1: file:/etc/app/0\"]\\.conf, file:/etc/app/1"
            ),
            "{msg}"
        );
        assert!(msg.ends_with(" and 4 more"), "{msg}");
        // One subject: the summary names it already; the SD too.
        let one = String::from_utf8(format_message(
            &HEADER,
            &burst("web-1", &subjects[..1], None),
            MAX_UDP_MESSAGE,
        ))
        .unwrap();
        let (params, msg) = sd_and_msg(&one);
        assert_eq!(msg, "1 untraced changes on web-1");
        assert!(params.iter().any(|(n, _)| n == "subject"));
        assert!(!params.iter().any(|(n, _)| n == "ticket"));
        // An emergency window's alert carries its ticket.
        let mut emergency = alert("emergency_unapproved", "h", "s");
        emergency.body["ticket"] = json!("CHG-7");
        let text = String::from_utf8(format_message(&HEADER, &emergency, 512)).unwrap();
        assert!(text.contains(r#" ticket="CHG-7"]"#), "{text}");
    }

    use proptest::prelude::*;

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z/._-]{1,40}",
            "[\"\\\\\\]\\[= ]{1,300}",
            "[é漢😀\u{202e}\u{200b}\u{1b}\n\r\"\\]]{1,600}",
            "(file:/[a-zA-Z0-9\"\\\\\\]é😀]{1,60}){1,100}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn messages_stay_bounded_and_parse_whatever_the_subjects(
            subjects in prop::collection::vec(hostile(), 0..200),
            hostname in hostile(),
            ticket in proptest::option::of(hostile()),
        ) {
            let alert = burst(&hostname, &subjects, ticket.as_deref());
            for limit in [MAX_UDP_MESSAGE, MAX_TCP_MESSAGE] {
                let message = format_message(&HEADER, &alert, limit);
                prop_assert!(message.len() <= limit, "{} > {limit}", message.len());
                let text = String::from_utf8(message).expect("UTF-8");
                prop_assert!(!text.contains(['\n', '\r']), "one line");
                let (params, msg) = sd_and_msg(&text);
                let count = params.iter().filter(|(n, _)| n == "subject").count();
                prop_assert!(count <= SD_SUBJECTS);
                if !subjects.is_empty() {
                    let counted = params.iter().find(|(n, _)| n == "subjects").map(|(_, v)| v.clone());
                    prop_assert_eq!(counted, Some(subjects.len().to_string()));
                    prop_assert!(count >= 1 || limit == MAX_UDP_MESSAGE);
                }
                if subjects.len() > 1 && limit == MAX_TCP_MESSAGE {
                    let tail = format!(" and {} more", subjects.len().saturating_sub(MSG_SUBJECTS));
                    prop_assert!(subjects.len() <= MSG_SUBJECTS || msg.ends_with(&tail), "{msg}");
                }
            }
        }
    }
}
