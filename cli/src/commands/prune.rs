//! `ferry prune [--dry-run]`: applies `[retention]` to ferry's own record now, the same code
//! the scheduler's daily `maintenance.prune` runs.

use ferry_jobs::maintenance;
use serde_json::json;

use crate::{app::Ctx, exit::Code, exit::Result, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Count the rows past their retention, per table, and delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let record = ctx.record().await?;
    let report = maintenance::prune(
        &record,
        &ctx.config.retention,
        chrono::Utc::now(),
        args.dry_run,
    )
    .await?;
    if !args.dry_run {
        let deleted: u64 = report.iter().map(|p| p.rows).sum();
        record
            .audit(
                &ctx.actor(),
                "record.prune",
                None,
                json!({"deleted": deleted, "tables": &report}),
            )
            .await?;
    }
    if ctx.json {
        output::json(&json!({"dry_run": args.dry_run, "tables": report}));
        return Ok(Code::Ok);
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut table = output::table(&["table", "older than", verb]);
    for p in &report {
        let cutoff = p.cutoff.map_or("kept forever".into(), |c| {
            c.format("%Y-%m-%d %H:%M UTC").to_string()
        });
        table.add_row(vec![p.table.clone(), cutoff, p.rows.to_string()]);
    }
    println!("{table}");
    Ok(Code::Ok)
}
