//! Deliveries: one row per notification message, keyed by its idempotency key.
//!
//! The row is written before the message leaves, and marked sent right after the server
//! accepted it, so a retry skips what was delivered. What cannot be known is a send that was
//! under way when its worker died (state `sending`): the server may or may not have accepted
//! it. Such a message is sent again (at least once, never lost), with the same Message-ID so
//! mail clients can recognise the copy.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{Record, RecordError};

/// A message as recorded.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DeliveryRow {
    pub key: String,
    pub job_id: Uuid,
    pub template: String,
    pub recipient: Option<String>,
    pub user_id: Option<String>,
    /// `queued`, `sending`, `sent` or `failed`.
    pub state: String,
    /// The SMTP server's reply to the last attempt.
    pub reply: Option<String>,
    pub attempts: i32,
    pub in_app_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// One message of a job.
#[derive(Debug, Clone, Copy)]
pub struct NewDelivery<'a> {
    pub key: &'a str,
    pub job_id: Uuid,
    pub template: &'a str,
    pub recipient: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

impl Record {
    /// Records the message if new and claims its email for this attempt. False: it was sent
    /// or refused for good already, and must not be sent.
    pub async fn claim_delivery(&self, d: &NewDelivery<'_>) -> Result<bool, RecordError> {
        let claimed = sqlx::query_scalar::<_, i32>(
            "INSERT INTO notify_deliveries (key, job_id, template, recipient, user_id, state, attempts)
             VALUES ($1, $2, $3, $4, $5, 'sending', 1)
             ON CONFLICT (key) DO UPDATE SET state = 'sending',
                attempts = notify_deliveries.attempts + 1, updated_at = now()
             WHERE notify_deliveries.state IN ('queued', 'sending')
             RETURNING attempts",
        )
        .bind(d.key)
        .bind(d.job_id)
        .bind(d.template)
        .bind(d.recipient)
        .bind(d.user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(RecordError::query("claim delivery"))?;
        Ok(claimed.is_some())
    }

    /// Marks the in-app part of a message written, inside `tx`, the application database's
    /// transaction that writes the row: true when this call is the first, so the caller
    /// inserts the row and commits both together. Needs ferry's schema in that database.
    pub async fn claim_in_app(
        &self,
        tx: &mut sqlx::PgConnection,
        d: &NewDelivery<'_>,
    ) -> Result<bool, RecordError> {
        // The schema name was checked to be a plain identifier by config validation.
        let sql = format!(
            "INSERT INTO \"{}\".notify_deliveries (key, job_id, template, recipient, user_id, in_app_at)
             VALUES ($1, $2, $3, $4, $5, now())
             ON CONFLICT (key) DO UPDATE SET in_app_at = now(), updated_at = now()
             WHERE notify_deliveries.in_app_at IS NULL
             RETURNING 1",
            self.schema
        );
        let first = sqlx::query_scalar::<_, i32>(sqlx::AssertSqlSafe(sql))
            .bind(d.key)
            .bind(d.job_id)
            .bind(d.template)
            .bind(d.recipient)
            .bind(d.user_id)
            .fetch_optional(tx)
            .await
            .map_err(RecordError::query("record in-app notification"))?;
        Ok(first.is_some())
    }

    /// The server accepted the message; `reply` is what it said.
    pub async fn delivery_sent(&self, key: &str, reply: &str) -> Result<(), RecordError> {
        self.delivery_state(key, "sent", reply).await
    }

    /// A transient refusal or a network error: the message waits for the job's next attempt.
    pub async fn delivery_deferred(&self, key: &str, reply: &str) -> Result<(), RecordError> {
        self.delivery_state(key, "queued", reply).await
    }

    /// Refused for good; never sent again.
    pub async fn delivery_failed(&self, key: &str, reply: &str) -> Result<(), RecordError> {
        self.delivery_state(key, "failed", reply).await
    }

    async fn delivery_state(&self, key: &str, state: &str, reply: &str) -> Result<(), RecordError> {
        sqlx::query(
            "UPDATE notify_deliveries SET state = $2, reply = $3, updated_at = now(),
                    sent_at = CASE WHEN $2 = 'sent' THEN now() END
             WHERE key = $1",
        )
        .bind(key)
        .bind(state)
        .bind(reply)
        .execute(&self.pool)
        .await
        .map_err(RecordError::query("record delivery"))?;
        Ok(())
    }

    /// The messages of a job, problems first, then newest; at most `limit`.
    pub async fn deliveries(
        &self,
        job_id: Uuid,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, RecordError> {
        sqlx::query_as(
            "SELECT * FROM notify_deliveries WHERE job_id = $1
             ORDER BY state = 'sent', updated_at DESC LIMIT $2",
        )
        .bind(job_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(RecordError::query("list deliveries"))
    }

    /// How many messages of a job are in each state.
    pub async fn delivery_counts(&self, job_id: Uuid) -> Result<Vec<(String, i64)>, RecordError> {
        sqlx::query_as(
            "SELECT state, count(*) FROM notify_deliveries WHERE job_id = $1
             GROUP BY state ORDER BY state",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await
        .map_err(RecordError::query("count deliveries"))
    }
}
