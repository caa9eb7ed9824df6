//! Waiting for a start under a shared rate limit (see `ferry_queue`'s `rate` module for how
//! slots are handed out): the kind's own `[kinds.NAME] rate`, which the worker applies before
//! a job runs, and the `[limits]` of targets, which a kind asks for before touching one.
//!
//! ```text
//! // In a kind's run, before any side effect: a snooze re-runs the job from its start.
//! ctx.rate_limit(&format!("http:{host}")).await?;
//! ```

use std::time::Duration;

use ferry_config::Rate;
use uuid::Uuid;

use crate::{JobContext, JobError};

/// Whether a far slot may be waited for by snoozing the job (giving the attempt and the
/// worker's slot back) or must be waited for in place (a long job mid-way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Snooze,
    InPlace,
}

impl JobContext {
    /// Waits for a start under the kind's own `[kinds.NAME] rate`, if it has one. The worker
    /// calls this before every attempt; `Err(JobError::Snooze)` means the slot is far off.
    pub async fn kind_rate_limit(&self) -> Result<(), JobError> {
        match self.deps.config.kind_rate(&self.kind) {
            Some(rate) => {
                self.pace(&format!("kind:{}", self.kind), rate, Wait::Snooze)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Waits for a start under the `[limits]` entry named `target` (`"http:HOST"`,
    /// `"smtp:HOST"`, or a name of the kind's own); a no-op when none is configured. A near
    /// slot is waited for in place; for a far one this returns `Err(JobError::Snooze)`, which
    /// the run returns with `?`: the job comes back for its slot without spending an attempt.
    /// So call it before the job does anything it would repeat.
    pub async fn rate_limit(&self, target: &str) -> Result<(), JobError> {
        match self.deps.config.limit(target) {
            Some(rate) => self.pace(&format!("to:{target}"), rate, Wait::Snooze).await,
            None => Ok(()),
        }
    }

    /// Like [`JobContext::rate_limit`], but always waits in place, however long: for a long
    /// job that reaches the target many times (a broadcast mailing each recipient). Stops
    /// with `Cancelled` or `Interrupted` when the job is told to stop.
    pub async fn rate_limit_in_place(&self, target: &str) -> Result<(), JobError> {
        match self.deps.config.limit(target) {
            Some(rate) => {
                self.pace(&format!("to:{target}"), rate, Wait::InPlace)
                    .await
            }
            None => Ok(()),
        }
    }

    async fn pace(&self, limit: &str, rate: Rate, how: Wait) -> Result<(), JobError> {
        // A snoozed job finds its held slot again by its id, on whichever worker it comes
        // back to. Waits in place may run side by side within one job (a broadcast's
        // parallel sends), so each gets an id of its own.
        let holder = match how {
            Wait::Snooze => self.id,
            Wait::InPlace => Uuid::now_v7(),
        }
        .to_string();
        loop {
            let slot = self
                .deps
                .queue
                .reserve_start(limit, &holder, rate.interval())
                .await
                .map_err(|e| {
                    JobError::retryable_from(format!("cannot ask the rate limit {limit}"), e)
                })?;
            if slot.fresh && !slot.wait.is_zero() {
                self.count_delayed().await;
            }
            match (slot.snooze(), how) {
                (Some(later), Wait::Snooze) => {
                    tracing::debug!(limit, ?later, "over the rate limit; snoozed until its slot");
                    return Err(JobError::Snooze(later));
                }
                // Held: come back for it shortly before it, as a snoozed job would.
                (Some(later), Wait::InPlace) => self.sleep(later).await?,
                (None, _) => return self.sleep(slot.wait).await,
            }
        }
    }

    async fn sleep(&self, wait: Duration) -> Result<(), JobError> {
        if wait.is_zero() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            stop = self.stopped() => Err(stop),
        }
    }

    /// For `ferry_jobs_rate_delayed_total`; a metric lost to a Redis hiccup is not worth
    /// failing the job.
    async fn count_delayed(&self) {
        if let Err(e) = self
            .deps
            .queue
            .count_rate_delayed(&self.queue, &self.kind)
            .await
        {
            tracing::warn!(error = %e, "could not count a job delayed by a rate limit");
        }
    }
}
