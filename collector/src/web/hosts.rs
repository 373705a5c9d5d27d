//! Hosts: the inventory with what the collector knows of each agent's health, silent hosts
//! first (then the longest unheard).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use driftwatch_common::api::v1::SourceCondition;

use super::layout::{self, Layout};
use super::session::{Viewer, app_error};
use crate::api::AppState;
use crate::store::{Host, Store};

pub struct HostRow {
    pub hostname: String,
    pub labels: String,
    pub silent: bool,
    pub heartbeat: String,
    pub skew: String,
    pub skew_large: bool,
    pub coverage: Vec<String>,
    pub spool: String,
    pub spool_problem: bool,
    pub version: String,
    pub baseline: String,
    pub baseline_problem: bool,
    pub chain: &'static str,
}

/// Silent first, then by last heartbeat (oldest first), then by name.
pub fn order(hosts: &mut [Host], now: i64, silent_after_ms: i64) {
    hosts.sort_by_key(|h| {
        let seen = h.last_seen_at.unwrap_or(h.enrolled_at);
        (seen >= now - silent_after_ms, seen, h.hostname.clone())
    });
}

fn row(h: &Host, now: i64, silent_after_ms: i64, tolerance_ms: i64) -> HostRow {
    let seen = h.last_seen_at.unwrap_or(h.enrolled_at);
    let silent = seen < now - silent_after_ms;
    let heartbeat = match h.last_seen_at {
        Some(at) => format!("{} ago", layout::duration(now - at)),
        None => "never".to_owned(),
    };
    let mut coverage = Vec::new();
    let (spool, spool_problem, baseline, baseline_problem) = match &h.health {
        None => {
            coverage.push("unknown (no heartbeat yet)".to_owned());
            (
                "unknown".to_owned(),
                false,
                "unknown (no heartbeat yet)".to_owned(),
                false,
            )
        }
        Some(health) => {
            let c = &health.coverage;
            if !c.unwatched.is_empty() {
                coverage.push(format!(
                    "{} subtrees unwatched (scanned instead)",
                    c.unwatched.len()
                ));
            }
            if c.unreadable > 0 {
                coverage.push(format!("{} subjects unreadable", c.unreadable));
            }
            if c.dropped_event_batches > 0 {
                coverage.push(format!(
                    "{} kernel queue overflows",
                    c.dropped_event_batches
                ));
            }
            if let Some(why) = &c.attribution_unavailable {
                coverage.push(format!("no attribution: {why}"));
            }
            for source in &c.sources {
                if source.condition != SourceCondition::Ok {
                    coverage.push(format!(
                        "source {}: {}",
                        source.name,
                        source.detail.as_deref().unwrap_or("not ok")
                    ));
                }
            }
            match &c.last_full_scan_at {
                Some(at) => coverage.push(format!(
                    "last full scan {} ago",
                    layout::duration(now - crate::clock::from_offset(*at))
                )),
                None => coverage.push("no full scan yet".to_owned()),
            }
            (
                format!(
                    "{}{}",
                    health.spool_depth,
                    if health.spool_full {
                        " (full: holding back)"
                    } else {
                        ""
                    }
                ),
                health.spool_full,
                if health.baseline_tampered {
                    "TAMPERED".to_owned()
                } else {
                    format!("{} entries, verified", health.baseline_entries)
                },
                health.baseline_tampered,
            )
        }
    };
    HostRow {
        hostname: h.hostname.clone(),
        labels: crate::app::labels_text(&h.labels),
        silent,
        heartbeat,
        skew: format!("{:+.1} s", h.skew_ms as f64 / 1000.0),
        skew_large: h.skew_ms.abs() > tolerance_ms,
        coverage,
        spool,
        spool_problem,
        version: h.agent_version.clone(),
        baseline,
        baseline_problem,
        chain: if h.chain_keyed {
            "authenticated"
        } else {
            "unauthenticated"
        },
    }
}

#[derive(Template)]
#[template(path = "hosts.html")]
struct HostsPage {
    layout: Layout,
    hosts: Vec<HostRow>,
    silent: usize,
}

pub async fn page<S: Store>(State(app): State<AppState<S>>, viewer: Viewer) -> Response {
    let mut hosts = match app.hosts(&viewer.principal).await {
        Ok(hosts) => hosts,
        Err(err) => return app_error(err),
    };
    let now = app.now();
    let silent_after = app.settings.silent_after_ms;
    order(&mut hosts, now, silent_after);
    let rows: Vec<HostRow> = hosts
        .iter()
        .map(|h| row(h, now, silent_after, app.settings.tolerance_ms))
        .collect();
    layout::render(
        StatusCode::OK,
        &HostsPage {
            layout: Layout::new("Hosts", Some(&viewer), "/ui/hosts"),
            silent: rows.iter().filter(|r| r.silent).count(),
            hosts: rows,
        },
    )
}
