use std::{error::Error, fmt::Display, sync::Arc, time::Duration};

/// How a job attempt failed, and so what happens next. Classified where the failure is
/// understood (the call site), never by matching message text later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// Try again after the kind's backoff (network, timeout, lock, a service down).
    #[error("{0}")]
    Retryable(String),
    /// Do not retry: bad arguments, unknown table, credentials refused.
    #[error("{0}")]
    Permanent(String),
    /// Try again after `after` instead of the kind's backoff, because the other side said
    /// when (an HTTP `Retry-After`); the dispatcher caps the wait at the kind's backoff cap.
    /// Spends an attempt like [`JobError::Retryable`]. What failed is the source.
    #[error("retry after {after:?}")]
    RetryAfter {
        after: Duration,
        #[source]
        cause: Cause,
    },
    /// Not now: run again after this long without spending an attempt.
    #[error("snoozed for {0:?}")]
    Snooze(Duration),
    /// An operator cancelled the job.
    #[error("cancelled by an operator")]
    Cancelled,
    /// The worker is shutting down; the job saved its checkpoint and goes back to the queue
    /// without spending an attempt.
    #[error("interrupted by worker shutdown")]
    Interrupted,
}

impl JobError {
    /// A Postgres failure, said as `message`: retried when the database was unreachable or
    /// busy, permanent otherwise (bad SQL, a constraint, a missing table).
    pub fn db(message: String, e: &sqlx::Error) -> Self {
        if ferry_record::is_transient(e) {
            Self::Retryable(message)
        } else {
            Self::Permanent(message)
        }
    }
}

impl JobError {
    /// What went wrong with every cause, outermost first (`retry after 1s: HTTP 429 ...`):
    /// the text an attempt's error is recorded with.
    pub fn message(&self) -> String {
        chain(self)
    }
}

/// An error and its sources as one line, joined by `: `.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(source) = next {
        let part = source.to_string();
        // Some errors repeat their source's text in their own; say it once.
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

/// The error behind a [`JobError`], kept whole (type and sources) and shared, so `JobError`
/// stays `Clone`; two causes are equal when they are the same error.
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync>);

impl Cause {
    pub fn new(e: impl Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }

    /// The error itself, to downcast or inspect.
    pub fn get(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cause {}

impl Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Transparent: its sources are the wrapped error's.
impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Lets the call site state intent: `.retryable()?`, `.permanent()?`.
pub trait ResultExt<T> {
    fn retryable(self) -> Result<T, JobError>;
    fn permanent(self) -> Result<T, JobError>;
}

impl<T, E: Display> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::Retryable(e.to_string()))
    }

    fn permanent(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::Permanent(e.to_string()))
    }
}

impl From<ferry_record::RecordError> for JobError {
    fn from(e: ferry_record::RecordError) -> Self {
        match e {
            // Another worker holds the run now; this attempt steps aside.
            ferry_record::RecordError::LeaseLost { .. } => Self::Interrupted,
            e if e.is_transient() => Self::Retryable(e.to_string()),
            e => Self::Permanent(e.to_string()),
        }
    }
}
