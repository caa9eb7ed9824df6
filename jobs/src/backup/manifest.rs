//! The manifest: one row per finished backup in schema `ferry`, the truth `verify`, `restore`
//! and `prune` work from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::JobError;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Manifest {
    pub id: Uuid,
    pub job_id: Uuid,
    pub database: String,
    /// The store as configured when the backup ran: a `[stores]` name or a URL.
    pub store: String,
    pub object_key: String,
    pub bytes: i64,
    pub sha256: String,
    pub compression: String,
    pub encrypted_to: Option<String>,
    pub server_version: String,
    pub pg_dump_version: String,
    pub started_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub row_counts: sqlx::types::Json<BTreeMap<String, i64>>,
    pub verified_at: Option<DateTime<Utc>>,
    pub verify_error: Option<String>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Manifest {
    /// Verified, and the last verify passed.
    pub fn verified(&self) -> bool {
        self.verified_at.is_some() && self.verify_error.is_none()
    }
}

fn db(what: &'static str) -> impl Fn(sqlx::Error) -> JobError {
    move |e| JobError::db(format!("cannot {what} in the backup manifest"), e)
}

/// Records a finished backup; false when the job already has a row for the database (another
/// attempt's, which is kept).
pub async fn insert(pool: &PgPool, m: &Manifest) -> Result<bool, JobError> {
    let done = sqlx::query(
        "INSERT INTO backups (id, job_id, database, store, object_key, bytes, sha256, compression,
             encrypted_to, server_version, pg_dump_version, started_at, created_at, duration_ms,
             row_counts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (job_id, database) DO NOTHING",
    )
    .bind(m.id)
    .bind(m.job_id)
    .bind(&m.database)
    .bind(&m.store)
    .bind(&m.object_key)
    .bind(m.bytes)
    .bind(&m.sha256)
    .bind(&m.compression)
    .bind(&m.encrypted_to)
    .bind(&m.server_version)
    .bind(&m.pg_dump_version)
    .bind(m.started_at)
    .bind(m.created_at)
    .bind(m.duration_ms)
    .bind(&m.row_counts)
    .execute(pool)
    .await
    .map_err(db("record a backup"))?;
    Ok(done.rows_affected() == 1)
}

/// The backup `job_id` recorded of `database`, if it got that far.
pub async fn of_job(
    pool: &PgPool,
    job_id: Uuid,
    database: &str,
) -> Result<Option<Manifest>, JobError> {
    sqlx::query_as("SELECT * FROM backups WHERE job_id = $1 AND database = $2")
        .bind(job_id)
        .bind(database)
        .fetch_optional(pool)
        .await
        .map_err(db("read a backup"))
}

/// Whether `job_id` recorded the object at `key`.
pub(super) async fn records(pool: &PgPool, job_id: Uuid, key: &str) -> Result<bool, JobError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM backups WHERE job_id = $1 AND object_key = $2)",
    )
    .bind(job_id)
    .bind(key)
    .fetch_one(pool)
    .await
    .map_err(db("read a backup"))
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Manifest, JobError> {
    sqlx::query_as("SELECT * FROM backups WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(db("read a backup"))?
        .ok_or_else(|| {
            JobError::permanent(format!(
                "no backup {id}; `ferry backup list` shows the backups there are"
            ))
        })
}

/// Backups not pruned, newest first.
pub async fn list(pool: &PgPool, database: Option<&str>) -> Result<Vec<Manifest>, JobError> {
    sqlx::query_as(
        "SELECT * FROM backups WHERE deleted_at IS NULL AND ($1::text IS NULL OR database = $1)
         ORDER BY created_at DESC, id DESC",
    )
    .bind(database)
    .fetch_all(pool)
    .await
    .map_err(db("list backups"))
}

pub async fn record_verify(pool: &PgPool, id: Uuid, error: Option<&str>) -> Result<(), JobError> {
    sqlx::query("UPDATE backups SET verified_at = now(), verify_error = $2 WHERE id = $1")
        .bind(id)
        .bind(error)
        .execute(pool)
        .await
        .map_err(db("record a verify"))?;
    Ok(())
}

pub async fn mark_deleted(pool: &PgPool, id: Uuid) -> Result<(), JobError> {
    sqlx::query("UPDATE backups SET deleted_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(db("record a deletion"))?;
    Ok(())
}
