//! The close-out bundle of a change window: what was approved, by whom and when, every
//! change it authorized and anything flagged against it, the close-out and whether the
//! agents applied it, the audit log's verification at the time of export, and a digest.
//! Pure.
//!
//! The digest is SHA-256 over `content` serialized as compact JSON (keys in the order
//! given, as the JSON format prints it byte for byte), so a JSON bundle can be checked by
//! anyone. Each fetch is one export (its time and the audit log's length are in the
//! content), so the Markdown or HTML shows the digest of its own export.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::text::{html, md_block, md_code, md_text};
use super::{actor_text, kind_name, seen_by_name, state_text};
use crate::api::model::WindowView;
use crate::audit::VerifyReport;
use crate::clock::{Millis, rfc3339};
use crate::drift::DriftStatus;
use crate::identity::hex;
use crate::matcher::Outcome;
use crate::store::WindowRecords;
use crate::windows::Window;
use driftwatch_common::api::v1::CommandOutcome;

/// One change the window authorized, or that happened in it in another state than approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub event_id: Uuid,
    pub host: String,
    pub subject: String,
    pub kind: String,
    /// `authorized` or `unexpected_state`.
    pub authorization: String,
    /// For `unexpected_state`: the state the window approved.
    pub expected: Option<String>,
    pub changed: Vec<String>,
    pub before: String,
    pub after: String,
    /// Unified diff with secrets masked by the agent; `None` when none was sent.
    pub diff: Option<String>,
    pub actor: String,
    pub seen_by: String,
    pub observed_at: String,
    pub received_at: String,
    pub drift_id: Option<Uuid>,
    pub chain: String,
    /// When it reached the agent's spool, on the collector's clock: what the window had
    /// to cover for it to be authorized.
    #[serde(default)]
    pub spooled_between: String,
    /// `consistent`, or the agent's clock claim is false (`before_bounds`, `after_bounds`).
    #[serde(default)]
    pub clock_claim: String,
}

/// Something an auditor should look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub host: String,
    pub subject: String,
    pub problem: String,
}

/// A baseline-accept command of the close-out and the agent's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    pub host: String,
    pub subject: String,
    /// The reviewed state the agent was told to take as baseline.
    pub state: String,
    pub queued_at: String,
    /// `pending`, `applied`, `mismatch` (changed again after review) or `failed`.
    pub status: String,
    pub detail: Option<String>,
    pub answered_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseOut {
    /// Who closed the window out (accepted its drift), and when.
    pub closed_by: Option<String>,
    pub closed_at: Option<String>,
    pub drift_accepted: u64,
    pub acceptances: Vec<Acceptance>,
}

/// What the digest covers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Content {
    pub window: WindowView,
    pub close_out: Option<CloseOut>,
    pub changes: Vec<Change>,
    pub flagged: Vec<Flag>,
    pub audit_log: VerifyReport,
    pub exported_at: String,
    pub exported_by: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bundle {
    pub content: Content,
    /// SHA-256 (hex) of `content` as compact JSON.
    pub content_sha256: String,
}

pub fn build(
    window: &Window,
    records: &WindowRecords,
    audit_log: VerifyReport,
    exported_by: &str,
    now: Millis,
) -> Bundle {
    let changes: Vec<Change> = records
        .events
        .iter()
        .map(|he| {
            let stored = &he.stored;
            let event = &stored.event;
            Change {
                event_id: event.id,
                host: he.hostname.clone(),
                subject: event.subject.0.clone(),
                kind: kind_name(event.kind).to_owned(),
                authorization: stored.outcome.name().to_owned(),
                expected: match &stored.outcome {
                    Outcome::UnexpectedState { expected, .. } => Some(expected.clone()),
                    _ => None,
                },
                changed: event.changed.clone(),
                before: state_text(event.before.as_ref()),
                after: state_text(event.after.as_ref()),
                diff: event.diff.clone(),
                actor: actor_text(event.actor.as_ref()),
                seen_by: seen_by_name(event.seen_by).to_owned(),
                observed_at: rfc3339(stored.event_time),
                received_at: rfc3339(stored.received_at),
                drift_id: stored.drift_id,
                chain: stored.chain.clone(),
                spooled_between: format!(
                    "{} and {}",
                    rfc3339(stored.spool.spooled_after),
                    rfc3339(stored.spool.spooled_before)
                ),
                clock_claim: stored.spool.clock_claim.name().to_owned(),
            }
        })
        .collect();
    let mut flagged: Vec<Flag> = changes
        .iter()
        .filter_map(|c| {
            c.expected.as_ref().map(|expected| Flag {
                host: c.host.clone(),
                subject: c.subject.clone(),
                problem: format!(
                    "changed in the window to another state than approved (expected {expected}, \
                     got {})",
                    c.after
                ),
            })
        })
        .collect();
    for c in changes.iter().filter(|c| c.chain != "ok") {
        flagged.push(Flag {
            host: c.host.clone(),
            subject: c.subject.clone(),
            problem: format!("the event's chain verdict is `{}`", c.chain),
        });
    }
    for d in records
        .drift
        .iter()
        .filter(|d| d.status == DriftStatus::Open)
    {
        flagged.push(Flag {
            host: d.hostname.clone(),
            subject: d.subject.clone(),
            problem: format!(
                "drift still open ({}): needs a security review",
                d.reason.as_deref().unwrap_or("needs review")
            ),
        });
    }
    for c in records.commands.iter().filter(|c| c.status != "applied") {
        flagged.push(Flag {
            host: c.hostname.clone(),
            subject: c.subject.clone(),
            problem: format!("baseline acceptance {}", c.status),
        });
    }
    let close_out = window
        .ended_by
        .as_ref()
        .filter(|_| window.status == crate::windows::WindowStatus::Closed);
    let close_out = close_out.map(|by| CloseOut {
        closed_by: Some(by.clone()),
        closed_at: window.ended_at.map(rfc3339),
        drift_accepted: records
            .drift
            .iter()
            .filter(|d| d.status == DriftStatus::Accepted)
            .count() as u64,
        acceptances: records
            .commands
            .iter()
            .map(|c| Acceptance {
                host: c.hostname.clone(),
                subject: c.subject.clone(),
                state: state_text(c.state.as_ref()),
                queued_at: rfc3339(c.created_at),
                status: c.status.clone(),
                detail: c.result.as_ref().and_then(outcome_detail),
                answered_at: c.result_at.map(rfc3339),
            })
            .collect(),
    });
    let content = Content {
        window: WindowView::from(window),
        close_out,
        changes,
        flagged,
        audit_log,
        exported_at: rfc3339(now),
        exported_by: exported_by.to_owned(),
    };
    let digest = Sha256::digest(serde_json::to_vec(&content).expect("bundles serialize"));
    Bundle {
        content,
        content_sha256: hex(&digest),
    }
}

/// What an agent said beyond its status.
fn outcome_detail(outcome: &CommandOutcome) -> Option<String> {
    match outcome {
        CommandOutcome::Applied => None,
        CommandOutcome::Mismatch { current } => Some(format!(
            "the subject changed again after review; now {}",
            state_text(current.as_ref())
        )),
        CommandOutcome::Failed { message } => Some(message.clone()),
    }
}

/// Compact JSON: `content` appears byte for byte as digested.
pub fn to_json(bundle: &Bundle) -> String {
    serde_json::to_string(bundle).expect("bundles serialize")
}

fn or_none(value: Option<&str>) -> &str {
    value.unwrap_or("(none)")
}

/// Markdown for a ticket: values from people and hosts are escaped or in code spans.
pub fn to_markdown(bundle: &Bundle) -> String {
    let c = &bundle.content;
    let w = &c.window;
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "# Change window {} — {}",
        md_text(&w.ticket),
        md_text(&w.title)
    ));
    line(String::new());
    if let Some(warning) = warning(&c.audit_log) {
        line(format!("**{warning}**"));
        line(String::new());
    }
    line(format!("- Window: {}", md_code(&w.id.to_string())));
    line(format!("- Kind: {}; status: {}", w.kind, w.status));
    line(format!("- Requested by: {}", md_text(&w.requester)));
    line(format!(
        "- Approved by: {} at {}{}",
        md_text(or_none(w.decided_by.as_deref())),
        or_none(w.decided_at.as_deref()),
        w.decision_comment
            .as_deref()
            .map(|c| format!(" (comment: {})", md_text(c)))
            .unwrap_or_default()
    ));
    line(format!(
        "- Time: {} to {} ({}); UTC {} to {}",
        w.start_local,
        w.end_local,
        md_text(&w.time_zone),
        w.start,
        w.end
    ));
    line(format!(
        "- Hosts: {}",
        md_code(&serde_json::to_string(&w.hosts).expect("scopes serialize"))
    ));
    let subjects: Vec<String> = w.subjects.iter().map(|s| md_code(s)).collect();
    line(format!("- Subjects: {}", subjects.join(", ")));
    let expected: Vec<String> = w
        .expected
        .iter()
        .map(|e| format!("{} = {}", md_code(&e.subject), md_code(&e.describe())))
        .collect();
    line(format!(
        "- Expected states: {}",
        if expected.is_empty() {
            "(none)".into()
        } else {
            expected.join("; ")
        }
    ));
    line(String::new());
    line("## Close-out".into());
    line(String::new());
    match &c.close_out {
        None => line("Not closed out.".into()),
        Some(close) => {
            line(format!(
                "Closed by {} at {}; {} drift item(s) accepted as the new baseline.",
                md_text(or_none(close.closed_by.as_deref())),
                or_none(close.closed_at.as_deref()),
                close.drift_accepted
            ));
            line(String::new());
            for a in &close.acceptances {
                line(format!(
                    "- {} {}: {}{} (state {})",
                    md_text(&a.host),
                    md_code(&a.subject),
                    a.status,
                    a.detail
                        .as_deref()
                        .map(|d| format!(", {}", md_text(d)))
                        .unwrap_or_default(),
                    md_code(&a.state)
                ));
            }
        }
    }
    line(String::new());
    line(format!("## Changes ({})", c.changes.len()));
    line(String::new());
    for ch in &c.changes {
        line(format!(
            "### {} {} — {}",
            md_text(&ch.host),
            md_code(&ch.subject),
            ch.authorization
        ));
        line(String::new());
        line(format!(
            "- Kind: {}; seen by: {}; at {} (received {})",
            ch.kind, ch.seen_by, ch.observed_at, ch.received_at
        ));
        line(format!(
            "- Spooled between {} (collector clock); clock claim: {}",
            ch.spooled_between, ch.clock_claim
        ));
        line(format!("- Actor: {}", md_text(&ch.actor)));
        line(format!("- Before: {}", md_code(&ch.before)));
        line(format!("- After: {}", md_code(&ch.after)));
        if let Some(expected) = &ch.expected {
            line(format!("- Expected: {}", md_code(expected)));
        }
        line(format!(
            "- Event: {}; chain: {}",
            md_code(&ch.event_id.to_string()),
            ch.chain
        ));
        if let Some(diff) = &ch.diff {
            line(String::new());
            out_block(&mut line, diff);
        }
        line(String::new());
    }
    line(format!("## Flagged ({})", c.flagged.len()));
    line(String::new());
    for f in &c.flagged {
        line(format!(
            "- {} {}: {}",
            md_text(&f.host),
            md_code(&f.subject),
            md_text(&f.problem)
        ));
    }
    line(String::new());
    line("## Audit log".into());
    line(String::new());
    line(audit_sentence(&c.audit_log));
    line(String::new());
    line(format!(
        "Exported at {} by {}. Content SHA-256: {}",
        c.exported_at,
        md_text(&c.exported_by),
        md_code(&bundle.content_sha256)
    ));
    out
}

fn out_block(line: &mut impl FnMut(String), diff: &str) {
    line(md_block(diff).trim_end_matches('\n').to_owned());
}

fn audit_sentence(log: &VerifyReport) -> String {
    let mut text = if log.ok {
        format!(
            "No problem found at export in {} entries (head {}): {}.",
            log.entries, log.head_hash, log.assurance
        )
    } else {
        let problems: Vec<String> = log
            .findings
            .iter()
            .map(|f| format!("entry {}: {}", f.seq, f.problem))
            .collect();
        format!(
            "ALTERED: {} problem(s) in {} entries ({}).",
            log.findings.len(),
            log.entries,
            problems.join("; ")
        )
    };
    if let Some(cp) = &log.checkpoint {
        text.push_str(&format!(
            " Checkpoint signed at export: entries {}, head {}, at {}, key {}, signature {}.",
            cp.entries, cp.head_hash, cp.at, cp.key_id, cp.signature
        ));
    }
    for pruned in &log.pruned {
        text.push_str(&format!(
            " Pruned by retention (audit entry {}, {}): {}.",
            pruned.seq, pruned.at, pruned.what
        ));
    }
    text
}

/// A loud first line when the evidence cannot be trusted.
fn warning(log: &VerifyReport) -> Option<&'static str> {
    (!log.ok).then_some(
        "WARNING: this evidence disagrees with the audit log, or the log was altered: \
         see the audit log section; do not rely on the decisions shown",
    )
}

/// A standalone HTML page; every value is escaped.
pub fn to_html(bundle: &Bundle) -> String {
    let c = &bundle.content;
    let w = &c.window;
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    out.push_str(&format!(
        "<title>Change window {}</title>\n",
        html(&w.ticket)
    ));
    out.push_str(
        "<style>body{font-family:sans-serif;max-width:70em;margin:auto}\
         td,th{border:1px solid #999;padding:2px 6px;vertical-align:top;text-align:left}\
         td{white-space:pre-wrap}\
         table{border-collapse:collapse}pre{background:#f4f4f4;padding:6px;overflow:auto}\
         .flag{color:#a00}</style>\n</head><body>\n",
    );
    out.push_str(&format!(
        "<h1>Change window {} — {}</h1>\n",
        html(&w.ticket),
        html(&w.title)
    ));
    if let Some(warning) = warning(&c.audit_log) {
        out.push_str(&format!("<p class=\"flag\"><b>{}</b></p>\n", html(warning)));
    }
    out.push_str("<table>\n");
    let row = |out: &mut String, name: &str, value: &str| {
        out.push_str(&format!(
            "<tr><th>{name}</th><td>{}</td></tr>\n",
            html(value)
        ));
    };
    row(&mut out, "Window", &w.id.to_string());
    row(&mut out, "Kind", w.kind.name());
    row(&mut out, "Status", w.status.name());
    row(&mut out, "Requested by", &w.requester);
    row(&mut out, "Approved by", or_none(w.decided_by.as_deref()));
    row(&mut out, "Approved at", or_none(w.decided_at.as_deref()));
    row(
        &mut out,
        "Decision comment",
        or_none(w.decision_comment.as_deref()),
    );
    row(
        &mut out,
        "Time",
        &format!(
            "{} to {} ({}); UTC {} to {}",
            w.start_local, w.end_local, w.time_zone, w.start, w.end
        ),
    );
    row(
        &mut out,
        "Hosts",
        &serde_json::to_string(&w.hosts).expect("scopes serialize"),
    );
    row(&mut out, "Subjects", &w.subjects.join("\n"));
    let expected: Vec<String> = w
        .expected
        .iter()
        .map(|e| format!("{} = {}", e.subject, e.describe()))
        .collect();
    row(&mut out, "Expected states", &expected.join("\n"));
    out.push_str("</table>\n<h2>Close-out</h2>\n");
    match &c.close_out {
        None => out.push_str("<p>Not closed out.</p>\n"),
        Some(close) => {
            out.push_str(&format!(
                "<p>Closed by {} at {}; {} drift item(s) accepted as the new baseline.</p>\n",
                html(or_none(close.closed_by.as_deref())),
                html(or_none(close.closed_at.as_deref())),
                close.drift_accepted
            ));
            out.push_str(
                "<table><tr><th>Host</th><th>Subject</th><th>State</th><th>Agent</th>\
                 <th>Answered</th></tr>\n",
            );
            for a in &close.acceptances {
                out.push_str(&format!(
                    "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td>\
                     <td>{}{}</td><td>{}</td></tr>\n",
                    html(&a.host),
                    html(&a.subject),
                    html(&a.state),
                    html(&a.status),
                    a.detail
                        .as_deref()
                        .map(|d| format!(": {}", html(d)))
                        .unwrap_or_default(),
                    html(or_none(a.answered_at.as_deref()))
                ));
            }
            out.push_str("</table>\n");
        }
    }
    out.push_str(&format!("<h2>Changes ({})</h2>\n", c.changes.len()));
    for ch in &c.changes {
        out.push_str(&format!(
            "<h3>{} <code>{}</code> — {}</h3>\n<table>\n",
            html(&ch.host),
            html(&ch.subject),
            html(&ch.authorization)
        ));
        row(&mut out, "Kind", &ch.kind);
        row(&mut out, "Seen by", &ch.seen_by);
        row(&mut out, "Observed at", &ch.observed_at);
        row(&mut out, "Received at", &ch.received_at);
        row(
            &mut out,
            "Spooled between (collector clock)",
            &ch.spooled_between,
        );
        row(&mut out, "Clock claim", &ch.clock_claim);
        row(&mut out, "Actor", &ch.actor);
        row(&mut out, "Before", &ch.before);
        row(&mut out, "After", &ch.after);
        if let Some(expected) = &ch.expected {
            row(&mut out, "Expected", expected);
        }
        row(&mut out, "Event", &ch.event_id.to_string());
        row(&mut out, "Chain", &ch.chain);
        out.push_str("</table>\n");
        if let Some(diff) = &ch.diff {
            out.push_str(&format!("<pre>{}</pre>\n", html(diff)));
        }
    }
    out.push_str(&format!("<h2>Flagged ({})</h2>\n<ul>\n", c.flagged.len()));
    for f in &c.flagged {
        out.push_str(&format!(
            "<li class=\"flag\">{} <code>{}</code>: {}</li>\n",
            html(&f.host),
            html(&f.subject),
            html(&f.problem)
        ));
    }
    out.push_str("</ul>\n<h2>Audit log</h2>\n");
    out.push_str(&format!("<p>{}</p>\n", html(&audit_sentence(&c.audit_log))));
    out.push_str(&format!(
        "<p>Exported at {} by {}. Content SHA-256: <code>{}</code></p>\n</body></html>\n",
        html(&c.exported_at),
        html(&c.exported_by),
        html(&bundle.content_sha256)
    ));
    out
}

#[cfg(test)]
mod tests {
    use driftwatch_common::api::v1::{ChangeKind, DriftEvent, SeenBy, SubjectKey};

    use super::*;
    use crate::store::{HostEvent, StoredEvent};
    use crate::windows::{HostScope, WindowKind, WindowStatus};

    const EVIL: &str = "file:/etc/<script>alert(1)</script>`|*x*\n# h";

    fn window() -> Window {
        Window {
            id: Uuid::nil(),
            ticket: "CHG-1 <b>".into(),
            title: "[click](javascript:x)".into(),
            kind: WindowKind::Normal,
            status: WindowStatus::Closed,
            requester: "alice".into(),
            decided_by: Some("bob".into()),
            decided_at: Some(1000),
            decision_comment: None,
            hosts: HostScope {
                names: vec!["web-1".into()],
                ..HostScope::default()
            },
            subjects: vec![EVIL.into()],
            start: 0,
            end: 3_600_000,
            time_zone: "Europe/Paris".into(),
            expected: vec![],
            implementers: vec![],
            schedule: None,
            created_at: 0,
            ended_at: Some(2000),
            ended_by: Some("carol".into()),
        }
    }

    fn records() -> WindowRecords {
        WindowRecords {
            events: vec![HostEvent {
                hostname: "web-1".into(),
                stored: StoredEvent {
                    event: DriftEvent {
                        id: Uuid::nil(),
                        host_id: Uuid::nil(),
                        seq: 1,
                        prev_hash: DriftEvent::GENESIS,
                        subject: SubjectKey(EVIL.into()),
                        kind: ChangeKind::Content,
                        changed: vec!["content".into()],
                        before: None,
                        after: None,
                        diff: Some("-a\n+</pre><script>x</script>\n+```\n".into()),
                        actor: None,
                        seen_by: SeenBy::Watch,
                        observed_at: time::OffsetDateTime::UNIX_EPOCH,
                        provenance: None,
                        related: None,
                        summary: None,
                        mac: None,
                    },
                    received_at: 10,
                    event_time: 5,
                    outcome: Outcome::UnexpectedState {
                        window_id: Uuid::nil(),
                        expected: "version 2".into(),
                    },
                    chain: "ok".into(),
                    drift_id: None,
                    spool: Default::default(),
                    decision_mac: None,
                },
            }],
            drift: vec![],
            commands: vec![],
        }
    }

    fn verified() -> VerifyReport {
        VerifyReport {
            ok: true,
            entries: 9,
            head_hash: "cafe".into(),
            findings: vec![],
            ..VerifyReport::default()
        }
    }

    #[test]
    fn the_digest_covers_the_content() {
        let a = build(&window(), &records(), verified(), "carol", 0);
        let again = build(&window(), &records(), verified(), "carol", 0);
        assert_eq!(a.content_sha256, again.content_sha256, "deterministic");
        assert_eq!(a.content_sha256.len(), 64);
        let later = build(&window(), &records(), verified(), "carol", 1);
        assert_ne!(a.content_sha256, later.content_sha256);
        // The JSON holds `content` byte for byte as digested.
        let json = to_json(&a);
        let content = serde_json::to_string(&a.content).unwrap();
        assert!(json.contains(&content));
        assert_eq!(hex(&Sha256::digest(content.as_bytes())), a.content_sha256);
        assert_eq!(a.content.flagged.len(), 1, "unexpected state is flagged");
        assert_eq!(
            a.content.close_out.as_ref().unwrap().closed_by.as_deref(),
            Some("carol")
        );
    }

    #[test]
    fn html_escapes_every_value() {
        let page = to_html(&build(&window(), &records(), verified(), "carol", 0));
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("</pre><script>"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("CHG-1 &lt;b&gt;"));
        assert_eq!(page.matches("<pre>").count(), 1);
        assert_eq!(page.matches("</pre>").count(), 1);
    }

    #[test]
    fn markdown_keeps_its_layout() {
        let md = to_markdown(&build(&window(), &records(), verified(), "carol", 0));
        // The subject's newline and `# h` do not start a heading of their own.
        assert!(!md.lines().any(|l| l.starts_with("# h")), "{md}");
        assert!(md.contains("\\[click\\]\\(javascript\\:x\\)"), "{md}");
        // The diff's ``` cannot close its fence: the fence is longer.
        assert!(
            md.contains("````text\n-a\n+</pre><script>x</script>\n+```\n````"),
            "{md}"
        );
        let headings = md.lines().filter(|l| l.starts_with("## ")).count();
        assert_eq!(headings, 4, "{md}");
    }
}
