//! Deliveries: one row per notification message, keyed by its idempotency key.
//!
//! An email's row becomes `committing` after the server answered `DATA` with 354 and before
//! the message and its end-of-data marker are written. A server must not deliver a message
//! whose connection is lost before that marker (RFC 5321), so a worker that dies before the
//! mark mailed nothing and the next attempt sends the message. After the reply the row is
//! `sent`, `queued` (4xx, tried again) or `failed` (5xx). A row still `committing` when a
//! later attempt finds it belonged to a worker that stopped somewhere between sending the
//! mark to Postgres and recording the reply: the server may have the message, so it is never
//! sent again and becomes `unconfirmed`. At most one email per key. The price: a worker that
//! dies after Postgres committed the mark and before it wrote the data (the mark's round trip
//! and the writes after it) loses that message, which shows as `unconfirmed` too.

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
    /// `queued` (not sent yet, or deferred), `committing` (the data was being completed),
    /// `sent`, `failed` or `unconfirmed` (the data was complete, the reply never came: not sent
    /// again). `sending` only in rows of versions before `committing`.
    pub state: String,
    /// The SMTP server's reply to the last attempt.
    pub reply: Option<String>,
    pub attempts: i32,
    pub in_app_at: Option<DateTime<Utc>>,
    /// `at_most_once` or `at_least_once`: the template's choice for a reply that never came.
    pub delivery: String,
    /// Why the realtime publish of the in-app row failed; `None` when it did not.
    pub realtime_missed: Option<String>,
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
    /// Send again a message found in doubt (`committing` or `unconfirmed`): the template asks
    /// for at-least-once, or an operator resends it.
    pub again_in_doubt: bool,
    /// `at_most_once` or `at_least_once`, as recorded.
    pub delivery: &'a str,
    /// The template variables, kept with the email so an operator can resend it.
    pub data: Option<&'a serde_json::Value>,
}

/// How a message's transaction ended before its data was complete: nothing was mailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    /// A 4xx reply or the server unreachable: `queued`, for the job's next attempt.
    Deferred,
    /// A 5xx reply: `failed`, never sent.
    Failed,
}

/// What an earlier attempt left of a message's email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// No attempt got as far as the data: send it.
    Unsent,
    /// `sent` or `failed`: nothing to do.
    Done,
    /// `committing` or `unconfirmed`: the data was complete when its attempt stopped.
    InDoubt,
}

impl Record {
    /// What earlier attempts did with the email of message `key`: a read, before any SMTP.
    pub async fn delivery_prior(&self, key: &str) -> Result<Prior, RecordError> {
        let state =
            sqlx::query_scalar::<_, String>("SELECT state FROM notify_deliveries WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(RecordError::query("read delivery"))?;
        Ok(match state.as_deref() {
            None | Some("queued" | "sending") => Prior::Unsent,
            Some("committing" | "unconfirmed") => Prior::InDoubt,
            Some(_) => Prior::Done,
        })
    }

    /// The commit point, once the server waits for the data: records the message if new and
    /// marks it `committing`, in one statement, unless another attempt got past this point
    /// first (false: do not complete the data). With `again_in_doubt` a message in doubt is
    /// taken again too.
    pub async fn delivery_committing(&self, d: &NewDelivery<'_>) -> Result<bool, RecordError> {
        let claimed = sqlx::query_scalar::<_, i32>(
            "INSERT INTO notify_deliveries (key, job_id, template, recipient, user_id, state, attempts, delivery, data)
             VALUES ($1, $2, $3, $4, $5, 'committing', 1, $7, $8)
             ON CONFLICT (key) DO UPDATE SET state = 'committing',
                attempts = notify_deliveries.attempts + 1, updated_at = now(),
                delivery = $7, data = $8
             WHERE notify_deliveries.state IN ('queued', 'sending')
                OR ($6 AND notify_deliveries.state IN ('committing', 'unconfirmed'))
             RETURNING attempts",
        )
        .bind(d.key)
        .bind(d.job_id)
        .bind(d.template)
        .bind(d.recipient)
        .bind(d.user_id)
        .bind(d.again_in_doubt)
        .bind(d.delivery)
        .bind(d.data)
        .fetch_optional(&self.pool)
        .await
        .map_err(RecordError::query("mark delivery committing"))?;
        Ok(claimed.is_some())
    }

    /// The transaction ended before the data (a refusal of the sender, a recipient or DATA,
    /// or no connection): counts the attempt and keeps the reply, unless another attempt got
    /// further.
    pub async fn delivery_not_sent(
        &self,
        d: &NewDelivery<'_>,
        how: NotSent,
        reply: &str,
    ) -> Result<(), RecordError> {
        let state = match how {
            NotSent::Deferred => "queued",
            NotSent::Failed => "failed",
        };
        sqlx::query(
            "INSERT INTO notify_deliveries (key, job_id, template, recipient, user_id, state, attempts, reply)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7)
             ON CONFLICT (key) DO UPDATE SET state = $6, reply = $7,
                attempts = notify_deliveries.attempts + 1, updated_at = now()
             WHERE notify_deliveries.state IN ('queued', 'sending')",
        )
        .bind(d.key)
        .bind(d.job_id)
        .bind(d.template)
        .bind(d.recipient)
        .bind(d.user_id)
        .bind(state)
        .bind(reply)
        .execute(&self.pool)
        .await
        .map_err(RecordError::query("record delivery"))?;
        Ok(())
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

    /// The server accepted the completed message; `reply` is what it said.
    pub async fn delivery_sent(&self, key: &str, reply: &str) -> Result<(), RecordError> {
        self.delivery_replied(key, "sent", reply).await
    }

    /// A 4xx reply to the completed message: not accepted, it waits for the job's next
    /// attempt.
    pub async fn delivery_deferred(&self, key: &str, reply: &str) -> Result<(), RecordError> {
        self.delivery_replied(key, "queued", reply).await
    }

    /// A 5xx reply to the completed message: refused for good, never sent again.
    pub async fn delivery_failed(&self, key: &str, reply: &str) -> Result<(), RecordError> {
        self.delivery_replied(key, "failed", reply).await
    }

    /// No reply to the completed message, or found `committing` by a later attempt: the
    /// server may have it; never sent again. `reply` says so.
    pub async fn delivery_unconfirmed(&self, key: &str, reply: &str) -> Result<(), RecordError> {
        sqlx::query(
            "UPDATE notify_deliveries SET state = 'unconfirmed', reply = $2, updated_at = now()
             WHERE key = $1 AND state = 'committing'",
        )
        .bind(key)
        .bind(reply)
        .execute(&self.pool)
        .await
        .map_err(RecordError::query("record delivery"))?;
        Ok(())
    }

    /// The server's reply to the completed data of a `committing` message (or one a later
    /// attempt already took for `unconfirmed`: the reply is what happened).
    async fn delivery_replied(
        &self,
        key: &str,
        state: &str,
        reply: &str,
    ) -> Result<(), RecordError> {
        sqlx::query(
            "UPDATE notify_deliveries SET state = $2, reply = $3, updated_at = now(),
                    sent_at = CASE WHEN $2 = 'sent' THEN now() END
             WHERE key = $1 AND state IN ('committing', 'unconfirmed')",
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
