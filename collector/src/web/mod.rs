//! The web console (issue 11), served by the collector under `/ui/`: plain server-rendered
//! HTML (askama templates compiled into the binary, auto-escaped), one CSS and one JS file
//! from `collector/web/static/` embedded with `include_bytes!`, no inline script or style.
//!
//! Every page resolves its session to the caller's `Principal` (`session.rs`) and calls
//! `App` operations with it: the console has no authorization of its own, it only hides
//! what `App` would refuse (the same role lists, e.g. `app::RESOLVE_ROLES`). Every
//! state-changing request passes the Origin / `Sec-Fetch-Site` check and carries the
//! session's CSRF token (`csrf.rs`); every response gets the security headers (`headers`).
//!
//! One module per screen: `inbox.rs` (untraced and flagged drift, grouped), `hosts.rs`,
//! `drift.rs` (the drift detail), `windows.rs`, `overview.rs`,
//! `audit.rs` (audit log, verification, period export).
//! A new screen adds its module, its template under `collector/web/templates/`, its
//! routes in [`routes`] and its entry in `layout::NAV`.

mod assets;
pub mod audit;
pub mod csrf;
pub mod drift;
mod form;
pub mod hosts;
pub mod inbox;
pub mod layout;
pub mod overview;
pub mod session;
pub mod windows;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Redirect, Response};
use axum::routing::{MethodRouter, get, post};

use crate::api::AppState;
use crate::guard::AuthGuard;
use crate::store::Store;

/// The Content-Security-Policy of every console response: no inline script or style, no
/// framing, forms post only to the collector.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `(method, path, handler)` of every console route.
pub fn routes<S: Store>() -> Vec<(&'static str, &'static str, MethodRouter<AppState<S>>)> {
    vec![
        ("get", "/", get(to_console)),
        ("get", "/ui", get(to_console)),
        ("get", "/ui/", get(inbox::page::<S>)),
        ("get", "/ui/sign-in", get(session::form::<S>)),
        ("post", "/ui/sign-in", post(session::sign_in::<S>)),
        ("post", "/ui/sign-out", post(session::sign_out::<S>)),
        // Untraced inbox.
        ("get", "/ui/inbox", get(inbox::page::<S>)),
        ("get", "/ui/inbox.csv", get(inbox::csv::<S>)),
        ("post", "/ui/inbox/resolve", post(inbox::resolve::<S>)),
        ("get", "/ui/inbox/stream", get(inbox::stream::<S>)),
        // Drift detail.
        ("get", "/ui/drift/{id}", get(drift::page::<S>)),
        ("post", "/ui/drift/{id}/resolve", post(drift::resolve::<S>)),
        // Change windows.
        ("get", "/ui/windows", get(windows::list::<S>)),
        ("post", "/ui/windows", post(windows::create::<S>)),
        ("get", "/ui/windows/new", get(windows::new::<S>)),
        ("get", "/ui/windows/{id}", get(windows::show::<S>)),
        (
            "post",
            "/ui/windows/{id}/decide",
            post(windows::decide::<S>),
        ),
        (
            "get",
            "/ui/windows/{id}/evidence",
            get(windows::evidence::<S>),
        ),
        // Overview.
        ("get", "/ui/overview", get(overview::page::<S>)),
        // Audit and evidence.
        ("get", "/ui/audit", get(audit::page::<S>)),
        ("get", "/ui/audit/export", get(audit::export::<S>)),
        // Hosts.
        ("get", "/ui/hosts", get(hosts::page::<S>)),
        // Assets, and an HTML 404 for the rest of /ui/.
        ("get", "/ui/static/{name}", get(assets::serve)),
        ("get", "/ui/{*rest}", get(not_found)),
    ]
}

/// The console's router (merged into the API's by `api::router_for`); `guard` is the
/// API's failed-authentication guard, which sign-in shares.
pub fn router<S: Store>(app: AppState<S>, guard: Arc<AuthGuard>) -> Router {
    routes::<S>()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .layer(axum::middleware::from_fn(csrf::same_origin_only))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::Extension(guard))
        .with_state(app)
}

async fn to_console() -> Redirect {
    Redirect::to("/ui/")
}

async fn not_found() -> Response {
    layout::error_page(
        axum::http::StatusCode::NOT_FOUND,
        "There is no such page in the console.",
    )
}

/// CSP, nosniff, no referrer, no framing on every response; `no-store` on every one that
/// did not choose its own caching (the hashed assets do).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}
