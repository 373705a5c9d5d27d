//! The query parameters of the evidence operations (`app/evidence.rs`), checked here.

use serde::Deserialize;

use super::ExportFormat;
use super::export::ExportRequest;

use crate::clock::{parse_instant, rfc3339};

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
