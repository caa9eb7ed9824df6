//! notify: in-app notification rows and email.
//!
//! - `notify.send` writes one in-app row (when `user_id` is given) and sends one email (when
//!   `to` is given), rendered from a configured template.
//! - `notify.broadcast` mails every recipient of a configured audience query, in chunks with
//!   a checkpoint, at a configured rate.
//!
//! `[limits] "smtp:HOST" = "10/s"` (HOST of `notify.smtp_url`) caps the mail of every worker
//! together: a `notify.send` over it waits or snoozes without spending an attempt, a
//! broadcast waits between recipients.
//!
//! Every message has an idempotency key recorded in ferry's schema (`ferry_record::NewDelivery`):
//! at most one email and one in-app row per key. The email's record is committed in the
//! instant before its data is completed (see `ferry_record`'s delivery module): a retry or a
//! resumed broadcast skips messages that were sent, refused, or completed without a reply
//! (`unconfirmed`, never sent twice), and the in-app row is written in the same transaction
//! that marks it written.

mod broadcast;
mod in_app;
mod mailer;
mod realtime;
mod send;
pub mod template;

use std::{sync::Arc, time::Duration};

use ferry_config::{Config, Delivery};
use ferry_queue::Queue;
use ferry_record::{NewDelivery, NotSent, Prior, Record};
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

pub use broadcast::{Broadcast, BroadcastArgs, BroadcastCheckpoint};
pub use mailer::{Mailer, Open, Outgoing, SendError};
pub use send::{Send, SendArgs};
pub use template::{Rendered, Templates};

use crate::{Deps, Failure, JobError};

/// The queue notify jobs travel on, apart from long data jobs so mail is never stuck behind
/// them.
pub const QUEUE: &str = "notify";

/// The `[limits]` name of the SMTP server, `smtp:HOST`: every worker's mail to it shares one
/// rate limit (a provider's "10 messages per second").
pub fn smtp_limit(config: &Config) -> Option<String> {
    let url = url::Url::parse(config.notify.smtp_url.as_ref()?.expose()).ok()?;
    Some(format!("smtp:{}", url.host_str()?))
}

/// What notify jobs share in a worker: templates, the SMTP pool, the application database.
#[derive(Debug)]
pub struct Notifier {
    pub templates: Templates,
    mailer: Option<Mailer>,
    app: Option<PgPool>,
    record: Record,
    /// For realtime publishes; `None` in a process without Redis (no publishing).
    queue: Option<Queue>,
    config: Arc<Config>,
    in_app_columns: in_app::TableColumns,
}

/// One message to one recipient.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Idempotency key: at most one email and one in-app row per key.
    pub key: &'a str,
    pub job_id: Uuid,
    pub template: &'a str,
    pub to: Option<&'a str>,
    pub user_id: Option<&'a Value>,
    pub data: &'a Value,
    /// The app's own columns of the in-app row.
    pub columns: Option<&'a Map<String, Value>>,
    /// An operator's resend: the email is sent again even though it is in doubt.
    pub resend: bool,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The server accepted the email now, with this reply (or there was no email to send).
    Sent(Option<String>),
    /// Already done by an earlier attempt: nothing was sent again.
    Before,
    /// In doubt: an earlier attempt stopped between marking the message `committing` and
    /// recording the reply, or this one lost the connection after the final dot. The server
    /// may have it; it is recorded `unconfirmed` and never sent again. Done, not a failure.
    Unconfirmed,
}

/// The reply recorded for a message an earlier attempt left `committing`.
const STOPPED_IN_DOUBT: &str = "in doubt: the worker stopped between marking the message committing and recording the server's reply, so the server may have it; not sent again";

impl Notifier {
    /// The worker's notifier: built on the first notify job and shared by the later ones, so
    /// templates compile and the SMTP pool fills once per worker process.
    pub(crate) async fn shared(deps: &Deps) -> Result<Arc<Self>, JobError> {
        deps.clients
            .get_or_try_init(|| async {
                Self::new(
                    deps.config.clone(),
                    deps.record.clone(),
                    Some(deps.queue.clone()),
                )
                .map(Arc::new)
            })
            .await
    }

    /// Compiles templates and prepares the SMTP pool and database pool; nothing connects
    /// until a message needs it. `queue` carries realtime publishes.
    pub fn new(
        config: Arc<Config>,
        record: Record,
        queue: Option<Queue>,
    ) -> Result<Self, JobError> {
        let n = &config.notify;
        let templates = Templates::compile(n)?;
        let mailer = n
            .smtp_url
            .as_ref()
            .map(|url| Mailer::new(url, n.from.as_deref(), n.connections, n.smtp_timeout))
            .transpose()
            .map_err(JobError::permanent)?;
        let app = config
            .postgres
            .url
            .as_deref()
            .map(|url| {
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(config.postgres.max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_lazy(url)
                    .map_err(|e| JobError::permanent_from("DATABASE_URL is not usable", e))
            })
            .transpose()?;
        Ok(Self {
            templates,
            mailer,
            app,
            record,
            queue,
            config,
            in_app_columns: in_app::TableColumns::default(),
        })
    }

    /// The application database: in-app rows and audience queries.
    pub fn app(&self) -> Result<&PgPool, JobError> {
        self.app.as_ref().ok_or_else(|| {
            JobError::permanent(
                "in-app rows and audiences need the application database: set DATABASE_URL",
            )
        })
    }

    /// Renders, writes the in-app row once, and sends the email once.
    pub async fn deliver(&self, m: &Message<'_>) -> Result<Delivered, JobError> {
        if m.to.is_none() && m.user_id.is_none() {
            return Err(JobError::permanent(
                "give to (an email address), user_id (an in-app row), or both",
            ));
        }
        // Everything that can be wrong with the message is found before anything is written.
        let rendered = self.templates.render(m.template, m.data)?;
        let to = m.to.map(Mailer::address).transpose().map_err(permanent)?;
        let mailer = match (&to, &self.mailer) {
            (Some(_), None) => {
                return Err(JobError::permanent(
                    "email needs an SMTP server: set SMTP_URL or notify.smtp_url",
                ));
            }
            (_, mailer) => mailer,
        };
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, m.key.as_bytes());
        let outgoing = match (to, mailer) {
            (Some(to), Some(mailer)) => Some((
                mailer,
                mailer
                    .compose(to, &id.to_string(), &rendered)
                    .map_err(permanent)?,
            )),
            _ => None,
        };
        let user_text = m.user_id.map(|u| match u {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let choice = self.templates.delivery(m.template);
        let again_in_doubt = m.resend || choice == Delivery::AtLeastOnce;
        let delivery = NewDelivery {
            key: m.key,
            job_id: m.job_id,
            template: m.template,
            recipient: m.to,
            user_id: user_text.as_deref(),
            again_in_doubt,
            delivery: choice.as_str(),
            data: Some(m.data),
        };
        if let Some(user) = m.user_id {
            self.in_app(&delivery, user, &rendered, m.columns).await?;
        }
        let Some((mailer, outgoing)) = outgoing else {
            return Ok(Delivered::Sent(None));
        };
        match self.record.delivery_prior(m.key).await? {
            Prior::Unsent => {}
            Prior::Done => return Ok(Delivered::Before),
            // At least once: sent again, with the same Message-ID.
            Prior::InDoubt if again_in_doubt => {}
            Prior::InDoubt => {
                // No-op when an earlier attempt already recorded it unconfirmed.
                self.record
                    .delivery_unconfirmed(m.key, STOPPED_IN_DOUBT)
                    .await?;
                return Ok(Delivered::Unconfirmed);
            }
        }
        // MAIL FROM, RCPT TO, DATA: a failure here mailed nothing.
        let open = match mailer.open(&outgoing).await {
            Ok(open) => open,
            Err(e) => {
                let how = match e {
                    SendError::Deferred(_) => NotSent::Deferred,
                    _ => NotSent::Failed,
                };
                self.record
                    .delivery_not_sent(&delivery, how, &e.to_string())
                    .await?;
                return Err(match how {
                    NotSent::Deferred => JobError::Retryable(Failure::of(e)),
                    NotSent::Failed => permanent(e),
                });
            }
        };
        // The commit point. If another attempt got past it first, or Postgres fails, `open` is
        // dropped here: the connection closes without the end-of-data marker and nothing is
        // mailed (an RSET after 354 would be read as message text).
        if !self.record.delivery_committing(&delivery).await? {
            return Ok(Delivered::Before);
        }
        match open.finish(&outgoing).await {
            Ok(reply) => {
                self.record.delivery_sent(m.key, &reply).await?;
                Ok(Delivered::Sent(Some(reply)))
            }
            Err(e @ SendError::Deferred(_)) => {
                self.record.delivery_deferred(m.key, &e.to_string()).await?;
                Err(JobError::Retryable(Failure::of(e)))
            }
            Err(SendError::InDoubt(e)) if again_in_doubt => {
                let reply = format!(
                    "the connection failed after the message was complete, before the server's reply ({e}); sent again with the same Message-ID"
                );
                self.record.delivery_unconfirmed(m.key, &reply).await?;
                Err(JobError::retryable(reply))
            }
            Err(SendError::InDoubt(e)) => {
                let reply = format!(
                    "the connection failed after the message was complete, before the server's reply ({e}); not sent again"
                );
                self.record.delivery_unconfirmed(m.key, &reply).await?;
                Ok(Delivered::Unconfirmed)
            }
            Err(e) => {
                self.record.delivery_failed(m.key, &e.to_string()).await?;
                Err(permanent(e))
            }
        }
    }
}

fn permanent(e: SendError) -> JobError {
    JobError::Permanent(Failure::of(e))
}
