//! Runs: a long job's lease, typed checkpoint and progress.
//!
//! Each start of a run takes a new lease epoch. A checkpoint write names its epoch and is
//! rejected when a newer lease exists, so a worker that lost its job cannot overwrite the
//! progress of the worker that took it over.

use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use uuid::Uuid;

use crate::{Record, RecordError};

/// Units and bytes done so far, and totals when known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub done: i64,
    pub total: Option<i64>,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Stopped by a worker shutdown; the job was re-queued and resumes from its checkpoint.
    Interrupted,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

/// A run as stored.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct RunRow {
    pub id: Uuid,
    pub kind: String,
    pub args: Value,
    pub state: String,
    pub lease_epoch: i64,
    pub lease_owner: Option<String>,
    pub checkpoint: Option<Value>,
    pub resumed_from: Option<Value>,
    pub done: i64,
    pub total: Option<i64>,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl RunRow {
    /// Estimated time left from the average rate since the run started.
    pub fn eta(&self, now: DateTime<Utc>) -> Option<std::time::Duration> {
        let total = self.total?;
        if self.done <= 0 || self.state != "running" {
            return None;
        }
        let elapsed = (now - self.started_at).to_std().ok()?.as_secs_f64();
        let left = (total - self.done).max(0) as f64;
        Some(std::time::Duration::from_secs_f64(
            elapsed / self.done as f64 * left,
        ))
    }
}

/// This worker's lease on a run. Every write is fenced by the epoch it was granted.
#[derive(Debug, Clone)]
pub struct Lease {
    record: Record,
    id: Uuid,
    epoch: i64,
    checkpoint: Option<Value>,
}

impl Record {
    /// Starts or resumes the run of job `id`, taking a new lease epoch.
    pub async fn open_run(
        &self,
        id: Uuid,
        kind: &str,
        args: &Value,
        owner: &str,
    ) -> Result<Lease, RecordError> {
        let (epoch, checkpoint): (i64, Option<Value>) = sqlx::query_as(
            "INSERT INTO runs (id, kind, args, lease_epoch, lease_owner)
             VALUES ($1, $2, $3, 1, $4)
             ON CONFLICT (id) DO UPDATE SET
                lease_epoch = runs.lease_epoch + 1,
                lease_owner = EXCLUDED.lease_owner,
                state = 'running',
                resumed_from = runs.checkpoint,
                heartbeat_at = now(),
                finished_at = NULL,
                error = NULL
             RETURNING lease_epoch, checkpoint",
        )
        .bind(id)
        .bind(kind)
        .bind(args)
        .bind(owner)
        .fetch_one(&self.pool)
        .await
        .map_err(RecordError::query("open run"))?;
        Ok(Lease {
            record: self.clone(),
            id,
            epoch,
            checkpoint,
        })
    }

    pub async fn run(&self, id: Uuid) -> Result<Option<RunRow>, RecordError> {
        sqlx::query_as("SELECT * FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(RecordError::query("read run"))
    }

    /// Newest runs first, optionally only those in `state`.
    pub async fn runs(&self, state: Option<&str>, limit: i64) -> Result<Vec<RunRow>, RecordError> {
        sqlx::query_as(
            "SELECT * FROM runs WHERE ($1::text IS NULL OR state = $1)
             ORDER BY started_at DESC LIMIT $2",
        )
        .bind(state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(RecordError::query("list runs"))
    }
}

impl Lease {
    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The checkpoint this lease started from, if the run had saved one.
    pub fn checkpoint<C: DeserializeOwned>(&self) -> Result<Option<C>, RecordError> {
        self.checkpoint
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| RecordError::BadCheckpoint {
                id: self.id,
                message: e.to_string(),
            })
    }

    /// Saves the cursor and progress, unless a newer lease exists.
    pub async fn save<C: Serialize>(
        &self,
        checkpoint: &C,
        progress: Progress,
    ) -> Result<(), RecordError> {
        let mut conn = self
            .record
            .pool
            .acquire()
            .await
            .map_err(RecordError::query("save checkpoint"))?;
        self.write_checkpoint(&mut conn, checkpoint, progress).await
    }

    /// Saves the cursor and progress like [`Lease::save`], and in the same transaction adds
    /// `rows` and `bytes` to the progress of `parent` (the run that fanned this one out), so a
    /// resumed child never counts its work twice.
    pub async fn save_and_report<C: Serialize>(
        &self,
        checkpoint: &C,
        progress: Progress,
        parent: Uuid,
        rows: i64,
        bytes: i64,
    ) -> Result<(), RecordError> {
        let mut tx = self
            .record
            .pool
            .begin()
            .await
            .map_err(RecordError::query("begin"))?;
        self.write_checkpoint(&mut tx, checkpoint, progress).await?;
        sqlx::query(
            "UPDATE runs SET done = done + $2, bytes_done = bytes_done + $3, heartbeat_at = now()
             WHERE id = $1",
        )
        .bind(parent)
        .bind(rows)
        .bind(bytes)
        .execute(&mut *tx)
        .await
        .map_err(RecordError::query("report progress"))?;
        tx.commit()
            .await
            .map_err(RecordError::query("commit checkpoint"))
    }

    async fn write_checkpoint<C: Serialize>(
        &self,
        conn: &mut sqlx::PgConnection,
        checkpoint: &C,
        progress: Progress,
    ) -> Result<(), RecordError> {
        let value = serde_json::to_value(checkpoint).map_err(|e| RecordError::BadCheckpoint {
            id: self.id,
            message: e.to_string(),
        })?;
        let updated = sqlx::query(
            "UPDATE runs SET checkpoint = $3, done = $4, total = $5, bytes_done = $6,
                    bytes_total = $7, heartbeat_at = now()
             WHERE id = $1 AND lease_epoch = $2",
        )
        .bind(self.id)
        .bind(self.epoch)
        .bind(value)
        .bind(progress.done)
        .bind(progress.total)
        .bind(progress.bytes_done)
        .bind(progress.bytes_total)
        .execute(conn)
        .await
        .map_err(RecordError::query("save checkpoint"))?;
        self.fenced(updated.rows_affected())
    }

    /// Proves the run is alive without moving its checkpoint.
    pub async fn heartbeat(&self) -> Result<(), RecordError> {
        let updated =
            sqlx::query("UPDATE runs SET heartbeat_at = now() WHERE id = $1 AND lease_epoch = $2")
                .bind(self.id)
                .bind(self.epoch)
                .execute(&self.record.pool)
                .await
                .map_err(RecordError::query("heartbeat run"))?;
        self.fenced(updated.rows_affected())
    }

    /// Records how the run ended.
    pub async fn finish(&self, state: RunState, error: Option<&str>) -> Result<(), RecordError> {
        let updated = sqlx::query(
            "UPDATE runs SET state = $3, error = $4, finished_at = now(), heartbeat_at = now()
             WHERE id = $1 AND lease_epoch = $2",
        )
        .bind(self.id)
        .bind(self.epoch)
        .bind(state.as_str())
        .bind(error)
        .execute(&self.record.pool)
        .await
        .map_err(RecordError::query("finish run"))?;
        self.fenced(updated.rows_affected())
    }

    fn fenced(&self, rows: u64) -> Result<(), RecordError> {
        if rows == 1 {
            Ok(())
        } else {
            Err(RecordError::LeaseLost {
                id: self.id,
                epoch: self.epoch,
            })
        }
    }
}
