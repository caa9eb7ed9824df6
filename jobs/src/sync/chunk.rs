use ferry_record::{Progress, RunState};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    QUEUE,
    mirror::Mirror,
    page::{self, Range},
    settle,
};
use crate::{Backoff, JobContext, JobError, Kind, Settings};

/// One keyset range of one table, written page by page with a checkpoint after each page.
pub struct Chunk;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkArgs {
    /// The `sync.full` run this chunk reports to.
    pub parent: Uuid,
    pub table: String,
    /// Rows with key > `after` (text form), or from the start.
    pub after: Option<Vec<String>>,
    /// Rows with key <= `upto`, or to the end.
    pub upto: Option<Vec<String>>,
    /// The collection was empty when the run was planned: insert instead of upsert.
    #[serde(default)]
    pub insert: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChunkCheckpoint {
    pub after: Option<Vec<String>>,
    pub rows: i64,
    pub bytes: i64,
}

impl Kind for Chunk {
    const NAME: &'static str = "sync.chunk";
    type Args = ChunkArgs;

    fn defaults() -> Settings {
        Settings {
            queue: QUEUE.into(),
            max_attempts: 8,
            backoff: Backoff {
                base: std::time::Duration::from_secs(2),
                cap: std::time::Duration::from_secs(300),
            },
            // Twice the default sync.max_writers: enough to keep the writers busy, few
            // enough that a worker's memory (a page per running chunk) stays flat however
            // large the table.
            concurrency: Some(8),
            ..Settings::default()
        }
    }

    async fn run(&self, args: ChunkArgs, ctx: JobContext) -> Result<(), JobError> {
        let target = super::target(&ctx).await?;
        let config = &ctx.deps.config;
        let table = target.recent_catalog(config).await?.table(&args.table)?;
        let lease = ctx.open_run().await?;
        let resumed = lease.checkpoint::<ChunkCheckpoint>()?;
        // A resumed chunk may meet documents it wrote before its last checkpoint: upsert.
        let insert = args.insert && resumed.is_none();
        // Rows the attempts before this one wrote (0 on a first attempt), so the closing log
        // line shows what this attempt did itself: operators (and the recovery test) can see
        // a resumed chunk read only what remained.
        let resumed_at = resumed.as_ref().map_or(0, |c| c.rows);
        let mut at = resumed.unwrap_or(ChunkCheckpoint {
            after: args.after.clone(),
            ..ChunkCheckpoint::default()
        });
        let mirror = Mirror::for_job(&target, &ctx);
        loop {
            if let Some(stop) = ctx.should_stop() {
                lease.finish(RunState::Interrupted, None).await?;
                return Err(stop);
            }
            let range = Range {
                after: at.after.as_deref(),
                upto: args.upto.as_deref(),
            };
            let page = page::read(
                &target.app,
                &table,
                config.sync.timestamps,
                range,
                config.sync.chunk_size,
            )
            .await?;
            if page.docs.is_empty() {
                break;
            }
            if page.inexact > 0 {
                tracing::warn!(table = %table.name, values = page.inexact, "numerics beyond Decimal128's 34 digits stored as strings");
            }
            let moved = settle::page(
                &target.app,
                &mirror,
                &table,
                config.sync.timestamps,
                &page,
                insert,
            )
            .await?;
            if moved > 0 {
                tracing::info!(table = %table.name, rows = moved, "rows changed while their page was written; rewritten");
            }
            let rows = page.docs.len() as i64;
            at.after = page.last();
            at.rows += rows;
            at.bytes += page.bytes as i64;
            let progress = Progress {
                done: at.rows,
                bytes_done: at.bytes,
                ..Progress::default()
            };
            lease
                .save_and_report(&at, progress, args.parent, rows, page.bytes as i64)
                .await?;
            if (rows as usize) < config.sync.chunk_size {
                break;
            }
        }
        lease.finish(RunState::Succeeded, None).await?;
        tracing::info!(
            job = %ctx.id,
            attempt = ctx.attempt,
            table = %table.name,
            rows = at.rows,
            resumed_at,
            read = at.rows - resumed_at,
            "chunk done"
        );
        Ok(())
    }
}
