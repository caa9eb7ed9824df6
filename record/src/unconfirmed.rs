//! Messages operators look after: emails `unconfirmed` (complete, no reply), which
//! `ferry notify unconfirmed ls|resend` lists and sends again, and in-app rows whose realtime
//! publish was missed, which `/metrics` counts.

use std::time::Duration;

use crate::{DeliveryRow, Record, RecordError};

/// What a resend needs of an unconfirmed email.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Unconfirmed {
    #[sqlx(flatten)]
    pub row: DeliveryRow,
    /// The template variables it was sent with; `None` for messages recorded before they were
    /// kept, which cannot be resent.
    pub data: Option<serde_json::Value>,
}

impl Record {
    /// Unconfirmed emails not touched for `older_than`, oldest first; at most `limit`.
    pub async fn unconfirmed(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<Vec<Unconfirmed>, RecordError> {
        sqlx::query_as(
            "SELECT * FROM notify_deliveries
             WHERE state = 'unconfirmed' AND updated_at <= now() - make_interval(secs => $1)
             ORDER BY updated_at LIMIT $2",
        )
        .bind(older_than.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(RecordError::query("list unconfirmed deliveries"))
    }

    /// Records why the realtime publish of a message's in-app row failed.
    pub async fn delivery_realtime_missed(&self, key: &str, why: &str) -> Result<(), RecordError> {
        sqlx::query("UPDATE notify_deliveries SET realtime_missed = $2 WHERE key = $1")
            .bind(key)
            .bind(why)
            .execute(&self.pool)
            .await
            .map_err(RecordError::query("record a missed realtime publish"))?;
        Ok(())
    }

    /// In-app rows whose realtime publish was missed, ever (a counter for `/metrics`).
    pub async fn realtime_missed(&self) -> Result<i64, RecordError> {
        sqlx::query_scalar(
            "SELECT count(*) FROM notify_deliveries WHERE realtime_missed IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(RecordError::query("count missed realtime publishes"))
    }
}
