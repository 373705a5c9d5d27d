//! The export of a period: one row per drift event, summary figures per host, per window
//! and overall, an optional reproducible sample, and the audit log's verification at the
//! time of export. Pure: the caller hands in the store's records.
//!
//! # CSV layout
//!
//! The file starts with a comment section, one line each, every line starting with `#`
//! and holding no comma or quote (so a spreadsheet shows it in column A): what was exported,
//! by whom and when, the audit log verification, the overall figures and the sample's
//! parameters. A blank line, then an RFC 4180 table: a header row and one row per event,
//! CRLF line ends, every record on one line (line breaks, other control characters and
//! bidi controls inside a cell are shown as `\xNN`). Cells a spreadsheet would run as formulas get a leading `'`
//! ([`super::text::csv_field`]). Per-host and per-window figures are in the JSON format.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::metrics::{Metrics, Observation, SAMPLE_ALGORITHM, sample_ranks};
use super::text::csv_record;
use super::{actor_text, kind_name, seen_by_name};
use crate::audit::VerifyReport;
use crate::clock::{Millis, rfc3339};
use crate::drift::DriftStatus;
use crate::store::ExportRecords;

/// One drift event with its authorization evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportRow {
    pub event_id: Uuid,
    pub host: String,
    pub host_id: Uuid,
    pub subject: String,
    pub kind: String,
    /// The agent's time corrected by its measured clock skew (RFC 3339, UTC).
    pub observed_at: String,
    pub received_at: String,
    /// Who made the change, as far as the agent could see.
    pub actor: String,
    /// `watch`, `scan` or `startup`.
    pub seen_by: String,
    /// `authorized`, `unexpected_state`, `untraced` or `restored` (as decided now: an
    /// emergency window approved later turns untraced into authorized).
    pub authorization: String,
    pub window_id: Option<Uuid>,
    pub ticket: Option<String>,
    pub requester: Option<String>,
    pub approver: Option<String>,
    pub drift_id: Option<Uuid>,
    /// `open`, `authorized`, `resolved` or `accepted` (close-out).
    pub drift_status: Option<String>,
    /// A person's or the collector's resolution; `accepted` for a close-out.
    pub resolution: Option<String>,
    pub resolution_comment: Option<String>,
    pub resolution_ticket: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    /// The per-host event chain's verdict (`ok`, `gap`, `fork`, `late`, `conflict`).
    pub chain: String,
    /// Rank in the sample, when one was asked for and this row is in it.
    pub sample_rank: Option<u32>,
    /// When the event reached the agent's spool, proven on the collector's clock
    /// (authorization rests on these, not on `observed_at`).
    #[serde(default)]
    pub spooled_after: String,
    #[serde(default)]
    pub spooled_before: String,
    /// `consistent`, or `before_bounds` / `after_bounds`: the agent's clock claim is false.
    #[serde(default)]
    pub clock_claim: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostMetrics {
    pub host: String,
    pub metrics: Metrics,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowMetrics {
    pub window_id: Uuid,
    pub ticket: String,
    pub metrics: Metrics,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub overall: Metrics,
    pub per_host: Vec<HostMetrics>,
    /// Rows a window authorized or flagged, per window.
    pub per_window: Vec<WindowMetrics>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleInfo {
    pub requested: u32,
    pub seed: u64,
    pub algorithm: String,
    /// In rank order.
    pub event_ids: Vec<Uuid>,
}

/// What was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRequest {
    pub from: Millis,
    pub to: Millis,
    pub host: Option<String>,
    /// `(size, seed)`.
    pub sample: Option<(u32, u64)>,
}

/// The JSON export (`format=json`); the CSV carries the same facts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub from: String,
    pub to: String,
    pub host: Option<String>,
    pub exported_at: String,
    pub exported_by: String,
    /// The audit log's verification when the export was made.
    pub audit_log: VerifyReport,
    pub summary: Summary,
    pub sample: Option<SampleInfo>,
    pub rows: Vec<ExportRow>,
}

/// Builds the export from the store's records.
pub fn build(
    request: &ExportRequest,
    records: &ExportRecords,
    audit_log: VerifyReport,
    exported_by: &str,
    now: Millis,
) -> Export {
    let mut rows = Vec::with_capacity(records.events.len());
    let mut observations = Vec::with_capacity(records.events.len());
    for host_event in &records.events {
        let stored = &host_event.stored;
        let event = &stored.event;
        let drift = stored.drift_id.and_then(|id| records.drift.get(&id));
        let window_id = stored
            .outcome
            .window_id()
            .or_else(|| drift.and_then(|d| d.window_id));
        let window = window_id.and_then(|id| records.windows.get(&id));
        let mut row = ExportRow {
            event_id: event.id,
            host: host_event.hostname.clone(),
            host_id: event.host_id,
            subject: event.subject.0.clone(),
            kind: kind_name(event.kind).to_owned(),
            observed_at: rfc3339(stored.event_time),
            received_at: rfc3339(stored.received_at),
            actor: actor_text(event.actor.as_ref()),
            seen_by: seen_by_name(event.seen_by).to_owned(),
            authorization: stored.outcome.name().to_owned(),
            window_id,
            ticket: window.map(|w| w.ticket.clone()),
            requester: window.map(|w| w.requester.clone()),
            approver: window.and_then(|w| w.decided_by.clone()),
            drift_id: stored.drift_id,
            drift_status: drift.map(|d| d.status.name().to_owned()),
            resolution: None,
            resolution_comment: None,
            resolution_ticket: None,
            resolved_by: None,
            resolved_at: None,
            chain: stored.chain.clone(),
            sample_rank: None,
            spooled_after: rfc3339(stored.spool.spooled_after),
            spooled_before: rfc3339(stored.spool.spooled_before),
            clock_claim: stored.spool.clock_claim.name().to_owned(),
        };
        let mut resolved_at = None;
        if let Some(resolution) = drift.and_then(|d| d.resolution.as_ref()) {
            row.resolution = Some(resolution.category.name().to_owned());
            row.resolution_comment = Some(resolution.comment.clone());
            row.resolution_ticket = resolution.ticket.clone();
            row.resolved_by = Some(resolution.by.clone());
            row.resolved_at = Some(rfc3339(resolution.at));
            resolved_at = Some(resolution.at);
        } else if let Some(d) = drift.filter(|d| d.status == DriftStatus::Accepted) {
            // Accepted at the close-out of its window: the closer accepted it.
            let closer = d.window_id.and_then(|id| records.windows.get(&id));
            row.resolution = Some("accepted".into());
            row.resolution_comment = Some("accepted at the close-out of its window".into());
            row.resolved_by = closer.and_then(|w| w.ended_by.clone());
            row.resolved_at = closer.and_then(|w| w.ended_at).map(rfc3339);
        }
        let needed_review = stored.outcome.needs_review();
        observations.push(Observation {
            authorization: stored.outcome.name(),
            unresolved: drift.is_some_and(|d| d.status == DriftStatus::Open),
            resolve_ms: resolved_at
                .filter(|_| needed_review)
                .map(|at| at - stored.received_at),
        });
        rows.push(row);
    }

    let sample = request.sample.map(|(size, seed)| {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let ranks = sample_ranks(&ids, size, seed);
        for row in &mut rows {
            row.sample_rank = ranks.get(&row.event_id).copied();
        }
        let mut ranked: Vec<(u32, Uuid)> = ranks.iter().map(|(id, r)| (*r, *id)).collect();
        ranked.sort_unstable();
        SampleInfo {
            requested: size,
            seed,
            algorithm: SAMPLE_ALGORITHM.to_owned(),
            event_ids: ranked.into_iter().map(|(_, id)| id).collect(),
        }
    });

    Export {
        from: rfc3339(request.from),
        to: rfc3339(request.to),
        host: request.host.clone(),
        exported_at: rfc3339(now),
        exported_by: exported_by.to_owned(),
        audit_log,
        summary: summarize(&rows, &observations),
        sample,
        rows,
    }
}

fn summarize(rows: &[ExportRow], observations: &[Observation]) -> Summary {
    use std::collections::BTreeMap;
    let mut hosts: BTreeMap<&str, Vec<Observation>> = BTreeMap::new();
    let mut windows: BTreeMap<(Uuid, &str), Vec<Observation>> = BTreeMap::new();
    for (row, observation) in rows.iter().zip(observations) {
        hosts.entry(&row.host).or_default().push(*observation);
        if let (Some(id), Some(ticket)) = (row.window_id, row.ticket.as_deref()) {
            windows.entry((id, ticket)).or_default().push(*observation);
        }
    }
    Summary {
        overall: Metrics::of(observations),
        per_host: hosts
            .into_iter()
            .map(|(host, o)| HostMetrics {
                host: host.to_owned(),
                metrics: Metrics::of(&o),
            })
            .collect(),
        per_window: windows
            .into_iter()
            .map(|((window_id, ticket), o)| WindowMetrics {
                window_id,
                ticket: ticket.to_owned(),
                metrics: Metrics::of(&o),
            })
            .collect(),
    }
}

pub const CSV_HEADER: [&str; 27] = [
    "event_id",
    "host",
    "host_id",
    "subject",
    "kind",
    "observed_at",
    "received_at",
    "actor",
    "seen_by",
    "authorization",
    "window_id",
    "ticket",
    "requester",
    "approver",
    "drift_id",
    "drift_status",
    "resolution",
    "resolution_comment",
    "resolution_ticket",
    "resolved_by",
    "resolved_at",
    "chain",
    "spooled_after",
    "spooled_before",
    "clock_claim",
    "sample_rank",
    "in_sample",
];

/// A comment line: `#`, no comma, quote or line break.
fn comment(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| match c {
            ',' => ';',
            '"' => '\'',
            c => c,
        })
        .collect();
    format!(
        "# {}\r\n",
        driftwatch_common::pathbytes::escape_text(&clean)
    )
}

fn duration(ms: Option<i64>) -> String {
    ms.map_or("none".into(), |ms| format!("{} s", ms as f64 / 1000.0))
}

/// The CSV format (see the module's documentation for the layout).
pub fn to_csv(export: &Export) -> String {
    let mut out = String::new();
    out.push_str(&comment("driftwatch evidence export"));
    out.push_str(&comment(&format!(
        "period: {} (inclusive) to {} (exclusive); host: {}",
        export.from,
        export.to,
        export.host.as_deref().unwrap_or("all")
    )));
    out.push_str(&comment(&format!(
        "exported at {} by {}",
        export.exported_at, export.exported_by
    )));
    let log = &export.audit_log;
    out.push_str(&comment(&format!(
        "audit log verification: {} ({} entries; head {})",
        if log.ok {
            "no problem found"
        } else {
            "ALTERED"
        },
        log.entries,
        log.head_hash
    )));
    if !log.assurance.is_empty() {
        out.push_str(&comment(&format!("audit log assurance: {}", log.assurance)));
    }
    for pruned in &log.pruned {
        out.push_str(&comment(&format!(
            "pruned by retention (audit entry {}, {}): {}",
            pruned.seq, pruned.at, pruned.what
        )));
    }
    if let Some(cp) = &log.checkpoint {
        out.push_str(&comment(&format!(
            "audit checkpoint signed at export: entries {} head {} at {} key {} signature {}",
            cp.entries, cp.head_hash, cp.at, cp.key_id, cp.signature
        )));
    }
    for finding in &log.findings {
        out.push_str(&comment(&format!(
            "audit log entry {}: {}",
            finding.seq, finding.problem
        )));
    }
    let m = &export.summary.overall;
    out.push_str(&comment(&format!(
        "changes: {}; authorized: {} ({}%); untraced: {}; unexpected state: {}; unresolved: {}; restored: {}",
        m.changes,
        m.authorized,
        m.percent_authorized.map_or("n/a".into(), |p| p.to_string()),
        m.untraced,
        m.unexpected_state,
        m.unresolved,
        m.restored
    )));
    out.push_str(&comment(&format!(
        "time to resolve ({} resolved): median {}; p90 {}",
        m.resolved,
        duration(m.median_ms_to_resolve),
        duration(m.p90_ms_to_resolve)
    )));
    if let Some(sample) = &export.sample {
        out.push_str(&comment(&format!(
            "sample: {} of {} rows asked; seed {}; {}",
            sample.event_ids.len(),
            sample.requested,
            sample.seed,
            sample.algorithm
        )));
    }
    out.push_str(&comment("per-host and per-window figures: format=json"));
    out.push_str("\r\n");
    out.push_str(&csv_record(&CSV_HEADER));
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let id = |v: Option<Uuid>| v.map(|u| u.to_string()).unwrap_or_default();
    for r in &export.rows {
        out.push_str(&csv_record(&[
            r.event_id.to_string(),
            r.host.clone(),
            r.host_id.to_string(),
            r.subject.clone(),
            r.kind.clone(),
            r.observed_at.clone(),
            r.received_at.clone(),
            r.actor.clone(),
            r.seen_by.clone(),
            r.authorization.clone(),
            id(r.window_id),
            text(&r.ticket),
            text(&r.requester),
            text(&r.approver),
            id(r.drift_id),
            text(&r.drift_status),
            text(&r.resolution),
            text(&r.resolution_comment),
            text(&r.resolution_ticket),
            text(&r.resolved_by),
            text(&r.resolved_at),
            r.chain.clone(),
            r.spooled_after.clone(),
            r.spooled_before.clone(),
            r.clock_claim.clone(),
            r.sample_rank.map(|n| n.to_string()).unwrap_or_default(),
            if r.sample_rank.is_some() { "yes" } else { "" }.to_owned(),
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use driftwatch_common::api::v1::{ChangeKind, DriftEvent, SeenBy, SubjectKey};

    use super::*;
    use crate::matcher::Outcome;
    use crate::store::{HostEvent, StoredEvent};

    fn stored(subject: &str, outcome: Outcome) -> HostEvent {
        HostEvent {
            hostname: "web-1".into(),
            stored: StoredEvent {
                event: DriftEvent {
                    id: Uuid::now_v7(),
                    host_id: Uuid::nil(),
                    seq: 1,
                    prev_hash: DriftEvent::GENESIS,
                    subject: SubjectKey(subject.into()),
                    kind: ChangeKind::Content,
                    changed: vec![],
                    before: None,
                    after: None,
                    diff: None,
                    actor: None,
                    seen_by: SeenBy::Watch,
                    observed_at: time::OffsetDateTime::UNIX_EPOCH,
                    provenance: None,
                    related: None,
                    summary: None,
                    mac: None,
                },
                received_at: 1000,
                event_time: 900,
                outcome,
                chain: "ok".into(),
                drift_id: None,
                spool: Default::default(),
                decision_mac: None,
            },
        }
    }

    fn verified() -> VerifyReport {
        VerifyReport {
            ok: true,
            entries: 3,
            head_hash: "ab".into(),
            findings: vec![],
            ..VerifyReport::default()
        }
    }

    #[test]
    fn csv_has_a_comment_section_then_a_safe_table() {
        let records = ExportRecords {
            events: vec![
                stored("file:/etc/=cmd|' /C calc'!A0", Outcome::Untraced),
                stored("file:/etc/a,b\"c\nd", Outcome::Restored),
            ],
            drift: BTreeMap::new(),
            windows: BTreeMap::new(),
        };
        let request = ExportRequest {
            from: 0,
            to: 10_000,
            host: Some("web,1".into()),
            sample: Some((1, 7)),
        };
        let export = build(&request, &records, verified(), "carol", 5000);
        let csv = to_csv(&export);
        let (comments, table) = csv.split_once("\r\n\r\n").unwrap();
        for line in comments.split("\r\n") {
            assert!(line.starts_with("# "), "{line}");
            assert!(!line.contains([',', '"']), "{line}");
        }
        assert!(comments.contains("audit log verification: no problem found (3 entries; head ab)"));
        assert!(comments.contains("host: web;1"));
        assert!(comments.contains("changes: 1; authorized: 0 (0%); untraced: 1"));
        let mut lines = table.split("\r\n");
        assert_eq!(lines.next().unwrap(), CSV_HEADER.join(","));
        let first = lines.next().unwrap();
        assert!(first.contains(",web-1,"), "{first}");
        // `=` inside a cell is harmless; only a leading one makes a formula.
        assert!(first.contains("file:/etc/=cmd|' /C calc'!A0"), "{first}");
        assert!(table.contains("\"file:/etc/a,b\"\"c\\x0ad\""), "{table}");
        assert_eq!(
            export
                .rows
                .iter()
                .filter(|r| r.sample_rank == Some(1))
                .count(),
            1
        );
        assert_eq!(export.sample.as_ref().unwrap().event_ids.len(), 1);
    }

    #[test]
    fn a_formula_in_a_cell_is_defused() {
        let records = ExportRecords {
            events: vec![stored("=1+1", Outcome::Untraced)],
            ..ExportRecords::default()
        };
        let request = ExportRequest {
            from: 0,
            to: 1,
            host: None,
            sample: None,
        };
        let csv = to_csv(&build(&request, &records, verified(), "carol", 0));
        assert!(csv.contains(",'=1+1,"), "{csv}");
        assert!(!csv.contains(",=1+1,"));
    }
}
