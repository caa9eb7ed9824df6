//! The `trace` option of `sleep`: every attempt writes down who ran it, the step it began at,
//! each step it slept and whether it completed (table `diag_attempts`). Tests prove
//! resumption and "runs none twice" from this account of the work done, not from fields the
//! record fills in by itself.

use sqlx::PgPool;

use crate::{JobContext, JobError};

/// One attempt's row in `diag_attempts`; does nothing when the job was not traced.
pub struct Trace(Option<(PgPool, i64)>);

impl Trace {
    /// Records the start of this attempt, beginning at step `from_step`, if `enabled`.
    pub async fn start(ctx: &JobContext, enabled: bool, from_step: u32) -> Result<Self, JobError> {
        if !enabled {
            return Ok(Self(None));
        }
        let pool = ctx.deps.record.pool().clone();
        let row = sqlx::query_scalar(
            "INSERT INTO diag_attempts (job_id, attempt, worker, from_step)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(ctx.id)
        .bind(ctx.attempt as i32)
        .bind(&*ctx.deps.worker)
        .bind(from_step as i32)
        .fetch_one(&pool)
        .await
        .map_err(|e| JobError::db("sleep: record the attempt", e))?;
        Ok(Self(Some((pool, row))))
    }

    /// Counts one step slept.
    pub async fn step(&self) -> Result<(), JobError> {
        self.update("UPDATE diag_attempts SET steps = steps + 1 WHERE id = $1")
            .await
    }

    /// Marks the attempt as the one that completed the job.
    pub async fn completed(&self) -> Result<(), JobError> {
        self.update("UPDATE diag_attempts SET completed = true WHERE id = $1")
            .await
    }

    async fn update(&self, sql: &'static str) -> Result<(), JobError> {
        let Some((pool, row)) = &self.0 else {
            return Ok(());
        };
        sqlx::query(sql)
            .bind(row)
            .execute(pool)
            .await
            .map(drop)
            .map_err(|e| JobError::db("sleep: record the attempt's work", e))
    }
}
