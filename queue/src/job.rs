//! Jobs as they enter, leave and rest in the queue.

use std::{collections::HashMap, fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::QueueError;

/// Microseconds since the Unix epoch: the queue's clock unit.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// A job to enqueue. Arguments are already-validated JSON text.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub kind: String,
    pub args: String,
    /// Not before this time (µs since the epoch); `None` means now.
    pub run_at_us: Option<i64>,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    /// At most one waiting job per coalesce key: enqueueing while one waits returns it.
    pub coalesce_key: Option<String>,
    /// Who enqueued it (`api`, `token:NAME`, `admin`, `cli`, `scheduler`, `ferry`): an
    /// enqueue token reads only the jobs whose owner it is. Kept in the job itself, so
    /// enqueueing costs no second Redis round trip and the mark lives exactly as long as the job.
    pub owner: Option<String>,
    /// Which of the queue's streams it waits in: high jobs start before default ones, default
    /// before low (with a share for the lower ones so they are never starved).
    pub priority: Priority,
    /// Whose job it is, for fair sharing of workers between tenants (`[tenants]`).
    pub tenant: Option<String>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, args: impl Into<String>, max_attempts: u32) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind: kind.into(),
            args: args.into(),
            run_at_us: None,
            max_attempts,
            idempotency_key: None,
            coalesce_key: None,
            owner: None,
            priority: Priority::Default,
            tenant: None,
        }
    }
}

pub use ferry_config::Priority;

/// A priority as the Lua scripts store it: empty for default, so plain jobs carry no field.
pub(crate) fn wire(p: Priority) -> &'static str {
    match p {
        Priority::Default => "",
        other => other.as_str(),
    }
}

/// A tenant name: what a job's `tenant` may be. Redis keys carry it, so it is kept short and
/// printable.
pub fn check_tenant(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > 128 || t.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "tenant {t:?} is not valid: 1 to 128 characters, no spaces or control characters"
        ));
    }
    Ok(())
}

/// One attempt of a job, handed to a worker.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub queue: Arc<str>,
    pub kind: String,
    pub args: String,
    /// 1 for the first attempt; crashes of a worker count.
    pub attempt: u32,
    pub max_attempts: u32,
    pub enqueued_us: i64,
    pub idempotency_key: Option<String>,
    /// Fires when an operator cancels the job.
    pub cancel: CancellationToken,
    pub(crate) entry: String,
    pub(crate) tenant: String,
    /// When the attempt started (µs), as the start script recorded it.
    pub(crate) started_us: i64,
}

/// One failed attempt, as kept in Redis and archived with dead jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    pub attempt: u32,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub error: String,
    pub worker: String,
}

/// How an attempt ended; the worker decides, the queue records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Failed; try again at `at_us`. Spends the attempt.
    Retry {
        at_us: i64,
        error: AttemptError,
    },
    /// Not now; try again at `at_us` without spending the attempt (snooze, worker shutdown).
    Snooze {
        at_us: i64,
    },
    /// Failed for good.
    Dead {
        error: AttemptError,
    },
    Cancelled {
        error: Option<AttemptError>,
    },
}

impl Outcome {
    pub(crate) fn state(&self) -> JobState {
        match self {
            Self::Succeeded => JobState::Succeeded,
            Self::Retry { .. } => JobState::Retrying,
            Self::Snooze { .. } => JobState::Scheduled,
            Self::Dead { .. } => JobState::Dead,
            Self::Cancelled { .. } => JobState::Cancelled,
        }
    }

    pub(crate) fn run_at_us(&self) -> i64 {
        match self {
            Self::Retry { at_us, .. } | Self::Snooze { at_us } => *at_us,
            _ => 0,
        }
    }

    pub(crate) fn error(&self) -> Option<&AttemptError> {
        match self {
            Self::Retry { error, .. } | Self::Dead { error } => Some(error),
            Self::Cancelled { error } => error.as_ref(),
            _ => None,
        }
    }
}

/// A finished attempt waiting to be recorded.
#[derive(Debug)]
pub struct Finished {
    pub(crate) entry: String,
    pub id: Uuid,
    pub outcome: Outcome,
    /// What the start gave, sent back so the finish script reads no more than the entry id.
    pub(crate) kind: String,
    pub(crate) attempt: u32,
    pub(crate) enqueued_us: i64,
    pub(crate) started_us: i64,
    pub(crate) tenant: String,
}

impl Finished {
    pub fn new(job: &Job, outcome: Outcome) -> Self {
        Self {
            entry: job.entry.clone(),
            id: job.id,
            outcome,
            kind: job.kind.clone(),
            attempt: job.attempt,
            enqueued_us: job.enqueued_us,
            started_us: job.started_us,
            tenant: job.tenant.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Scheduled,
    Running,
    Retrying,
    Succeeded,
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        Self::Queued,
        Self::Scheduled,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::Dead,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead | Self::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// A job as stored in Redis.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: Uuid,
    pub queue: String,
    pub kind: String,
    pub args: serde_json::Value,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    /// Who enqueued it (see [`NewJob::owner`]).
    pub owner: Option<String>,
    pub priority: Priority,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub enqueued_us: i64,
    pub run_at_us: Option<i64>,
    pub started_us: Option<i64>,
    pub finished_us: Option<i64>,
    pub worker: Option<String>,
    pub cancel_requested: bool,
    pub last_error: Option<String>,
}

impl JobRecord {
    pub(crate) fn from_hash(
        queue: &str,
        id: Uuid,
        mut h: HashMap<String, String>,
    ) -> Result<Self, QueueError> {
        let corrupt = |message: String| QueueError::Corrupt {
            id: id.to_string(),
            message,
        };
        let mut take = |field: &str| h.remove(field).filter(|v| !v.is_empty());
        let int = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok());
        let args = take("args").unwrap_or_else(|| "null".into());
        Ok(Self {
            id,
            queue: queue.to_owned(),
            kind: take("kind").ok_or_else(|| corrupt("no kind".into()))?,
            args: serde_json::from_str(&args).map_err(|e| corrupt(e.to_string()))?,
            state: take("state")
                .ok_or_else(|| corrupt("no state".into()))?
                .parse()
                .map_err(corrupt)?,
            attempts: int(take("attempts")).unwrap_or(0).max(0) as u32,
            max_attempts: int(take("max")).unwrap_or(1).max(0) as u32,
            idempotency_key: take("key"),
            owner: take("owner"),
            priority: take("pri").and_then(|p| p.parse().ok()).unwrap_or_default(),
            tenant: take("ten"),
            enqueued_us: int(take("enq")).unwrap_or(0),
            run_at_us: int(take("run_at")),
            started_us: int(take("started")),
            finished_us: int(take("finished")),
            worker: take("worker"),
            cancel_requested: take("cancel").is_some(),
            last_error: take("last_error"),
        })
    }
}
