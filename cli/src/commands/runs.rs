use ferry_record::RunRow;

use crate::{
    app::Ctx,
    exit::{Code, Exit, Result},
    output,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Newest runs first.
    Ls {
        /// Only runs in this state, e.g. `running`, `succeeded`, `failed`.
        #[arg(long)]
        state: Option<String>,
        /// Most runs listed.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One run: checkpoint, progress, lease.
    Show {
        /// The run's id (`ferry runs ls`).
        id: uuid::Uuid,
    },
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    let record = ctx.record().await?;
    match command {
        Command::Ls { state, limit } => {
            let runs = record.runs(state.as_deref(), limit).await?;
            if ctx.json {
                output::json(&runs);
            } else {
                let mut t =
                    output::table(&["id", "kind", "state", "progress", "eta", "lease", "started"]);
                for r in &runs {
                    t.add_row(vec![
                        r.id.to_string(),
                        r.kind.clone(),
                        r.state.clone(),
                        progress(r),
                        eta(r),
                        r.lease_epoch.to_string(),
                        r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    ]);
                }
                println!("{t}");
            }
            Ok(Code::Ok)
        }
        Command::Show { id } => {
            let run = record
                .run(id)
                .await?
                .ok_or_else(|| Exit::failed(format!("no run {id}")))?;
            if ctx.json {
                output::json(&run);
            } else {
                println!(
                    "run        {}\nkind       {}\nstate      {}\nprogress   {}\neta        {}",
                    run.id,
                    run.kind,
                    run.state,
                    progress(&run),
                    eta(&run)
                );
                println!(
                    "lease      epoch {} held by {}",
                    run.lease_epoch,
                    run.lease_owner.clone().unwrap_or_default()
                );
                println!("checkpoint {}", run.checkpoint.clone().unwrap_or_default());
                println!(
                    "resumed    {}",
                    run.resumed_from.clone().unwrap_or_default()
                );
                println!(
                    "started    {}\nheartbeat  {}",
                    run.started_at, run.heartbeat_at
                );
                if let Some(e) = &run.error {
                    println!("error      {e}");
                }
            }
            Ok(Code::Ok)
        }
    }
}

fn progress(r: &RunRow) -> String {
    match r.total {
        Some(total) if total > 0 => format!(
            "{}/{} ({:.0}%)",
            r.done,
            total,
            r.done as f64 * 100.0 / total as f64
        ),
        _ => r.done.to_string(),
    }
}

fn eta(r: &RunRow) -> String {
    r.eta(chrono::Utc::now())
        .map(|d| {
            humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
        })
        .unwrap_or_else(|| "-".into())
}
