use std::time::Duration;

use ferry_queue::JobState;
use ferry_record::{Progress, RunState};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ChunkArgs, QUEUE, SyncError, Table};
use crate::{Failure, JobContext, JobError, Kind, ResultExt, Settings, enqueue};

/// Plans a full sync and fans it out as `sync.chunk` jobs, then follows them to the end.
pub struct Full;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullArgs {
    /// `schema.table` or table names; empty: every mirrored table.
    #[serde(default)]
    pub tables: Vec<String>,
}

/// Saved once the plan is enqueued: a resumed run follows the same chunks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FullCheckpoint {
    pub chunks: Vec<Uuid>,
    pub tables: Vec<String>,
    pub total: i64,
}

impl Kind for Full {
    const NAME: &'static str = "sync.full";
    type Args = FullArgs;

    fn defaults() -> Settings {
        Settings {
            queue: QUEUE.into(),
            max_attempts: 5,
            timeout: Duration::from_secs(24 * 3600),
            ..Settings::default()
        }
    }

    async fn run(&self, args: FullArgs, ctx: JobContext) -> Result<(), JobError> {
        let target = super::target(&ctx).await?;
        let config = &ctx.deps.config;
        let lease = ctx.open_run().await?;
        let plan = match lease.checkpoint::<FullCheckpoint>()? {
            Some(plan) => plan,
            None => {
                let catalog = target.catalog(config).await?;
                for skipped in &catalog.unmirrored {
                    tracing::warn!("{skipped}");
                }
                let tables = catalog.select(&args.tables)?;
                let plan = plan(&ctx, &target, &tables).await?;
                lease
                    .save(
                        &plan,
                        Progress {
                            total: Some(plan.total),
                            ..Progress::default()
                        },
                    )
                    .await?;
                plan
            }
        };
        // Follow the chunks; their progress lands on this run.
        let chunk_queue = ctx.deps.queue_of::<super::Chunk>();
        loop {
            let mut open = 0;
            for id in &plan.chunks {
                match ctx
                    .deps
                    .queue
                    .job(&chunk_queue, *id)
                    .await
                    .map_err(|e| JobError::Retryable(Failure::of(e)))?
                {
                    Some(job) if job.state == JobState::Succeeded => {}
                    Some(job)
                        if job.state == JobState::Dead || job.state == JobState::Cancelled =>
                    {
                        let message = format!(
                            "chunk {id} of this sync is {}: {}; fix the cause and `ferry jobs retry {id}`, then re-run the sync",
                            job.state,
                            job.last_error.unwrap_or_default()
                        );
                        lease.finish(RunState::Failed, Some(&message)).await?;
                        return Err(JobError::permanent(message));
                    }
                    Some(_) => open += 1,
                    None => {
                        let message = format!(
                            "chunk {id} is gone from Redis; re-run the full sync (it resumes nothing lost: writes are idempotent)"
                        );
                        lease.finish(RunState::Failed, Some(&message)).await?;
                        return Err(JobError::permanent(message));
                    }
                }
            }
            if open == 0 {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                reason = ctx.stopped() => {
                    if reason == JobError::Cancelled {
                        for id in &plan.chunks {
                            let _ = ctx.deps.queue.cancel(&chunk_queue, *id).await;
                        }
                        lease.finish(RunState::Cancelled, None).await?;
                    }
                    return Err(reason);
                }
            }
            lease.heartbeat().await?;
        }
        let record = ctx.deps.record.pool();
        for t in &plan.tables {
            sqlx::query(
                "INSERT INTO sync_tables (table_name, last_full_at) VALUES ($1, now())
                 ON CONFLICT (table_name) DO UPDATE SET last_full_at = now()",
            )
            .bind(t)
            .execute(record)
            .await
            .map_err(SyncError::db("record the sync"))?;
        }
        lease.finish(RunState::Succeeded, None).await?;
        Ok(())
    }
}

/// Splits each table into keyset ranges of `chunk_size * pages_per_chunk` rows, found in one
/// pass over the key, and enqueues a chunk job per range.
async fn plan(
    ctx: &JobContext,
    target: &super::Target,
    tables: &[Table],
) -> Result<FullCheckpoint, JobError> {
    let config = &ctx.deps.config.sync;
    let rows_per_chunk = (config.chunk_size * config.pages_per_chunk) as i64;
    let mut jobs = Vec::new();
    let mut total = 0;
    for table in tables {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            table.quoted
        )))
        .fetch_one(&target.app)
        .await
        .map_err(SyncError::db("count rows"))?;
        total += count;
        let keys_text: Vec<String> = table
            .key
            .iter()
            .map(|c| format!("{}::text", c.quoted))
            .collect();
        let sql = format!(
            "SELECT {k} FROM (SELECT {keys}, row_number() OVER (ORDER BY {keys}) AS rn FROM {t}) s
             WHERE rn % $1 = 0 ORDER BY rn",
            k = keys_text.join(", "),
            keys = table.key_list(),
            t = table.quoted
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(rows_per_chunk)
            .fetch_all(&target.app)
            .await
            .map_err(SyncError::db("plan chunks"))?;
        let bounds: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                (0..table.key.len())
                    .map(|i| sqlx::Row::try_get::<String, _>(r, i))
                    .collect()
            })
            .collect::<Result<_, _>>()
            .map_err(SyncError::db("plan chunks"))?;
        let empty = target
            .mongo
            .collection::<bson::Document>(&table.collection)
            .estimated_document_count()
            .await
            .map_err(SyncError::mongo("count documents"))?
            == 0;
        let mut after: Option<Vec<String>> = None;
        for upto in bounds.into_iter().map(Some).chain(std::iter::once(None)) {
            let args = ChunkArgs {
                parent: ctx.id,
                table: table.name.clone(),
                after: after.clone(),
                upto: upto.clone(),
                insert: empty,
            };
            // Planning again after a crash before the checkpoint finds the same chunks.
            let keys = enqueue::Keys {
                idempotency: Some(format!(
                    "sync.full:{}:{}:{}",
                    ctx.id,
                    table.name,
                    jobs.len()
                )),
                ..Default::default()
            };
            jobs.push(
                enqueue::typed::<super::Chunk>(
                    &ctx.deps.registry,
                    &enqueue::Origin::Ferry,
                    &args,
                    keys,
                )
                .permanent()?,
            );
            after = upto;
        }
    }
    let chunks: Vec<Uuid> = enqueue::submit(&ctx.deps.queue, jobs)
        .await
        .map_err(|e| JobError::Retryable(Failure::of(e)))?
        .into_iter()
        .map(|e| e.id)
        .collect();
    tracing::info!(
        tables = tables.len(),
        chunks = chunks.len(),
        rows = total,
        "full sync planned"
    );
    Ok(FullCheckpoint {
        chunks,
        tables: tables.iter().map(|t| t.name.clone()).collect(),
        total,
    })
}
