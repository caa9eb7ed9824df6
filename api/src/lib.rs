//! `ferry serve`: the HTTP API (design section 8), the admin dashboard and `/metrics`.
//!
//! [`router`] builds the routes over an [`AppState`]; [`serve`] connects, binds them to a
//! listener and runs until `shutdown` resolves, so tests pass their own listener and signal.
//!
//! Bearer tokens of two scopes: enqueue tokens (`FERRY_API_TOKEN` and `[[api.tokens]]`:
//! `POST /v1/jobs` and `POST /v1/sync/entity` for their kinds only, and reading the jobs each
//! enqueued) and `FERRY_ADMIN_TOKEN` (scope `admin`: everything, and the dashboard). `/healthz`, `/readyz`, `/metrics` and
//! `/openapi.json` need no token: they hold no arguments, errors or secrets.

mod audit;
mod auth;
mod dashboard;
mod error;
mod health;
mod import;
mod jobs;
mod metrics;
mod metrics_unattended;
mod openapi;
mod queues;
mod quota;
mod runs;
mod schedules;
mod session;
mod state;
mod sync;
mod throttle;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use ferry_config::Config;
use tokio::net::TcpListener;

pub use auth::Scope;
pub use error::ApiError;
pub use state::AppState;

/// Every route of `ferry serve`.
pub fn router(state: AppState) -> Router {
    let limit = state.config().api.body_limit;
    Router::new()
        .route("/v1/jobs", post(jobs::enqueue).get(jobs::list))
        .route("/v1/jobs/retry", post(jobs::retry_filtered))
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/jobs/{id}/retry", post(jobs::retry_one))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/runs", get(runs::list))
        .route("/v1/runs/{id}", get(runs::show))
        .route("/v1/stats", get(jobs::stats))
        .route("/v1/queues/{name}/pause", post(queues::pause))
        .route("/v1/queues/{name}/resume", post(queues::resume))
        .route("/v1/backups", get(sync::backups))
        .route("/v1/schedules", get(schedules::list))
        .route("/v1/sync/full", post(sync::full))
        .route("/v1/sync/entity", post(sync::entity))
        .route("/v1/sync/status", get(sync::status))
        .route("/v1/import/run", post(import::run))
        .route("/v1/import/status", get(import::status))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::document))
        .merge(dashboard::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Connects to Redis and Postgres, then serves on `listener` until `shutdown` resolves;
/// requests in flight are finished first.
pub async fn serve(
    config: Arc<Config>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (state, audit_writer) = AppState::connect(config).await?;
    let addr = listener.local_addr().map_err(ServeError::Io)?;
    tracing::info!(%addr, "serving the API, dashboard and /metrics");
    // The peer address is what failed sign-ins are counted by.
    let served = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(ServeError::Io);
    // Every handler is gone, so the audit channel closes once its backlog is written.
    if tokio::time::timeout(Duration::from_secs(10), audit_writer)
        .await
        .is_err()
    {
        tracing::error!("audit entries still unwritten after 10 s (is Postgres reachable?)");
    }
    served
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ferry_config::ConfigError),
    #[error(transparent)]
    Record(#[from] ferry_record::RecordError),
    #[error(transparent)]
    Queue(#[from] ferry_queue::QueueError),
    #[error("the HTTP server failed: {0}")]
    Io(std::io::Error),
}
