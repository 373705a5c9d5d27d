use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{Body, Caller, Id, MaybeBody, Params};
use crate::api::model::{
    DecideWindow, DecisionView, MAX_WINDOWS_LIMIT, WindowQuery, WindowView, paged,
};
use crate::store::Store;
use crate::windows::lifecycle::Action;
use crate::windows::validate::WindowRequest;

pub async fn create<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Body(request): Body<WindowRequest>,
) -> Result<(StatusCode, Json<WindowView>), ApiError> {
    let window = app.create_window(&caller, &request).await?;
    Ok((StatusCode::CREATED, Json(WindowView::from(&window))))
}

/// `GET /api/v1/windows`: a page by start; `Next-Cursor` when there is more.
pub async fn list<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Params(query): Params<WindowQuery>,
) -> Result<axum::response::Response, ApiError> {
    let limit = crate::app::Limit {
        asked: query.limit,
        default: MAX_WINDOWS_LIMIT,
        max: MAX_WINDOWS_LIMIT,
    };
    let page = app
        .windows_page(&caller, query.status, query.cursor.as_deref(), limit)
        .await?;
    Ok(paged(
        page.items.iter().map(WindowView::from).collect(),
        page.next,
    ))
}

pub async fn get<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Id(id): Id,
) -> Result<Json<WindowView>, ApiError> {
    Ok(Json(WindowView::from(&app.window(&caller, id).await?)))
}

async fn decide<S: Store>(
    app: AppState<S>,
    caller: Caller,
    id: Id,
    body: Option<DecideWindow>,
    action: Action,
) -> Result<Json<DecisionView>, ApiError> {
    let comment = body.and_then(|b| b.comment);
    let decision = app.decide(&caller.0, id.0, action, comment).await?;
    Ok(Json(DecisionView {
        window: WindowView::from(&decision.window),
        events_covered: decision.review.as_ref().map(|r| r.events),
        drift_authorized: decision.review.as_ref().map(|r| r.drift_authorized),
        drift_accepted: decision.close.as_ref().map(|c| c.accepted),
        commands_queued: decision.close.as_ref().map(|c| c.commands),
    }))
}

macro_rules! decision_handler {
    ($name:ident, $action:expr) => {
        pub async fn $name<S: Store>(
            State(app): State<AppState<S>>,
            caller: Caller,
            id: Id,
            MaybeBody(body): MaybeBody<DecideWindow>,
        ) -> Result<Json<DecisionView>, ApiError> {
            decide(app, caller, id, body, $action).await
        }
    };
}

decision_handler!(approve, Action::Approve);
decision_handler!(reject, Action::Reject);
decision_handler!(cancel, Action::Cancel);
decision_handler!(close, Action::Close);
