use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{Body, Caller, Id};
use crate::api::model::{
    CreateEnrollmentToken, CreatePerson, CreateToken, IssuedEnrollmentToken, IssuedToken,
    PersonView, TokenView,
};
use crate::clock::rfc3339;
use crate::store::Store;

pub async fn create<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Body(request): Body<CreateToken>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let issued = app
        .create_token(&caller, &request.person, request.role)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            id: issued.record.id,
            name: issued.record.name,
            role: issued.record.role,
            token: issued.text,
            person_id: issued.record.person_id,
            person_created: issued.person_created,
        }),
    ))
}

pub async fn list<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let tokens = app.tokens(&caller).await?;
    Ok(Json(tokens.iter().map(TokenView::from).collect()))
}

pub async fn create_person<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Body(request): Body<CreatePerson>,
) -> Result<(StatusCode, Json<PersonView>), ApiError> {
    let person = app.create_person(&caller, &request.name).await?;
    Ok((StatusCode::CREATED, Json(PersonView::from(&person))))
}

pub async fn people<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
) -> Result<Json<Vec<PersonView>>, ApiError> {
    let people = app.people(&caller).await?;
    Ok(Json(people.iter().map(PersonView::from).collect()))
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
