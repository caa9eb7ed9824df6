//! Alerts: the scheduler looks for what went wrong while nobody watched (jobs dead, backups
//! failing or stale, runs stuck, the relay falling behind, schedules late), records an alert
//! for each in `alerts`, and delivers it to `[alerts]`' webhook and email addresses.
//!
//! Detection runs on one replica at a time: each pass holds a transaction-level advisory
//! lock named after the schema, and a replica that cannot take it skips the pass. Delivery is
//! shared: each replica leases pending alerts (`FOR UPDATE SKIP LOCKED`), so an alert is
//! posted by one of them, retried with backoff when the webhook fails, and given up after
//! [`deliver::MAX_ATTEMPTS`]. Workers take no part: a webhook that is down or slow delays
//! alerts, never jobs.

mod deliver;
mod detect;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_config::Config;
use ferry_jobs::Registry;
use ferry_queue::Queue;
use ferry_record::Record;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{Clock, Planned, SchedulerError};

/// An alert about to be recorded.
#[derive(Debug, Clone)]
pub(crate) struct NewAlert {
    /// `job.dead`, `backup.failed`, `backup.stale`, `run.stuck`, `relay.backlog`,
    /// `schedule.late`, `schedule.missed`.
    pub topic: &'static str,
    /// What it is about: a kind, a database, a run, a schedule.
    pub subject: String,
    pub count: i64,
    pub title: String,
    /// What failed.
    pub message: String,
    /// Where to look.
    pub hint: String,
    pub details: Value,
}

pub struct Alerter {
    record: Record,
    queue: Queue,
    registry: Arc<Registry>,
    config: Arc<Config>,
    planned: Vec<Planned>,
    http: reqwest::Client,
}

impl Alerter {
    pub fn new(
        record: Record,
        queue: Queue,
        registry: Arc<Registry>,
        config: Arc<Config>,
        planned: Vec<Planned>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.alerts.timeout)
            .connect_timeout(config.alerts.timeout)
            .build()
            .unwrap_or_default();
        Self {
            record,
            queue,
            registry,
            config,
            planned,
            http,
        }
    }

    /// Checks and delivers every `alerts.check_every` until shutdown. A failure is logged and
    /// tried again on the next pass; it never stops the scheduler.
    pub async fn run(&self, clock: Arc<dyn Clock>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.check(clock.now()).await {
                tracing::warn!(error = %e, "looking for alerts failed; trying again");
            }
            if let Err(e) = self.deliver(clock.now()).await {
                tracing::warn!(error = %e, "delivering alerts failed; trying again");
            }
            crate::pause(self.config.alerts.check_every, &shutdown).await;
        }
    }

    /// One detection pass, if no other replica is in one; returns the ids of alerts raised.
    pub async fn check(&self, now: DateTime<Utc>) -> Result<Vec<i64>, SchedulerError> {
        let mut tx = self
            .record
            .pool()
            .begin()
            .await
            .map_err(SchedulerError::db("begin alert check"))?;
        let ours: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.alerts'))",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(SchedulerError::db("take the alert lock"))?;
        if !ours {
            return Ok(Vec::new());
        }
        let mut raised = Vec::new();
        for alert in detect::dead_jobs(&mut tx, &self.config, now).await? {
            raised.push(self.raise(&mut tx, alert, now).await?);
        }
        let standing =
            detect::standing(&mut tx, &self.record, &self.config, &self.planned, now).await?;
        for alert in standing {
            let repeat = now
                - chrono::TimeDelta::from_std(self.config.alerts.repeat_every)
                    .unwrap_or(chrono::TimeDelta::MAX);
            if !raised_since(&mut tx, alert.topic, &alert.subject, repeat).await? {
                raised.push(self.raise(&mut tx, alert, now).await?);
            }
        }
        tx.commit()
            .await
            .map_err(SchedulerError::db("commit alerts"))?;
        Ok(raised)
    }

    async fn raise(
        &self,
        tx: &mut sqlx::PgConnection,
        alert: NewAlert,
        now: DateTime<Utc>,
    ) -> Result<i64, SchedulerError> {
        tracing::warn!(
            topic = alert.topic,
            subject = %alert.subject,
            count = alert.count,
            hint = %alert.hint,
            "alert: {}",
            alert.message
        );
        let state = if self.config.alerts.delivers() {
            "pending"
        } else {
            "recorded"
        };
        sqlx::query_scalar(
            "INSERT INTO alerts (raised_at, topic, subject, count, title, message, hint, details,
                 state, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $1) RETURNING id",
        )
        .bind(now)
        .bind(alert.topic)
        .bind(&alert.subject)
        .bind(alert.count as i32)
        .bind(&alert.title)
        .bind(&alert.message)
        .bind(&alert.hint)
        .bind(&alert.details)
        .bind(state)
        .fetch_one(tx)
        .await
        .map_err(SchedulerError::db("record an alert"))
    }
}

/// Whether an alert of `topic` about `subject` was raised after `since`.
pub(crate) async fn raised_since(
    tx: &mut sqlx::PgConnection,
    topic: &str,
    subject: &str,
    since: DateTime<Utc>,
) -> Result<bool, SchedulerError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM alerts WHERE topic = $1 AND subject = $2 AND raised_at > $3)",
    )
    .bind(topic)
    .bind(subject)
    .bind(since)
    .fetch_one(tx)
    .await
    .map_err(SchedulerError::db("read recent alerts"))
}
