use std::{io::BufRead, path::PathBuf};

pub use ferry_jobs::enqueue::Keys;
use ferry_jobs::{
    Kind,
    enqueue::{self, Enqueued, Origin, Prepared},
};
use ferry_queue::Queue;
use serde::Deserialize;

use crate::{
    app::Ctx,
    commands::wait,
    exit::{Code, Exit, Result},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Job kind, e.g. noop, sleep, fail.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    kind: Option<String>,
    /// Arguments as a JSON object (default `{}`).
    #[arg(long)]
    args: Option<String>,
    /// Idempotency key: enqueueing the same key again returns the first job's id.
    #[arg(long)]
    key: Option<String>,
    /// Run at: an RFC 3339 time, or a delay such as `30s` or `5m`.
    #[arg(long)]
    at: Option<String>,
    /// high, default or low (default: the kind's `[kinds.NAME] priority`).
    #[arg(long)]
    priority: Option<ferry_queue::Priority>,
    /// Whose job it is, for fair sharing between tenants (default: the argument named by the
    /// kind's `tenant_from`).
    #[arg(long)]
    tenant: Option<String>,
    /// Block until the job ends; exit 0 if it succeeded, 1 otherwise.
    #[arg(long)]
    wait: bool,
    /// JSON lines `{kind, args, key?, at?, priority?, tenant?}` to enqueue (`-` for stdin);
    /// all are checked first.
    #[arg(long)]
    file: Option<PathBuf>,
}

/// One line of `--file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    kind: String,
    #[serde(default)]
    args: Option<serde_json::Value>,
    key: Option<String>,
    at: Option<String>,
    priority: Option<ferry_queue::Priority>,
    tenant: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let jobs = match &args.file {
        Some(path) => read_lines(ctx, path)?,
        None => {
            let kind = args.kind.clone().unwrap_or_default();
            let json = args.args.clone().unwrap_or_else(|| "{}".into());
            let keys = Keys {
                idempotency: args.key.clone(),
                priority: args.priority,
                tenant: args.tenant.clone(),
                ..Keys::default()
            };
            vec![prepare(ctx, &kind, &json, keys, args.at.as_deref()).map_err(Exit::usage)?]
        }
    };
    let queue = ctx.queue().await?;
    let done = enqueue::submit(&queue, jobs).await?;
    if ctx.json {
        if args.file.is_some() {
            crate::output::json(&done);
        } else {
            crate::output::json(&done[0]);
        }
    } else if args.file.is_some() {
        let created = done.iter().filter(|d| d.created).count();
        println!(
            "enqueued {created} jobs ({} already existed by key)",
            done.len() - created
        );
    } else {
        let d = &done[0];
        let note = if d.created {
            ""
        } else {
            " (existing job for this key)"
        };
        println!("{}{note}", d.id);
    }
    if args.wait && args.file.is_none() {
        let d = &done[0];
        return wait::until_done(ctx.record().await.ok().as_ref(), &queue, &d.queue, d.id)
            .await
            .map(|(code, _)| code);
    }
    Ok(Code::Ok)
}

fn read_lines(ctx: &Ctx, path: &PathBuf) -> Result<Vec<Prepared>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| Exit::usage(format!("cannot read {}: {e}", path.display())))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut jobs = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Exit::usage(format!("cannot read {}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Line>(&line)
            .map_err(|e| {
                format!("not a JSON object {{kind, args, key?, at?, priority?, tenant?}}: {e}")
            })
            .and_then(|l| {
                let args = l.args.unwrap_or_else(|| serde_json::json!({})).to_string();
                let keys = Keys {
                    idempotency: l.key,
                    priority: l.priority,
                    tenant: l.tenant,
                    ..Keys::default()
                };
                prepare(ctx, &l.kind, &args, keys, l.at.as_deref())
            });
        match parsed {
            Ok(job) => jobs.push(job),
            Err(e) => problems.push(format!("line {}: {e}", n + 1)),
        }
    }
    if !problems.is_empty() {
        let shown: Vec<_> = problems.iter().take(10).cloned().collect();
        return Err(Exit::usage(format!(
            "{} of the lines are invalid, nothing was enqueued:\n  {}",
            problems.len(),
            shown.join("\n  ")
        )));
    }
    Ok(jobs)
}

/// Validates a job fully before anything is enqueued.
fn prepare(
    ctx: &Ctx,
    kind: &str,
    args: &str,
    keys: Keys,
    at: Option<&str>,
) -> std::result::Result<Prepared, String> {
    let run_at = at
        .map(|at| enqueue::parse_at(at).map_err(|e| format!("--at {e}")))
        .transpose()?;
    enqueue::prepare(&ctx.registry, &Origin::Cli, kind, args, keys, run_at)
        .map_err(|e| e.to_string())
}

/// Enqueues one job built by a convenience command, prints its id, and with `wait` follows it
/// to its end.
pub async fn submit<K: Kind>(ctx: &Ctx, args: &K::Args, keys: Keys, wait: bool) -> Result<Code> {
    let (queue, done) = enqueue_one::<K>(ctx, args, keys).await?;
    if ctx.json {
        crate::output::json(&done);
    } else {
        let note = if done.created {
            ""
        } else {
            " (an existing job)"
        };
        println!("{}{note}", done.id);
    }
    if wait {
        return wait::until_done(
            ctx.record().await.ok().as_ref(),
            &queue,
            &done.queue,
            done.id,
        )
        .await
        .map(|(code, _)| code);
    }
    Ok(Code::Ok)
}

/// Enqueues one job, printing nothing: the queue client and what was enqueued (or the
/// existing job with the same key).
pub async fn enqueue_one<K: Kind>(
    ctx: &Ctx,
    args: &K::Args,
    keys: Keys,
) -> Result<(Queue, Enqueued)> {
    let prepared = enqueue::typed::<K>(&ctx.registry, &Origin::Cli, args, keys)
        .map_err(|e| Exit::usage(e.to_string()))?;
    let queue = ctx.queue().await?;
    let done = enqueue::submit(&queue, vec![prepared]).await?.remove(0);
    Ok((queue, done))
}
