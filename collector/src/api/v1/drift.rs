use axum::Json;
use axum::extract::State;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{Body, Caller, Id, Params};
use crate::api::model::{
    DriftDetail, DriftDetailView, DriftQuery, DriftView, EventView, MAX_DRIFT_DETAIL_EVENTS,
    MAX_DRIFT_LIMIT, ResolveDrift,
};
use crate::app::Limit;
use crate::store::{DriftFilter, Store};

pub async fn list<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Params(query): Params<DriftQuery>,
) -> Result<Json<Vec<DriftView>>, ApiError> {
    let items = app
        .drift_items(
            &caller,
            DriftFilter {
                status: query.status,
                host_id: query.host,
                window_id: query.window,
                limit: None,
            },
            Limit {
                asked: query.limit,
                default: MAX_DRIFT_LIMIT,
                max: MAX_DRIFT_LIMIT,
            },
        )
        .await?;
    Ok(Json(items.iter().map(DriftView::from).collect()))
}

pub async fn get<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Id(id): Id,
) -> Result<Json<DriftDetail>, ApiError> {
    let (item, events) = app.drift_item(&caller, id).await?;
    let omitted = events.len().saturating_sub(MAX_DRIFT_DETAIL_EVENTS);
    Ok(Json(DriftDetail {
        drift: DriftView::from(&item),
        events: events[omitted..].iter().map(EventView::from).collect(),
        events_omitted: omitted,
    }))
}

/// `GET /api/v1/drift/{id}/detail` (issue 11): history, timeline, why no window covered it.
pub async fn detail<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Id(id): Id,
) -> Result<Json<DriftDetailView>, ApiError> {
    let detail = app.drift_detail(&caller, id).await?;
    Ok(Json(DriftDetailView::from(&detail)))
}

pub async fn resolve<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Id(id): Id,
    Body(request): Body<ResolveDrift>,
) -> Result<Json<DriftView>, ApiError> {
    let item = app.resolve(&caller, id, request).await?;
    Ok(Json(DriftView::from(&item)))
}
