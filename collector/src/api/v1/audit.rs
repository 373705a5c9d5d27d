use axum::Json;
use axum::extract::State;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{Caller, Params};
use crate::api::model::{AuditEntryView, AuditQuery, MAX_AUDIT_LIMIT, paged};
use crate::app::Limit;
use crate::audit::ops::EntriesView;
use crate::audit::signing::PublicKeyView;
use crate::audit::{Checkpoint, VerifyReport};
use crate::clock::rfc3339;
use crate::identity::hex;
use crate::store::Store;

pub async fn verify<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
) -> Result<Json<VerifyReport>, ApiError> {
    Ok(Json(app.verify_audit(&caller).await?))
}

/// `GET /api/v1/audit`: entries in order after `after` (a seq) or `cursor`;
/// `Next-Cursor` when there is more.
pub async fn log<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Params(query): Params<AuditQuery>,
) -> Result<axum::response::Response, ApiError> {
    let limit = Limit {
        asked: query.limit,
        default: MAX_AUDIT_LIMIT,
        max: MAX_AUDIT_LIMIT,
    };
    let page = app
        .audit_page(&caller, query.after, query.cursor.as_deref(), limit)
        .await?;
    Ok(paged(
        page.items
            .iter()
            .map(|e| AuditEntryView {
                seq: e.seq,
                at: rfc3339(e.at),
                actor: e.actor.clone(),
                action: e.action.clone(),
                target: e.target.clone(),
                details: serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null),
                hash: hex(&e.hash),
            })
            .collect(),
        page.next,
    ))
}

/// The checkpoint signing key, for offline verifiers (`driftctl verify`, `audit verify`).
pub async fn public_key<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
) -> Result<Json<PublicKeyView>, ApiError> {
    let key = app.audit_public_key(&caller)?.ok_or_else(|| {
        crate::app::Error::NotFound("this collector runs without an audit signing key".into())
    })?;
    Ok(Json(key))
}

/// The signed checkpoints the database keeps, oldest first.
pub async fn checkpoints<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
) -> Result<Json<Vec<Checkpoint>>, ApiError> {
    Ok(Json(app.audit_checkpoints(&caller).await?))
}

/// The log exactly as stored, for verification by the caller.
pub async fn entries<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
) -> Result<Json<EntriesView>, ApiError> {
    Ok(Json(app.audit_entries(&caller).await?))
}
