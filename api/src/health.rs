//! `/healthz`: the process answers. `/readyz`: Postgres and Redis answer too.

use std::time::Duration;

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
    let (postgres, redis) = tokio::join!(
        within(PROBE_TIMEOUT, async {
            state.record().ping().await.map_err(|e| e.to_string())
        }),
        within(PROBE_TIMEOUT, async {
            state.queue().ping().await.map_err(|e| e.to_string())
        }),
    );
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

/// Probes answer within this, so an orchestrator's probe timeout sees a 503, not silence.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn within(
    limit: Duration,
    probe: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(limit, probe)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
}
