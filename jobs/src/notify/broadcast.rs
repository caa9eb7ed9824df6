use std::{num::NonZeroU32, time::Duration};

use ferry_record::{Progress, RunState};
use futures::{StreamExt, stream};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use super::{Delivered, Message, QUEUE};
use crate::{Backoff, JobContext, JobError, Kind, Settings};

/// Mails every recipient of a configured audience query, chunk by chunk, resumably.
pub struct Broadcast;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastArgs {
    pub template: String,
    /// A name from `[notify.audiences]`; the query itself never travels in a job.
    pub audience: String,
    /// Variables for every recipient; each recipient's own columns take precedence.
    #[serde(default)]
    pub data: Value,
}

/// Recipients are read in order of their address; `after` is the last one done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BroadcastCheckpoint {
    pub after: Option<String>,
    pub done: i64,
    pub failed: i64,
    /// Recipients whose message was complete when the reply was lost (a worker killed, a
    /// connection dropped): recorded `unconfirmed`, never sent again. Counted in `done`.
    #[serde(default)]
    pub unconfirmed: i64,
}

impl Kind for Broadcast {
    const NAME: &'static str = "notify.broadcast";
    type Args = BroadcastArgs;

    fn defaults() -> Settings {
        Settings {
            queue: QUEUE.into(),
            max_attempts: 10,
            backoff: Backoff {
                base: Duration::from_secs(10),
                cap: Duration::from_secs(600),
            },
            timeout: Duration::from_secs(24 * 3600),
            ..Settings::default()
        }
    }

    async fn run(&self, args: BroadcastArgs, ctx: JobContext) -> Result<(), JobError> {
        let notifier = super::Notifier::shared(&ctx.deps).await?;
        let config = &ctx.deps.config.notify;
        let audience = config
            .audience(&args.audience)
            .map_err(JobError::permanent)?;
        if !notifier.templates.contains(&args.template) {
            // Rendering says which templates exist.
            notifier.templates.render(&args.template, &Value::Null)?;
        }
        let app = notifier.app()?.clone();
        let lease = ctx.open_run().await?;
        let mut at: BroadcastCheckpoint = lease.checkpoint()?.unwrap_or_default();
        // The audience is a subquery: paged by address (keyset, never OFFSET), so a resumed run
        // continues after the last recipient of its last checkpoint.
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM ({audience}) a WHERE a.email IS NOT NULL"
        )))
        .fetch_one(&app)
        .await
        .map_err(audience_error(&args.audience))?;
        let page = format!(
            "SELECT a.email::text AS email, to_jsonb(a) AS row FROM ({audience}) a
             WHERE a.email IS NOT NULL AND ($1::text IS NULL OR a.email::text > $1)
             ORDER BY a.email::text LIMIT $2"
        );
        let rate = NonZeroU32::new(config.rate).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::direct(Quota::per_second(rate));
        // The SMTP server's limit shared with every other worker, on top of this job's own.
        let smtp = super::smtp_limit(&ctx.deps.config);
        let shared = match &args.data {
            Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        loop {
            if let Some(stop) = ctx.should_stop() {
                let state = if stop == JobError::Cancelled {
                    RunState::Cancelled
                } else {
                    RunState::Interrupted
                };
                lease.finish(state, None).await?;
                return Err(stop);
            }
            let rows = sqlx::query(sqlx::AssertSqlSafe(page.as_str()))
                .bind(at.after.as_deref())
                .bind(config.chunk_size as i64)
                .fetch_all(&app)
                .await
                .map_err(audience_error(&args.audience))?;
            let Some(last) = rows.last() else { break };
            let last: String = last.get("email");
            let recipients: Vec<(String, Value)> = rows
                .iter()
                .map(|r| {
                    let mut data = shared.clone();
                    if let Value::Object(own) = r.get::<Value, _>("row") {
                        data.extend(own);
                    }
                    (r.get::<String, _>("email"), Value::Object(data))
                })
                .collect();
            let count = recipients.len();
            let (notifier, limiter, template, job_id, ctx, smtp) =
                (&notifier, &limiter, &args.template, ctx.id, &ctx, &smtp);
            let in_app = config.table.is_some();
            let results: Vec<Result<Delivered, JobError>> = stream::iter(recipients)
                .map(|(email, data)| async move {
                    let key = format!("broadcast:{job_id}:{}", email.to_lowercase());
                    let user_id = data.get("user_id").filter(|u| in_app && !u.is_null());
                    limiter.until_ready().await;
                    if let Some(smtp) = smtp {
                        ctx.rate_limit_in_place(smtp).await?;
                    }
                    let message = Message {
                        key: &key,
                        job_id,
                        template,
                        to: Some(&email),
                        user_id,
                        data: &data,
                        columns: None,
                        resend: false,
                    };
                    notifier.deliver(&message).await
                })
                .buffer_unordered(config.connections as usize)
                .collect()
                .await;
            // A recipient refused for good is recorded and skipped; one deferred (4xx, the
            // server down) ends this attempt before the checkpoint moves, so the retry
            // resumes at this chunk and sends only what is not sent yet.
            let mut deferred = None;
            for r in results {
                match r {
                    Ok(Delivered::Unconfirmed) => at.unconfirmed += 1,
                    Ok(_) => {}
                    Err(JobError::Permanent(e)) => {
                        at.failed += 1;
                        tracing::warn!(error = %e, "broadcast recipient failed for good");
                    }
                    Err(e) => deferred = deferred.or(Some(e)),
                }
            }
            if let Some(e) = deferred {
                lease.heartbeat().await?;
                return Err(e);
            }
            at.done += count as i64;
            at.after = Some(last);
            let progress = Progress {
                done: at.done,
                total: Some(total.max(at.done)),
                ..Progress::default()
            };
            lease.save(&at, progress).await?;
            if count < config.chunk_size {
                break;
            }
        }
        let mut problems = Vec::new();
        if at.failed > 0 {
            problems.push(format!("{} failed for good", at.failed));
        }
        if at.unconfirmed > 0 {
            problems.push(format!(
                "{} unconfirmed (complete, no reply; not sent again)",
                at.unconfirmed
            ));
        }
        let summary = (!problems.is_empty()).then(|| {
            format!(
                "of {} recipients, {}; see `ferry jobs show {}`",
                at.done,
                problems.join(", "),
                ctx.id
            )
        });
        lease
            .finish(RunState::Succeeded, summary.as_deref())
            .await?;
        tracing::info!(
            recipients = at.done,
            failed = at.failed,
            unconfirmed = at.unconfirmed,
            "broadcast finished"
        );
        Ok(())
    }
}

fn audience_error(name: &str) -> impl Fn(sqlx::Error) -> JobError + '_ {
    move |e| {
        if ferry_record::is_transient(&e) {
            JobError::retryable_from(format!("audience {name:?}"), e)
        } else {
            JobError::permanent_from(
                format!("audience {name:?} (the query must return a column email)"),
                e,
            )
        }
    }
}
