//! Evidence for auditors: the export of a period and a window's close-out bundle.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{Caller, Id, Params};
use crate::reports::ops::{BundleParams, ExportParams};
use crate::reports::seal::DocKind;
use crate::reports::{BundleFormat, ExportFormat, bundle, export};
use crate::store::Store;

/// A document with its type; `attachment` names the file a browser saves it as.
fn document(content_type: &'static str, attachment: Option<String>, body: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A second line of defence should an escape ever be missed: no script, no fetch.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    if let Some(value) = attachment
        .and_then(|name| HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).ok())
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

pub async fn export<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Params(params): Params<ExportParams>,
) -> Result<Response, ApiError> {
    let (export, format) = app.export(&caller, &params).await?;
    Ok(export_document(&app, &export, format))
}

/// An export as its document, sealed (the web console serves it too).
pub fn export_document<S: Store>(
    app: &AppState<S>,
    export: &export::Export,
    format: ExportFormat,
) -> Response {
    let name = |ext: &str| {
        let day = |t: &str| t.get(..10).unwrap_or(t).to_owned();
        format!(
            "driftwatch-evidence-{}-{}.{ext}",
            day(&export.from),
            day(&export.to)
        )
    };
    match format {
        ExportFormat::Csv => document(
            "text/csv; charset=utf-8; header=present",
            Some(name("csv")),
            app.seal_document(export::to_csv(export), DocKind::Csv),
        ),
        ExportFormat::Json => document(
            "application/json",
            None,
            app.seal_document(
                serde_json::to_string(export).expect("exports serialize"),
                DocKind::Json,
            ),
        ),
    }
}

pub async fn window_evidence<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Id(id): Id,
    Params(params): Params<BundleParams>,
) -> Result<Response, ApiError> {
    let (bundle, format) = app.window_evidence(&caller, id, &params).await?;
    Ok(bundle_document(&app, id, &bundle, format))
}

/// A window's evidence bundle as its document, sealed (the web console serves it too).
pub fn bundle_document<S: Store>(
    app: &AppState<S>,
    id: uuid::Uuid,
    bundle: &bundle::Bundle,
    format: BundleFormat,
) -> Response {
    let name = |ext: &str| {
        let ticket: String = bundle
            .content
            .window
            .ticket
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("evidence-{ticket}-{id}.{ext}")
    };
    match format {
        BundleFormat::Json => document(
            "application/json",
            None,
            app.seal_document(bundle::to_json(bundle), DocKind::Json),
        ),
        BundleFormat::Markdown => document(
            "text/markdown; charset=utf-8",
            Some(name("md")),
            app.seal_document(bundle::to_markdown(bundle), DocKind::Markup),
        ),
        BundleFormat::Html => document(
            "text/html; charset=utf-8",
            Some(name("html")),
            app.seal_document(bundle::to_html(bundle), DocKind::Markup),
        ),
    }
}
