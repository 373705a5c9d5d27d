//! Audit and evidence: the audit log with filters (actor, action, target, kept in the
//! URL) and its verification result (`App::verify_audit`); the period export with a
//! seeded sample (`App::export`, the same document the API serves).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::layout::{self, Layout};
use super::session::{Viewer, app_error};
use crate::api::AppState;
use crate::app::Limit;
use crate::audit::AuditEntry;
use crate::reports::ops::ExportParams;
use crate::store::Store;

/// Most entries the page reads (from entry `after` on) and shows.
pub const PAGE: u32 = 500;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Filter {
    pub actor: String,
    pub action: String,
    pub target: String,
    /// Entries after this number.
    pub after: u64,
}

impl Filter {
    pub fn keeps(&self, e: &AuditEntry) -> bool {
        let has = |field: &str, want: &str| want.trim().is_empty() || field.contains(want.trim());
        has(&e.actor, &self.actor) && has(&e.action, &self.action) && has(&e.target, &self.target)
    }
}

pub struct EntryRow {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: String,
    pub signed: bool,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    filter: Filter,
    rows: Vec<EntryRow>,
    next: Option<u64>,
    ok: bool,
    entries: u64,
    assurance: String,
    findings: Vec<String>,
    can_export: bool,
}

pub async fn page<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    Query(filter): Query<Filter>,
) -> Response {
    let me = &viewer.principal;
    let entries = match app
        .audit_log_page(
            me,
            filter.after,
            Limit {
                asked: Some(PAGE),
                default: PAGE,
                max: PAGE,
            },
        )
        .await
    {
        Ok(e) => e,
        Err(err) => return app_error(err),
    };
    let report = match app.verify_audit(me).await {
        Ok(r) => r,
        Err(err) => return app_error(err),
    };
    let next = (entries.len() >= PAGE as usize).then(|| entries.last().map_or(0, |e| e.seq));
    let rows = entries
        .iter()
        .filter(|e| filter.keeps(e))
        .map(|e| EntryRow {
            seq: e.seq,
            at: layout::instant(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            details: e.details.clone(),
            signed: e.signature.is_some(),
        })
        .collect();
    layout::render(
        StatusCode::OK,
        &AuditPage {
            layout: Layout::new("Audit and evidence", Some(&viewer), "/ui/audit"),
            filter,
            rows,
            next,
            ok: report.ok,
            entries: report.entries,
            assurance: report.assurance.clone(),
            findings: report
                .findings
                .iter()
                .map(|f| format!("entry {}: {}", f.seq, f.problem))
                .collect(),
            can_export: crate::app::EXPORT_ROLES.contains(&me.role),
        },
    )
}

/// `GET /ui/audit/export?from=&to=&format=&host=&sample=&seed=`: the period's evidence,
/// audited and sealed, as `GET /api/v1/reports/export` serves it. Empty fields are unset.
pub async fn export<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    Query(params): Query<ExportParams>,
) -> Response {
    let unset = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let params = ExportParams {
        from: unset(params.from),
        to: unset(params.to),
        format: unset(params.format),
        host: unset(params.host),
        sample: unset(params.sample),
        seed: unset(params.seed),
    };
    match app.export(&viewer.principal, &params).await {
        Ok((export, format)) => crate::api::v1::reports::export_document(&app, &export, format),
        Err(err) => app_error(err),
    }
}
