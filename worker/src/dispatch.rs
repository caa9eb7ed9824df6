//! The service every apalis worker runs: find the kind, run one attempt under its timeout,
//! cancellation and the shutdown grace, and turn the result into an [`Outcome`]. This is the
//! one place where job errors become queue outcomes.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use apalis::prelude::Task;
use ferry_jobs::{Backoff, Deps, JobContext, JobError, Registry, Settings};
use ferry_queue::{AttemptError, FailureRule, Job, Outcome, now_us};
use ferry_record::DeadJob;
use futures::{FutureExt, future::BoxFuture};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// After an operator cancels a job, how long it gets to stop on its own before it is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Dispatcher {
    registry: Arc<Registry>,
    deps: Deps,
    shutdown: CancellationToken,
    /// Per-kind concurrency limits.
    limits: Arc<HashMap<&'static str, Arc<Semaphore>>>,
}

impl Dispatcher {
    pub fn new(registry: Arc<Registry>, deps: Deps, shutdown: CancellationToken) -> Self {
        let limits = registry
            .names()
            .into_iter()
            .filter_map(|name| {
                let limit = registry.get(name).ok()?.settings().concurrency?;
                Some((name, Arc::new(Semaphore::new(limit))))
            })
            .collect();
        Self {
            registry,
            deps,
            shutdown,
            limits: Arc::new(limits),
        }
    }
}

impl tower::Service<Task<Job>> for Dispatcher {
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Outcome, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<Job>) -> Self::Future {
        let this = self.clone();
        let job = task.args;
        let span = tracing::info_span!("job", job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempt);
        async move {
            // A panicking job must not take the worker down: it counts as a failed attempt.
            let attempt = std::panic::AssertUnwindSafe(this.attempt(job.clone())).catch_unwind();
            Ok(match attempt.await {
                Ok(outcome) => outcome,
                Err(panic) => this.panicked(&job, panic).await,
            })
        }
        .instrument(span)
        .boxed()
    }
}

impl Dispatcher {
    async fn attempt(&self, job: Job) -> Outcome {
        let started = Instant::now();
        let entry = match self.registry.get(&job.kind) {
            Ok(entry) => entry.clone(),
            Err(e) => {
                return self
                    .dead(&job, format!("{e}; this worker does not run it: upgrade the workers or cancel the job"))
                    .await;
            }
        };
        if job.attempt > job.max_attempts {
            return self
                .dead(
                    &job,
                    format!(
                        "{} attempts used up: workers died during them",
                        job.max_attempts
                    ),
                )
                .await;
        }
        let _permit = match self.limits.get(entry.name()) {
            Some(limit) => limit.clone().acquire_owned().await.ok(),
            None => None,
        };
        let settings = entry.settings().clone();
        let ctx = JobContext::new(&job, self.deps.clone(), self.shutdown.clone());
        // After the concurrency permit, so the job starts in its slot rather than after
        // waiting for a permit; a far slot snoozes the job with its attempt given back.
        let run = async {
            if let Err(e) = ctx.kind_rate_limit().await {
                return Ok(Err(e));
            }
            tokio::time::timeout(settings.timeout, entry.run(&job.args, ctx)).await
        };
        let result = tokio::select! {
            r = run => r.unwrap_or_else(|_| Err(JobError::retryable(format!("timed out after {:?} (kinds.{}.timeout)", settings.timeout, job.kind)))),
            _ = grace_expired(&self.shutdown, self.deps.config.worker.shutdown_grace) => Err(JobError::Interrupted),
            _ = grace_expired(&job.cancel, CANCEL_GRACE) => Err(JobError::Cancelled),
        };
        let elapsed = started.elapsed();
        match result {
            Ok(()) => {
                tracing::debug!(?elapsed, "job succeeded");
                Outcome::Succeeded
            }
            Err(e @ JobError::Retryable(_)) => {
                self.failed(&job, &settings.backoff, e.message(), None)
                    .await
            }
            Err(e @ JobError::RetryAfter { after, .. }) => {
                // The other side's word, within the longest wait the kind allows.
                self.failed(&job, &settings.backoff, e.message(), Some(after))
                    .await
            }
            Err(e @ JobError::Permanent(_)) => self.dead(&job, e.message()).await,
            Err(JobError::Snooze(delay)) => Outcome::Snooze {
                at_us: now_us() + delay.as_micros() as i64,
            },
            Err(JobError::Interrupted) => {
                tracing::info!("job interrupted by shutdown; re-queued");
                Outcome::Snooze { at_us: now_us() }
            }
            Err(JobError::Cancelled) => {
                tracing::info!("job cancelled");
                Outcome::Cancelled {
                    error: Some(self.attempt_error(&job, "cancelled by an operator".into())),
                }
            }
            Err(other) => self.dead(&job, other.message()).await,
        }
    }

    async fn panicked(&self, job: &Job, panic: Box<dyn std::any::Any + Send>) -> Outcome {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let message = format!("job panicked: {what}");
        self.failed_anyhow(job, message).await
    }

    /// An attempt that ended without the kind's say (a panic, or a layer's failure reported
    /// by the backend): retried under the kind's backoff like any retryable error.
    async fn failed_anyhow(&self, job: &Job, message: String) -> Outcome {
        let backoff = self
            .registry
            .get(&job.kind)
            .map_or_else(|_| Settings::default().backoff, |e| e.settings().backoff);
        self.failed(job, &backoff, message, None).await
    }

    /// The one retry rule: a failed attempt is tried again after `backoff` (or after `after`,
    /// the other side's word, capped at the backoff's cap) while attempts remain, else the
    /// job is dead.
    async fn failed(
        &self,
        job: &Job,
        backoff: &Backoff,
        message: String,
        after: Option<Duration>,
    ) -> Outcome {
        if job.attempt >= job.max_attempts {
            let message = format!(
                "{message} (attempt {} of {})",
                job.attempt, job.max_attempts
            );
            return self.dead(job, message).await;
        }
        let delay = after.map_or_else(|| backoff.delay(job.attempt), |a| a.min(backoff.cap));
        tracing::warn!(error = %message, retry_in = ?delay, "job failed; will retry");
        Outcome::Retry {
            at_us: now_us() + delay.as_micros() as i64,
            error: self.attempt_error(job, message),
        }
    }

    /// The rule the backend follows for an attempt that failed outside this dispatcher.
    pub fn failure_rule(&self) -> FailureRule {
        let this = self.clone();
        FailureRule::new(move |job, message| {
            let this = this.clone();
            async move { this.failed_anyhow(&job, message).await }.boxed()
        })
    }

    fn attempt_error(&self, job: &Job, error: String) -> AttemptError {
        AttemptError {
            attempt: job.attempt,
            at: now_us() / 1000,
            error,
            worker: self.deps.worker.to_string(),
        }
    }

    /// Archives the job in Postgres with every attempt's error, then reports it dead.
    async fn dead(&self, job: &Job, message: String) -> Outcome {
        tracing::error!(error = %message, "job failed for good");
        let error = self.attempt_error(job, message);
        let mut errors = self
            .deps
            .queue
            .attempt_errors(&job.queue, job.id)
            .await
            .unwrap_or_default();
        errors.push(error.clone());
        let dead = DeadJob {
            id: job.id,
            queue: job.queue.to_string(),
            kind: job.kind.clone(),
            args: serde_json::from_str(&job.args)
                .unwrap_or(serde_json::Value::String(job.args.clone())),
            attempts: job.attempt as i32,
            max_attempts: job.max_attempts as i32,
            errors: serde_json::to_value(&errors).unwrap_or_default(),
            last_error: error.error.clone(),
            idempotency_key: job.idempotency_key.clone(),
            enqueued_at: chrono::DateTime::from_timestamp_micros(job.enqueued_us)
                .unwrap_or_default(),
            died_at: chrono::Utc::now(),
            retried_at: None,
            retried_as: None,
        };
        if let Err(e) = self.deps.record.bury(&dead).await {
            tracing::error!(error = %e, "could not archive the dead job in Postgres; it stays listed from Redis for 7 days");
        }
        Outcome::Dead { error }
    }
}

/// Resolves `grace` after `token` fires; never if it does not.
async fn grace_expired(token: &CancellationToken, grace: Duration) {
    token.cancelled().await;
    tokio::time::sleep(grace).await;
}
