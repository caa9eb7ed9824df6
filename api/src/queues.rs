//! `/v1/queues/{name}/pause` and `/resume`: stop and restart a whole queue, as
//! `ferry queues pause|resume` does. Admin only; audited.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Serialize;

use crate::{ApiError, AppState, auth::Admin};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PauseResponse {
    pub queue: String,
    pub paused: bool,
    /// False when the queue already was in that state.
    pub changed: bool,
}

#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "queues",
    params(("name" = String, Path, description = "a queue some kind travels on")),
    responses((status = 200, body = PauseResponse), (status = 404, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
) -> Result<Json<PauseResponse>, ApiError> {
    set(&state, &caller.actor(), name, true).await
}

#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "queues",
    params(("name" = String, Path, description = "a queue some kind travels on")),
    responses((status = 200, body = PauseResponse), (status = 404, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
) -> Result<Json<PauseResponse>, ApiError> {
    set(&state, &caller.actor(), name, false).await
}

async fn set(
    state: &AppState,
    actor: &str,
    name: String,
    paused: bool,
) -> Result<Json<PauseResponse>, ApiError> {
    let changed = ferry_jobs::queues::set_paused(
        state.queue(),
        state.record(),
        state.registry(),
        &name,
        paused,
        actor,
    )
    .await?;
    Ok(Json(PauseResponse {
        queue: name,
        paused,
        changed,
    }))
}
