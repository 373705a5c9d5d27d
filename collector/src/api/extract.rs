//! Extractors that answer bad input with a JSON error naming the problem (axum's own
//! rejections are plain text, and some are 422).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::identity::Principal;
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
pub struct Caller(pub Principal);

impl<S: Store> FromRequestParts<AppState<S>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState<S>) -> Result<Self, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing token: send `Authorization: Bearer <token>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        state
            .authenticate(token)
            .await
            .map(Caller)
            .map_err(ApiError::from)
    }
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
