use std::{future::Future, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use crate::{Backoff, JobContext, JobError};

/// Why [`Kind::check`] refused a job's arguments: any error, or a message (`"...".into()`).
pub type CheckError = Box<dyn std::error::Error + Send + Sync>;

/// One kind of job.
pub trait Kind: Send + Sync + 'static {
    /// Stable name stored with every queued job; never derived from Rust type names, so
    /// queued jobs survive renames.
    const NAME: &'static str;
    /// Identifiers, not records: a handler reads current state, so a late or repeated job
    /// does no harm.
    type Args: Serialize + DeserializeOwned + Send + 'static;

    /// This kind's defaults; `[kinds.NAME]` in config overrides them.
    fn defaults() -> Settings;

    /// Checks arguments against config when a job is enqueued, contacting nothing; the
    /// error says what is wrong and what to do (a `String` converts: `Err("...".into())`).
    fn check(_args: &Self::Args, _config: &ferry_config::Config) -> Result<(), CheckError> {
        Ok(())
    }

    fn run(
        &self,
        args: Self::Args,
        ctx: JobContext,
    ) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// Retry, timeout and concurrency settings of a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The queue its jobs travel on.
    pub queue: String,
    /// Attempts before the job is dead (the first run counts).
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Longest one attempt may run; then it fails as retryable.
    pub timeout: Duration,
    /// Most jobs of this kind one worker process runs at once (None: the worker's limit).
    pub concurrency: Option<usize>,
    /// The priority of its jobs when the enqueue does not say.
    pub priority: ferry_queue::Priority,
    /// The argument field naming a job's tenant when the enqueue does not say.
    pub tenant_from: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            queue: "default".into(),
            max_attempts: 10,
            backoff: Backoff {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(3600),
            },
            timeout: Duration::from_secs(3600),
            concurrency: None,
            priority: ferry_queue::Priority::Default,
            tenant_from: None,
        }
    }
}

impl Settings {
    pub(crate) fn apply(&mut self, o: &ferry_config::KindOverrides) {
        if let Some(v) = o.max_attempts {
            self.max_attempts = v;
        }
        if let Some(v) = o.backoff_base {
            self.backoff.base = v;
        }
        if let Some(v) = o.backoff_cap {
            self.backoff.cap = v;
        }
        if let Some(v) = o.timeout {
            self.timeout = v;
        }
        if let Some(v) = o.concurrency {
            self.concurrency = Some(v);
        }
        if let Some(v) = &o.queue {
            self.queue = v.clone();
        }
        if let Some(v) = o.priority {
            self.priority = v;
        }
        if let Some(v) = &o.tenant_from {
            self.tenant_from = Some(v.clone());
        }
    }
}
