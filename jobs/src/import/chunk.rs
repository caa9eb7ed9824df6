use ferry_record::{Progress, RunState};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    QUEUE,
    read::{self, Range},
    rows::Converted,
    write::{Tally, Writer},
};
use crate::{Backoff, JobContext, JobError, Kind, Settings};

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
        let mut cursor = read::open(&target.mongo, &plan.name, &range, batch_size).await?;
        let writer = Writer {
            target: &target,
            record: ctx.deps.record.pool(),
            plans: &plans,
            plan,
            run: Some(args.parent),
            dry_run: false,
        };
        loop {
            if let Some(stop) = ctx.should_stop() {
                lease.finish(RunState::Interrupted, None).await?;
                return Err(stop);
            }
            let docs = read::next_batch(&mut cursor, batch_size).await?;
            let Some(last) = docs.last().and_then(|d| d.get("_id")).cloned() else {
                break;
            };
            let n = docs.len();
            let batch: Vec<Converted> = docs.into_iter().map(|d| Converted::new(plan, d)).collect();
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
            if n < batch_size {
                break;
            }
        }
        lease.finish(RunState::Succeeded, None).await?;
        Ok(())
    }
}
