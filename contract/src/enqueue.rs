//! Enqueueing as the CLI and the HTTP API do it: check a job fully, then submit it to its
//! kind's queue.

use std::collections::BTreeMap;

use ferry_queue::{NewJob, Queue, QueueError, now_us};
use serde::Serialize;
use uuid::Uuid;

use crate::{Kind, Registry, Settings, UnknownKind};

/// Longest idempotency key accepted.
const MAX_KEY_LEN: usize = 200;

/// Furthest ahead a job may be scheduled: past this a `run_at` is almost surely a unit
/// mistake (milliseconds for seconds), and a far-future job holds Redis memory for years.
pub const MAX_RUN_AHEAD: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

/// The prefix of the scheduler's own keys; no other caller may send a key that starts so.
const SCHEDULE_PREFIX: &str = "schedule:";

/// Why a job was not enqueued; each says what is wrong and what to do, and keeps the error
/// behind it as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    #[error(transparent)]
    UnknownKind(#[from] UnknownKind),
    #[error("args is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("args must be a JSON object, got {0}")]
    NotObject(serde_json::Value),
    #[error(
        "{path} holds a NUL character (\\u0000), which PostgreSQL cannot store, so the job could never be recorded; remove it"
    )]
    Nul { path: String },
    /// The arguments do not deserialize into the kind's argument type.
    #[error("arguments for {kind} do not fit: {source}")]
    Args {
        kind: &'static str,
        source: serde_json::Error,
    },
    /// The kind's own check ([`Kind::check`]) refused the arguments; its message says why.
    #[error("{source}")]
    Refused {
        kind: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("arguments for {kind} do not serialize: {source}")]
    Serialize {
        kind: &'static str,
        source: serde_json::Error,
    },
    #[error("a key must be 1 to {MAX_KEY_LEN} characters, got {0}")]
    KeyLength(usize),
    #[error(
        "idempotency keys starting with {SCHEDULE_PREFIX:?} belong to the scheduler; choose another key"
    )]
    SchedulerKey,
    #[error(
        "run_at is more than {} days ahead; schedule it closer (a cron schedule suits far-off work)",
        MAX_RUN_AHEAD.as_secs() / 86_400
    )]
    TooFarAhead,
    #[error("{0:?} is neither an RFC 3339 time nor a delay like 30s")]
    BadTime(String),
    #[error("{0}")]
    Tenant(String),
}

/// Who enqueues. Idempotency keys live in the caller's namespace and the kind's, so one
/// caller can neither adopt nor pre-empt another's job by sending its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The admin token (API or dashboard).
    Admin,
    /// An enqueue token: `api` for `FERRY_API_TOKEN`, else its `[[api.tokens]]` name.
    Token(String),
    /// `ferry enqueue` and the other CLI commands.
    Cli,
    /// Cron fires.
    Scheduler,
    /// ferry's own fan-out (a full sync's chunks, relayed changes).
    Ferry,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Admin => f.write_str("admin"),
            Self::Token(name) if name == "api" => f.write_str("api"),
            Self::Token(name) => write!(f, "token:{name}"),
            Self::Cli => f.write_str("cli"),
            Self::Scheduler => f.write_str("scheduler"),
            Self::Ferry => f.write_str("ferry"),
        }
    }
}

/// The idempotency key as stored: `ORIGIN/KIND/KEY`.
pub fn scoped_key(origin: &Origin, kind: &str, key: &str) -> String {
    format!("{origin}/{kind}/{key}")
}

/// A checked job and the queue its kind travels on.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub queue: String,
    pub job: NewJob,
}

/// What an enqueue may say of a job beyond its kind and arguments: its keys, and where it
/// stands in the flow (priority, tenant); the kind's `[kinds.NAME]` settings fill the rest.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// The same key returns the first job's id.
    pub idempotency: Option<String>,
    /// While a job with this key waits, enqueueing again returns it.
    pub coalesce: Option<String>,
    /// None: the kind's `priority` (default).
    pub priority: Option<ferry_queue::Priority>,
    /// None: the argument named by the kind's `tenant_from`, if any.
    pub tenant: Option<String>,
}

/// What an enqueue did, as `ferry enqueue --json` and `POST /v1/jobs` report it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Enqueued {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    /// False when the idempotency (or coalesce) key already named this job.
    pub created: bool,
}

/// Checks a job before anything is enqueued: a known kind, arguments (JSON text) that are an
/// object fitting the kind and hold no NUL, a sane key in `origin`'s namespace, a run time
/// within a year. The message says what is wrong. Every enqueue goes through here (or
/// [`settle`], for a caller that checked the arguments against the kind already), so a
/// kind's `[kinds.NAME]` settings reach every job of it.
pub fn prepare(
    registry: &Registry,
    origin: &Origin,
    kind: &str,
    args: &str,
    keys: Keys,
    run_at_us: Option<i64>,
) -> Result<Prepared, EnqueueError> {
    let entry = registry.get(kind)?;
    let value = args_object(args)?;
    entry.validate(args)?;
    settle(
        entry.settings(),
        origin,
        entry.name(),
        value,
        keys,
        run_at_us,
    )
}

/// A job of kind `K` from its typed arguments, checked and settled like any other (the
/// kind's effective settings, `[kinds.NAME]` overrides included, and its queue).
pub fn typed<K: Kind>(
    registry: &Registry,
    origin: &Origin,
    args: &K::Args,
    keys: Keys,
) -> Result<Prepared, EnqueueError> {
    let args = serde_json::to_string(args).map_err(|source| EnqueueError::Serialize {
        kind: K::NAME,
        source,
    })?;
    prepare(registry, origin, K::NAME, &args, keys, None)
}

/// Arguments as a JSON object holding no NUL.
pub fn args_object(args: &str) -> Result<serde_json::Value, EnqueueError> {
    let value: serde_json::Value = serde_json::from_str(args).map_err(EnqueueError::NotJson)?;
    if !value.is_object() {
        return Err(EnqueueError::NotObject(value));
    }
    if let Some(path) = nul_at(&value, "args") {
        return Err(EnqueueError::Nul { path });
    }
    Ok(value)
}

/// The job of `kind` with `settings` (its effective ones), from arguments already checked
/// against the kind: the keys in `origin`'s namespace, priority, tenant, queue and attempts
/// as the kind's settings say unless the enqueue does. The scheduler, which checks a
/// schedule's arguments once at start, settles each fire here.
pub fn settle(
    settings: &Settings,
    origin: &Origin,
    kind: &str,
    args: serde_json::Value,
    keys: Keys,
    run_at_us: Option<i64>,
) -> Result<Prepared, EnqueueError> {
    for key in [&keys.idempotency, &keys.coalesce].into_iter().flatten() {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(EnqueueError::KeyLength(key.len()));
        }
    }
    if let Some(key) = &keys.idempotency
        && key.starts_with(SCHEDULE_PREFIX)
        && *origin != Origin::Scheduler
    {
        return Err(EnqueueError::SchedulerKey);
    }
    if let Some(at) = run_at_us
        && at - now_us() > MAX_RUN_AHEAD.as_micros() as i64
    {
        return Err(EnqueueError::TooFarAhead);
    }
    let tenant = match (keys.tenant, &settings.tenant_from) {
        (Some(t), _) => Some(t),
        (None, Some(field)) => tenant_of(&args, field),
        (None, None) => None,
    };
    if let Some(t) = &tenant {
        ferry_queue::check_tenant(t).map_err(EnqueueError::Tenant)?;
    }
    let mut job = NewJob::new(kind, args.to_string(), settings.max_attempts);
    job.priority = keys.priority.unwrap_or(settings.priority);
    job.tenant = tenant;
    job.idempotency_key = keys.idempotency.map(|k| scoped_key(origin, kind, &k));
    job.coalesce_key = keys.coalesce;
    job.owner = Some(origin.to_string());
    job.run_at_us = run_at_us;
    Ok(Prepared {
        queue: settings.queue.to_owned(),
        job,
    })
}

/// The tenant named by argument `field` (a string or a number); none when the field is
/// absent or null, so jobs without an owner (maintenance) are not limited.
fn tenant_of(args: &serde_json::Value, field: &str) -> Option<String> {
    match args.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Where the first NUL character in `value` (a key or a string) is, as a path like `args.a[2]`.
fn nul_at(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some(path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(format!("{path} (a key)"))
            } else {
                nul_at(v, &format!("{path}.{k}"))
            }
        }),
        _ => None,
    }
}

/// A run time: an RFC 3339 time, or a delay from now such as `30s` or `5m`.
pub fn parse_at(s: &str) -> Result<i64, EnqueueError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    humantime::parse_duration(s)
        .map(|d| now_us() + d.as_micros() as i64)
        .map_err(|_| EnqueueError::BadTime(s.to_owned()))
}

/// Enqueues checked jobs, each queue's jobs together in input order; results in input order.
pub async fn submit(queue: &Queue, jobs: Vec<Prepared>) -> Result<Vec<Enqueued>, QueueError> {
    let mut by_queue: BTreeMap<String, Vec<(usize, NewJob)>> = BTreeMap::new();
    for (i, p) in jobs.into_iter().enumerate() {
        by_queue.entry(p.queue).or_default().push((i, p.job));
    }
    let mut done: Vec<(usize, Enqueued)> = Vec::new();
    for (name, jobs) in by_queue {
        let (order, jobs): (Vec<usize>, Vec<NewJob>) = jobs.into_iter().unzip();
        let ids = queue.enqueue(&name, &jobs).await?;
        for ((i, job), (id, created)) in order.into_iter().zip(&jobs).zip(ids) {
            done.push((
                i,
                Enqueued {
                    id,
                    kind: job.kind.clone(),
                    queue: name.clone(),
                    created,
                },
            ));
        }
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, e)| e).collect())
}
