//! `--wait`: follow a job until it ends, with a progress bar on a terminal.

use std::{io::IsTerminal, time::Duration};

use ferry_queue::{JobState, Queue};
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use crate::{
    app::Ctx,
    exit::{Code, Exit, Result},
};

pub async fn until_done(ctx: &Ctx, queue: &Queue, name: &str, id: Uuid) -> Result<Code> {
    // Progress comes from the run record when the job keeps one; Postgres is optional here.
    let record = ctx.record().await.ok();
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
    loop {
        let job = queue.job(name, id).await?.ok_or_else(|| {
            Exit::failed(format!(
                "job {id} is gone from Redis; see `ferry jobs show {id}`"
            ))
        })?;
        let run = match &record {
            Some(r) => r.run(id).await.ok().flatten(),
            None => None,
        };
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
        if job.state.is_final() {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Ok(match job.state {
                JobState::Succeeded => {
                    eprintln!("job {id} succeeded");
                    Code::Ok
                }
                state => {
                    eprintln!("job {id} {state}: {}", job.last_error.unwrap_or_default());
                    Code::Failed
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
