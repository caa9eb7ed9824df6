//! Moves captured changes into coalesced `sync.entity` jobs. Safe with any number of
//! replicas: each takes a batch with `FOR UPDATE SKIP LOCKED` and deletes it only in the same
//! transaction that follows a successful enqueue, so nothing is lost.

use ferry_queue::{NewJob, Queue};
use ferry_record::Record;

use super::{EntityArgs, QUEUE, SyncError};
use crate::Kind;

const BATCH: i64 = 2000;

/// Relays one batch; returns (changes read, jobs enqueued or coalesced).
pub async fn relay_once(record: &Record, queue: &Queue) -> Result<(usize, usize), SyncError> {
    let mut tx = record
        .pool()
        .begin()
        .await
        .map_err(SyncError::db("begin"))?;
    let changes: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "WITH batch AS (SELECT id FROM sync_changes ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
         DELETE FROM sync_changes c USING batch WHERE c.id = batch.id RETURNING c.table_name, c.key",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await
    .map_err(SyncError::db("read captured changes"))?;
    if changes.is_empty() {
        return Ok((0, 0));
    }
    let mut seen = std::collections::BTreeSet::new();
    let settings = <super::Entity as Kind>::defaults();
    let mut jobs = Vec::new();
    for (table, key) in &changes {
        let args = EntityArgs {
            table: table.clone(),
            key: key.clone(),
        };
        let coalesce = args.coalesce_key();
        if !seen.insert(coalesce.clone()) {
            continue;
        }
        let mut job = NewJob::new(
            <super::Entity as Kind>::NAME,
            serde_json::to_string(&args).unwrap_or_default(),
            settings.max_attempts,
        );
        job.coalesce_key = Some(coalesce);
        jobs.push(job);
    }
    queue
        .enqueue(QUEUE, &jobs)
        .await
        .map_err(|e| SyncError::Unavailable(e.to_string()))?;
    tx.commit()
        .await
        .map_err(SyncError::db("commit the relay"))?;
    Ok((changes.len(), jobs.len()))
}
