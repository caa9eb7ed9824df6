use std::{collections::HashSet, time::Duration};

use ferry_queue::{
    CancelResult, JobFilter, JobRecord, JobState, NewJob, Queue, RequeueResult, now_us,
};
use ferry_record::{DeadFilter, DeadJob, DeliveryRow, Record};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::{
    app::Ctx,
    exit::{Code, Exit, Result},
    output,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List jobs, newest first: live ones from Redis, dead ones from the durable record.
    Ls {
        #[arg(long)]
        state: Option<JobState>,
        #[arg(long)]
        kind: Option<String>,
        /// Only jobs enqueued (dead: died) within this long, e.g. 1h.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// Only jobs whose last error contains this text.
        #[arg(long)]
        error: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Arguments, attempts, errors, checkpoint and progress of one job.
    Show { id: Uuid },
    /// Re-queue jobs by id, or every dead job matching a filter.
    Retry {
        ids: Vec<Uuid>,
        /// With no ids: re-queue jobs in this state (only `dead`).
        #[arg(long, conflicts_with = "ids")]
        state: Option<JobState>,
        #[arg(long, requires = "state")]
        kind: Option<String>,
        #[arg(long, requires = "state", value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        #[arg(long, requires = "state")]
        error: Option<String>,
        /// Show what would be re-queued; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Most jobs re-queued per second, e.g. `50` or `50/s`.
        #[arg(long, value_parser = parse_rate)]
        rate: Option<f64>,
    },
    /// Cancel a waiting job, or ask a running one to stop.
    Cancel { id: Uuid },
}

/// A job as `jobs ls --json` prints it.
#[derive(Debug, Serialize)]
struct Row {
    id: Uuid,
    kind: String,
    queue: String,
    state: JobState,
    attempts: u32,
    max_attempts: u32,
    args: serde_json::Value,
    last_error: Option<String>,
    enqueued_at: String,
}

impl From<&JobRecord> for Row {
    fn from(j: &JobRecord) -> Self {
        Self {
            id: j.id,
            kind: j.kind.clone(),
            queue: j.queue.clone(),
            state: j.state,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            args: j.args.clone(),
            last_error: j.last_error.clone(),
            enqueued_at: output::time_us(j.enqueued_us),
        }
    }
}

impl From<&DeadJob> for Row {
    fn from(j: &DeadJob) -> Self {
        Self {
            id: j.id,
            kind: j.kind.clone(),
            queue: j.queue.clone(),
            state: JobState::Dead,
            attempts: j.attempts.max(0) as u32,
            max_attempts: j.max_attempts.max(0) as u32,
            args: j.args.clone(),
            last_error: Some(j.last_error.clone()),
            enqueued_at: j.enqueued_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        }
    }
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    match command {
        Command::Ls {
            state,
            kind,
            since,
            error,
            limit,
        } => {
            let since_us = since.map(|d| now_us() - d.as_micros() as i64);
            let filter = JobFilter {
                state,
                kind: kind.clone(),
                since_us,
                error_contains: error.clone(),
                limit,
            };
            let rows = list(ctx, &filter).await?;
            if ctx.json {
                output::json(&rows);
            } else {
                let mut t =
                    output::table(&["id", "kind", "state", "attempts", "enqueued", "last error"]);
                for r in &rows {
                    t.add_row(vec![
                        r.id.to_string(),
                        r.kind.clone(),
                        r.state.to_string(),
                        format!("{}/{}", r.attempts, r.max_attempts),
                        r.enqueued_at.clone(),
                        output::truncate(r.last_error.as_deref().unwrap_or(""), 60),
                    ]);
                }
                println!("{t}");
            }
            Ok(Code::Ok)
        }
        Command::Show { id } => show(ctx, id).await,
        Command::Retry {
            ids,
            state,
            kind,
            since,
            error,
            dry_run,
            rate,
        } => {
            retry(
                ctx,
                ids,
                state,
                DeadFilter {
                    kind,
                    since: since.map(|d| chrono::Utc::now() - d),
                    error_contains: error,
                    include_retried: false,
                    limit: i64::MAX,
                },
                dry_run,
                rate,
            )
            .await
        }
        Command::Cancel { id } => cancel(ctx, id).await,
    }
}

async fn list(ctx: &Ctx, filter: &JobFilter) -> Result<Vec<Row>> {
    let queue = ctx.queue().await?;
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    if filter.state.is_none_or(|s| s == JobState::Dead) {
        // The durable record is the truth for dead jobs; Redis may have lost them.
        let record = ctx.record().await?;
        let dead = record
            .dead_jobs(&DeadFilter {
                kind: filter.kind.clone(),
                since: filter
                    .since_us
                    .and_then(chrono::DateTime::from_timestamp_micros),
                error_contains: filter.error_contains.clone(),
                include_retried: false,
                limit: filter.limit as i64,
            })
            .await?;
        for d in &dead {
            seen.insert(d.id);
            rows.push(Row::from(&d.clone()));
        }
    }
    for name in ctx.queues() {
        for job in queue.list(&name, filter).await? {
            if seen.insert(job.id) {
                rows.push(Row::from(&job));
            }
        }
    }
    rows.sort_by(|a, b| b.enqueued_at.cmp(&a.enqueued_at));
    rows.truncate(filter.limit);
    Ok(rows)
}

async fn show(ctx: &Ctx, id: Uuid) -> Result<Code> {
    let queue = ctx.queue().await?;
    let live = queue.find(&ctx.queues(), id).await?;
    let errors = match &live {
        Some(job) => queue.attempt_errors(&job.queue, id).await?,
        None => Vec::new(),
    };
    let record = ctx.record().await.ok();
    let (dead, run, deliveries) = match &record {
        Some(r) => (
            r.dead_job(id).await?,
            r.run(id).await?,
            r.deliveries(id, 20).await?,
        ),
        None => (None, None, Vec::new()),
    };
    if live.is_none() && dead.is_none() && run.is_none() {
        return Err(Exit::failed(format!(
            "no job {id}: not in Redis (finished jobs are kept for worker.keep_finished) nor in the durable record"
        )));
    }
    if ctx.json {
        output::json(
            &json!({ "job": live, "errors": errors, "dead": dead, "run": run, "deliveries": deliveries }),
        );
        return Ok(Code::Ok);
    }
    if let Some(j) = &live {
        println!(
            "job       {}\nkind      {}\nqueue     {}\nstate     {}{}",
            j.id,
            j.kind,
            j.queue,
            j.state,
            if j.cancel_requested {
                " (cancel requested)"
            } else {
                ""
            }
        );
        println!(
            "attempts  {} of {}\nargs      {}",
            j.attempts, j.max_attempts, j.args
        );
        println!("enqueued  {}", output::time_us(j.enqueued_us));
        if let Some(t) = j.started_us {
            println!("started   {}", output::time_us(t));
        }
        if let Some(t) = j.finished_us {
            println!("finished  {}", output::time_us(t));
        }
        if let Some(w) = &j.worker {
            println!("worker    {w}");
        }
        if let Some(k) = &j.idempotency_key {
            println!("key       {k}");
        }
    }
    if let Some(d) = &dead {
        println!(
            "dead      since {} after {} attempts{}",
            d.died_at,
            d.attempts,
            d.retried_at
                .map(|t| format!(", re-queued {t}"))
                .unwrap_or_default()
        );
        if live.is_none() {
            println!(
                "job       {}\nkind      {}\nargs      {}",
                d.id, d.kind, d.args
            );
        }
    }
    let attempt_errors: Vec<serde_json::Value> = if errors.is_empty() {
        dead.as_ref()
            .and_then(|d| d.errors.as_array().cloned())
            .unwrap_or_default()
    } else {
        errors
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect()
    };
    for e in attempt_errors {
        println!(
            "error     attempt {}: {} ({})",
            e["attempt"],
            e["error"].as_str().unwrap_or(""),
            e["worker"].as_str().unwrap_or("")
        );
    }
    if let Some(r) = &run {
        println!(
            "run       {} {}/{} checkpoint {} (lease epoch {})",
            r.state,
            r.done,
            r.total.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
            r.checkpoint.clone().unwrap_or_default(),
            r.lease_epoch
        );
    }
    if let (Some(record), false) = (&record, deliveries.is_empty()) {
        show_deliveries(record, id, &deliveries).await?;
    }
    Ok(Code::Ok)
}

/// A notify job's messages: counts by state, then the first problems and sends.
async fn show_deliveries(record: &Record, id: Uuid, shown: &[DeliveryRow]) -> Result<()> {
    let counts = record.delivery_counts(id).await?;
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let by_state: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!("messages  {total}: {}", by_state.join(", "));
    for d in shown {
        println!(
            "message   {} {} (attempts {}{}): {}",
            d.state,
            d.recipient
                .as_deref()
                .or(d.user_id.as_deref().map(|_| "in-app only"))
                .unwrap_or(""),
            d.attempts,
            if d.in_app_at.is_some() {
                ", in-app row written"
            } else {
                ""
            },
            d.reply.as_deref().unwrap_or("-")
        );
    }
    if (shown.len() as i64) < total {
        println!("          ... {} more", total - shown.len() as i64);
    }
    Ok(())
}

async fn retry(
    ctx: &Ctx,
    ids: Vec<Uuid>,
    state: Option<JobState>,
    filter: DeadFilter,
    dry_run: bool,
    rate: Option<f64>,
) -> Result<Code> {
    let queue = ctx.queue().await?;
    let record = ctx.record().await?;
    let targets: Vec<Target> = if ids.is_empty() {
        match state {
            Some(JobState::Dead) => {}
            Some(other) => {
                return Err(Exit::usage(format!(
                    "--state {other}: only dead jobs can be re-queued by filter"
                )));
            }
            None => {
                return Err(Exit::usage(
                    "give job ids, or --state dead with optional filters",
                ));
            }
        }
        record
            .dead_jobs(&filter)
            .await?
            .into_iter()
            .map(Target::Dead)
            .collect()
    } else {
        let mut out = Vec::new();
        for id in ids {
            if let Some(job) = queue.find(&ctx.queues(), id).await? {
                out.push(Target::Live(job));
            } else if let Some(dead) = record.dead_job(id).await? {
                out.push(Target::Dead(dead));
            } else {
                return Err(Exit::failed(format!(
                    "no job {id} in Redis or the durable record"
                )));
            }
        }
        out
    };
    if dry_run {
        if ctx.json {
            let ids: Vec<_> = targets.iter().map(Target::id).collect();
            output::json(&json!({ "dry_run": true, "would_retry": ids.len(), "ids": ids }));
        } else {
            for t in &targets {
                println!("would re-queue {} ({})", t.id(), t.kind());
            }
            println!("{} jobs would be re-queued", targets.len());
        }
        return Ok(Code::Ok);
    }
    let pause = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut requeued = 0;
    let mut unchanged = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        if let (Some(pause), true) = (pause, i > 0) {
            tokio::time::sleep(pause).await;
        }
        match requeue(ctx, &queue, &record, target).await? {
            RequeueResult::Requeued | RequeueResult::RunNow => requeued += 1,
            RequeueResult::Unchanged(state) => {
                unchanged.push(format!("{} is {state}", target.id()))
            }
        }
    }
    record
        .audit(&ctx.actor(), "jobs.retry", None, json!({ "requeued": requeued, "ids": targets.iter().map(Target::id).collect::<Vec<_>>() }))
        .await?;
    if ctx.json {
        output::json(&json!({ "requeued": requeued, "unchanged": unchanged }));
    } else {
        println!("re-queued {requeued} jobs");
        for u in &unchanged {
            println!("unchanged: {u}");
        }
    }
    Ok(if unchanged.is_empty() {
        Code::Ok
    } else {
        Code::Failed
    })
}

enum Target {
    Live(JobRecord),
    Dead(DeadJob),
}

impl Target {
    fn id(&self) -> Uuid {
        match self {
            Self::Live(j) => j.id,
            Self::Dead(d) => d.id,
        }
    }

    fn kind(&self) -> &str {
        match self {
            Self::Live(j) => &j.kind,
            Self::Dead(d) => &d.kind,
        }
    }
}

async fn requeue(
    ctx: &Ctx,
    queue: &Queue,
    record: &Record,
    target: &Target,
) -> Result<RequeueResult> {
    let (name, job) = match target {
        Target::Live(j) => (
            j.queue.clone(),
            NewJob {
                id: j.id,
                kind: j.kind.clone(),
                args: j.args.to_string(),
                run_at_us: None,
                max_attempts: j.max_attempts,
                idempotency_key: j.idempotency_key.clone(),
                coalesce_key: None,
            },
        ),
        Target::Dead(d) => {
            // A kind's current settings decide where it runs now.
            let queue_name = ctx
                .registry
                .get(&d.kind)
                .map(|e| e.settings().queue.to_owned())
                .unwrap_or_else(|_| d.queue.clone());
            (
                queue_name,
                NewJob {
                    id: d.id,
                    kind: d.kind.clone(),
                    args: d.args.to_string(),
                    run_at_us: None,
                    max_attempts: d.max_attempts.max(1) as u32,
                    idempotency_key: d.idempotency_key.clone(),
                    coalesce_key: None,
                },
            )
        }
    };
    let result = queue.requeue(&name, &job).await?;
    if result == RequeueResult::Requeued {
        record.mark_retried(job.id, job.id).await?;
    }
    Ok(result)
}

async fn cancel(ctx: &Ctx, id: Uuid) -> Result<Code> {
    let queue = ctx.queue().await?;
    let job = queue
        .find(&ctx.queues(), id)
        .await?
        .ok_or_else(|| Exit::failed(format!("no job {id} waiting or running in Redis")))?;
    let result = queue.cancel(&job.queue, id).await?;
    if let Ok(record) = ctx.record().await {
        record
            .audit(
                &ctx.actor(),
                "jobs.cancel",
                Some(&id.to_string()),
                json!({ "result": result }),
            )
            .await?;
    }
    let (message, code) = match &result {
        CancelResult::Cancelled => ("cancelled; it will not run".to_owned(), Code::Ok),
        CancelResult::Requested => ("running; its worker was asked to stop".to_owned(), Code::Ok),
        CancelResult::Missing => ("gone from Redis".to_owned(), Code::Failed),
        CancelResult::AlreadyFinal(state) => (format!("already {state}"), Code::Failed),
    };
    if ctx.json {
        output::json(&json!({ "id": id, "result": result }));
    } else {
        println!("{id}: {message}");
    }
    Ok(code)
}

fn parse_rate(s: &str) -> std::result::Result<f64, String> {
    let n = s.trim_end_matches("/s");
    match n.parse::<f64>() {
        Ok(r) if r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate like 50/s")),
    }
}
