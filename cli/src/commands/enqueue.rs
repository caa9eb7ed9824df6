use std::{io::BufRead, path::PathBuf};

use ferry_queue::{NewJob, Queue, now_us};
use serde::{Deserialize, Serialize};

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
    /// Block until the job ends; exit 0 if it succeeded, 1 otherwise.
    #[arg(long)]
    wait: bool,
    /// JSON lines `{kind, args, key?, at?}` to enqueue (`-` for stdin); all are checked first.
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
}

#[derive(Debug, Serialize)]
struct Enqueued {
    id: uuid::Uuid,
    kind: String,
    queue: String,
    /// False when the idempotency key already named this job.
    created: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let jobs = match &args.file {
        Some(path) => read_lines(ctx, path)?,
        None => {
            let kind = args.kind.clone().unwrap_or_default();
            let json = args.args.clone().unwrap_or_else(|| "{}".into());
            vec![
                prepare(ctx, &kind, &json, args.key.clone(), args.at.as_deref())
                    .map_err(Exit::usage)?,
            ]
        }
    };
    let queue = ctx.queue().await?;
    let mut done = Vec::with_capacity(jobs.len());
    // Jobs go to their kinds' queues; keep each queue's jobs together, in input order.
    let mut by_queue: std::collections::BTreeMap<String, Vec<NewJob>> = Default::default();
    for (name, job) in jobs {
        by_queue.entry(name).or_default().push(job);
    }
    for (name, jobs) in &by_queue {
        let ids = queue.enqueue(name, jobs).await?;
        for (job, (id, created)) in jobs.iter().zip(ids) {
            done.push(Enqueued {
                id,
                kind: job.kind.clone(),
                queue: name.clone(),
                created,
            });
        }
    }
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
        return wait::until_done(ctx, &queue, &d.queue, d.id).await;
    }
    Ok(Code::Ok)
}

fn read_lines(ctx: &Ctx, path: &PathBuf) -> Result<Vec<(String, NewJob)>> {
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
            .map_err(|e| format!("not a JSON object {{kind, args, key?, at?}}: {e}"))
            .and_then(|l| {
                let args = l.args.unwrap_or_else(|| serde_json::json!({})).to_string();
                prepare(ctx, &l.kind, &args, l.key, l.at.as_deref())
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
    key: Option<String>,
    at: Option<&str>,
) -> std::result::Result<(String, NewJob), String> {
    let entry = ctx.registry.get(kind).map_err(|e| e.to_string())?;
    let value: serde_json::Value =
        serde_json::from_str(args).map_err(|e| format!("--args is not valid JSON: {e}"))?;
    if !value.is_object() {
        return Err(format!("--args must be a JSON object, got {value}"));
    }
    entry.validate(args)?;
    if key
        .as_deref()
        .is_some_and(|k| k.is_empty() || k.len() > 200)
    {
        return Err("--key must be 1 to 200 characters".into());
    }
    let settings = entry.settings();
    let mut job = NewJob::new(kind, value.to_string(), settings.max_attempts);
    job.idempotency_key = key;
    job.run_at_us = at.map(parse_at).transpose()?;
    Ok((settings.queue.to_owned(), job))
}

fn parse_at(s: &str) -> std::result::Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    humantime::parse_duration(s)
        .map(|d| now_us() + d.as_micros() as i64)
        .map_err(|_| format!("--at {s:?} is neither an RFC 3339 time nor a delay like 30s"))
}

/// The keys a job may be enqueued with.
#[derive(Debug, Default)]
pub struct Keys {
    /// The same key returns the first job's id (`--key`).
    pub idempotency: Option<String>,
    /// While a job with this key waits, enqueueing again returns it.
    pub coalesce: Option<String>,
}

/// Enqueues one job built by a convenience command, prints its id, and with `wait` follows it
/// to its end.
pub async fn submit<A: Serialize>(
    ctx: &Ctx,
    kind: &str,
    args: &A,
    keys: Keys,
    wait: bool,
) -> Result<Code> {
    let (queue, name, id, created) = enqueue_one(ctx, kind, args, keys).await?;
    if ctx.json {
        crate::output::json(&Enqueued {
            id,
            kind: kind.to_owned(),
            queue: name.to_owned(),
            created,
        });
    } else {
        println!("{id}{}", if created { "" } else { " (an existing job)" });
    }
    if wait {
        return wait::until_done(ctx, &queue, name, id).await;
    }
    Ok(Code::Ok)
}

/// Enqueues one job, printing nothing: the queue client, the queue's name, the job's id and
/// whether it was created (not an existing job with the same key).
pub async fn enqueue_one<A: Serialize>(
    ctx: &Ctx,
    kind: &str,
    args: &A,
    keys: Keys,
) -> Result<(Queue, &'static str, uuid::Uuid, bool)> {
    let entry = ctx
        .registry
        .get(kind)
        .map_err(|e| Exit::usage(e.to_string()))?;
    let mut job = NewJob::new(
        kind,
        serde_json::to_string(args).unwrap_or_default(),
        entry.settings().max_attempts,
    );
    job.idempotency_key = keys.idempotency;
    job.coalesce_key = keys.coalesce;
    let queue = ctx.queue().await?;
    let name = entry.settings().queue;
    let (id, created) = queue.enqueue(name, &[job]).await?[0];
    Ok((queue, name, id, created))
}
