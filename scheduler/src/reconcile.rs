//! The run reconciler: a long run whose heartbeat stopped and whose worker is gone, while
//! Redis lost its job (or the job's stream entry, so the queue's own reclaim cannot see it),
//! is re-queued under its own id, and a worker resumes it from its Postgres checkpoint
//! (`open_run` takes a new lease epoch; the old one is fenced out).
//!
//! A run is left alone while Redis still holds its job waiting, retrying or finished, or
//! running with its entry pending (a crashed worker's entry is re-queued by the queue itself
//! after `worker.reclaim_after`); while the worker holding it still heartbeats (a slow step
//! between checkpoints); and once it is archived as dead. Runs silent for longer than `worker.keep_finished` are left alone
//! too: Redis forgets finished jobs after that, so a missing job no longer proves a loss.
//! Re-queueing is one Lua call that does nothing when the job exists, so replicas may
//! reconcile at once.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use ferry_config::Config;
use ferry_jobs::Registry;
use ferry_queue::{JobState, NewJob, Queue, RequeueResult};
use ferry_record::Record;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{Clock, SchedulerError};

/// Runs looked at per pass; the oldest first.
const BATCH: i64 = 200;

pub struct Reconciler {
    record: Record,
    queue: Queue,
    registry: Arc<Registry>,
    after: TimeDelta,
    every: Duration,
    worker_timeout: TimeDelta,
    keep_finished: TimeDelta,
}

impl Reconciler {
    pub fn new(record: Record, queue: Queue, registry: Arc<Registry>, config: &Config) -> Self {
        let delta = |d: Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
        Self {
            record,
            queue,
            registry,
            after: delta(config.scheduler.reconcile_after),
            every: config.scheduler.reconcile_every,
            worker_timeout: delta(config.worker.reclaim_after),
            keep_finished: delta(config.worker.keep_finished),
        }
    }

    pub async fn run(&self, clock: Arc<dyn Clock>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.once(clock.now()).await {
                tracing::warn!(error = %e, "reconciling runs failed; trying again");
            }
            crate::pause(self.every, &shutdown).await;
        }
    }

    /// One pass; returns the runs re-dispatched.
    pub async fn once(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, SchedulerError> {
        let stale: Vec<(Uuid, String, serde_json::Value, Option<String>)> = sqlx::query_as(
            "SELECT id, kind, args, lease_owner FROM runs
             WHERE state IN ('running', 'interrupted') AND heartbeat_at < $1 AND heartbeat_at > $2
             ORDER BY heartbeat_at LIMIT $3",
        )
        .bind(now - self.after)
        .bind(now - self.keep_finished)
        .bind(BATCH)
        .fetch_all(self.record.pool())
        .await
        .map_err(SchedulerError::db("find silent runs"))?;
        let mut redispatched = Vec::new();
        for (id, kind, args, owner) in stale {
            let Ok(entry) = self.registry.get(&kind) else {
                tracing::warn!(run = %id, kind, "silent run of a kind unknown here; left alone");
                continue;
            };
            let queue = entry.settings().queue.as_str();
            let alive_after = (now - self.worker_timeout).timestamp_millis();
            let redispatched_how = match self.queue.job(queue, id).await? {
                // Running on a worker that is gone, its stream entry lost: the queue's reclaim
                // cannot see it.
                Some(job) if job.state == JobState::Running => self
                    .queue
                    .revive(queue, id, alive_after)
                    .await?
                    .then_some("its worker is gone and Redis lost its stream entry"),
                // Waiting, retrying or finished: the queue has it.
                Some(_) => None,
                None => self
                    .lost(queue, id, &kind, &args, owner.as_deref(), alive_after)
                    .await?
                    .then_some("Redis lost its job"),
            };
            if let Some(how) = redispatched_how {
                tracing::warn!(
                    run = %id,
                    kind,
                    owner = owner.as_deref().unwrap_or("-"),
                    "silent run re-dispatched to resume from its checkpoint: {how}"
                );
                self.record
                    .audit(
                        "scheduler",
                        "run.redispatch",
                        Some(&id.to_string()),
                        serde_json::json!({"kind": kind, "lease_owner": owner, "why": how}),
                    )
                    .await?;
                redispatched.push(id);
            }
        }
        Ok(redispatched)
    }

    /// Re-queues the run of a job Redis no longer holds, unless the worker holding its lease
    /// still heartbeats or the job is archived as dead.
    async fn lost(
        &self,
        queue: &str,
        id: Uuid,
        kind: &str,
        args: &serde_json::Value,
        owner: Option<&str>,
        alive_after: i64,
    ) -> Result<bool, SchedulerError> {
        if let Some(owner) = owner
            && let Some(seen) = self.queue.worker_seen(queue, owner).await?
            && seen > alive_after
        {
            return Ok(false);
        }
        if self.record.dead_job(id).await?.is_some() {
            return Ok(false);
        }
        let max_attempts = self
            .registry
            .get(kind)
            .map_or(1, |e| e.settings().max_attempts);
        let job = NewJob {
            id,
            ..NewJob::new(kind, args.to_string(), max_attempts)
        };
        Ok(self.queue.requeue(queue, &job).await? == RequeueResult::Requeued)
    }
}
