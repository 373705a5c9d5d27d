//! The evidence operations of [`App`]: who may export, what is audited, bad input.
//!
//! Who: auditors, security analysts and admins export periods and fetch any window's
//! bundle. A change manager fetches the bundle of a window they requested, approved
//! (or rejected) or closed/cancelled, to attach it to their ticket; not other windows'.
//! Agents never. Every export and bundle fetch is an audit entry (`report.exported`,
//! `window.evidence_exported`) written with the read, so a refused request leaves none.

use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::export::{Export, ExportRequest};
use super::{BundleFormat, ExportFormat, bundle, export};
use crate::app::{App, Error, Result, require};
use crate::audit::{NewAudit, VerifyReport, decisions, evidence};
use crate::clock::{parse_instant, rfc3339};
use crate::identity::{Principal, Role};
use crate::store::{DriftItem, ExportQuery, HostEvent, Store};
use crate::windows::Window;

/// Roles that export periods and fetch any window's bundle.
pub const EXPORT_ROLES: [Role; 3] = [Role::Auditor, Role::Security, Role::Admin];

/// `GET /api/v1/reports/export` query parameters, as text so that every problem is named.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub format: Option<String>,
    pub host: Option<String>,
    pub sample: Option<String>,
    pub seed: Option<String>,
}

/// `GET /api/v1/windows/{id}/evidence` query parameters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleParams {
    pub format: Option<String>,
}

/// Checks the parameters; every problem at once.
pub fn parse_export(params: &ExportParams) -> Result<(ExportRequest, ExportFormat), String> {
    let mut problems = Vec::new();
    let mut instant = |name: &str, value: &Option<String>| match value.as_deref() {
        None | Some("") => {
            problems.push(format!(
                "`{name}` is required (RFC 3339, e.g. 2026-01-01T00:00:00Z)"
            ));
            None
        }
        Some(text) => parse_instant(text)
            .map_err(|why| problems.push(format!("{name}: {why}")))
            .ok(),
    };
    let from = instant("from", &params.from);
    let to = instant("to", &params.to);
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        problems.push(format!(
            "`from` ({}) must be before `to` ({})",
            rfc3339(from),
            rfc3339(to)
        ));
    }
    let format = match params.format.as_deref() {
        None => Some(ExportFormat::Json),
        Some(text) => text
            .parse()
            .map_err(|why| problems.push(format!("format: {why}")))
            .ok(),
    };
    let host = params.host.clone().filter(|h| !h.is_empty());
    let sample = match (&params.sample, &params.seed) {
        (None, None) => None,
        (Some(_), None) => {
            problems
                .push("`sample` needs `seed` so that the same sample can be drawn again".into());
            None
        }
        (None, Some(_)) => {
            problems.push("`seed` without `sample`: say how many rows to draw".into());
            None
        }
        (Some(size), Some(seed)) => {
            let size = size.parse::<u32>().ok().filter(|n| *n > 0);
            let seed = seed.parse::<u64>().ok();
            if size.is_none() {
                problems.push(format!(
                    "sample: `{}` is not a positive whole number",
                    params.sample.as_deref().unwrap_or_default()
                ));
            }
            if seed.is_none() {
                problems.push(format!(
                    "seed: `{}` is not a whole number between 0 and 2^64-1",
                    params.seed.as_deref().unwrap_or_default()
                ));
            }
            size.zip(seed)
        }
    };
    match (from, to, format) {
        (Some(from), Some(to), Some(format)) if problems.is_empty() => Ok((
            ExportRequest {
                from,
                to,
                host,
                sample,
            },
            format,
        )),
        _ => Err(problems.join("; ")),
    }
}

impl<S: Store> App<S> {
    /// At an export: a checkpoint of the head (which now holds the export's own entry),
    /// the log verified with it, the decisions of `windows` and `drift` checked against
    /// their entries, and each event's decision against its seal: a record that disagrees
    /// makes the report fail.
    async fn verified_evidence(
        &self,
        windows: &[&Window],
        drift: &[&DriftItem],
        events: &[HostEvent],
    ) -> Result<VerifyReport> {
        let checked = self.checkpoint_audit().await?;
        let mut report = checked.report;
        report.add_findings(evidence::check(&checked.entries, windows, drift));
        if let Some(key) = self.decision_key() {
            report.add_findings(decisions::check(&key, events.iter().map(|e| &e.stored)));
        }
        report.checkpoint = checked.checkpoint;
        Ok(report)
    }

    /// The evidence of a period, audited.
    pub async fn export(
        &self,
        actor: &Principal,
        params: &ExportParams,
    ) -> Result<(Export, ExportFormat)> {
        require(actor, &EXPORT_ROLES, "exporting evidence")?;
        let (request, format) = parse_export(params).map_err(Error::BadRequest)?;
        let now = self.now();
        let audit = NewAudit::new(
            now,
            &actor.name,
            "report.exported",
            "report:export",
            json!({
                "from": rfc3339(request.from), "to": rfc3339(request.to),
                "host": request.host, "format": format.to_string(),
                "sample": request.sample.map(|s| s.0), "seed": request.sample.map(|s| s.1),
            }),
        );
        let records = self
            .store
            .export_records(
                ExportQuery {
                    from: request.from,
                    to: request.to,
                    hostname: request.host.clone(),
                    max_rows: self.settings.max_export_rows,
                },
                audit,
            )
            .await?;
        let verification = self
            .verified_evidence(
                &records.windows.values().collect::<Vec<_>>(),
                &records.drift.values().collect::<Vec<_>>(),
                &records.events,
            )
            .await?;
        tracing::info!(by = %driftwatch_common::pathbytes::Shown(&actor.name), rows = records.events.len(), %format, "evidence exported");
        Ok((
            export::build(&request, &records, verification, &actor.name, now),
            format,
        ))
    }

    /// The close-out bundle of window `id`, audited.
    pub async fn window_evidence(
        &self,
        actor: &Principal,
        id: Uuid,
        params: &BundleParams,
    ) -> Result<(bundle::Bundle, BundleFormat)> {
        let roles = [
            Role::Auditor,
            Role::Security,
            Role::Admin,
            Role::ChangeManager,
        ];
        require(actor, &roles, "fetching a window's evidence")?;
        let format = match params.format.as_deref() {
            None => BundleFormat::Json,
            Some(text) => text
                .parse()
                .map_err(|why| Error::BadRequest(format!("format: {why}")))?,
        };
        let window = self.store.window(id).await?;
        if actor.role == Role::ChangeManager {
            let involved = [
                Some(&window.requester),
                window.decided_by.as_ref(),
                window.ended_by.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|name| crate::people::same_person(name, &actor.name));
            if !involved {
                return Err(Error::Forbidden(format!(
                    "a change manager fetches the evidence of windows they requested, decided \
                     or closed; {} is not one of them for window {id} (ask an auditor)",
                    actor.name
                )));
            }
        }
        let now = self.now();
        let audit = NewAudit::new(
            now,
            &actor.name,
            "window.evidence_exported",
            format!("window:{id}"),
            json!({ "ticket": window.ticket, "format": format.to_string() }),
        );
        let records = self
            .store
            .window_records(id, self.settings.max_export_rows, audit)
            .await?;
        let verification = self
            .verified_evidence(
                &[&window],
                &records.drift.iter().collect::<Vec<_>>(),
                &records.events,
            )
            .await?;
        Ok((
            bundle::build(&window, &records, verification, &actor.name, now),
            format,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: &str, to: &str) -> ExportParams {
        ExportParams {
            from: Some(from.into()),
            to: Some(to.into()),
            ..ExportParams::default()
        }
    }

    #[test]
    fn a_good_request_parses() {
        let mut p = params("2026-01-01T00:00:00Z", "2026-02-01T00:00:00+01:00");
        p.format = Some("csv".into());
        p.sample = Some("25".into());
        p.seed = Some("7".into());
        p.host = Some("web-1".into());
        let (request, format) = parse_export(&p).unwrap();
        assert_eq!(format, ExportFormat::Csv);
        assert_eq!(request.sample, Some((25, 7)));
        assert_eq!(rfc3339(request.to), "2026-01-31T23:00:00Z");
        assert_eq!(request.host.as_deref(), Some("web-1"));
        let (_, default) =
            parse_export(&params("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")).unwrap();
        assert_eq!(default, ExportFormat::Json);
    }

    #[test]
    fn bad_requests_name_each_problem() {
        for (p, fragment) in [
            (
                params("2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z"),
                "must be before `to`",
            ),
            (
                params("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
                "must be before `to`",
            ),
            (
                params("yesterday", "2026-01-01T00:00:00Z"),
                "from: `yesterday`",
            ),
            (ExportParams::default(), "`from` is required"),
            (
                ExportParams {
                    format: Some("xlsx".into()),
                    ..params("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
                },
                "unknown format `xlsx`",
            ),
            (
                ExportParams {
                    sample: Some("5".into()),
                    ..params("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
                },
                "needs `seed`",
            ),
            (
                ExportParams {
                    sample: Some("0".into()),
                    seed: Some("1".into()),
                    ..params("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
                },
                "not a positive whole number",
            ),
            (
                ExportParams {
                    sample: Some("3".into()),
                    seed: Some("-1".into()),
                    ..params("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
                },
                "seed: `-1`",
            ),
        ] {
            let err = parse_export(&p).unwrap_err();
            assert!(err.contains(fragment), "{err:?} lacks {fragment:?}");
        }
        let both = parse_export(&ExportParams {
            format: Some("pdf".into()),
            ..params("x", "2026-01-01T00:00:00Z")
        })
        .unwrap_err();
        assert!(both.contains("from:") && both.contains("format:"), "{both}");
    }
}
