//! The agent-facing routes (`common::api::v1`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use driftwatch_common::api::v1::{
    EnrollRequest, EnrollResponse, EventBatch, Heartbeat, HeartbeatResponse, IngestAck,
};

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{Body, Caller, Throttle, throttled};
use crate::api::peer::PeerIdentity;
use crate::app::Error;
use crate::store::Store;

pub async fn enroll<S: Store>(
    State(app): State<AppState<S>>,
    peer: PeerIdentity,
    throttle: Throttle,
    Body(request): Body<EnrollRequest>,
) -> Result<Json<EnrollResponse>, Response> {
    throttle.check().map_err(throttled)?;
    // The certificate must name the host being enrolled, so a stolen enrollment token
    // cannot enroll a name its holder has no certificate for.
    peer.check_agent(&request.hostname)
        .map_err(IntoResponse::into_response)?;
    match app.enroll(request).await {
        Ok(enrolled) => Ok(Json(enrolled)),
        Err(Error::Unauthorized(message)) => {
            throttle.failed("enrollment token invalid, expired or used up");
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response())
        }
        Err(err) => Err(ApiError::from(err).into_response()),
    }
}

pub async fn events<S: Store>(
    State(app): State<AppState<S>>,
    Caller(agent): Caller,
    Body(batch): Body<EventBatch>,
) -> Result<Json<IngestAck>, ApiError> {
    Ok(Json(app.ingest(&agent, batch).await?))
}

pub async fn heartbeat<S: Store>(
    State(app): State<AppState<S>>,
    Caller(agent): Caller,
    Body(heartbeat): Body<Heartbeat>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    Ok(Json(app.heartbeat(&agent, heartbeat).await?))
}
