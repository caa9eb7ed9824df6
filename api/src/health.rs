//! `/healthz`: the process answers. `/readyz`: every configured dependency answers too —
//! Postgres, Redis, MongoDB, each object store and SMTP — each named, none with its error's
//! internals (those are logged).

use std::{collections::BTreeMap, time::Duration};

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
    /// The other configured dependencies by name (`mongodb`, `store NAME`, `smtp`): `ok`,
    /// `unavailable` or `no answer within 2s`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, String>,
    /// The names of those not ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
}

#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        postgres: None,
        redis: None,
        dependencies: BTreeMap::new(),
        failing: Vec::new(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let (postgres, redis, others) = tokio::join!(
        within(PROBE_TIMEOUT, async {
            state
                .record()
                .ping()
                .await
                .map_err(|e| unavailable("postgres", e))
        }),
        within(PROBE_TIMEOUT, async {
            state
                .queue()
                .ping()
                .await
                .map_err(|e| unavailable("redis", e))
        }),
        state.dependencies().check(PROBE_TIMEOUT),
    );
    let mut failing = Vec::new();
    let mut text = |name: &str, r: Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(why) => {
            failing.push(name.to_owned());
            why
        }
    };
    let postgres = text("postgres", postgres);
    let redis = text("redis", redis);
    let dependencies = others
        .into_iter()
        .map(|(name, r)| {
            let shown = text(&name, r);
            (name, shown)
        })
        .collect();
    let ready = failing.is_empty();
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(Health {
            status: if ready { "ok" } else { "unavailable" },
            postgres: Some(postgres),
            redis: Some(redis),
            dependencies,
            failing,
        }),
    )
}

/// The error goes to the log; the answer says only that the dependency is down.
fn unavailable(name: &str, e: impl std::fmt::Display) -> String {
    tracing::warn!(dependency = name, error = %e, "not ready");
    "unavailable".into()
}

/// Probes answer within this, so an orchestrator's probe timeout sees a 503, not silence.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn within(
    limit: Duration,
    probe: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(limit, probe)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}",
                humantime::format_duration(limit)
            ))
        })
}
