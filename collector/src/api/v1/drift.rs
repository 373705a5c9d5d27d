use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{Body, Caller, Id, Params};
use crate::api::model::{
    DriftDetail, DriftDetailView, DriftQuery, DriftView, EventView, MAX_DRIFT_DETAIL_EVENTS,
    MAX_DRIFT_LIMIT, ResolveDrift, paged,
};
use crate::app::{Limit, LiveItem};
use crate::identity::Principal;
use crate::live;
use crate::store::{DriftFilter, Store};

/// `GET /api/v1/drift`: a page, newest opened first; `Next-Cursor` when there is more.
pub async fn list<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Params(query): Params<DriftQuery>,
) -> Result<Response, ApiError> {
    let page = app
        .drift_page(
            &caller,
            DriftFilter {
                status: query.status,
                host_id: query.host,
                window_id: query.window,
                limit: None,
            },
            query.cursor.as_deref(),
            Limit {
                asked: query.limit,
                default: MAX_DRIFT_LIMIT,
                max: MAX_DRIFT_LIMIT,
            },
        )
        .await?;
    Ok(paged(
        page.items.iter().map(DriftView::from).collect(),
        page.next,
    ))
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

// Live drift stream (issue 11).

/// `GET /api/v1/drift/stream[?after=CURSOR]`: the live drift stream of the bearer token's
/// principal, resumed after `Last-Event-ID` (a reconnect) or `after` (a first connection
/// that knows where it stopped; the header wins).
pub async fn stream<S: Store>(
    State(app): State<AppState<S>>,
    Caller(caller): Caller,
    Params(query): Params<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let header = match headers.get("last-event-id") {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::bad_request("Last-Event-ID must be a stream cursor (ASCII digits)")
            })?;
            live::parse_cursor(text).map_err(ApiError::bad_request)?
        }
    };
    let query = match query.after.as_deref() {
        None => None,
        Some(text) => live::parse_cursor(text)
            .map_err(|why| ApiError::bad_request(why.replace("Last-Event-ID", "after")))?,
    };
    sse_response(&app, &caller, header.or(query)).await
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    pub after: Option<String>,
}

/// The live drift stream of `principal` after `resume`, as a `text/event-stream` response:
/// `ready` first without a cursor (its `id:` the head), `drift` events (JSON
/// [`live::ChangeView`], `id:` its cursor), `reset` when the client
/// must reload, `bye` before the collector stops, a heartbeat comment every
/// `limits.stream_heartbeat_secs`; no caching, no proxy buffering. The web dashboard calls
/// this with a session's `Principal`: the role check is `App::drift_stream`'s.
pub async fn sse_response<S: Store>(
    app: &AppState<S>,
    principal: &Principal,
    resume: Option<i64>,
) -> Result<Response, ApiError> {
    let stream = app.drift_stream(principal, resume).await?;
    let heartbeat = app.stream_heartbeat();
    let events = futures_util::stream::unfold(stream, |mut stream| async move {
        let item = stream.next().await?;
        Some((Ok::<_, Infallible>(sse_event(&item)), stream))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One stream item as a server-sent event.
pub fn sse_event(item: &LiveItem) -> Event {
    let (name, data) = match item {
        LiveItem::Ready(view) => (live::EVENT_READY, serde_json::to_string(view)),
        LiveItem::Change(view) => (live::EVENT_DRIFT, serde_json::to_string(view)),
        LiveItem::Reset(view) => (live::EVENT_RESET, serde_json::to_string(view)),
        LiveItem::Bye => (live::EVENT_BYE, Ok("{}".to_owned())),
    };
    // Serializing these plain structs cannot fail; an empty object keeps the stream valid.
    let event = Event::default()
        .event(name)
        .data(data.unwrap_or_else(|_| "{}".into()));
    match item.cursor() {
        Some(cursor) => event.id(cursor.to_string()),
        None => event,
    }
}
