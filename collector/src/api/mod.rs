//! The HTTP API: every route in [`routes`], one block; `collector/openapi.yaml` describes
//! each of them (a test holds the two together).

pub mod error;
pub mod extract;
pub mod model;
pub mod peer;
pub mod v1;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::store::Store;
use error::ApiError;
use model::Status;

/// What every handler gets.
pub type AppState<S> = Arc<App<S>>;

/// `(method, path, handler)` of every route.
pub fn routes<S: Store>() -> Vec<(&'static str, &'static str, MethodRouter<AppState<S>>)> {
    use v1::{agents, audit, drift, fleet, reports, tokens, windows};
    vec![
        ("get", "/healthz", get(healthz)),
        ("get", "/readyz", get(readyz::<S>)),
        ("get", "/metrics", get(metrics::<S>)),
        // Agents.
        ("post", "/api/v1/enroll", post(agents::enroll::<S>)),
        ("post", "/api/v1/events", post(agents::events::<S>)),
        ("post", "/api/v1/heartbeat", post(agents::heartbeat::<S>)),
        // Identity.
        ("post", "/api/v1/tokens", post(tokens::create::<S>)),
        ("get", "/api/v1/tokens", get(tokens::list::<S>)),
        ("post", "/api/v1/people", post(tokens::create_person::<S>)),
        ("get", "/api/v1/people", get(tokens::people::<S>)),
        (
            "post",
            "/api/v1/tokens/{id}/revoke",
            post(tokens::revoke::<S>),
        ),
        (
            "post",
            "/api/v1/enrollment-tokens",
            post(tokens::create_enrollment::<S>),
        ),
        // Change windows.
        ("post", "/api/v1/windows", post(windows::create::<S>)),
        ("get", "/api/v1/windows", get(windows::list::<S>)),
        ("get", "/api/v1/windows/{id}", get(windows::get::<S>)),
        (
            "post",
            "/api/v1/windows/{id}/approve",
            post(windows::approve::<S>),
        ),
        (
            "post",
            "/api/v1/windows/{id}/reject",
            post(windows::reject::<S>),
        ),
        (
            "post",
            "/api/v1/windows/{id}/cancel",
            post(windows::cancel::<S>),
        ),
        (
            "post",
            "/api/v1/windows/{id}/close",
            post(windows::close::<S>),
        ),
        // Drift.
        ("get", "/api/v1/drift", get(drift::list::<S>)),
        ("get", "/api/v1/drift/{id}", get(drift::get::<S>)),
        // Live drift stream (issue 11).
        ("get", "/api/v1/drift/stream", get(drift::stream::<S>)),
        (
            "post",
            "/api/v1/drift/{id}/resolve",
            post(drift::resolve::<S>),
        ),
        // Drift detail (issue 11).
        ("get", "/api/v1/drift/{id}/detail", get(drift::detail::<S>)),
        // Fleet, alerts, audit, reports.
        ("get", "/api/v1/hosts", get(fleet::hosts::<S>)),
        ("get", "/api/v1/alerts", get(fleet::alerts::<S>)),
        (
            "get",
            "/api/v1/alerts/dead-letters",
            get(fleet::dead_letters::<S>),
        ),
        ("post", "/api/v1/alerts/{id}/retry", post(fleet::retry::<S>)),
        (
            "post",
            "/api/v1/alerts/dead-letters/retry",
            post(fleet::retry_all::<S>),
        ),
        ("post", "/api/v1/alerts/{id}/drop", post(fleet::drop::<S>)),
        ("get", "/api/v1/audit", get(audit::log::<S>)),
        ("get", "/api/v1/audit/verify", get(audit::verify::<S>)),
        ("get", "/api/v1/audit/entries", get(audit::entries::<S>)),
        (
            "get",
            "/api/v1/audit/checkpoints",
            get(audit::checkpoints::<S>),
        ),
        (
            "get",
            "/api/v1/audit/public-key",
            get(audit::public_key::<S>),
        ),
        ("get", "/api/v1/reports/export", get(reports::export::<S>)),
        (
            "get",
            "/api/v1/windows/{id}/evidence",
            get(reports::window_evidence::<S>),
        ),
    ]
}

/// `(method, path)` of every route, for the OpenAPI check.
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    routes::<crate::store::SqliteStore>()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoints {
    All,
    /// Everything but `/metrics` (served on its own address).
    WithoutMetrics,
    /// `/metrics` and `/healthz` (the metrics listener).
    MetricsOnly,
}

pub fn router<S: Store>(app: AppState<S>) -> Router {
    router_for(app, Endpoints::All)
}

pub fn router_for<S: Store>(app: AppState<S>, endpoints: Endpoints) -> Router {
    let max_body = app.settings.max_body_bytes;
    let guard = Arc::new(crate::guard::AuthGuard::new(&app.settings.limits));
    let console = match endpoints {
        Endpoints::MetricsOnly => None,
        _ => Some(crate::web::router(Arc::clone(&app), Arc::clone(&guard))),
    };
    let router = routes::<S>()
        .into_iter()
        .filter(|(_, path, _)| match endpoints {
            Endpoints::All => true,
            Endpoints::WithoutMetrics => *path != "/metrics",
            Endpoints::MetricsOnly => matches!(*path, "/metrics" | "/healthz"),
        })
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        });
    let router = router
        .layer(axum::Extension(guard))
        .fallback(fallback)
        .method_not_allowed_fallback(|| async {
            ApiError::for_status(StatusCode::METHOD_NOT_ALLOWED)
        })
        // Applies to the decompressed body, so a gzip bomb stops at the limit.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(RequestDecompressionLayer::new())
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            ApiError::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(app);
    // The web console (`crate::web`) has its own pages, errors and headers: merged beside
    // the API's layers, not under them (they answer errors in JSON).
    match console {
        Some(console) => console.merge(router),
        None => router,
    }
}

async fn fallback(OriginalUri(uri): OriginalUri) -> ApiError {
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/api/")
        && !rest.starts_with("v1/")
        && rest != "v1"
    {
        let version = rest.split('/').next().unwrap_or_default();
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "unsupported_version",
            format!("API version `{version}` is not supported: this collector speaks /api/v1"),
        );
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {path}"),
    )
}

async fn healthz() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
    })
}

/// Ready when the database answers.
async fn readyz<S: Store>(State(app): State<AppState<S>>) -> Response {
    match app.database_answers().await {
        Ok(()) => Json(Status {
            status: "ready".into(),
        })
        .into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "not ready: the database does not answer");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database does not answer",
            )
            .into_response()
        }
    }
}

async fn metrics<S: Store>(
    State(app): State<AppState<S>>,
    request: axum::extract::Request,
) -> Response {
    let mut reader = None;
    if app.settings.metrics.require_token {
        // Only here does a missing token matter: the configuration may leave /metrics open.
        let (mut parts, _) = request.into_parts();
        let caller =
            match <extract::Caller as axum::extract::FromRequestParts<_>>::from_request_parts(
                &mut parts, &app,
            )
            .await
            {
                Ok(caller) => caller,
                Err(refused) => return refused,
            };
        reader = Some(caller.0);
    }
    let body = match app.metrics_exposition(reader.as_ref()).await {
        Ok(body) => body,
        Err(err) => return ApiError::from(err).into_response(),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}
