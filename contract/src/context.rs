use std::sync::Arc;

use ferry_config::Config;
use ferry_queue::{Job, Queue};
use ferry_record::{Lease, Record};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{Clients, Failure, JobError};

/// What jobs need from the outside world, built once per worker process.
#[derive(Debug, Clone)]
pub struct Deps {
    pub config: Arc<Config>,
    pub record: Record,
    pub queue: Queue,
    /// The kinds with their effective settings: what jobs that enqueue jobs go through, so
    /// `[kinds.NAME]` overrides apply to them too.
    pub registry: Arc<crate::Registry>,
    /// This worker process's identity.
    pub worker: Arc<str>,
    /// The clients kinds build on first use, one per type (a kind's own database or SMTP
    /// pool), shared by the worker's jobs.
    pub clients: Arc<Clients>,
}

impl Deps {
    pub fn new(
        config: Arc<Config>,
        record: Record,
        queue: Queue,
        registry: Arc<crate::Registry>,
        worker: &str,
    ) -> Self {
        Self {
            config,
            record,
            queue,
            registry,
            worker: Arc::from(worker),
            clients: Arc::default(),
        }
    }

    /// The queue kind `K` travels on, its `[kinds.NAME] queue` override applied: where a job
    /// that fanned out `K` jobs finds them again.
    pub fn queue_of<K: crate::Kind>(&self) -> String {
        self.registry
            .get(K::NAME)
            .map_or_else(|_| K::defaults().queue, |e| e.settings().queue.clone())
    }
}

/// What one attempt knows about itself.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub id: Uuid,
    /// The queue the job travels on.
    pub queue: Arc<str>,
    pub kind: String,
    /// 1-based; crashes of a worker during an attempt count.
    pub attempt: u32,
    pub max_attempts: u32,
    /// The key the job was enqueued with (`--key`), if any.
    pub idempotency_key: Option<String>,
    pub deps: Deps,
    args: Arc<str>,
    cancel: CancellationToken,
    shutdown: CancellationToken,
}

impl JobContext {
    pub fn new(job: &Job, deps: Deps, shutdown: CancellationToken) -> Self {
        Self {
            id: job.id,
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            idempotency_key: job.idempotency_key.clone(),
            deps,
            args: Arc::from(job.args.as_str()),
            cancel: job.cancel.clone(),
            shutdown,
        }
    }

    /// Why the job should stop now, if it should: a long job checks this between units of
    /// work, saves its checkpoint, and returns the error.
    pub fn should_stop(&self) -> Option<JobError> {
        if self.cancel.is_cancelled() {
            Some(JobError::Cancelled)
        } else if self.shutdown.is_cancelled() {
            Some(JobError::Interrupted)
        } else {
            None
        }
    }

    /// Resolves when an operator cancels the job. A job that cannot checkpoint waits only for
    /// this: on shutdown it is given the grace period to finish.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Resolves when the job is cancelled or the worker shuts down, with the reason: for jobs
    /// that can save a checkpoint and leave.
    pub async fn stopped(&self) -> JobError {
        tokio::select! {
            _ = self.cancel.cancelled() => JobError::Cancelled,
            _ = self.shutdown.cancelled() => JobError::Interrupted,
        }
    }

    /// Starts or resumes this job's run, taking a fresh lease; its checkpoint (if any) is
    /// where a previous attempt stopped.
    pub async fn open_run(&self) -> Result<Lease, JobError> {
        let args: serde_json::Value =
            serde_json::from_str(&self.args).map_err(|e| JobError::Permanent(Failure::of(e)))?;
        Ok(self
            .deps
            .record
            .open_run(self.id, &self.kind, &args, &self.deps.worker)
            .await?)
    }
}
