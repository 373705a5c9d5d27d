//! Extractors that answer bad input with a JSON error naming the problem (axum's own
//! rejections are plain text, and some are 422).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::peer::PeerIdentity;
use crate::app::Error;
use crate::guard::{AuthGuard, Refusal};
use crate::identity::{self, Principal, Role, TokenKind};
use crate::store::Store;

/// A JSON request body, decompressed (gzip) and at most `max_body_bytes`.
pub struct Body<T>(pub T);

impl<S: Store, T: DeserializeOwned> FromRequest<AppState<S>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState<S>) -> Result<Self, ApiError> {
        match read_json(req, state).await? {
            Some(value) => Ok(Body(value)),
            None => Err(ApiError::bad_request(
                "empty request body: expected a JSON document",
            )),
        }
    }
}

/// A JSON request body that may be left out (an empty body).
pub struct MaybeBody<T>(pub Option<T>);

impl<S: Store, T: DeserializeOwned> FromRequest<AppState<S>> for MaybeBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState<S>) -> Result<Self, ApiError> {
        read_json(req, state).await.map(MaybeBody)
    }
}

async fn read_json<S: Store, T: DeserializeOwned>(
    req: Request,
    state: &AppState<S>,
) -> Result<Option<T>, ApiError> {
    let limit = state.settings.max_body_bytes;
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the request body is larger than {limit} bytes (max_body_bytes, after decompression)"
                ),
            )
        } else {
            ApiError::bad_request(format!(
                "could not read the request body (is the gzip stream valid?): {}",
                rejection.body_text()
            ))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| ApiError::bad_request(format!("invalid request body: {err}")))
}

/// The caller, from `Authorization: Bearer <token>`.
///
/// A failed authentication is logged at warn with the client's address (and the token's
/// id when it has the shape of one; never the secret) and counted by [`AuthGuard`]: an
/// address that fails too often, or a token id that failed too many times in a row, gets
/// 429 with `Retry-After` before its token is even looked at. An agent's credential
/// also needs the client certificate [`PeerIdentity`] asks for.
pub struct Caller(pub Principal);

impl<S: Store> FromRequestParts<AppState<S>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState<S>) -> Result<Self, Response> {
        let unauthorized =
            |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m).into_response();
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let shown = client.map_or_else(|| "unknown".to_owned(), |c| c.to_string());
        let guard = parts.extensions.get::<Arc<AuthGuard>>().cloned();
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Err(unauthorized(
                "missing token: send `Authorization: Bearer <token>`",
            ));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        let token_id = token.and_then(|t| {
            identity::parse(t, TokenKind::Api).or_else(|| identity::parse(t, TokenKind::Agent))
        });
        let now = Instant::now();
        if let Some(guard) = &guard
            && let Err(refusal) = guard.check(client.map(|c| c.ip()), token_id, now)
        {
            metrics::counter!("driftwatch_auth_throttled_total").increment(1);
            tracing::debug!(client = %shown, token_id = ?token_id, ?refusal, "authentication throttled");
            return Err(throttled(refusal));
        }
        let Some(token) = token else {
            tracing::warn!(client = %shown, "authentication failed: malformed Authorization header");
            metrics::counter!("driftwatch_auth_failures_total").increment(1);
            if let Some(guard) = &guard {
                guard.failed(client.map(|c| c.ip()), None, now);
            }
            return Err(unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ));
        };
        match state.authenticate(token).await {
            Ok(principal) => {
                if let Some(guard) = &guard {
                    guard.succeeded(principal.token_id);
                }
                if principal.role == Role::Agent {
                    PeerIdentity::of(parts)
                        .check_agent(&principal.name)
                        .map_err(IntoResponse::into_response)?;
                }
                Ok(Caller(principal))
            }
            Err(Error::Unauthorized(message)) => {
                // Only ids of real tokens count toward a lockout: invented ones fill nothing.
                let known = match token_id {
                    Some(id) => state.is_issued_token(id).await.then_some(id),
                    None => None,
                };
                tracing::warn!(client = %shown, token_id = ?token_id, "authentication failed: invalid or revoked token");
                metrics::counter!("driftwatch_auth_failures_total").increment(1);
                if let Some(guard) = &guard {
                    guard.failed(client.map(|c| c.ip()), known, now);
                }
                Err(unauthorized(&message))
            }
            Err(other) => Err(ApiError::from(other).into_response()),
        }
    }
}

/// The client's address and the failed-authentication guard, for routes that check a
/// secret of their own (enrollment tokens).
pub struct Throttle {
    client: Option<SocketAddr>,
    guard: Option<Arc<AuthGuard>>,
}

impl<S: Send + Sync> FromRequestParts<S> for Throttle {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Throttle {
            client: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            guard: parts.extensions.get::<Arc<AuthGuard>>().cloned(),
        })
    }
}

impl Throttle {
    /// Refused when this address failed too often (answer with [`throttled`]).
    pub fn check(&self) -> Result<(), Refusal> {
        match &self.guard {
            Some(guard) => guard.check(self.client.map(|c| c.ip()), None, Instant::now()),
            None => Ok(()),
        }
    }

    /// Logs and counts a refused secret.
    pub fn failed(&self, what: &str) {
        let shown = self
            .client
            .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
        tracing::warn!(client = %shown, "authentication failed: {what}");
        metrics::counter!("driftwatch_auth_failures_total").increment(1);
        if let Some(guard) = &self.guard {
            guard.failed(self.client.map(|c| c.ip()), None, Instant::now());
        }
    }
}

/// 429 with `Retry-After` (whole seconds, rounded up).
pub fn throttled(refusal: Refusal) -> Response {
    let secs = refusal.retry_after().as_secs_f64().ceil().max(1.0) as u64;
    let message = match refusal {
        Refusal::Address(_) => {
            format!("too many failed authentications from this address: retry in {secs} s")
        }
        Refusal::TokenId(_) => {
            format!("this token is locked after repeated failed authentications: retry in {secs} s")
        }
    };
    let mut response =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message).into_response();
    response.headers_mut().insert(
        RETRY_AFTER,
        HeaderValue::from_str(&secs.to_string()).expect("digits are a header value"),
    );
    response
}

/// An id in the path (`/api/v1/windows/{id}`).
pub struct Id(pub Uuid);

impl<S: Store> FromRequestParts<AppState<S>> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState<S>) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::bad_request(r.body_text()))?;
        Uuid::try_parse(&text)
            .map(Id)
            .map_err(|_| ApiError::bad_request(format!("`{text}` is not an id (a UUID)")))
    }
}

/// Query parameters.
pub struct Params<T>(pub T);

impl<S: Store, T: DeserializeOwned> FromRequestParts<AppState<S>> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState<S>) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Params(value))
            .map_err(|r| {
                ApiError::bad_request(format!("invalid query parameters: {}", r.body_text()))
            })
    }
}
