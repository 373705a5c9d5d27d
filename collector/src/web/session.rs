//! Sign-in, sign-out and the [`Viewer`] every page extracts: the session cookie resolved
//! by `App::session` to the caller's `Principal`.
//!
//! The cookie `dw_session` holds the session id (64 hex digits): `HttpOnly`,
//! `SameSite=Strict`, `Path=/ui`, `Secure` when the collector serves TLS, `Max-Age` the
//! session's lifetime. Sign-in shares the API's failed-authentication guard.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::form::Fields;
use super::layout::{self, Layout};
use crate::api::AppState;
use crate::app::Error;
use crate::guard::AuthGuard;
use crate::identity::{self, Principal, TokenKind};
use crate::store::Store;

pub const COOKIE: &str = "dw_session";

/// A signed-in person on a console page.
pub struct Viewer {
    pub principal: Principal,
    /// The session's CSRF token, for the page's forms.
    pub csrf: String,
    secret: String,
}

/// The session id from the request's cookies.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

/// The `Set-Cookie` value for a session (`max_age_secs` 0 clears it).
pub fn cookie(value: &str, max_age_secs: i64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/ui; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

impl<S: Store> FromRequestParts<AppState<S>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState<S>) -> Result<Self, Response> {
        let Some(secret) = session_cookie(&parts.headers) else {
            return Err(to_sign_in(None));
        };
        match app.session(&secret).await {
            Ok(principal) => Ok(Viewer {
                principal,
                csrf: super::csrf::token_for(&secret),
                secret,
            }),
            Err(Error::Unauthorized(why)) => {
                Err(to_sign_in(Some((why, app.dashboard().secure_cookies))))
            }
            Err(other) => Err(app_error(other)),
        }
    }
}

/// To the sign-in page (303), clearing a cookie that no longer names a live session.
fn to_sign_in(stale: Option<(String, bool)>) -> Response {
    let mut response = Redirect::to("/ui/sign-in").into_response();
    if let Some((why, secure)) = stale {
        tracing::debug!(why, "console session refused");
        if let Ok(value) = HeaderValue::from_str(&cookie("", 0, secure)) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// An `App` error as a page.
pub fn app_error(err: Error) -> Response {
    let status = match &err {
        Error::BadRequest(_) | Error::FieldTooLarge(_) => StatusCode::BAD_REQUEST,
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Store(store) => {
            tracing::error!(error = %store, "console request failed in the store");
            return layout::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The collector could not answer (see its log).",
            );
        }
    };
    layout::error_page(status, &err.to_string())
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    layout: Layout,
    problem: Option<String>,
}

fn sign_in_page(status: StatusCode, problem: Option<String>) -> Response {
    layout::render(
        status,
        &SignInPage {
            layout: Layout::new("Sign in", None, ""),
            problem,
        },
    )
}

pub async fn form<S: Store>() -> Response {
    sign_in_page(StatusCode::OK, None)
}

/// `POST /ui/sign-in` with `token`: a new session and its cookie, then the inbox.
pub async fn sign_in<S: Store>(State(app): State<AppState<S>>, request: Request) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let guard = request.extensions().get::<Arc<AuthGuard>>().cloned();
    let fields = match Fields::from_request(request, &app).await {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let token = fields.get("token").unwrap_or_default().trim().to_owned();
    let token_id = identity::parse(&token, TokenKind::Api)
        .or_else(|| identity::parse(&token, TokenKind::Agent));
    let now = Instant::now();
    if let Some(guard) = &guard
        && let Err(refusal) = guard.check(client, token_id, now)
    {
        let secs = refusal.retry_after().as_secs().max(1);
        return sign_in_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!("Too many failed sign-ins: try again in {secs} s.")),
        );
    }
    match app.sign_in(&token).await {
        Ok(signed_in) => {
            if let Some(guard) = &guard {
                guard.succeeded(signed_in.principal.token_id);
            }
            let max_age = (signed_in.expires_at - app.now()).max(0) / 1000;
            let mut response = Redirect::to("/ui/").into_response();
            match HeaderValue::from_str(&cookie(
                &signed_in.secret,
                max_age,
                app.dashboard().secure_cookies,
            )) {
                Ok(value) => {
                    response.headers_mut().insert(header::SET_COOKIE, value);
                }
                Err(_) => return layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, "cookie"),
            }
            response
        }
        Err(Error::Unauthorized(_)) => {
            let known = match token_id {
                Some(id) => app.is_issued_token(id).await.then_some(id),
                None => None,
            };
            tracing::warn!(client = ?client, token_id = ?token_id, "console sign-in failed: invalid or revoked token");
            if let Some(guard) = &guard {
                guard.failed(client, known, now);
            }
            sign_in_page(
                StatusCode::UNAUTHORIZED,
                Some("That token is not valid (or was revoked).".into()),
            )
        }
        Err(Error::Forbidden(why)) => sign_in_page(StatusCode::FORBIDDEN, Some(why)),
        Err(other) => app_error(other),
    }
}

/// `POST /ui/sign-out`: ends the session server-side (audited) and clears the cookie.
pub async fn sign_out<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    fields: Fields,
) -> Response {
    if !super::csrf::matches(&viewer.csrf, fields.get("csrf").unwrap_or_default()) {
        return csrf_refused();
    }
    if let Err(err) = app.sign_out(&viewer.principal, &viewer.secret).await {
        return app_error(err);
    }
    let mut response = Redirect::to("/ui/sign-in").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie("", 0, app.dashboard().secure_cookies)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// 403 for a form without the session's CSRF token.
pub fn csrf_refused() -> Response {
    tracing::warn!("console form without a valid CSRF token refused");
    layout::error_page(
        StatusCode::FORBIDDEN,
        "Refused: the form's security token is missing or wrong. Reload the page and try again.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped_to_the_console() {
        let c = cookie("abc", 60, true);
        assert!(c.starts_with("dw_session=abc; "));
        for part in [
            "Path=/ui",
            "Max-Age=60",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
        ] {
            assert!(c.split("; ").any(|p| p == part), "{part} in {c}");
        }
        assert!(!cookie("abc", 60, false).contains("Secure"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; dw_session=xyz"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("xyz"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }
}
