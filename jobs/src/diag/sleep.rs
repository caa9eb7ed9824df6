use std::time::Duration;

use ferry_record::{Progress, RunState};
use serde::{Deserialize, Serialize};

use super::trace::Trace;
use crate::{JobContext, JobError, Kind, Settings};

/// Sleeps `ms` in total. With `steps` > 1 it is a long job in miniature: it opens a run,
/// checkpoints after each step, reports progress, stops early on cancel or shutdown, and a
/// retry resumes after the last finished step. With `trace` each attempt writes down its
/// work (see [`Trace`]).
pub struct Sleep;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    pub ms: u64,
    #[serde(default = "one")]
    pub steps: u32,
    #[serde(default)]
    pub trace: bool,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SleepCheckpoint {
    pub steps_done: u32,
}

impl Kind for Sleep {
    const NAME: &'static str = "sleep";
    type Args = SleepArgs;

    fn defaults() -> Settings {
        Settings::default()
    }

    async fn run(&self, args: SleepArgs, ctx: JobContext) -> Result<(), JobError> {
        if args.steps <= 1 {
            let trace = Trace::start(&ctx, args.trace, 0).await?;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(args.ms)) => {}
                _ = ctx.cancelled() => return Err(JobError::Cancelled),
            };
            trace.step().await?;
            trace.completed().await?;
            return Ok(());
        }
        let lease = ctx.open_run().await?;
        let mut at: SleepCheckpoint = lease.checkpoint()?.unwrap_or_default();
        let trace = Trace::start(&ctx, args.trace, at.steps_done).await?;
        let step = Duration::from_millis(args.ms) / args.steps;
        let progress = |done: u32| Progress {
            done: i64::from(done),
            total: Some(i64::from(args.steps)),
            ..Progress::default()
        };
        while at.steps_done < args.steps {
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                reason = ctx.stopped() => {
                    let state = if reason == JobError::Cancelled { RunState::Cancelled } else { RunState::Interrupted };
                    lease.finish(state, None).await?;
                    return Err(reason);
                }
            }
            trace.step().await?;
            at.steps_done += 1;
            lease.save(&at, progress(at.steps_done)).await?;
        }
        lease.finish(RunState::Succeeded, None).await?;
        trace.completed().await?;
        Ok(())
    }
}
