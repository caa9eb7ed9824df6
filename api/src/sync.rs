//! `/v1/sync/*`: run a full sync, sync one row on write, and where the mirror stands; and
//! `/v1/backups` for the dashboard.

use axum::{Json, extract::State, http::StatusCode};
use ferry_jobs::{
    backup::manifest::{self, Manifest},
    enqueue::{Enqueued, Keys},
    sync::{self, EntityArgs, FullArgs, status::TableStatus},
};
use serde::Deserialize;

use crate::{
    ApiError, AppState,
    auth::{Admin, Caller},
    error::Body,
    jobs::{prepare_typed, submit},
};

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FullRequest {
    /// `schema.table` names; empty or absent: every mirrored table.
    #[serde(default)]
    pub tables: Vec<String>,
}

#[utoipa::path(post, path = "/v1/sync/full", tag = "sync", request_body = FullRequest,
    responses((status = 202, body = Enqueued), (status = 400, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn full(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Body(req): Body<FullRequest>,
) -> Result<(StatusCode, Json<Enqueued>), ApiError> {
    let target = state.sync_target().await?;
    target.catalog(state.config()).await?.select(&req.tables)?;
    let args = FullArgs { tables: req.tables };
    let prepared = prepare_typed::<sync::Full>(&state, &caller, &args, Keys::default()).await?;
    let details = serde_json::json!({ "tables": args.tables });
    let done = submit(&state, caller, prepared, "sync.full", details).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}

/// One changed row.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityRequest {
    /// `schema.table`, or a table name when it is unique.
    pub table: String,
    /// The key: the value of a one-column key, or `{column: value}`.
    #[schema(value_type = Object)]
    pub key: serde_json::Value,
}

#[utoipa::path(post, path = "/v1/sync/entity", tag = "sync", request_body = EntityRequest,
    responses((status = 202, description = "the waiting job for this row (coalesced)", body = Enqueued),
        (status = 400, body = crate::error::ErrorBody)),
    security(("enqueue" = []), ("admin" = [])))]
pub async fn entity(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<EntityRequest>,
) -> Result<(StatusCode, Json<Enqueued>), ApiError> {
    let target = state.sync_target().await?;
    let catalog = target.recent_catalog(state.config()).await?;
    let args = EntityArgs::for_row(&catalog, &req.table, req.key)?;
    let keys = Keys {
        idempotency: None,
        coalesce: Some(args.coalesce_key()),
        ..Keys::default()
    };
    let prepared = prepare_typed::<sync::Entity>(&state, &caller, &args, keys).await?;
    let details = serde_json::json!({ "table": args.table, "key": args.key });
    let done = submit(&state, caller, prepared, "sync.entity", details).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}

#[utoipa::path(get, path = "/v1/sync/status", tag = "sync",
    responses((status = 200, body = Vec<TableStatus>)), security(("admin" = [])))]
pub async fn status(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<TableStatus>>, ApiError> {
    Ok(Json(table_status(&state).await?))
}

pub(crate) async fn table_status(state: &AppState) -> Result<Vec<TableStatus>, ApiError> {
    let target = state.sync_target().await?;
    Ok(sync::status::status(target, state.config(), state.record()).await?)
}

#[utoipa::path(get, path = "/v1/backups", tag = "backup",
    responses((status = 200, description = "backups not pruned, newest first, with verify status", body = Object)),
    security(("admin" = [])))]
pub async fn backups(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<Manifest>>, ApiError> {
    Ok(Json(list_backups(&state).await?))
}

pub(crate) async fn list_backups(state: &AppState) -> Result<Vec<Manifest>, ApiError> {
    manifest::list(state.record().pool(), None)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}
