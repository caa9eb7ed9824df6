use chrono::{DateTime, Utc};

use crate::{
    app::Ctx,
    exit::{Code, Exit, Result},
    output,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every configured schedule: next fire, last fire and its job's outcome, missed fires.
    Ls,
    /// Stop enqueueing a schedule's fires (they are not counted as missed).
    Pause {
        /// The schedule's `name` in [[schedule]].
        name: String,
    },
    /// Enqueue a paused schedule's fires again, from its next fire on.
    Resume {
        /// The schedule's `name` in [[schedule]].
        name: String,
    },
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    let planned = ferry_scheduler::plan(&ctx.config, &ctx.registry)?;
    let record = ctx.record().await?;
    match command {
        Command::Ls => {
            let queue = ctx.queue().await?;
            let statuses = ferry_scheduler::statuses(&planned, &record, &queue, Utc::now()).await?;
            if ctx.json {
                output::json(&statuses);
                return Ok(Code::Ok);
            }
            let mut t = output::table(&[
                "name",
                "cron",
                "timezone",
                "kind",
                "state",
                "next fire",
                "last fire",
                "outcome",
                "missed",
                "skipped",
            ]);
            for s in &statuses {
                let state = match (s.enabled, s.paused) {
                    (false, _) => "disabled",
                    (true, true) => "paused",
                    (true, false) => "active",
                };
                t.add_row(vec![
                    s.name.clone(),
                    s.cron.clone(),
                    s.timezone.clone(),
                    s.kind.clone(),
                    state.into(),
                    time(s.next_fire),
                    time(s.last_fire),
                    s.last_outcome.clone().unwrap_or_else(|| "-".into()),
                    s.missed.to_string(),
                    s.skipped.to_string(),
                ]);
            }
            println!("{t}");
            Ok(Code::Ok)
        }
        Command::Pause { name } | Command::Resume { name }
            if !planned.iter().any(|p| p.schedule.name == name) =>
        {
            let names: Vec<&str> = planned.iter().map(|p| p.schedule.name.as_str()).collect();
            Err(Exit::usage(format!(
                "no schedule {name:?} in config; configured: {}",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            )))
        }
        Command::Pause { name } => {
            ferry_scheduler::set_paused(&record, &name, true, &ctx.actor()).await?;
            println!("schedule {name} paused");
            Ok(Code::Ok)
        }
        Command::Resume { name } => {
            ferry_scheduler::set_paused(&record, &name, false, &ctx.actor()).await?;
            println!("schedule {name} resumed");
            Ok(Code::Ok)
        }
    }
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}
