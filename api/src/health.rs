//! `/healthz`: the process answers. `/readyz`: Postgres and Redis answer too.

use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;

use crate::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable`.
    pub status: &'static str,
    /// Per dependency: `ok` or what failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
}

#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        postgres: None,
        redis: None,
    })
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let postgres = sqlx_ping(&state).await;
    let redis = state.queue().ping().await.map_err(|e| e.to_string());
    let ready = postgres.is_ok() && redis.is_ok();
    let text = |r: Result<(), String>| Some(r.err().unwrap_or_else(|| "ok".into()));
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(Health {
            status: if ready { "ok" } else { "unavailable" },
            postgres: text(postgres),
            redis: text(redis),
        }),
    )
}

async fn sqlx_ping(state: &AppState) -> Result<(), String> {
    state.record().ping().await.map_err(|e| e.to_string())
}
