//! `[[on_change]]` rules: captured row changes become jobs of any kind.
//!
//! - [`capture`]: AFTER row triggers on the rules' tables append each change, with its row,
//!   to `change_events` in ferry's schema (`ferry events install-triggers`).
//! - [`relay`]: every scheduler replica takes batches with `FOR UPDATE SKIP LOCKED`, renders
//!   each matching rule's arguments from the row, enqueues the jobs with an idempotency key
//!   per row version, and deletes the changes in the transaction that follows the enqueue.

pub mod capture;
pub mod relay;
mod rules;

pub use rules::{Change, RouteError, RuleRef, Rules};

/// What went wrong relaying or capturing changes.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// Configuration, or the database is not set up for capture: will not get better alone.
    #[error("{0}")]
    Setup(String),
    #[error("Postgres failed to {what}: {source}")]
    Db {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Queue(#[from] ferry_queue::QueueError),
}

/// Connects to the application database, where capture triggers and ferry's schema live.
pub async fn app_pool(config: &ferry_config::Config) -> Result<sqlx::PgPool, EventsError> {
    let url = config.postgres.url.as_deref().ok_or_else(|| {
        EventsError::Setup("change capture needs the application database: set DATABASE_URL".into())
    })?;
    sqlx::PgPool::connect(url).await.map_err(EventsError::db(
        "connect to the application database (check DATABASE_URL)",
    ))
}

impl EventsError {
    pub(crate) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Db { what, source }
    }
}
