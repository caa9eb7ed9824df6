//! `/v1/runs`: long runs with their checkpoint, progress and estimate of time left.

use axum::{
    Json,
    extract::{Path, State},
};
use chrono::Utc;
use ferry_record::RunRow;
use serde::{Deserialize, Serialize};

use crate::{
    ApiError, AppState,
    auth::Admin,
    error::{Params, parse_id},
};

/// A run with its progress as a percentage and the time left.
#[derive(Debug, Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: RunRow,
    /// `done / total` in percent, when the total is known.
    pub percent: Option<f64>,
    pub eta_seconds: Option<u64>,
}

impl From<RunRow> for RunView {
    fn from(run: RunRow) -> Self {
        let percent = run
            .total
            .filter(|t| *t > 0)
            .map(|t| (run.done as f64 * 100.0 / t as f64).min(100.0));
        let eta_seconds = run.eta(Utc::now()).map(|d| d.as_secs());
        Self {
            run,
            percent,
            eta_seconds,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// running, succeeded, failed, cancelled or interrupted
    pub state: Option<String>,
    /// At most this many, newest first (default 20).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(RunsQuery),
    responses((status = 200, description = "runs, newest first", body = Object)),
    security(("admin" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _: Admin,
    Params(q): Params<RunsQuery>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    Ok(Json(
        recent(&state, q.state.as_deref(), q.limit.unwrap_or(20)).await?,
    ))
}

pub(crate) async fn recent(
    state: &AppState,
    run_state: Option<&str>,
    limit: i64,
) -> Result<Vec<RunView>, ApiError> {
    let runs = state.record().runs(run_state, limit.clamp(1, 500)).await?;
    Ok(runs.into_iter().map(RunView::from).collect())
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = uuid::Uuid, Path, description = "run id (the job id)")),
    responses((status = 200, description = "the run with percent and eta_seconds", body = Object),
        (status = 404, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn show(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let id = parse_id(&id)?;
    let run = state.record().run(id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no run {id}; long jobs have runs, see GET /v1/runs"
        ))
    })?;
    Ok(Json(run.into()))
}
