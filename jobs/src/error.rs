use std::{fmt::Display, time::Duration};

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
