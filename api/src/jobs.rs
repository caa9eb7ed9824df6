//! `/v1/jobs`: enqueue, list, show, re-queue, cancel; and `/v1/stats`.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{FromRequestParts, Path, State},
    http::{StatusCode, request::Parts},
};
use chrono::Utc;
use ferry_jobs::{
    Kind,
    enqueue::{self, Enqueued, Keys},
    manage::{self, JobDetail, JobRow, RetryReport},
};
use ferry_queue::{CancelResult, JobFilter, JobState, now_us};
use ferry_record::DeadFilter;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::{
    ApiError, AppState,
    auth::{Admin, Caller, Scope},
    error::{Body, Params, parse_id},
};

/// Most jobs one list returns.
const MAX_LIMIT: usize = 1000;

/// A job to enqueue.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// A job kind, e.g. `sync.entity`, `notify.send`, `http`, `noop`.
    pub kind: String,
    /// The kind's arguments (default `{}`).
    #[schema(value_type = Object)]
    pub args: Option<serde_json::Value>,
    /// The same key returns the first job's id (for `worker.keep_finished`). The
    /// `Idempotency-Key` header does the same.
    pub idempotency_key: Option<String>,
    /// Not before: an RFC 3339 time or a delay such as `30s`.
    pub run_at: Option<String>,
    /// `high`, `default` or `low` (default: the kind's `[kinds.NAME] priority`).
    #[schema(value_type = Option<String>)]
    pub priority: Option<ferry_queue::Priority>,
    /// Whose job it is, for fair sharing between tenants (default: the argument named by the
    /// kind's `tenant_from`).
    pub tenant: Option<String>,
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = EnqueueRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "idempotency key, in the caller's own namespace")),
    responses((status = 202, body = Enqueued), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody)),
    security(("enqueue" = []), ("admin" = [])))]
pub async fn enqueue(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyHeader(header): IdempotencyHeader,
    Body(req): Body<EnqueueRequest>,
) -> Result<(StatusCode, Json<Enqueued>), ApiError> {
    let key = match (header, req.idempotency_key) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::bad_request(
                "the Idempotency-Key header and idempotency_key differ; send one",
            ));
        }
        (h, b) => h.or(b),
    };
    let run_at = req
        .run_at
        .as_deref()
        .map(|at| enqueue::parse_at(at).map_err(|e| ApiError::bad_request(format!("run_at {e}"))))
        .transpose()?;
    let args = req.args.unwrap_or_else(|| json!({})).to_string();
    let keys = Keys {
        idempotency: key,
        priority: req.priority,
        tenant: req.tenant,
        ..Keys::default()
    };
    let prepared = prepare(&state, &caller, &req.kind, &args, keys, run_at).await?;
    let done = submit(&state, caller, prepared, "jobs.enqueue", json!({})).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}

/// The `Idempotency-Key` header, read alone: the `HeaderMap` extractor would copy every
/// header of every enqueue.
pub struct IdempotencyHeader(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .headers
            .get("idempotency-key")
            .map(|v| {
                v.to_str()
                    .map(str::to_owned)
                    .map_err(|_| ApiError::bad_request("the Idempotency-Key header must be text"))
            })
            .transpose()
            .map(Self)
    }
}

/// Checks a job for `caller`: a kind it may enqueue (403 and audited otherwise), its quota
/// (429), then the job itself (400).
pub(crate) async fn prepare(
    state: &AppState,
    caller: &Caller,
    kind: &str,
    args: &str,
    keys: Keys,
    run_at: Option<i64>,
) -> Result<enqueue::Prepared, ApiError> {
    admit(state, caller, kind).await?;
    enqueue::prepare(state.registry(), &caller.origin, kind, args, keys, run_at)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// [`prepare`] for a route that builds typed arguments of kind `K`.
pub(crate) async fn prepare_typed<K: Kind>(
    state: &AppState,
    caller: &Caller,
    args: &K::Args,
    keys: Keys,
) -> Result<enqueue::Prepared, ApiError> {
    admit(state, caller, K::NAME).await?;
    enqueue::typed::<K>(state.registry(), &caller.origin, args, keys)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Whether `caller` may enqueue a job of `kind` now: a known kind, one its token names, within
/// its quota.
async fn admit(state: &AppState, caller: &Caller, kind: &str) -> Result<(), ApiError> {
    state
        .registry()
        .get(kind)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !caller.may_enqueue(kind) {
        state.audit_later(
            &caller.actor(),
            "jobs.enqueue_refused",
            None,
            json!({ "kind": kind }),
        );
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token may not enqueue kind {kind:?}; it may enqueue {:?} ({}); other kinds need the admin token",
                caller.kinds().unwrap_or_default(),
                caller.kinds_setting()
            ),
        ));
    }
    state
        .quota()
        .check(
            caller,
            state.config().api.max_waiting_per_token,
            state.queue(),
            state.registry(),
        )
        .await
}

/// Enqueues a checked job and audits it as `action` with `details` (in the next batch). The
/// job carries its caller as owner ([`ferry_queue::NewJob::owner`]), which is what lets an
/// enqueue token read it later; re-sending a key returns the first job, whose owner stays.
pub(crate) async fn submit(
    state: &AppState,
    caller: Caller,
    prepared: enqueue::Prepared,
    action: &str,
    mut details: serde_json::Value,
) -> Result<Enqueued, ApiError> {
    let done = enqueue::submit(state.queue(), vec![prepared])
        .await?
        .remove(0);
    details["kind"] = json!(done.kind);
    details["created"] = json!(done.created);
    state
        .audit()
        .send(&caller.actor(), action, Some(done.id.to_string()), details)
        .await;
    Ok(done)
}

/// Filters of `GET /v1/jobs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// queued, scheduled, running, retrying, succeeded, dead or cancelled
    pub state: Option<String>,
    pub kind: Option<String>,
    /// Enqueued (dead: died) within this long, e.g. `1h`.
    pub since: Option<String>,
    /// The last error contains this text.
    pub error: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

fn since_us(since: Option<&str>) -> Result<Option<i64>, ApiError> {
    since
        .map(|s| {
            humantime::parse_duration(s)
                .map(|d| now_us() - d.as_micros() as i64)
                .map_err(|_| {
                    ApiError::bad_request(format!("since {s:?} is not a duration like 1h"))
                })
        })
        .transpose()
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery),
    responses((status = 200, body = Vec<JobRow>)), security(("admin" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _: Admin,
    Params(q): Params<ListQuery>,
) -> Result<Json<Vec<JobRow>>, ApiError> {
    let filter = JobFilter {
        state: q
            .state
            .as_deref()
            .map(str::parse::<JobState>)
            .transpose()
            .map_err(ApiError::bad_request)?,
        kind: q.kind,
        since_us: since_us(q.since.as_deref())?,
        error_contains: q.error,
        limit: q.limit.unwrap_or(100).clamp(1, MAX_LIMIT),
    };
    let rows = manage::list(state.queue(), state.record(), state.registry(), &filter).await?;
    Ok(Json(rows))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 200, description = "job, errors, dead record, run, deliveries", body = Object),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("enqueue" = []), ("admin" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    let id = parse_id(&id)?;
    if caller.scope == Scope::Enqueue {
        // Only the job's own owner field counts: a job that has left Redis (retired after
        // `worker.keep_finished`) is the admin's to read, as is any job another caller created.
        let queues: Vec<String> = state.registry().queues().into_iter().collect();
        let owner = state.queue().find(&queues, id).await?;
        let origin = caller.origin.to_string();
        if owner.and_then(|j| j.owner).as_deref() != Some(origin.as_str()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "job {id} was not enqueued with this token; an enqueue token reads only the jobs it created (the admin token reads all)"
                ),
            ));
        }
    }
    let detail = manage::show(state.queue(), Some(state.record()), state.registry(), id).await?;
    Ok(Json(detail))
}

/// What a retry did, or with `dry_run` would do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RetryResponse {
    pub dry_run: bool,
    /// The jobs chosen.
    pub ids: Vec<Uuid>,
    #[serde(flatten)]
    pub report: RetryReport,
}

#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 200, body = RetryResponse), (status = 404, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn retry_one(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<RetryResponse>, ApiError> {
    let id = parse_id(&id)?;
    let targets =
        manage::targets_by_id(state.queue(), state.record(), state.registry(), &[id]).await?;
    requeue(&state, caller, &targets, false).await
}

/// Re-queues `targets` (audited), or with `dry_run` only names them.
async fn requeue(
    state: &AppState,
    caller: Caller,
    targets: &[manage::Target],
    dry_run: bool,
) -> Result<Json<RetryResponse>, ApiError> {
    let report = if dry_run {
        RetryReport::default()
    } else {
        manage::retry(
            state.queue(),
            state.record(),
            state.registry(),
            targets,
            None,
            &caller.actor(),
        )
        .await?
    };
    Ok(Json(RetryResponse {
        dry_run,
        ids: targets.iter().map(manage::Target::id).collect(),
        report,
    }))
}

/// Which dead jobs `POST /v1/jobs/retry` re-queues.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryFilter {
    pub kind: Option<String>,
    /// Died within this long, e.g. `1h`.
    pub since: Option<String>,
    /// The last error contains this text.
    pub error: Option<String>,
    /// Report what would be re-queued; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[utoipa::path(post, path = "/v1/jobs/retry", tag = "jobs", request_body = RetryFilter,
    responses((status = 200, body = RetryResponse), (status = 400, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn retry_filtered(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Body(f): Body<RetryFilter>,
) -> Result<Json<RetryResponse>, ApiError> {
    let since = since_us(f.since.as_deref())?.and_then(chrono::DateTime::from_timestamp_micros);
    let filter = DeadFilter {
        kind: f.kind,
        since,
        error_contains: f.error,
        include_retried: false,
        limit: i64::MAX,
    };
    let targets = manage::dead_targets(state.record(), &filter).await?;
    requeue(&state, caller, &targets, f.dry_run).await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CancelResponse {
    pub id: Uuid,
    /// cancelled, requested (a running job was asked to stop), or the final state it had.
    #[schema(value_type = Object)]
    pub result: CancelResult,
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 200, body = CancelResponse), (status = 404, body = crate::error::ErrorBody)),
    security(("admin" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<CancelResponse>, ApiError> {
    let id = parse_id(&id)?;
    let result = manage::cancel(
        state.queue(),
        Some(state.record()),
        state.registry(),
        id,
        &caller.actor(),
    )
    .await?;
    Ok(Json(CancelResponse { id, result }))
}

/// `ferry stats --json`, with jobs finished per second per kind since the previous call.
#[derive(Debug, Serialize)]
pub struct StatsResponse {
    #[serde(flatten)]
    pub stats: manage::Stats,
    pub rates: BTreeMap<String, f64>,
    pub at: chrono::DateTime<Utc>,
}

#[utoipa::path(get, path = "/v1/stats", tag = "jobs",
    responses((status = 200, description = "jobs by kind and state, queues, rates", body = Object)),
    security(("admin" = [])))]
pub async fn stats(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<StatsResponse>, ApiError> {
    Ok(Json(stats_with_rates(&state).await?))
}

pub(crate) async fn stats_with_rates(state: &AppState) -> Result<StatsResponse, ApiError> {
    let stats = manage::stats(state.queue(), state.registry()).await?;
    let finished = stats
        .by_kind
        .iter()
        .map(|(kind, states)| {
            let n = ["succeeded", "dead", "cancelled"]
                .iter()
                .map(|s| states.get(*s).copied().unwrap_or(0))
                .sum();
            (kind.clone(), n)
        })
        .collect();
    let rates = state.rates(finished).await;
    Ok(StatsResponse {
        stats,
        rates,
        at: Utc::now(),
    })
}
