//! Moves captured changes into jobs. Safe with any number of replicas: each takes a batch
//! with `FOR UPDATE SKIP LOCKED`, so no two relay the same change, and deletes it only in the
//! transaction that follows a successful enqueue. A relay that enqueued and then failed to
//! commit leaves the changes for the next one, whose enqueue finds the same idempotency keys
//! and creates nothing twice.

use ferry_queue::Queue;
use ferry_record::Record;

use super::{Change, EventsError, Rules};
use crate::{Registry, enqueue};

const BATCH: i64 = 500;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    pub changes: usize,
    /// Jobs created (not counting keys that already named a job).
    pub jobs: usize,
    /// Changes no rule could turn into a job: kept with their error.
    pub failed: usize,
}

/// Relays one batch.
pub async fn relay_once(
    record: &Record,
    queue: &Queue,
    registry: &Registry,
    rules: &Rules,
) -> Result<Relayed, EventsError> {
    let mut tx = record
        .pool()
        .begin()
        .await
        .map_err(EventsError::db("begin"))?;
    let changes: Vec<Change> = sqlx::query_as(
        "SELECT id, table_name, op, key, row, old FROM change_events
         WHERE error IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await
    .map_err(EventsError::db("read captured changes"))?;
    if changes.is_empty() {
        return Ok(Relayed::default());
    }
    let (mut jobs, mut done, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for change in &changes {
        match rules.route(registry, change) {
            Ok(routed) => {
                jobs.extend(routed);
                done.push(change.id);
            }
            Err(e) => {
                tracing::warn!(change = change.id, table = change.table_name, error = %e, "a captured change started no job");
                failed.push((change.id, e.to_string()));
            }
        }
    }
    let enqueued = enqueue::submit(queue, jobs).await?;
    sqlx::query("DELETE FROM change_events WHERE id = ANY($1)")
        .bind(&done)
        .execute(&mut *tx)
        .await
        .map_err(EventsError::db("delete relayed changes"))?;
    for (id, error) in &failed {
        sqlx::query("UPDATE change_events SET error = $2 WHERE id = $1")
            .bind(id)
            .bind(error)
            .execute(&mut *tx)
            .await
            .map_err(EventsError::db("keep a change that started no job"))?;
    }
    tx.commit()
        .await
        .map_err(EventsError::db("commit the relay"))?;
    Ok(Relayed {
        changes: changes.len(),
        jobs: enqueued.iter().filter(|e| e.created).count(),
        failed: failed.len(),
    })
}
