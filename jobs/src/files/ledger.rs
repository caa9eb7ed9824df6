//! The per-object ledger (`files_objects`): what was copied where, with which bytes, so reruns
//! and resumed runs skip objects that are already identical at the destination.

use std::collections::HashMap;

use sqlx::PgPool;
use uuid::Uuid;

use crate::JobError;

/// The two sides of a migration as the ledger names them: store identity and prefix.
#[derive(Debug, Clone)]
pub struct Pair {
    pub source: String,
    pub destination: String,
}

/// A ledger row as the next copy needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Entry {
    pub size: i64,
    pub source_etag: Option<String>,
    pub dest_etag: Option<String>,
    pub state: String,
    pub upload_id: Option<String>,
    pub run_id: Uuid,
}

fn db(what: &str) -> impl Fn(sqlx::Error) -> JobError + '_ {
    move |e| JobError::db(format!("files ledger: cannot {what}"), e)
}

/// The rows of `keys`, by key: one query for a batch of objects.
pub async fn get_many(
    pool: &PgPool,
    pair: &Pair,
    keys: &[&str],
) -> Result<HashMap<String, Entry>, JobError> {
    let rows: Vec<Keyed> = sqlx::query_as(
        "SELECT key, size, source_etag, dest_etag, state, upload_id, run_id FROM files_objects
         WHERE source = $1 AND destination = $2 AND key = ANY($3)",
    )
    .bind(&pair.source)
    .bind(&pair.destination)
    .bind(keys)
    .fetch_all(pool)
    .await
    .map_err(db("read"))?;
    Ok(rows.into_iter().map(|r| (r.key, r.entry)).collect())
}

#[derive(sqlx::FromRow)]
struct Keyed {
    key: String,
    #[sqlx(flatten)]
    entry: Entry,
}

/// Notes an open multipart upload before its first part, so a later attempt can abort it.
pub async fn uploading(
    pool: &PgPool,
    pair: &Pair,
    key: &str,
    size: u64,
    upload_id: &str,
    run_id: Uuid,
) -> Result<(), JobError> {
    sqlx::query(
        "INSERT INTO files_objects (source, destination, key, size, state, upload_id, run_id)
         VALUES ($1, $2, $3, $4, 'uploading', $5, $6)
         ON CONFLICT (source, destination, key) DO UPDATE SET
            size = EXCLUDED.size, state = 'uploading', upload_id = EXCLUDED.upload_id,
            run_id = EXCLUDED.run_id, updated_at = now()",
    )
    .bind(&pair.source)
    .bind(&pair.destination)
    .bind(key)
    .bind(size as i64)
    .bind(upload_id)
    .bind(run_id)
    .execute(pool)
    .await
    .map_err(db("record an upload"))?;
    Ok(())
}

/// The upload was aborted: nothing of it is left at the destination.
pub async fn aborted(pool: &PgPool, pair: &Pair, key: &str) -> Result<(), JobError> {
    sqlx::query(
        "DELETE FROM files_objects
         WHERE source = $1 AND destination = $2 AND key = $3 AND state = 'uploading'",
    )
    .bind(&pair.source)
    .bind(&pair.destination)
    .bind(key)
    .execute(pool)
    .await
    .map_err(db("clear an upload"))?;
    Ok(())
}

/// What a finished copy or skip records.
pub struct Done<'a> {
    pub key: &'a str,
    pub size: u64,
    pub source_etag: Option<&'a str>,
    pub dest_etag: Option<&'a str>,
    /// Set when bytes were copied; a skip keeps the hash of the copy that put them there.
    pub sha256: Option<&'a str>,
    pub run_id: Uuid,
}

/// Records an object as copied, only after the destination confirmed its bytes.
pub async fn copied(pool: &PgPool, pair: &Pair, d: &Done<'_>) -> Result<(), JobError> {
    sqlx::query(
        "INSERT INTO files_objects (source, destination, key, size, source_etag, dest_etag,
                                    sha256, state, run_id, copied_by, copied_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'copied', $8, $8, now())
         ON CONFLICT (source, destination, key) DO UPDATE SET
            size = EXCLUDED.size, source_etag = EXCLUDED.source_etag,
            dest_etag = EXCLUDED.dest_etag, sha256 = EXCLUDED.sha256, state = 'copied',
            upload_id = NULL, run_id = EXCLUDED.run_id, copied_by = EXCLUDED.run_id,
            copied_at = now(), updated_at = now()",
    )
    .bind(&pair.source)
    .bind(&pair.destination)
    .bind(d.key)
    .bind(d.size as i64)
    .bind(d.source_etag)
    .bind(d.dest_etag)
    .bind(d.sha256)
    .bind(d.run_id)
    .execute(pool)
    .await
    .map_err(db("record a copy"))?;
    Ok(())
}

/// Records an object found identical at the destination; its copy time stays.
pub async fn skipped(pool: &PgPool, pair: &Pair, d: &Done<'_>) -> Result<(), JobError> {
    sqlx::query(
        "INSERT INTO files_objects (source, destination, key, size, source_etag, dest_etag,
                                    state, run_id)
         VALUES ($1, $2, $3, $4, $5, $6, 'skipped', $7)
         ON CONFLICT (source, destination, key) DO UPDATE SET
            run_id = EXCLUDED.run_id, updated_at = now()",
    )
    .bind(&pair.source)
    .bind(&pair.destination)
    .bind(d.key)
    .bind(d.size as i64)
    .bind(d.source_etag)
    .bind(d.dest_etag)
    .bind(d.run_id)
    .execute(pool)
    .await
    .map_err(db("record a skip"))?;
    Ok(())
}

/// What run `run_id` did, by the ledger: objects it copied, their bytes, and objects it found
/// already there. Exact across attempts, where counters kept in memory are not: an attempt
/// that dies loses what it did since its last checkpoint, and the retry sees those objects
/// as already there.
pub async fn tally(pool: &PgPool, run_id: Uuid) -> Result<(u64, u64, u64), JobError> {
    let (copied, bytes, skipped): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE copied_by = $1),
                coalesce(sum(size) FILTER (WHERE copied_by = $1), 0)::bigint,
                count(*) FILTER (WHERE copied_by IS DISTINCT FROM $1)
           FROM files_objects WHERE run_id = $1 AND state <> 'uploading'",
    )
    .bind(run_id)
    .fetch_one(pool)
    .await
    .map_err(db("count a run"))?;
    Ok((copied as u64, bytes as u64, skipped as u64))
}
