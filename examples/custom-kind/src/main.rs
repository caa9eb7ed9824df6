//! A job kind of your own, in Rust, run by ferry's worker beside the built-in kinds.
//!
//! `custom-kind CONFIG FILE`: registers `example.greet` next to ferry's kinds, starts a worker
//! with `ferry_worker::run_with`, enqueues one greeting and one built-in `noop` through the
//! same enqueue path ferry's own kinds use (so `[kinds."example.greet"]` in CONFIG applies),
//! waits for both to succeed, prints their ids and exits. The greeting lands in FILE. It
//! depends on the job contract (`ferry-contract`) and the worker, not on ferry's kinds.

use std::{path::PathBuf, sync::Arc, time::Duration};

use ferry_config::{Config, Env};
use ferry_contract::{
    CheckError, JobContext, JobError, Kind, Settings,
    enqueue::{self, Keys, Origin},
};
use ferry_queue::{JobState, Queue};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Writes a greeting to a file: the smallest job whose effect can be seen from outside.
struct Greet;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GreetArgs {
    name: String,
    file: PathBuf,
}

impl Kind for Greet {
    // Stored with every queued job: choose it once, never derive it from the type's name.
    const NAME: &'static str = "example.greet";
    type Args = GreetArgs;

    fn defaults() -> Settings {
        Settings {
            queue: "example".into(),
            max_attempts: 3,
            ..Settings::default()
        }
    }

    /// Runs at enqueue: a bad job is refused before it reaches Redis.
    fn check(args: &GreetArgs, _config: &Config) -> Result<(), CheckError> {
        if args.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        Ok(())
    }

    async fn run(&self, args: GreetArgs, ctx: JobContext) -> Result<(), JobError> {
        let text = format!("hello {} from job {}\n", args.name, ctx.id);
        // A full disk or a missing directory may pass: retry with the kind's backoff.
        tokio::fs::write(&args.file, text)
            .await
            .map_err(|e| JobError::retryable_from(format!("write {}", args.file.display()), e))
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut argv = std::env::args().skip(1);
    let (Some(config), Some(file)) = (argv.next(), argv.next()) else {
        return Err("usage: custom-kind CONFIG FILE".into());
    };
    let config = Arc::new(Config::load(config.as_ref(), true, &Env::process())?);

    // ferry's kinds and ours; the worker runs them, and enqueueing checks jobs against the
    // same kinds with config's overrides applied.
    let kinds = || {
        let mut kinds = ferry_worker::builtin(&config);
        kinds.register(Greet);
        kinds
    };
    let checked = kinds().configured()?;

    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(ferry_worker::run_with(
        config.clone(),
        kinds(),
        ferry_worker::Options::default(),
        shutdown.clone(),
    ));

    let queue = Queue::for_config(&config).await?;
    let greet = GreetArgs {
        name: "ferry".into(),
        file: file.into(),
    };
    let jobs = vec![
        enqueue::typed::<Greet>(&checked, &Origin::Cli, &greet, Keys::default())?,
        // A built-in kind by name: this program knows ferry's kinds only through the registry.
        enqueue::prepare(&checked, &Origin::Cli, "noop", "{}", Keys::default(), None)?,
    ];
    let enqueued = enqueue::submit(&queue, jobs).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for job in &enqueued {
        loop {
            if tokio::time::Instant::now() > deadline {
                return Err(
                    format!("{} {} did not finish within a minute", job.kind, job.id).into(),
                );
            }
            let state = queue.job(&job.queue, job.id).await?.map(|j| j.state);
            match state {
                Some(JobState::Succeeded) => break,
                Some(s) if s.is_final() => return Err(format!("{} ended {s}", job.kind).into()),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        println!("{} {} succeeded on queue {}", job.kind, job.id, job.queue);
    }
    shutdown.cancel();
    worker.await??;
    Ok(())
}
