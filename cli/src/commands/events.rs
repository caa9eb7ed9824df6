//! `ferry events install-triggers`: change capture for the `[[on_change]]` rules.

use ferry_jobs::events::{self, EventsError, Rules, capture};
use serde_json::json;

use crate::{
    app::Ctx,
    exit::{Code, Exit, Result},
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Install the capture trigger on every table an [[on_change]] rule watches (for the
    /// operations the rules use); idempotent. The scheduler relays the changes into jobs.
    InstallTriggers,
}

impl From<EventsError> for Exit {
    fn from(e: EventsError) -> Self {
        match e {
            EventsError::Setup(_) => Exit::usage(e.to_string()),
            e => Exit::failed(e.to_string()),
        }
    }
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    let rules = Rules::compile(&ctx.config, &ctx.registry)?;
    match command {
        Command::InstallTriggers => {
            if rules.is_empty() {
                return Err(Exit::usage(
                    "ferry.toml has no [[on_change]] rules: add one (table, op, kind, args) first",
                ));
            }
            let app = events::app_pool(&ctx.config).await?;
            let installed = capture::install(&app, &ctx.config.postgres.schema, &rules).await?;
            let record = ctx.record().await?;
            record
                .audit(
                    &ctx.actor(),
                    "events.install-triggers",
                    None,
                    json!({ "tables": installed.iter().map(|(t, _)| t).collect::<Vec<_>>() }),
                )
                .await?;
            for (table, key) in &installed {
                println!("{table}: capturing changes (key {})", key.join(", "));
            }
            println!(
                "the scheduler (ferry scheduler) relays captured changes into the rules' jobs"
            );
            Ok(Code::Ok)
        }
    }
}
