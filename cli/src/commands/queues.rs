use crate::{
    app::Ctx,
    exit::{Code, Exit, Result},
    output,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Stop workers from starting the queue's jobs (it keeps accepting them; running jobs
    /// finish). Audited.
    Pause {
        /// A queue some kind travels on, e.g. default, sync, notify.
        name: String,
    },
    /// Let workers start the queue's jobs again. Audited.
    Resume {
        /// A queue some kind travels on.
        name: String,
    },
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    let (name, paused) = match &command {
        Command::Pause { name } => (name, true),
        Command::Resume { name } => (name, false),
    };
    let queue = ctx.queue().await?;
    let record = ctx.record().await?;
    let changed =
        ferry_jobs::queues::set_paused(&queue, &record, &ctx.registry, name, paused, &ctx.actor())
            .await
            .map_err(|e| match e {
                ferry_jobs::manage::ManageError::NotFound(m) => Exit::usage(m),
                e => Exit::from(e),
            })?;
    let state = if paused { "paused" } else { "resumed" };
    if ctx.json {
        output::json(&serde_json::json!({"queue": name, "paused": paused, "changed": changed}));
    } else if changed {
        println!("queue {name} {state}");
    } else {
        println!("queue {name} was already {state}");
    }
    Ok(Code::Ok)
}
