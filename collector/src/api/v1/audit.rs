use axum::Json;
use axum::extract::State;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{Caller, Params};
use crate::api::model::{AuditEntryView, AuditQuery, MAX_AUDIT_LIMIT, listing_limit};
use crate::app::require;
use crate::audit::VerifyReport;
use crate::clock::rfc3339;
use crate::identity::{Role, hex};
use crate::store::Store;

pub async fn verify<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
) -> Result<Json<VerifyReport>, ApiError> {
    require(&caller, &Role::PEOPLE, "verifying the audit log")?;
    Ok(Json(app.verify_audit().await?))
}

pub async fn log<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Params(query): Params<AuditQuery>,
) -> Result<Json<Vec<AuditEntryView>>, ApiError> {
    require(&caller, &Role::PEOPLE, "reading the audit log")?;
    let limit = listing_limit(query.limit, MAX_AUDIT_LIMIT, MAX_AUDIT_LIMIT)? as usize;
    let after = query.after.unwrap_or(0);
    let (entries, _) = app
        .store
        .audit_log()
        .await
        .map_err(crate::app::Error::from)?;
    Ok(Json(
        entries
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
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
    ))
}
