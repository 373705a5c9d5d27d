use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{Body, Caller, Id};
use crate::api::model::{
    CreateEnrollmentToken, CreateToken, IssuedEnrollmentToken, IssuedToken, TokenView,
};
use crate::app::require;
use crate::clock::rfc3339;
use crate::identity::Role;
use crate::store::Store;

pub async fn create<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Body(request): Body<CreateToken>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    require(&caller, &[Role::Admin], "issuing tokens")?;
    let (record, token) = app
        .create_token(&caller.name, &request.name, request.role)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            id: record.id,
            name: record.name,
            role: record.role,
            token,
        }),
    ))
}

pub async fn list<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    require(&caller, &[Role::Admin, Role::Auditor], "listing tokens")?;
    let tokens = app.store.tokens().await.map_err(crate::app::Error::from)?;
    Ok(Json(tokens.iter().map(TokenView::from).collect()))
}

pub async fn revoke<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Id(id): Id,
) -> Result<Json<TokenView>, ApiError> {
    let record = app.revoke_token(&caller, id).await?;
    Ok(Json(TokenView::from(&record)))
}

pub async fn create_enrollment<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Body(request): Body<CreateEnrollmentToken>,
) -> Result<(StatusCode, Json<IssuedEnrollmentToken>), ApiError> {
    let (record, token) = app
        .create_enrollment_token(
            &caller,
            request.ttl_secs.unwrap_or(3600),
            request.uses.unwrap_or(1),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedEnrollmentToken {
            id: record.id,
            token,
            expires_at: rfc3339(record.expires_at),
            uses: record.uses_left,
        }),
    ))
}
