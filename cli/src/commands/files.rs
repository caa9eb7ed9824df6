use ferry_jobs::files::{self, Checkpoint, MigrateArgs, plan::Plan, rewrite};
use ferry_record::RunRow;
use serde_json::json;
use uuid::Uuid;

use crate::{
    app::Ctx,
    commands::{enqueue, wait},
    exit::{Code, Exit, Result},
    output,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Copy every object under --from to --to (as a `files.migrate` job), then rewrite URL
    /// columns from the source's public_url to the destination's.
    Migrate {
        /// STORE[:PREFIX], a name from [stores].
        #[arg(long)]
        from: String,
        /// STORE[:PREFIX]
        #[arg(long)]
        to: String,
        /// TABLE.COLUMN or SCHEMA.TABLE.COLUMN holding URLs; repeat for several.
        #[arg(long)]
        rewrite: Vec<String>,
        /// Objects copied at once (default files.transfers).
        #[arg(long)]
        transfers: Option<usize>,
        /// Also fetch every rewritten URL over HTTP: the destination's public_url is served.
        #[arg(long)]
        check_http: bool,
        /// Print the plan (objects, bytes, rows to rewrite) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Follow the job until it finishes and exit with its outcome.
        #[arg(long)]
        wait: bool,
    },
    /// Put back every URL a migration run rewrote.
    Rollback {
        /// The migration's run id (`ferry runs ls`).
        run: Uuid,
    },
    /// What a migration run did so far.
    Status {
        /// The migration's run id (`ferry runs ls`).
        run: Uuid,
    },
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    match command {
        Command::Migrate {
            from,
            to,
            rewrite,
            transfers,
            check_http,
            dry_run,
            wait,
        } => {
            let args = MigrateArgs {
                from,
                to,
                rewrite,
                transfers,
                check_http,
            };
            let plan = Plan::open(&ctx.config, &args).map_err(|e| Exit::usage(e.to_string()))?;
            if !args.rewrite.is_empty() || dry_run {
                let record = ctx.record().await?;
                plan.columns(record.pool())
                    .await
                    .map_err(|e| Exit::usage(e.to_string()))?;
                if dry_run {
                    let dry = plan.dry_run(record.pool()).await?;
                    if ctx.json {
                        output::json(&dry);
                    } else {
                        println!(
                            "would copy up to {} objects ({} bytes) from {} to {} (identical ones are skipped)",
                            dry.objects, dry.bytes, args.from, args.to
                        );
                        for (target, rows) in &dry.rows {
                            println!(
                                "would rewrite {rows} rows of {target}: {} -> {}",
                                dry.from_url.as_deref().unwrap_or(""),
                                dry.to_url.as_deref().unwrap_or("")
                            );
                        }
                    }
                    return Ok(Code::Ok);
                }
            }
            if !wait {
                return enqueue::submit::<files::Migrate>(
                    ctx,
                    &args,
                    enqueue::Keys::default(),
                    false,
                )
                .await;
            }
            let (queue, done) =
                enqueue::enqueue_one::<files::Migrate>(ctx, &args, enqueue::Keys::default())
                    .await?;
            eprintln!("{}", done.id);
            let record = ctx.record().await?;
            let (code, run) = wait::until_done(Some(&record), &queue, &done.queue, done.id).await?;
            print_status(ctx, done.id, run)?;
            Ok(code)
        }
        Command::Rollback { run } => {
            let record = ctx.record().await?;
            let done =
                rewrite::rollback_run(record.pool(), run, ctx.config.files.rewrite_chunk).await?;
            record
                .audit(
                    &ctx.actor(),
                    "files.rollback",
                    Some(&run.to_string()),
                    json!(done),
                )
                .await?;
            if ctx.json {
                output::json(&done);
            } else if done.is_empty() {
                println!("run {run} has no rewritten URLs left to put back");
            }
            for (target, r) in &done {
                if !ctx.json {
                    println!(
                        "{target}: {} restored, {} changed since the rewrite and left as they are",
                        r.restored, r.changed
                    );
                }
            }
            Ok(Code::Ok)
        }
        Command::Status { run } => {
            let found = ctx.record().await?.run(run).await?;
            print_status(ctx, run, found)
        }
    }
}

fn print_status(ctx: &Ctx, id: Uuid, run: Option<RunRow>) -> Result<Code> {
    let run = run.ok_or_else(|| Exit::failed(format!("no run {id}")))?;
    let cp: Checkpoint = run
        .checkpoint
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| Exit::failed(format!("run {id} is no files.migrate run: {e}")))?
        .unwrap_or_default();
    let mut summary = cp.summary();
    summary["id"] = json!(id);
    summary["state"] = json!(run.state);
    summary["error"] = json!(run.error);
    if ctx.json {
        output::json(&summary);
    } else {
        println!(
            "run {id} {}: {} copied, {} skipped, {} bytes, {} rewritten, {} of {} URLs unreachable",
            run.state,
            cp.copied,
            cp.skipped,
            cp.bytes,
            cp.rewritten,
            cp.reach.unreachable,
            cp.reach.checked
        );
        for url in &cp.reach.sample {
            println!("  unreachable: {url}");
        }
    }
    Ok(Code::Ok)
}
