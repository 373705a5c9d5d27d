//! Hosts and alerts, for people.

use axum::Json;
use axum::extract::State;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{Body, Caller, Id, Params};
use crate::api::model::{
    AlertView, DEFAULT_ALERTS_LIMIT, DropDelivery, HostView, LimitQuery, MAX_ALERTS_LIMIT,
    MAX_HOSTS_LIMIT, PageQuery, RetriedView, RetryDelivery, listing_limit, paged,
};
use crate::app::Limit;
use crate::store::Store;

/// `GET /api/v1/hosts`: a page by name; `Next-Cursor` when there is more.
pub async fn hosts<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Params(query): Params<PageQuery>,
) -> Result<axum::response::Response, ApiError> {
    let limit = Limit {
        asked: query.limit,
        default: MAX_HOSTS_LIMIT,
        max: MAX_HOSTS_LIMIT,
    };
    let page = app
        .hosts_page(&caller, query.cursor.as_deref(), limit)
        .await?;
    let now = app.now();
    Ok(paged(
        page.items
            .iter()
            .map(|h| HostView::new(h, now, app.settings.silent_after_ms))
            .collect(),
        page.next,
    ))
}

pub async fn alerts<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Params(query): Params<LimitQuery>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    let limit = Limit {
        asked: query.limit,
        default: DEFAULT_ALERTS_LIMIT,
        max: MAX_ALERTS_LIMIT,
    };
    let alerts = app.alerts(&caller, limit).await?;
    Ok(Json(alerts.iter().map(AlertView::from).collect()))
}

pub async fn dead_letters<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Params(query): Params<LimitQuery>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    let limit = listing_limit(query.limit, DEFAULT_ALERTS_LIMIT, MAX_ALERTS_LIMIT)?;
    let alerts = app.dead_letters(&caller, limit).await?;
    Ok(Json(alerts.iter().map(AlertView::from).collect()))
}

pub async fn retry<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Id(id): Id,
    Body(request): Body<RetryDelivery>,
) -> Result<Json<AlertView>, ApiError> {
    let alert = app.retry_dead_letter(&caller, id, &request.sink).await?;
    Ok(Json(AlertView::from(&alert)))
}

pub async fn retry_all<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Body(request): Body<RetryDelivery>,
) -> Result<Json<RetriedView>, ApiError> {
    let retried = app.retry_dead_letters(&caller, &request.sink).await?;
    Ok(Json(RetriedView { retried }))
}

pub async fn drop<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Id(id): Id,
    Body(request): Body<DropDelivery>,
) -> Result<Json<AlertView>, ApiError> {
    let alert = app
        .drop_dead_letter(&caller, id, &request.sink, &request.reason)
        .await?;
    Ok(Json(AlertView::from(&alert)))
}
