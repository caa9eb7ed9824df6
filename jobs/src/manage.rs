//! What operators do with jobs, shared by the CLI and the HTTP API: list, show, re-queue,
//! cancel, and the per-kind figures. Live jobs come from Redis; dead ones from the durable
//! record, which is the truth for them even when Redis has lost them.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use ferry_queue::{
    AttemptError, CancelResult, JobFilter, JobRecord, JobState, NewJob, Queue, QueueError,
    QueueStats, RequeueResult,
};
use ferry_record::{DeadFilter, DeadJob, DeliveryRow, Record, RecordError, RunRow};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::Registry;

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{0}")]
    NotFound(String),
}

/// A job as `ferry jobs ls --json` and `GET /v1/jobs` show it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub args: serde_json::Value,
    pub last_error: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS.mmm`, UTC.
    pub enqueued_at: String,
}

/// The time format of `enqueued_at`.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// A queue timestamp (µs) as [`time_text`].
pub fn time_us_text(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(time_text)
        .unwrap_or_default()
}

impl From<&JobRecord> for JobRow {
    fn from(j: &JobRecord) -> Self {
        Self {
            id: j.id,
            kind: j.kind.clone(),
            queue: j.queue.clone(),
            state: j.state,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            args: j.args.clone(),
            last_error: j.last_error.clone(),
            enqueued_at: time_us_text(j.enqueued_us),
        }
    }
}

impl From<&DeadJob> for JobRow {
    fn from(j: &DeadJob) -> Self {
        Self {
            id: j.id,
            kind: j.kind.clone(),
            queue: j.queue.clone(),
            state: JobState::Dead,
            attempts: j.attempts.max(0) as u32,
            max_attempts: j.max_attempts.max(0) as u32,
            args: j.args.clone(),
            last_error: Some(j.last_error.clone()),
            enqueued_at: time_text(j.enqueued_at),
        }
    }
}

/// Jobs newest first: dead ones from the record (when the filter allows them), live ones
/// from every queue of `registry`.
pub async fn list(
    queue: &Queue,
    record: &Record,
    registry: &Registry,
    filter: &JobFilter,
) -> Result<Vec<JobRow>, ManageError> {
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    if filter.state.is_none_or(|s| s == JobState::Dead) {
        let dead = record
            .dead_jobs(&DeadFilter {
                kind: filter.kind.clone(),
                since: filter.since_us.and_then(DateTime::from_timestamp_micros),
                error_contains: filter.error_contains.clone(),
                include_retried: false,
                limit: filter.limit as i64,
            })
            .await?;
        for d in &dead {
            seen.insert(d.id);
            rows.push(JobRow::from(d));
        }
    }
    for name in registry.queues() {
        for job in queue.list(&name, filter).await? {
            if seen.insert(job.id) {
                rows.push(JobRow::from(&job));
            }
        }
    }
    rows.sort_by(|a, b| b.enqueued_at.cmp(&a.enqueued_at));
    rows.truncate(filter.limit);
    Ok(rows)
}

/// Everything known about one job.
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    /// As Redis holds it (finished jobs for `worker.keep_finished`).
    pub job: Option<JobRecord>,
    /// Every failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    pub dead: Option<DeadJob>,
    /// A long job's run: checkpoint and progress.
    pub run: Option<RunRow>,
    /// A notify job's first messages.
    pub deliveries: Vec<DeliveryRow>,
}

impl JobDetail {
    pub fn kind(&self) -> Option<&str> {
        self.job
            .as_ref()
            .map(|j| j.kind.as_str())
            .or(self.dead.as_ref().map(|d| d.kind.as_str()))
            .or(self.run.as_ref().map(|r| r.kind.as_str()))
    }
}

/// One job from Redis and the record; `record` may be absent (not configured). Not found
/// anywhere is [`ManageError::NotFound`].
pub async fn show(
    queue: &Queue,
    record: Option<&Record>,
    registry: &Registry,
    id: Uuid,
) -> Result<JobDetail, ManageError> {
    let queues: Vec<String> = registry.queues().into_iter().collect();
    let job = queue.find(&queues, id).await?;
    let errors = match &job {
        Some(j) => queue.attempt_errors(&j.queue, id).await?,
        None => Vec::new(),
    };
    let (dead, run, deliveries) = match record {
        Some(r) => (
            r.dead_job(id).await?,
            r.run(id).await?,
            r.deliveries(id, 20).await?,
        ),
        None => (None, None, Vec::new()),
    };
    if job.is_none() && dead.is_none() && run.is_none() {
        return Err(ManageError::NotFound(format!(
            "no job {id}: not in Redis (finished jobs are kept for worker.keep_finished) nor in the durable record"
        )));
    }
    Ok(JobDetail {
        job,
        errors,
        dead,
        run,
        deliveries,
    })
}

/// A job chosen for re-queueing.
#[derive(Debug, Clone)]
pub enum Target {
    Live(JobRecord),
    Dead(DeadJob),
}

impl Target {
    pub fn id(&self) -> Uuid {
        match self {
            Self::Live(j) => j.id,
            Self::Dead(d) => d.id,
        }
    }

    pub fn kind(&self) -> &str {
        match self {
            Self::Live(j) => &j.kind,
            Self::Dead(d) => &d.kind,
        }
    }
}

/// The jobs `ids` name, live or dead; one that is in neither place is an error.
pub async fn targets_by_id(
    queue: &Queue,
    record: &Record,
    registry: &Registry,
    ids: &[Uuid],
) -> Result<Vec<Target>, ManageError> {
    let queues: Vec<String> = registry.queues().into_iter().collect();
    let mut out = Vec::new();
    for &id in ids {
        if let Some(job) = queue.find(&queues, id).await? {
            out.push(Target::Live(job));
        } else if let Some(dead) = record.dead_job(id).await? {
            out.push(Target::Dead(dead));
        } else {
            return Err(ManageError::NotFound(format!(
                "no job {id} in Redis or the durable record"
            )));
        }
    }
    Ok(out)
}

/// Dead jobs matching `filter` that were not re-queued yet.
pub async fn dead_targets(
    record: &Record,
    filter: &DeadFilter,
) -> Result<Vec<Target>, ManageError> {
    Ok(record
        .dead_jobs(filter)
        .await?
        .into_iter()
        .map(Target::Dead)
        .collect())
}

/// What a retry did.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetryReport {
    pub requeued: usize,
    /// `ID is STATE` for each job that could not be re-queued.
    pub unchanged: Vec<String>,
}

/// Re-queues `targets` (at most `rate` per second) and writes one audit entry for `actor`.
pub async fn retry(
    queue: &Queue,
    record: &Record,
    registry: &Registry,
    targets: &[Target],
    rate: Option<f64>,
    actor: &str,
) -> Result<RetryReport, ManageError> {
    let pause = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut report = RetryReport::default();
    for (i, target) in targets.iter().enumerate() {
        if let (Some(pause), true) = (pause, i > 0) {
            tokio::time::sleep(pause).await;
        }
        match requeue(queue, record, registry, target).await? {
            RequeueResult::Requeued | RequeueResult::RunNow => report.requeued += 1,
            RequeueResult::Unchanged(state) => {
                report.unchanged.push(format!("{} is {state}", target.id()))
            }
        }
    }
    let ids: Vec<Uuid> = targets.iter().map(Target::id).collect();
    record
        .audit(
            actor,
            "jobs.retry",
            None,
            json!({ "requeued": report.requeued, "ids": ids }),
        )
        .await?;
    Ok(report)
}

async fn requeue(
    queue: &Queue,
    record: &Record,
    registry: &Registry,
    target: &Target,
) -> Result<RequeueResult, ManageError> {
    let (name, job) = match target {
        Target::Live(j) => (
            j.queue.clone(),
            NewJob {
                id: j.id,
                kind: j.kind.clone(),
                args: j.args.to_string(),
                run_at_us: None,
                max_attempts: j.max_attempts,
                idempotency_key: j.idempotency_key.clone(),
                coalesce_key: None,
                owner: j.owner.clone(),
                priority: j.priority,
                tenant: j.tenant.clone(),
            },
        ),
        Target::Dead(d) => {
            // A kind's current settings decide where it runs now.
            let queue_name = registry
                .get(&d.kind)
                .map(|e| e.settings().queue.to_owned())
                .unwrap_or_else(|_| d.queue.clone());
            (
                queue_name,
                NewJob {
                    id: d.id,
                    kind: d.kind.clone(),
                    args: d.args.to_string(),
                    run_at_us: None,
                    max_attempts: d.max_attempts.max(1) as u32,
                    idempotency_key: d.idempotency_key.clone(),
                    coalesce_key: None,
                    // The durable record keeps no owner: a revived job is the admin's to read.
                    owner: None,
                    // Nor priority and tenant: the queue keeps what the job had, if it still
                    // holds the job; else the kind's.
                    ..NewJob::new(d.kind.clone(), String::new(), 1)
                },
            )
        }
    };
    let requeued_at = chrono::Utc::now();
    let result = queue.requeue(&name, &job).await?;
    if result == RequeueResult::Requeued {
        record.mark_retried(job.id, job.id, requeued_at).await?;
    }
    Ok(result)
}

/// Cancels a waiting job, or asks a running one to stop; audited when a record is at hand.
pub async fn cancel(
    queue: &Queue,
    record: Option<&Record>,
    registry: &Registry,
    id: Uuid,
    actor: &str,
) -> Result<CancelResult, ManageError> {
    let queues: Vec<String> = registry.queues().into_iter().collect();
    let job = queue
        .find(&queues, id)
        .await?
        .ok_or_else(|| ManageError::NotFound(format!("no job {id} waiting or running in Redis")))?;
    let result = queue.cancel(&job.queue, id).await?;
    if let Some(record) = record {
        record
            .audit(
                actor,
                "jobs.cancel",
                Some(&id.to_string()),
                json!({ "result": result }),
            )
            .await?;
    }
    Ok(result)
}

/// `ferry stats --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// kind → state → count, every state present.
    pub by_kind: BTreeMap<String, BTreeMap<String, i64>>,
    /// Jobs re-queued after their worker died, by kind.
    pub recovered: BTreeMap<String, i64>,
    pub queues: BTreeMap<String, QueueStats>,
}

pub async fn stats(queue: &Queue, registry: &Registry) -> Result<Stats, QueueError> {
    let mut stats = Stats {
        by_kind: BTreeMap::new(),
        recovered: BTreeMap::new(),
        queues: BTreeMap::new(),
    };
    for kind in registry.names() {
        let states = JobState::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        stats.by_kind.insert(kind.to_owned(), states);
    }
    for name in registry.queues() {
        let mut q = queue.stats(&name).await?;
        for (kind, states) in std::mem::take(&mut q.by_kind) {
            let row = stats.by_kind.entry(kind.clone()).or_default();
            for (state, count) in states {
                if state == "recovered" {
                    *stats.recovered.entry(kind.clone()).or_default() += count;
                } else {
                    *row.entry(state).or_default() += count;
                }
            }
        }
        stats.queues.insert(name, q);
    }
    Ok(stats)
}
