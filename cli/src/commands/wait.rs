//! `--wait`: follow a job until it ends, with a progress bar on a terminal.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use ferry_queue::{JobState, Queue};
use ferry_record::{Record, RunRow};
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use crate::exit::{Code, Exit, Result};

/// How often the job's state is read from Redis: a cheap read, so a short job's end is seen
/// within a few milliseconds.
const STATE_EVERY: Duration = Duration::from_millis(20);
/// How often progress is read from the run record in Postgres.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Follows job `id` until it ends. Progress comes from `record`'s run when the job keeps one;
/// without Postgres only the job's state is shown. Returns the exit code and the run as it
/// ended (read after the job ended, so it is final).
pub async fn until_done(
    record: Option<&Record>,
    queue: &Queue,
    name: &str,
    id: Uuid,
) -> Result<(Code, Option<RunRow>)> {
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut last_line = String::new();
    let mut run: Option<RunRow> = None;
    let mut progress_read: Option<Instant> = None;
    loop {
        let job = queue.job(name, id).await?.ok_or_else(|| {
            Exit::failed(format!(
                "job {id} is gone from Redis; see `ferry jobs show {id}`"
            ))
        })?;
        let finished = job.state.is_final();
        if let Some(r) = record
            && (finished || progress_read.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY))
        {
            run = r.run(id).await.ok().flatten();
            progress_read = Some(Instant::now());
        }
        let line = match &run {
            Some(run) => format!("{} {}/{}", job.state, run.done, run.total.unwrap_or(0)),
            None => format!(
                "{} (attempt {} of {})",
                job.state, job.attempts, job.max_attempts
            ),
        };
        match &bar {
            Some(bar) => {
                bar.set_message(job.state.to_string());
                if let Some(run) = &run {
                    bar.set_length(run.total.unwrap_or(0).max(0) as u64);
                    bar.set_position(run.done.max(0) as u64);
                }
                bar.tick();
            }
            None if line != last_line => eprintln!("{line}"),
            None => {}
        }
        last_line = line;
        if finished {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let code = match job.state {
                JobState::Succeeded => {
                    eprintln!("job {id} succeeded");
                    Code::Ok
                }
                state => {
                    eprintln!("job {id} {state}: {}", job.last_error.unwrap_or_default());
                    Code::Failed
                }
            };
            return Ok((code, run));
        }
        tokio::time::sleep(STATE_EVERY).await;
    }
}
