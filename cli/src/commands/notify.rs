//! `ferry notify send|broadcast`: enqueue notify jobs, checked first as far as possible
//! without sending (template, variables, address, audience), so mistakes exit 2 here.

use ferry_jobs::notify::{Broadcast, BroadcastArgs, Mailer, Send, SendArgs, Templates};
use serde_json::Value;

use crate::{
    app::Ctx,
    commands::enqueue::{self, Keys},
    exit::{Code, Exit, Result},
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// One notification: an in-app row (--user-id) and/or an email (--to).
    Send {
        /// Email address to send to.
        #[arg(long)]
        to: Option<String>,
        /// User id the in-app row is for (needs notify.table).
        #[arg(long)]
        user_id: Option<String>,
        /// A name from [notify.templates].
        #[arg(long)]
        template: String,
        /// Template variables, a JSON object.
        #[arg(long)]
        data: Option<String>,
        /// The in-app row's own columns, a JSON object (see [notify.columns]).
        #[arg(long)]
        columns: Option<String>,
        /// Idempotency key: at most one email and one in-app row per key.
        #[arg(long)]
        key: Option<String>,
        /// Follow the job until it finishes and exit with its outcome.
        #[arg(long)]
        wait: bool,
    },
    /// Mail every recipient of an audience from [notify.audiences], resumably, at notify.rate.
    Broadcast {
        /// A name from [notify.templates].
        #[arg(long)]
        template: String,
        /// A name from [notify.audiences].
        #[arg(long)]
        audience: String,
        /// Variables for every recipient, a JSON object; each recipient's columns win.
        #[arg(long)]
        data: Option<String>,
        /// Follow the job until it finishes and exit with its outcome.
        #[arg(long)]
        wait: bool,
    },
    /// Emails complete when their reply never came: list them, or send them again with the
    /// same Message-ID.
    #[command(subcommand)]
    Unconfirmed(crate::commands::unconfirmed::Command),
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    let templates = || Templates::compile(&ctx.config.notify).map_err(usage);
    match command {
        Command::Send {
            to,
            user_id,
            template,
            data,
            columns,
            key,
            wait,
        } => {
            let templates = templates()?;
            let data = parse_data(data.as_deref())?;
            let columns = columns
                .map(|c| match parse_data(Some(&c)) {
                    Ok(Value::Object(map)) => Ok(map),
                    _ => Err(Exit::usage(
                        "--columns must be a JSON object {column: value}",
                    )),
                })
                .transpose()?;
            templates.render(&template, &data).map_err(usage)?;
            if let Some(to) = &to {
                Mailer::address(to).map_err(usage)?;
            }
            if to.is_none() && user_id.is_none() {
                return Err(Exit::usage("give --to, --user-id, or both"));
            }
            let args = SendArgs {
                to,
                user_id: user_id.map(Value::String),
                template,
                data,
                columns,
            };
            let keys = Keys {
                idempotency: key,
                ..Keys::default()
            };
            enqueue::submit::<Send>(ctx, &args, keys, wait).await
        }
        Command::Broadcast {
            template,
            audience,
            data,
            wait,
        } => {
            let templates = templates()?;
            let data = parse_data(data.as_deref())?;
            if !templates.contains(&template) {
                templates.render(&template, &data).map_err(usage)?;
            }
            ctx.config.notify.audience(&audience).map_err(Exit::usage)?;
            let args = BroadcastArgs {
                template,
                audience,
                data,
            };
            enqueue::submit::<Broadcast>(ctx, &args, Keys::default(), wait).await
        }
        Command::Unconfirmed(command) => crate::commands::unconfirmed::run(ctx, command).await,
    }
}

fn parse_data(data: Option<&str>) -> Result<Value> {
    let value: Value = serde_json::from_str(data.unwrap_or("{}"))
        .map_err(|e| Exit::usage(format!("--data is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Exit::usage(format!(
            "--data must be a JSON object, got {value}"
        )));
    }
    Ok(value)
}

fn usage(e: impl std::fmt::Display) -> Exit {
    Exit::usage(e.to_string())
}
