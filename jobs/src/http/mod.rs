//! http: webhook jobs, so an application in any language defines its own background jobs as
//! endpoints ferry calls, with ferry's retries, scheduling and record.
//!
//! `{"url", "method" (POST), "headers", "body"}` to a URL under `[http] allow`, signed under
//! the secret in the variable `[http] secret_env` names (see [`signature`]). Each request also
//! carries `x-ferry-job-id` and `x-ferry-attempt`, so a receiver can tell a retry from a new
//! job. Redirects are not followed: their target could lie outside the allow list.
//!
//! The time limit is the kind's (`[kinds.http] timeout`, default 30 s); a request past it is
//! abandoned and retried. `[limits] "http:HOST" = "50/s"` caps requests to one host (port
//! aside) across every worker; a request over it waits, or snoozes, without spending an
//! attempt.

mod request;
mod response;
mod sign;

use std::time::{Duration, SystemTime};

use tokio::sync::OnceCell;

pub use request::{HttpArgs, Invalid, Plan};
pub use response::Refusal;
pub use sign::signature;

use crate::{Backoff, CheckError, Failure, JobContext, JobError, Kind, Settings};

/// The queue webhook jobs travel on, apart from the others: a slow or dead endpoint holds
/// only webhook slots, never those of sync or mail.
pub const QUEUE: &str = "http";

/// The `http` kind, with its HTTP client: one connection pool per worker process, built on
/// the first webhook job (processes that only enqueue never build it).
#[derive(Default)]
pub struct Http {
    client: OnceCell<reqwest::Client>,
}

impl Http {
    async fn client(&self) -> Result<&reqwest::Client, JobError> {
        self.client
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| JobError::retryable_from("cannot build the HTTP client", e))
            })
            .await
    }
}

impl Kind for Http {
    const NAME: &'static str = "http";
    type Args = HttpArgs;

    fn defaults() -> Settings {
        Settings {
            queue: QUEUE.into(),
            max_attempts: 10,
            backoff: Backoff {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(3600),
            },
            timeout: Duration::from_secs(30),
            ..Settings::default()
        }
    }

    /// The allow list is checked here, at enqueue, where the registry hands every kind the
    /// configuration: so the API answers 400 and the CLI fails before a job exists. The
    /// signing secret is not: only workers need it, and the API may run without it.
    fn check(args: &HttpArgs, config: &ferry_config::Config) -> Result<(), CheckError> {
        Plan::new(args, &config.http).map(drop).map_err(Into::into)
    }

    async fn run(&self, args: HttpArgs, ctx: JobContext) -> Result<(), JobError> {
        let config = &ctx.deps.config.http;
        let plan = Plan::new(&args, config).map_err(|e| JobError::Permanent(Failure::of(e)))?;
        let secret = match (&config.secret, config.unsigned) {
            (Some(secret), _) => Some(secret),
            (None, true) => None,
            (None, false) => {
                return Err(JobError::permanent(format!(
                    "no signing secret: {var} (named by [http] secret_env) is not set in this worker's environment; set it to a random value (`openssl rand -hex 32`) shared with the receiver, or set [http] unsigned = true (FERRY_HTTP__UNSIGNED=true) to send unsigned requests",
                    var = config.secret_env
                )));
            }
        };
        let client = self.client().await?;
        // `[limits] "http:HOST"`, shared by every worker: after building the client (the
        // first job of a process waits for it) so the request leaves in its slot, and before
        // the timestamp, which a wait would age.
        if let Some(host) = plan.url.host_str() {
            ctx.rate_limit(&format!("http:{host}")).await?;
        }
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let method = plan.method.to_string();
        let url = plan.url.to_string();
        let mut request = client
            .request(plan.method, plan.url)
            .headers(plan.headers)
            .header("x-ferry-job-id", ctx.id.to_string())
            .header("x-ferry-attempt", ctx.attempt.to_string())
            .header("x-ferry-timestamp", timestamp.to_string());
        if let Some(secret) = secret {
            let signed = signature(secret.expose().as_bytes(), timestamp, &plan.body);
            request = request.header("x-ferry-signature", signed);
        }
        let response = request.body(plan.body).send().await.map_err(|e| {
            // Refused connections, resets and timeouts pass; a request reqwest cannot build
            // will not build next time either.
            let doing = format!("{method} {url}");
            if e.is_builder() {
                JobError::permanent_from(doing, e.without_url())
            } else {
                JobError::retryable_from(doing, e.without_url())
            }
        })?;
        response::outcome(response, &method, &url).await
    }
}
