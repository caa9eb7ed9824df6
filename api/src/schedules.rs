//! `/v1/schedules`: the configured cron schedules with their next and last fire, as
//! `ferry schedules ls --json` prints them.

use axum::{Json, extract::State};
use chrono::Utc;
use ferry_scheduler::{ScheduleStatus, SchedulerError};

use crate::{ApiError, AppState, auth::Admin};

#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, description = "every configured schedule, in config order", body = Object)),
    security(("admin" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<ScheduleStatus>>, ApiError> {
    Ok(Json(statuses(&state).await?))
}

/// Read from the record and the queue, so any `ferry serve` answers while the schedulers run
/// elsewhere.
pub async fn statuses(state: &AppState) -> Result<Vec<ScheduleStatus>, ApiError> {
    let planned =
        ferry_scheduler::plan(state.config(), state.registry()).map_err(SchedulerError::from)?;
    Ok(ferry_scheduler::statuses(&planned, state.record(), state.queue(), Utc::now()).await?)
}
