//! `ferry notify unconfirmed ls|resend`: emails that were complete when their reply never
//! came. `resend` sends each again with its original Message-ID (receivers that dedupe by
//! Message-ID show it once) and records the reply.

use std::{sync::Arc, time::Duration};

use ferry_jobs::notify::{Delivered, Message, Notifier};
use serde_json::json;

use crate::{
    app::Ctx,
    exit::{Code, Result},
    output,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List unconfirmed emails, oldest first.
    Ls {
        /// Only those unconfirmed for at least this long, e.g. 10m or 1h.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        older_than: Duration,
        /// List at most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Send unconfirmed emails again, with the same Message-ID.
    Resend {
        /// Only those unconfirmed for at least this long, e.g. 10m or 1h.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        older_than: Duration,
        /// Resend at most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    let record = ctx.record().await?;
    match command {
        Command::Ls { older_than, limit } => {
            let rows = record.unconfirmed(older_than, limit).await?;
            if ctx.json {
                let rows: Vec<_> = rows.iter().map(|u| &u.row).collect();
                output::json(&json!({ "unconfirmed": rows }));
                return Ok(Code::Ok);
            }
            let mut t = output::table(&["key", "job", "template", "recipient", "since", "reply"]);
            for u in &rows {
                let r = &u.row;
                t.add_row(vec![
                    r.key.clone(),
                    r.job_id.to_string(),
                    r.template.clone(),
                    r.recipient.clone().unwrap_or_default(),
                    r.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    r.reply.clone().unwrap_or_default(),
                ]);
            }
            println!("{t}");
            println!("{} unconfirmed", rows.len());
            Ok(Code::Ok)
        }
        Command::Resend { older_than, limit } => {
            let rows = record.unconfirmed(older_than, limit).await?;
            let notifier = Notifier::new(Arc::clone(&ctx.config), record.clone(), None)?;
            let (mut sent, mut failed) = (0, 0);
            let mut results = Vec::new();
            for u in &rows {
                let r = &u.row;
                let outcome = match (&r.recipient, &u.data) {
                    (Some(to), Some(data)) => {
                        let message = Message {
                            key: &r.key,
                            job_id: r.job_id,
                            template: &r.template,
                            to: Some(to),
                            user_id: None,
                            data,
                            columns: None,
                            resend: true,
                        };
                        match notifier.deliver(&message).await {
                            Ok(Delivered::Sent(reply)) => Ok(reply.unwrap_or_default()),
                            Ok(other) => Err(format!("not sent: {other:?}")),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    _ => Err("recorded before template data was kept: resend it by hand".into()),
                };
                match &outcome {
                    Ok(_) => sent += 1,
                    Err(_) => failed += 1,
                }
                results.push((r.key.clone(), r.recipient.clone(), outcome));
            }
            record
                .audit(
                    &ctx.actor(),
                    "notify.resend-unconfirmed",
                    None,
                    json!({
                        "older_than": humantime::format_duration(older_than).to_string(),
                        "keys": results.iter().map(|(k, _, _)| k).collect::<Vec<_>>(),
                        "sent": sent,
                        "failed": failed,
                    }),
                )
                .await?;
            if ctx.json {
                let out: Vec<_> = results
                    .iter()
                    .map(|(key, to, o)| match o {
                        Ok(reply) => {
                            json!({"key": key, "recipient": to, "sent": true, "reply": reply})
                        }
                        Err(e) => json!({"key": key, "recipient": to, "sent": false, "error": e}),
                    })
                    .collect();
                output::json(&json!({ "resent": out }));
            } else {
                for (key, to, o) in &results {
                    let to = to.as_deref().unwrap_or("-");
                    match o {
                        Ok(reply) => println!("sent    {to} ({key}): {reply}"),
                        Err(e) => println!("FAILED  {to} ({key}): {e}"),
                    }
                }
                println!("{sent} sent again, {failed} failed");
            }
            Ok(if failed == 0 { Code::Ok } else { Code::Failed })
        }
    }
}
