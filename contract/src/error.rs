use std::{error::Error, fmt::Display, sync::Arc, time::Duration};

/// How a job attempt failed, and so what happens next. Classified where the failure is
/// understood (the call site), never by matching message text later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// Try again after the kind's backoff (network, timeout, lock, a service down).
    #[error(transparent)]
    Retryable(Failure),
    /// Do not retry: bad arguments, unknown table, credentials refused.
    #[error(transparent)]
    Permanent(Failure),
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
    /// Try again later, for the reason `message` says.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable(Failure::new(message))
    }

    /// Give up, for the reason `message` says.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(Failure::new(message))
    }

    /// Try again later: `doing` failed with `cause`.
    pub fn retryable_from(
        doing: impl Into<String>,
        cause: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self::Retryable(Failure::with(doing, cause))
    }

    /// Give up: `doing` failed with `cause`.
    pub fn permanent_from(
        doing: impl Into<String>,
        cause: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self::Permanent(Failure::with(doing, cause))
    }

    /// A Postgres failure while `doing`: retried when the database was unreachable or busy,
    /// permanent otherwise (bad SQL, a constraint, a missing table).
    pub fn db(doing: impl Into<String>, e: sqlx::Error) -> Self {
        if ferry_record::is_transient(&e) {
            Self::retryable_from(doing, e)
        } else {
            Self::permanent_from(doing, e)
        }
    }
}

/// Why a job attempt failed: what it was doing, in the job's own terms, and the error that
/// stopped it when there is one, kept whole as the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    doing: Option<String>,
    cause: Option<Cause>,
}

impl Failure {
    /// A failure said in words only: the job found the problem itself.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            doing: Some(message.into()),
            cause: None,
        }
    }

    /// `doing` failed with `cause`; recorded as `doing: cause: its sources`.
    pub fn with(doing: impl Into<String>, cause: impl Error + Send + Sync + 'static) -> Self {
        Self {
            doing: Some(doing.into()),
            cause: Some(Cause::new(cause)),
        }
    }

    /// The error itself is the whole story.
    pub fn of(cause: impl Error + Send + Sync + 'static) -> Self {
        Self {
            doing: None,
            cause: Some(Cause::new(cause)),
        }
    }

    /// The error behind the failure, to downcast or inspect.
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
    }
}

impl Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.doing, &self.cause) {
            (Some(doing), _) => f.write_str(doing),
            (None, Some(cause)) => cause.fmt(f),
            (None, None) => f.write_str("failed"),
        }
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match (&self.doing, &self.cause) {
            (Some(_), Some(cause)) => Some(cause),
            // Said by the cause's own text: its sources come next.
            (None, Some(cause)) => cause.source(),
            (_, None) => None,
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

/// Lets the call site state intent, keeping the error as the source: `.retryable()?`,
/// `.permanent_while("reading the manifest")?`.
pub trait ResultExt<T> {
    fn retryable(self) -> Result<T, JobError>;
    fn permanent(self) -> Result<T, JobError>;
    /// Retryable, said as `doing: the error`.
    fn retryable_while(self, doing: impl Into<String>) -> Result<T, JobError>;
    /// Permanent, said as `doing: the error`.
    fn permanent_while(self, doing: impl Into<String>) -> Result<T, JobError>;
}

impl<T, E: Error + Send + Sync + 'static> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::Retryable(Failure::of(e)))
    }

    fn permanent(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::Permanent(Failure::of(e)))
    }

    fn retryable_while(self, doing: impl Into<String>) -> Result<T, JobError> {
        self.map_err(|e| JobError::retryable_from(doing, e))
    }

    fn permanent_while(self, doing: impl Into<String>) -> Result<T, JobError> {
        self.map_err(|e| JobError::permanent_from(doing, e))
    }
}

impl From<ferry_record::RecordError> for JobError {
    fn from(e: ferry_record::RecordError) -> Self {
        match e {
            // Another worker holds the run now; this attempt steps aside.
            ferry_record::RecordError::LeaseLost { .. } => Self::Interrupted,
            e if e.is_transient() => Self::Retryable(Failure::of(e)),
            e => Self::Permanent(Failure::of(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;

    #[derive(Debug, thiserror::Error)]
    #[error("pool exhausted")]
    struct Exhausted(#[source] Refused);

    #[test]
    fn a_failure_keeps_its_source_and_records_the_whole_chain() {
        let e = JobError::retryable_from("reading the manifest", Exhausted(Refused));
        assert_eq!(
            e.message(),
            "reading the manifest: pool exhausted: connection refused"
        );
        let JobError::Retryable(failure) = &e else {
            panic!("{e:?}")
        };
        let cause = failure.cause().expect("the source is kept");
        assert!(cause.get().downcast_ref::<Exhausted>().is_some());

        // Without words of its own, the error's text and its sources, said once each.
        let e: Result<(), JobError> = Err(Exhausted(Refused)).permanent();
        let e = e.unwrap_err();
        assert_eq!(e.message(), "pool exhausted: connection refused");
        assert!(matches!(e, JobError::Permanent(_)));
    }
}
