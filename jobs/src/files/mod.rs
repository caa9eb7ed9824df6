//! files: bucket-to-bucket migration between S3-compatible stores, with URL rewrite.
//!
//! `files.migrate` lists the source in key order (checkpoint: the last key below which every
//! object is done), copies `files.transfers` objects at once (see [`copy`]), records each in
//! the ledger ([`ledger`]), then rewrites URL columns in chunks keeping the old values
//! ([`rewrite`]) and checks every rewritten URL names an object at the destination
//! ([`reach`]). Every step is idempotent: a rerun copies nothing that is already there.

pub mod copy;
pub mod ledger;
mod listing;
pub mod overlap;
pub mod plan;
pub mod reach;
pub mod rewrite;
mod side;

use std::{collections::BTreeMap, time::Duration};

use ferry_record::{Lease, Progress, RunState};
use futures::{FutureExt, StreamExt, future::FusedFuture, stream::FuturesUnordered};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;

pub use side::Side;

use crate::{CheckError, JobContext, JobError, Kind, Settings};

pub const QUEUE: &str = "files";

/// Objects listed, looked up in the ledger and matched with the destination at a time.
const BATCH: usize = 1000;

/// `files.migrate`: copy every object under `from` to `to`, then rewrite URLs.
pub struct Migrate;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateArgs {
    /// `STORE[:PREFIX]`: a `[stores]` name and a prefix inside it.
    pub from: String,
    pub to: String,
    /// `TABLE.COLUMN` or `SCHEMA.TABLE.COLUMN` in the application database.
    #[serde(default)]
    pub rewrite: Vec<String>,
    /// Objects copied at once (default `files.transfers`).
    #[serde(default)]
    pub transfers: Option<usize>,
    /// Also fetch every rewritten URL over HTTP (the destination's public_url is served).
    #[serde(default)]
    pub check_http: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Copy,
    Rewrite,
    Check,
    Done,
}

/// Where a run is, and what it did so far: the summary `--json` prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub phase: Phase,
    /// Every object at or before this key is done.
    pub marker: Option<String>,
    pub objects: u64,
    pub total_objects: u64,
    pub total_bytes: u64,
    pub copied: u64,
    pub skipped: u64,
    /// Deleted at the source after they were listed.
    pub gone: u64,
    /// Bytes copied (skipped objects not counted).
    pub bytes: u64,
    /// Per rewritten column: the last key done (JSON), once started.
    pub rewrite_after: BTreeMap<String, Value>,
    /// Columns finished.
    pub rewrite_done: Vec<String>,
    pub rewritten: u64,
    pub reach: reach::Report,
}

impl Checkpoint {
    fn progress(&self) -> Progress {
        Progress {
            done: self.objects as i64,
            total: Some(self.total_objects as i64),
            bytes_done: self.bytes as i64,
            bytes_total: Some(self.total_bytes as i64),
        }
    }

    /// The summary scripts read (`ferry files migrate --wait --json`).
    pub fn summary(&self) -> Value {
        serde_json::json!({
            "phase": self.phase,
            "objects": self.objects,
            "copied": self.copied,
            "skipped": self.skipped,
            "gone": self.gone,
            "bytes": self.bytes,
            "rewritten": self.rewritten,
            "checked": self.reach.checked,
            "unreachable": self.reach.unreachable,
            "unreachable_sample": self.reach.sample,
        })
    }
}

impl Kind for Migrate {
    const NAME: &'static str = "files.migrate";
    type Args = MigrateArgs;

    fn defaults() -> Settings {
        Settings {
            queue: QUEUE.into(),
            max_attempts: 5,
            timeout: Duration::from_secs(24 * 3600),
            concurrency: Some(2),
            ..Settings::default()
        }
    }

    fn check(args: &MigrateArgs, config: &ferry_config::Config) -> Result<(), CheckError> {
        overlap::check(config, args).map_err(Into::into)
    }

    async fn run(&self, args: MigrateArgs, ctx: JobContext) -> Result<(), JobError> {
        let config = ctx.deps.config.clone();
        let plan = plan::Plan::open(&config, &args)?;
        let pool = ctx.deps.record.pool().clone();
        let columns = plan.columns(&pool).await?;
        let lease = ctx.open_run().await?;
        let mut cp: Checkpoint = lease.checkpoint()?.unwrap_or_default();
        let result = migrate(&ctx, &plan, &columns, &pool, &lease, &mut cp).await;
        match result {
            Ok(()) => {
                lease.finish(RunState::Succeeded, None).await?;
                Ok(())
            }
            Err(e) => {
                // What was done stays recorded, so the retry resumes after it.
                lease.save(&cp, cp.progress()).await?;
                if matches!(e, JobError::Permanent(_)) {
                    lease.finish(RunState::Failed, Some(&e.to_string())).await?;
                }
                Err(e)
            }
        }
    }
}

async fn migrate(
    ctx: &JobContext,
    plan: &plan::Plan,
    columns: &[rewrite::Column],
    pool: &PgPool,
    lease: &Lease,
    cp: &mut Checkpoint,
) -> Result<(), JobError> {
    if cp.phase == Phase::Copy {
        copy_all(ctx, plan, pool, lease, cp).await?;
        cp.phase = Phase::Rewrite;
        lease.save(cp, cp.progress()).await?;
    }
    if cp.phase == Phase::Rewrite {
        let (from, to) = plan.url_prefixes(!columns.is_empty())?;
        for column in columns {
            let target = column.target();
            if cp.rewrite_done.contains(&target) {
                continue;
            }
            loop {
                if let Some(stop) = ctx.should_stop() {
                    return Err(stop);
                }
                let after = cp.rewrite_after.get(&target);
                let (rows, last) = column
                    .chunk(pool, lease.id(), &from, &to, after, plan.rewrite_chunk)
                    .await?;
                cp.rewritten += rows;
                match last {
                    Some(last) => {
                        cp.rewrite_after.insert(target.clone(), last);
                    }
                    None => {
                        cp.rewrite_done.push(target.clone());
                        lease.save(cp, cp.progress()).await?;
                        break;
                    }
                }
                lease.save(cp, cp.progress()).await?;
            }
        }
        cp.phase = Phase::Check;
        lease.save(cp, cp.progress()).await?;
    }
    if cp.phase == Phase::Check {
        cp.reach =
            reach::check(pool, lease.id(), &plan.to, plan.transfers, plan.check_http).await?;
        cp.phase = Phase::Done;
        lease.save(cp, cp.progress()).await?;
    }
    if cp.reach.unreachable > 0 {
        return Err(JobError::permanent(format!(
            "{} of {} rewritten URLs name no object at {} (e.g. {}); fix the objects and \
             rerun, or put the old URLs back with `ferry files rollback {}`",
            cp.reach.unreachable,
            cp.reach.checked,
            plan.to.name,
            cp.reach.sample.first().map(String::as_str).unwrap_or(""),
            lease.id()
        )));
    }
    tracing::info!(
        copied = cp.copied,
        skipped = cp.skipped,
        bytes = cp.bytes,
        rewritten = cp.rewritten,
        "files migrated"
    );
    Ok(())
}

/// Copies every object after the checkpoint's marker, `transfers` at a time. The marker only
/// moves past an object once it and every object before it are done, so a resumed run lists
/// from there; objects done beyond it are found identical in the ledger and skipped.
async fn copy_all(
    ctx: &JobContext,
    plan: &plan::Plan,
    pool: &PgPool,
    lease: &Lease,
    cp: &mut Checkpoint,
) -> Result<(), JobError> {
    let pair = plan.pair();
    let copier = copy::Copy {
        pool,
        pair: &pair,
        from: &plan.from,
        to: &plan.to,
        sizes: plan.sizes,
        run_id: lease.id(),
    };
    let mut batches =
        listing::Batches::new(pool, &pair, &plan.from, &plan.to, cp.marker.as_deref());
    let mut ready = std::collections::VecDeque::new();
    let mut running = FuturesUnordered::new();
    // Finished objects beyond the marker, by listing position, until the gap before them closes.
    let mut finished: BTreeMap<u64, String> = BTreeMap::new();
    let mut next_seq = 0u64;
    let mut low = 0u64;
    let mut listed_all = false;
    // Saving also proves the run alive while one large object takes long.
    let mut save = tokio::time::interval(Duration::from_secs(1));
    // The totals for progress: a resumed run kept them in its checkpoint; a listing that ends
    // within the first batch gives them; else a listing pass of their own runs while copying.
    // That pass costs the source a second listing, so a small bucket does without it.
    let fresh = cp.total_objects == 0 && cp.marker.is_none();
    let mut count = std::pin::pin!(futures::future::Fuse::terminated());
    loop {
        while running.len() < plan.transfers {
            if ready.is_empty() && !listed_all {
                let mut batch: Vec<(u64, listing::Pending)> = batches
                    .next(BATCH)
                    .await?
                    .into_iter()
                    .zip(next_seq..)
                    .map(|(p, seq)| (seq, p))
                    .collect();
                listed_all = batch.is_empty();
                if fresh && next_seq == 0 {
                    if batches.ended() {
                        cp.total_objects = batch.len() as u64;
                        cp.total_bytes = batch.iter().map(|(_, p)| p.object.size).sum();
                    } else {
                        count.set(plan.count_objects().fuse());
                    }
                }
                next_seq += batch.len() as u64;
                // Largest first, so the run does not end waiting on one big object while
                // the other transfers idle; the marker still follows listing order.
                batch.sort_by_key(|(_, p)| std::cmp::Reverse(p.object.size));
                ready.extend(batch);
            }
            let Some((seq, pending)) = ready.pop_front() else {
                break;
            };
            let copier = &copier;
            running.push(async move {
                let key = pending.object.key.clone();
                (seq, key, copier.one(pending).await)
            });
        }
        let next = tokio::select! {
            next = running.next() => next,
            _ = save.tick() => {
                lease.save(cp, cp.progress()).await?;
                continue;
            }
            counted = &mut count => {
                (cp.total_objects, cp.total_bytes) = counted?;
                continue;
            }
            stop = ctx.stopped() => {
                // Copies in flight are dropped; an open upload is in the ledger and the
                // next attempt aborts it.
                return Err(stop);
            }
        };
        let Some((seq, key, outcome)) = next else {
            break;
        };
        match outcome? {
            copy::Outcome::Copied { bytes } => {
                cp.copied += 1;
                cp.bytes += bytes;
            }
            copy::Outcome::Skipped => cp.skipped += 1,
            copy::Outcome::Gone => cp.gone += 1,
        }
        cp.objects += 1;
        finished.insert(seq, key);
        while let Some(key) = finished.remove(&low) {
            cp.marker = Some(key);
            low += 1;
        }
    }
    if !count.is_terminated() {
        (cp.total_objects, cp.total_bytes) = count.await?;
    }
    (cp.copied, cp.bytes, cp.skipped) = ledger::tally(pool, lease.id()).await?;
    cp.objects = cp.copied + cp.skipped + cp.gone;
    cp.total_objects = cp.total_objects.max(cp.objects);
    lease.save(cp, cp.progress()).await?;
    Ok(())
}
