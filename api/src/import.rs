//! `/v1/import/*`: start an import (admin only: it writes every configured table) and where
//! each collection stands.

use axum::{Json, extract::State, http::StatusCode};
use ferry_jobs::{
    enqueue::{Enqueued, Keys},
    import::{self, RunArgs, status::CollectionStatus},
};
use serde::Deserialize;

use crate::{
    ApiError, AppState,
    auth::Admin,
    error::Body,
    jobs::{prepare_typed, submit},
};

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Collection names; empty or absent: every configured collection.
    #[serde(default)]
    pub collections: Vec<String>,
}

#[utoipa::path(post, path = "/v1/import/run", tag = "import", request_body = RunRequest,
    responses((status = 202, body = Enqueued), (status = 400, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn run(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Body(req): Body<RunRequest>,
) -> Result<(StatusCode, Json<Enqueued>), ApiError> {
    let target = state.sync_target().await?;
    // Refuses bad config and unknown collections before anything is queued.
    let plans = import::mapping::plan(target, &state.config().import).await?;
    import::select(&plans, &req.collections)?;
    let args = RunArgs {
        collections: req.collections,
    };
    let prepared = prepare_typed::<import::Run>(&state, &caller, &args, Keys::default()).await?;
    let details = serde_json::json!({ "collections": args.collections });
    let done = submit(&state, caller, prepared, "import.run", details).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}

#[utoipa::path(get, path = "/v1/import/status", tag = "import",
    responses((status = 200, description = "per configured collection: documents, rows, rejects", body = Vec<CollectionStatus>)),
    security(("admin" = [])))]
pub async fn status(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<CollectionStatus>>, ApiError> {
    Ok(Json(collection_status(&state).await?))
}

pub(crate) async fn collection_status(state: &AppState) -> Result<Vec<CollectionStatus>, ApiError> {
    let target = state.sync_target().await?;
    let plans = import::recent_plan(target, state.config()).await?;
    let all: Vec<_> = plans.iter().collect();
    Ok(import::status::status(target, state.record().pool(), &all).await?)
}
