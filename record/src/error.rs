use uuid::Uuid;

/// What went wrong with the durable record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("no database configured for ferry's record; set DATABASE_URL or FERRY_DATABASE_URL")]
    NotConfigured,
    #[error("the Postgres URL is not valid: {0}")]
    BadUrl(String),
    #[error("cannot connect to Postgres ({0}); check DATABASE_URL and that the server runs")]
    Connect(String),
    #[error("schema {0:?} has no ferry tables; run `ferry migrate` first")]
    NotMigrated(String),
    #[error("migration failed: {0}")]
    Migrate(String),
    #[error("Postgres failed to {what}: {source}")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "run {id}: lease epoch {epoch} was superseded by another worker; this worker's checkpoint was rejected"
    )]
    LeaseLost { id: Uuid, epoch: i64 },
    #[error("run {id}: stored checkpoint does not match this job's checkpoint type: {message}")]
    BadCheckpoint { id: Uuid, message: String },
}

impl RecordError {
    pub(crate) fn connect(e: sqlx::Error) -> Self {
        Self::Connect(e.to_string())
    }

    pub(crate) fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Query { what, source }
    }

    /// Whether trying again later may succeed (the database was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect(_) => true,
            Self::Query { source, .. } => is_transient(source),
            _ => false,
        }
    }
}

/// Whether a Postgres error may go away on its own: the connection or pool failed, or the
/// server reported a transaction conflict (40), an operator intervention or shutdown (57), a
/// connection exception (08), or a lock it could not take (55P03).
pub fn is_transient(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    ) || e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| {
            c.starts_with("40") || c.starts_with("57") || c.starts_with("08") || c == "55P03"
        })
}
