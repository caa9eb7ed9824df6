//! Delivery: each replica leases pending alerts, POSTs them to the webhook and enqueues one
//! `notify.send` job per email address, then records the outcome. A failed post is tried
//! again with growing pauses; the error recorded never holds the webhook's URL.

use chrono::{DateTime, TimeDelta, Utc};
use ferry_config::ALERT_TEMPLATE;
use ferry_jobs::{
    Kind,
    enqueue::{self, Keys, Origin},
    notify::{Send, SendArgs},
};
use serde_json::{Value, json};

use super::Alerter;
use crate::SchedulerError;

/// Posts tried before an alert is given up (state `failed`; it stays recorded).
pub const MAX_ATTEMPTS: i32 = 8;
/// Alerts leased per pass.
const LEASE: i64 = 20;

#[derive(Debug, sqlx::FromRow)]
struct Pending {
    id: i64,
    raised_at: DateTime<Utc>,
    topic: String,
    subject: String,
    count: i32,
    title: String,
    message: String,
    hint: String,
    details: Value,
    attempts: i32,
}

impl Pending {
    /// The webhook's body: the alert's fields, and `text` for Slack-compatible receivers.
    fn body(&self) -> Value {
        json!({
            "text": format!("*ferry: {}*\n{}\nWhere to look: {}", self.title, self.message, self.hint),
            "id": self.id,
            "topic": self.topic,
            "subject": self.subject,
            "count": self.count,
            "title": self.title,
            "message": self.message,
            "where": self.hint,
            "raised_at": self.raised_at,
            "details": self.details,
        })
    }
}

/// The pause before attempt `n + 1`: 30 s doubling, at most an hour.
fn backoff(n: i32) -> TimeDelta {
    TimeDelta::seconds((30i64 << (n.clamp(1, 8) - 1)).min(3600))
}

impl Alerter {
    /// Sends what is due; returns how many alerts were sent.
    pub async fn deliver(&self, now: DateTime<Utc>) -> Result<usize, SchedulerError> {
        let lease_until =
            now + TimeDelta::from_std(self.config.alerts.timeout * 3).unwrap_or_default();
        let due: Vec<Pending> = sqlx::query_as(
            "UPDATE alerts SET next_attempt_at = $2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM alerts WHERE state = 'pending' AND next_attempt_at <= $1
                          ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, raised_at, topic, subject, count, title, message, hint, details, attempts",
        )
        .bind(now)
        .bind(lease_until)
        .bind(LEASE)
        .fetch_all(self.record.pool())
        .await
        .map_err(SchedulerError::db("lease alerts"))?;
        let mut sent = 0;
        for alert in due {
            let outcome = match self.email(&alert).await {
                Ok(()) => self.post(&alert).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {
                    sent += 1;
                    sqlx::query(
                        "UPDATE alerts SET state = 'sent', sent_at = now(), last_error = NULL
                         WHERE id = $1",
                    )
                    .bind(alert.id)
                    .execute(self.record.pool())
                    .await
                    .map_err(SchedulerError::db("record a sent alert"))?;
                }
                Err(error) => {
                    let give_up = alert.attempts >= MAX_ATTEMPTS;
                    tracing::warn!(
                        alert = alert.id,
                        attempts = alert.attempts,
                        give_up,
                        error,
                        "delivering an alert failed"
                    );
                    sqlx::query(
                        "UPDATE alerts SET state = CASE WHEN $2 THEN 'failed' ELSE 'pending' END,
                             last_error = $3, next_attempt_at = $4 WHERE id = $1",
                    )
                    .bind(alert.id)
                    .bind(give_up)
                    .bind(&error)
                    .bind(Utc::now() + backoff(alert.attempts))
                    .execute(self.record.pool())
                    .await
                    .map_err(SchedulerError::db("record a failed alert"))?;
                }
            }
        }
        Ok(sent)
    }

    async fn post(&self, alert: &Pending) -> Result<(), String> {
        let Some(url) = &self.config.alerts.webhook else {
            return Ok(());
        };
        // Errors drop the URL: a webhook URL usually carries its token.
        let reply = self
            .http
            .post(url.expose())
            .json(&alert.body())
            .send()
            .await
            .map_err(|e| format!("the webhook did not answer: {}", e.without_url()))?;
        let status = reply.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the webhook answered {status}"))
        }
    }

    /// One `notify.send` job per address; its idempotency key makes a repeated delivery of
    /// the same alert enqueue nothing new. Dead `notify.send` jobs are not mailed about: the
    /// mail path may be what is broken, and each alert mail that died would raise another.
    async fn email(&self, alert: &Pending) -> Result<(), String> {
        let addresses = &self.config.alerts.email;
        if addresses.is_empty() || alert.subject == Send::NAME {
            return Ok(());
        }
        let data = json!({
            "id": alert.id,
            "title": alert.title,
            "message": alert.message,
            "where": alert.hint,
            "raised_at": alert.raised_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            "topic": alert.topic,
            "subject": alert.subject,
            "count": alert.count,
        });
        let schema = self.record.schema();
        let jobs = addresses
            .iter()
            .map(|to| {
                let args = SendArgs {
                    to: Some(to.clone()),
                    user_id: None,
                    template: ALERT_TEMPLATE.into(),
                    data: data.clone(),
                    columns: None,
                };
                let keys = Keys {
                    idempotency: Some(format!("alert:{schema}:{}:{to}", alert.id)),
                    ..Keys::default()
                };
                enqueue::typed::<Send>(&self.registry, &Origin::Scheduler, &args, keys)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the alert emails do not pass the enqueue checks: {e}"))?;
        enqueue::submit(&self.queue, jobs)
            .await
            .map(drop)
            .map_err(|e| format!("could not enqueue the alert emails: {e}"))
    }
}
