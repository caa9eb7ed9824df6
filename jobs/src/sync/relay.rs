//! Moves captured changes into coalesced `sync.entity` jobs. Safe with any number of
//! replicas: each takes a batch with `FOR UPDATE SKIP LOCKED` and deletes it only in the same
//! transaction that follows a successful enqueue, so nothing is lost.

use ferry_queue::Queue;
use ferry_record::Record;

use super::{EntityArgs, SyncError};
use crate::{Registry, enqueue};

const BATCH: i64 = 2000;

/// Relays one batch; returns (changes read, jobs enqueued or coalesced).
pub async fn relay_once(
    record: &Record,
    queue: &Queue,
    registry: &Registry,
) -> Result<(usize, usize), SyncError> {
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
        let keys = enqueue::Keys {
            idempotency: None,
            coalesce: Some(coalesce),
            ..Default::default()
        };
        // Entity arguments have no check of their own: only a NUL in a key could be refused,
        // and Postgres text cannot hold one.
        jobs.push(enqueue::typed::<super::Entity>(
            registry,
            &enqueue::Origin::Ferry,
            &args,
            keys,
        )?);
    }
    let relayed = jobs.len();
    enqueue::submit(queue, jobs)
        .await
        .map_err(|e| SyncError::Unavailable(e.to_string()))?;
    tx.commit()
        .await
        .map_err(SyncError::db("commit the relay"))?;
    Ok((changes.len(), relayed))
}
