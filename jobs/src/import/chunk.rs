use std::sync::Arc;

use bson::{Bson, Document};
use ferry_record::{Progress, RunState};
use mongodb::Cursor;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    CollectionPlan, QUEUE,
    read::{self, Range},
    rows::Converted,
    write::{Tally, Writer},
};
use crate::{Backoff, JobContext, JobError, Kind, Settings, sync::SyncError};

/// A converted batch and the `_id` of its last document.
type Batch = Result<(Vec<Converted>, Bson), SyncError>;

/// Reads and converts batches on a task of its own, at most one ahead of the writer; ends
/// with the cursor, or when the receiver is dropped (the chunk stopped or failed).
fn read_ahead(
    mut cursor: Cursor<Document>,
    plans: Arc<Vec<CollectionPlan>>,
    collection: String,
    batch_size: usize,
) -> mpsc::Receiver<Batch> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let Some(plan) = plans.iter().find(|p| p.name == collection) else {
            return;
        };
        loop {
            let docs = match read::next_batch(&mut cursor, batch_size).await {
                Ok(d) => d,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let Some(last) = docs.last().and_then(|d| d.get("_id")).cloned() else {
                return;
            };
            let full = docs.len() == batch_size;
            let batch = docs.into_iter().map(|d| Converted::new(plan, d)).collect();
            if tx.send(Ok((batch, last))).await.is_err() || !full {
                return;
            }
        }
    });
    rx
}

/// One `_id` range of one collection, written batch by batch with a checkpoint after each.
pub struct Chunk;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkArgs {
    /// The `import.run` this chunk reports to.
    pub parent: Uuid,
    pub collection: String,
    /// Documents with `_id` > `after` (canonical extended JSON), or from the start.
    pub after: Option<serde_json::Value>,
    /// Documents with `_id` <= `upto`, or to the end.
    pub upto: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChunkCheckpoint {
    pub after: Option<serde_json::Value>,
    pub tally: Tally,
}

impl Kind for Chunk {
    const NAME: &'static str = "import.chunk";
    type Args = ChunkArgs;

    fn defaults() -> Settings {
        Settings {
            queue: QUEUE.into(),
            max_attempts: 8,
            backoff: Backoff {
                base: std::time::Duration::from_secs(2),
                cap: std::time::Duration::from_secs(300),
            },
            // A batch per running chunk is in memory: few enough that a worker stays flat.
            concurrency: Some(4),
            ..Settings::default()
        }
    }

    async fn run(&self, args: ChunkArgs, ctx: JobContext) -> Result<(), JobError> {
        let target = crate::sync::target(&ctx).await?;
        let config = &ctx.deps.config;
        let plans = super::recent_plan(&target, config).await?;
        let plan = super::select(&plans, std::slice::from_ref(&args.collection))?[0];
        let lease = ctx.open_run().await?;
        let mut at = lease
            .checkpoint::<ChunkCheckpoint>()?
            .unwrap_or(ChunkCheckpoint {
                after: args.after.clone(),
                ..ChunkCheckpoint::default()
            });
        let range = Range {
            after: at.after.as_ref().map(read::id_from_json).transpose()?,
            upto: args.upto.as_ref().map(read::id_from_json).transpose()?,
        };
        let batch_size = config.import.batch_size;
        let cursor = read::open(&target.mongo, &plan.name, &range, batch_size).await?;
        // Reading and converting the next batch overlaps writing this one: the source and
        // Postgres work at once instead of taking turns. One batch ahead keeps memory flat.
        let mut batches = read_ahead(cursor, plans.clone(), args.collection.clone(), batch_size);
        let writer = Writer {
            target: &target,
            record: ctx.deps.record.pool(),
            plans: &plans,
            plan,
            run: Some(args.parent),
            dry_run: false,
            copy: true,
        };
        loop {
            if let Some(stop) = ctx.should_stop() {
                lease.finish(RunState::Interrupted, None).await?;
                return Err(stop);
            }
            let Some(next) = batches.recv().await else {
                break;
            };
            let (batch, last) = next?;
            let n = batch.len();
            let tally = writer.write(batch).await?;
            at.tally.add(&tally);
            at.after = Some(read::id_to_json(&last));
            let progress = Progress {
                done: at.tally.read,
                ..Progress::default()
            };
            lease
                .save_and_report(&at, progress, args.parent, n as i64, 0)
                .await?;
        }
        lease.finish(RunState::Succeeded, None).await?;
        Ok(())
    }
}
