use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Backoff, JobContext, JobError, Kind, Settings};

/// Fails its first `times` attempts (by panicking, with `panic`), then succeeds; or fails
/// permanently.
pub struct Fail;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailArgs {
    #[serde(default)]
    pub times: u32,
    #[serde(default)]
    pub permanent: bool,
    /// Fail by panicking: how a bug in a kind looks to the worker.
    #[serde(default)]
    pub panic: bool,
}

impl Kind for Fail {
    const NAME: &'static str = "fail";
    type Args = FailArgs;

    fn defaults() -> Settings {
        // Short backoff so deployment checks and tests finish fast.
        Settings {
            max_attempts: 5,
            backoff: Backoff {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(5),
            },
            ..Settings::default()
        }
    }

    async fn run(&self, args: FailArgs, ctx: JobContext) -> Result<(), JobError> {
        if args.permanent {
            return Err(JobError::permanent("fail: permanent failure as requested"));
        }
        if ctx.attempt <= args.times && args.panic {
            panic!("fail: planned panic {} of {}", ctx.attempt, args.times);
        }
        if ctx.attempt <= args.times {
            return Err(JobError::retryable(format!(
                "fail: planned failure {} of {}",
                ctx.attempt, args.times
            )));
        }
        Ok(())
    }
}
