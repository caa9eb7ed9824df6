use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Delivered, Message, QUEUE};
use crate::{Backoff, JobContext, JobError, Kind, Settings};

/// One notification: an in-app row for `user_id` and an email to `to` (either may be absent).
pub struct Send;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The in-app row's user: a string or a number, whatever the user column holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Value>,
    pub template: String,
    /// Template variables.
    #[serde(default)]
    pub data: Value,
    /// The in-app row's own columns (`[notify.columns]` names or the table's columns),
    /// checked against the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<serde_json::Map<String, Value>>,
}

impl Kind for Send {
    const NAME: &'static str = "notify.send";
    type Args = SendArgs;

    fn defaults() -> Settings {
        Settings {
            queue: QUEUE.into(),
            max_attempts: 8,
            backoff: Backoff {
                base: Duration::from_secs(10),
                cap: Duration::from_secs(3600),
            },
            timeout: Duration::from_secs(120),
            ..Settings::default()
        }
    }

    async fn run(&self, args: SendArgs, ctx: JobContext) -> Result<(), JobError> {
        let notifier = super::Notifier::shared(&ctx.deps).await?;
        if args.to.is_some()
            && let Some(smtp) = super::smtp_limit(&ctx.deps.config)
        {
            ctx.rate_limit(&smtp).await?;
        }
        // Enqueued with --key: that key, so a second job with the same key (after the queue
        // forgot the first) sends nothing. Otherwise the job id, which every retry shares.
        let key = match &ctx.idempotency_key {
            Some(key) => format!("send:{key}"),
            None => format!("job:{}", ctx.id),
        };
        let message = Message {
            key: &key,
            job_id: ctx.id,
            template: &args.template,
            to: args.to.as_deref(),
            user_id: args.user_id.as_ref(),
            data: &args.data,
            columns: args.columns.as_ref(),
            resend: false,
        };
        match notifier.deliver(&message).await? {
            Delivered::Sent(reply) => {
                tracing::info!(
                    reply = reply.as_deref().unwrap_or("in-app only"),
                    "notification sent"
                )
            }
            Delivered::Before => {
                tracing::info!("already sent by an earlier attempt or job with this key")
            }
            Delivered::Unconfirmed => tracing::warn!(
                "unconfirmed: the message was complete but its reply never came; not sent again"
            ),
        }
        Ok(())
    }
}
