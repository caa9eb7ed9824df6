use std::{collections::BTreeMap, time::Duration};

use ferry_queue::JobState;
use ferry_record::{Progress, RunState};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ChunkArgs, QUEUE, chunk::ChunkCheckpoint, read, write::Tally};
use crate::{Failure, JobContext, JobError, Kind, ResultExt, Settings, enqueue, sync::SyncError};

/// Imports the configured collections in foreign-key order, each fanned out as chunks.
pub struct Run;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    /// Collection names; empty: every configured collection.
    #[serde(default)]
    pub collections: Vec<String>,
}

/// Where the run stands: the collection being imported, its chunks, and what is done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunCheckpoint {
    /// Collections in import order.
    pub order: Vec<String>,
    /// Index into `order` of the collection being imported.
    pub stage: usize,
    /// Its chunk jobs, once enqueued.
    pub chunks: Vec<Uuid>,
    /// Outcome per finished collection.
    pub done: BTreeMap<String, Tally>,
    pub total: i64,
}

impl Kind for Run {
    const NAME: &'static str = "import.run";
    type Args = RunArgs;

    fn defaults() -> Settings {
        Settings {
            queue: QUEUE.into(),
            max_attempts: 5,
            timeout: Duration::from_secs(24 * 3600),
            ..Settings::default()
        }
    }

    async fn run(&self, args: RunArgs, ctx: JobContext) -> Result<(), JobError> {
        let target = crate::sync::target(&ctx).await?;
        let config = &ctx.deps.config;
        let lease = ctx.open_run().await?;
        // Planning refuses bad config before anything is written. Its chunks reuse this plan
        // when they run in this process soon after: sampling costs a read of the collection
        // on a server without range scans (the MongoDB stand-in).
        let plans = match super::recent_plan(&target, config).await {
            Ok(p) => p,
            Err(e) => {
                let message = e.to_string();
                lease.finish(RunState::Failed, Some(&message)).await?;
                return Err(e.into());
            }
        };
        let mut cp = match lease.checkpoint::<RunCheckpoint>()? {
            Some(cp) => cp,
            None => {
                let selected = super::select(&plans, &args.collections)?;
                let mut total = 0;
                for p in &selected {
                    total += target
                        .mongo
                        .collection::<bson::Document>(&p.name)
                        .estimated_document_count()
                        .await
                        .map_err(SyncError::mongo("count documents"))?
                        as i64;
                }
                let cp = RunCheckpoint {
                    order: selected.iter().map(|p| p.name.clone()).collect(),
                    total,
                    ..RunCheckpoint::default()
                };
                lease.save(&cp, progress(&cp, 0)).await?;
                cp
            }
        };
        while cp.stage < cp.order.len() {
            let collection = cp.order[cp.stage].clone();
            if cp.chunks.is_empty() {
                cp.chunks = fan_out(&ctx, &target, &collection).await?;
                let done = done_so_far(&cp);
                lease.save(&cp, progress(&cp, done)).await?;
            }
            follow(&ctx, &lease, &cp.chunks).await?;
            let mut tally = Tally::default();
            for id in &cp.chunks {
                let row = ctx.deps.record.run(*id).await?;
                let chunk: Option<ChunkCheckpoint> = row
                    .and_then(|r| r.checkpoint)
                    .and_then(|c| serde_json::from_value(c).ok());
                if let Some(c) = chunk {
                    tally.add(&c.tally);
                }
            }
            tracing::info!(collection, ?tally, "collection imported");
            cp.done.insert(collection, tally);
            cp.stage += 1;
            cp.chunks.clear();
            let done = done_so_far(&cp);
            lease.save(&cp, progress(&cp, done)).await?;
        }
        lease.finish(RunState::Succeeded, None).await?;
        Ok(())
    }
}

fn done_so_far(cp: &RunCheckpoint) -> i64 {
    cp.done.values().map(|t| t.read).sum()
}

fn progress(cp: &RunCheckpoint, done: i64) -> Progress {
    Progress {
        done,
        total: Some(cp.total),
        ..Progress::default()
    }
}

/// Enqueues the chunks of one collection; planning again after a crash before the checkpoint
/// finds the same jobs by their keys.
async fn fan_out(
    ctx: &JobContext,
    target: &crate::sync::Target,
    collection: &str,
) -> Result<Vec<Uuid>, JobError> {
    let per_chunk = ctx.deps.config.import.docs_per_chunk;
    let estimate = target
        .mongo
        .collection::<bson::Document>(collection)
        .estimated_document_count()
        .await
        .map_err(SyncError::mongo("count documents"))?;
    // One chunk with open ends covers the collection however wrong the estimate is; only
    // more chunks need the pass over every id that finds their bounds.
    let (bounds, docs) = if estimate <= per_chunk as u64 {
        (Vec::new(), estimate as i64)
    } else {
        read::bounds(&target.mongo, collection, per_chunk).await?
    };
    let mut jobs = Vec::new();
    let mut after: Option<serde_json::Value> = None;
    let bounds = bounds.iter().map(|b| Some(read::id_to_json(b)));
    for upto in bounds.chain(std::iter::once(None)) {
        let args = ChunkArgs {
            parent: ctx.id,
            collection: collection.to_owned(),
            after: after.clone(),
            upto: upto.clone(),
        };
        let keys = enqueue::Keys {
            idempotency: Some(format!("import.run:{}:{collection}:{}", ctx.id, jobs.len())),
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
    let ids: Vec<Uuid> = enqueue::submit(&ctx.deps.queue, jobs)
        .await
        .map_err(|e| JobError::Retryable(Failure::of(e)))?
        .into_iter()
        .map(|e| e.id)
        .collect();
    tracing::info!(collection, docs, chunks = ids.len(), "import planned");
    Ok(ids)
}

/// Waits until every chunk succeeded; a dead or cancelled chunk fails the run.
async fn follow(
    ctx: &JobContext,
    lease: &ferry_record::Lease,
    chunks: &[Uuid],
) -> Result<(), JobError> {
    let chunk_queue = ctx.deps.queue_of::<super::Chunk>();
    loop {
        let mut open = 0;
        for id in chunks {
            let job = ctx
                .deps
                .queue
                .job(&chunk_queue, *id)
                .await
                .map_err(|e| JobError::Retryable(Failure::of(e)))?;
            match job {
                Some(job) if job.state == JobState::Succeeded => {}
                Some(job) if job.state == JobState::Dead || job.state == JobState::Cancelled => {
                    let message = format!(
                        "chunk {id} of this import is {}: {}; fix the cause and `ferry jobs retry {id}`, then re-run the import (it is idempotent)",
                        job.state,
                        job.last_error.unwrap_or_default()
                    );
                    lease.finish(RunState::Failed, Some(&message)).await?;
                    return Err(JobError::permanent(message));
                }
                Some(_) => open += 1,
                None => {
                    let message = format!(
                        "chunk {id} is gone from Redis; re-run the import (writes are idempotent)"
                    );
                    lease.finish(RunState::Failed, Some(&message)).await?;
                    return Err(JobError::permanent(message));
                }
            }
        }
        if open == 0 {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            reason = ctx.stopped() => {
                if reason == JobError::Cancelled {
                    for id in chunks {
                        let _ = ctx.deps.queue.cancel(&chunk_queue, *id).await;
                    }
                    lease.finish(RunState::Cancelled, None).await?;
                }
                return Err(reason);
            }
        }
        lease.heartbeat().await?;
    }
}
