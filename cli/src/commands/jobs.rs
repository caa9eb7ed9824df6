use std::time::Duration;

use ferry_jobs::manage::{self, JobDetail, JobRow, Target};
use ferry_queue::{CancelResult, JobFilter, JobState, now_us};
use ferry_record::{DeadFilter, DeliveryRow, Record};
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
        /// Only jobs in this state.
        #[arg(long)]
        state: Option<JobState>,
        /// Only jobs of this kind, e.g. `backup.run`.
        #[arg(long)]
        kind: Option<String>,
        /// Only jobs enqueued (dead: died) within this long, e.g. 1h.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// Only jobs whose last error contains this text.
        #[arg(long)]
        error: Option<String>,
        /// Most jobs listed.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Arguments, attempts, errors, checkpoint and progress of one job.
    Show {
        /// The job's id, as `ferry enqueue` and `ferry jobs ls` print it.
        id: Uuid,
    },
    /// Re-queue jobs by id, or every dead job matching a filter.
    Retry {
        /// Jobs to re-queue, by id.
        ids: Vec<Uuid>,
        /// With no ids: re-queue jobs in this state (only `dead`).
        #[arg(long, conflicts_with = "ids")]
        state: Option<JobState>,
        /// With --state: only dead jobs of this kind.
        #[arg(long, requires = "state")]
        kind: Option<String>,
        /// With --state: only jobs that died within this long, e.g. 1h.
        #[arg(long, requires = "state", value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// With --state: only jobs whose last error contains this text.
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
    Cancel {
        /// The job's id.
        id: Uuid,
    },
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

async fn list(ctx: &Ctx, filter: &JobFilter) -> Result<Vec<JobRow>> {
    let queue = ctx.queue().await?;
    let record = ctx.record().await?;
    Ok(manage::list(&queue, &record, &ctx.registry, filter).await?)
}

async fn show(ctx: &Ctx, id: Uuid) -> Result<Code> {
    let queue = ctx.queue().await?;
    let record = ctx.record().await.ok();
    let detail = manage::show(&queue, record.as_ref(), &ctx.registry, id).await?;
    if ctx.json {
        output::json(&detail);
        return Ok(Code::Ok);
    }
    let JobDetail {
        job: live,
        errors,
        dead,
        run,
        deliveries,
    } = detail;
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
        if j.priority != ferry_queue::Priority::Default {
            println!("priority  {}", j.priority);
        }
        if let Some(t) = &j.tenant {
            println!("tenant    {t}");
        }
        println!("enqueued  {}", manage::time_us_text(j.enqueued_us));
        if let Some(t) = j.started_us {
            println!("started   {}", manage::time_us_text(t));
        }
        if let Some(t) = j.finished_us {
            println!("finished  {}", manage::time_us_text(t));
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
    let targets = if ids.is_empty() {
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
        manage::dead_targets(&record, &filter).await?
    } else {
        manage::targets_by_id(&queue, &record, &ctx.registry, &ids).await?
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
    let report =
        manage::retry(&queue, &record, &ctx.registry, &targets, rate, &ctx.actor()).await?;
    if ctx.json {
        output::json(&report);
    } else {
        println!("re-queued {} jobs", report.requeued);
        for u in &report.unchanged {
            println!("unchanged: {u}");
        }
    }
    Ok(if report.unchanged.is_empty() {
        Code::Ok
    } else {
        Code::Failed
    })
}

async fn cancel(ctx: &Ctx, id: Uuid) -> Result<Code> {
    let queue = ctx.queue().await?;
    let record = ctx.record().await.ok();
    let result = manage::cancel(&queue, record.as_ref(), &ctx.registry, id, &ctx.actor()).await?;
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
