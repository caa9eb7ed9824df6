//! Jobs that failed for good, kept with every attempt's error.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{Record, RecordError};

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DeadJob {
    pub id: Uuid,
    pub queue: String,
    pub kind: String,
    pub args: Value,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Every failed attempt: `[{attempt, at, error, worker}]`, oldest first.
    pub errors: Value,
    pub last_error: String,
    pub idempotency_key: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    pub died_at: DateTime<Utc>,
    pub retried_at: Option<DateTime<Utc>>,
    pub retried_as: Option<Uuid>,
}

/// Which dead jobs to select.
#[derive(Debug, Clone, Default)]
pub struct DeadFilter {
    pub kind: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub error_contains: Option<String>,
    /// Include those already re-queued.
    pub include_retried: bool,
    pub limit: i64,
}

impl Record {
    /// Archives a dead job. Idempotent: a job buried twice keeps its first record's errors
    /// merged with the newest.
    pub async fn bury(&self, job: &DeadJob) -> Result<(), RecordError> {
        sqlx::query(
            "INSERT INTO dead_jobs (id, queue, kind, args, attempts, max_attempts, errors,
                 last_error, idempotency_key, enqueued_at, died_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (id) DO UPDATE SET
                 attempts = EXCLUDED.attempts, errors = EXCLUDED.errors,
                 last_error = EXCLUDED.last_error, died_at = EXCLUDED.died_at,
                 retried_at = NULL, retried_as = NULL, alerted_at = NULL",
        )
        .bind(job.id)
        .bind(&job.queue)
        .bind(&job.kind)
        .bind(&job.args)
        .bind(job.attempts)
        .bind(job.max_attempts)
        .bind(&job.errors)
        .bind(&job.last_error)
        .bind(&job.idempotency_key)
        .bind(job.enqueued_at)
        .bind(job.died_at)
        .execute(&self.pool)
        .await
        .map_err(RecordError::query("archive dead job"))?;
        Ok(())
    }

    pub async fn dead_job(&self, id: Uuid) -> Result<Option<DeadJob>, RecordError> {
        sqlx::query_as("SELECT * FROM dead_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(RecordError::query("read dead job"))
    }

    /// Newest first.
    pub async fn dead_jobs(&self, f: &DeadFilter) -> Result<Vec<DeadJob>, RecordError> {
        sqlx::query_as(
            "SELECT * FROM dead_jobs
             WHERE ($1::text IS NULL OR kind = $1)
               AND ($2::timestamptz IS NULL OR died_at >= $2)
               AND ($3::text IS NULL OR strpos(lower(last_error), lower($3)) > 0)
               AND ($4 OR retried_at IS NULL)
             ORDER BY died_at DESC LIMIT $5",
        )
        .bind(&f.kind)
        .bind(f.since)
        .bind(&f.error_contains)
        .bind(f.include_retried)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(RecordError::query("list dead jobs"))
    }

    /// Marks a dead job as re-queued at `requeued_at`; false if it already was, or if it died
    /// again after that moment (a fast worker can run and bury the re-queued job before this
    /// mark is written: marking it then would hide a dead job from the dead list).
    pub async fn mark_retried(
        &self,
        id: Uuid,
        new_id: Uuid,
        requeued_at: DateTime<Utc>,
    ) -> Result<bool, RecordError> {
        let updated = sqlx::query(
            "UPDATE dead_jobs SET retried_at = $3, retried_as = $2
             WHERE id = $1 AND retried_at IS NULL AND died_at <= $3",
        )
        .bind(id)
        .bind(new_id)
        .bind(requeued_at)
        .execute(&self.pool)
        .await
        .map_err(RecordError::query("mark dead job retried"))?;
        Ok(updated.rows_affected() == 1)
    }
}
