//! sync: mirror PostgreSQL tables into MongoDB.
//!
//! - `sync.full` plans keyset ranges per table and fans them out as `sync.chunk` jobs; each
//!   chunk reads pages in key order (never OFFSET), writes them unordered, and checkpoints
//!   its cursor; the parent run collects progress.
//! - `sync.incremental` pages by `(updated_at, key)` above a saved watermark, re-reading an
//!   overlap window for rows committed late; tables without change triggers get a key sweep
//!   that removes documents whose rows are gone.
//! - `sync.entity` syncs one row on write (coalesced: one waiting job per row); a missing row
//!   deletes its document. Triggers feed a change table that the scheduler relays into these
//!   jobs.
//! - `verify` compares counts, and with `deep` every document, naming keys that differ.

pub mod catalog;
mod chunk;
mod entity;
mod full;
mod incremental;
pub mod mapping;
mod mirror;
pub mod page;
pub mod relay;
mod settle;
pub mod status;
mod sweep;
pub mod triggers;
pub mod verify;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bson::Bson;
use ferry_config::Config;
use sqlx::PgPool;
use tokio::sync::Mutex;

pub use catalog::{Catalog, Table};
pub use chunk::{Chunk, ChunkArgs};
pub use entity::{Entity, EntityArgs};
pub use full::{Full, FullArgs};
pub use incremental::{Incremental, IncrementalArgs};
pub use verify::{Verify, VerifyArgs};

use crate::{Failure, JobContext, JobError};

/// The queue sync jobs travel on.
pub const QUEUE: &str = "sync";

/// Where sync reads and writes.
#[derive(Debug, Clone)]
pub struct Target {
    pub app: PgPool,
    pub mongo: mongodb::Database,
    recent: Arc<Mutex<Option<RecentCatalog>>>,
}

/// A catalog and when it was read.
type RecentCatalog = (Instant, Arc<Catalog>);

/// How long on-write jobs reuse a catalog read: long enough that a burst of row syncs reads
/// the catalog once, short enough that a schema change is seen within seconds.
const CATALOG_REUSE: Duration = Duration::from_secs(10);

impl Target {
    /// Opens the application database and the MongoDB client (which connects lazily).
    pub async fn connect(config: &Config) -> Result<Self, SyncError> {
        let url = config.postgres.url.as_deref().ok_or_else(|| {
            SyncError::Config("sync needs the application database: set DATABASE_URL".into())
        })?;
        let uri = config
            .mongodb
            .uri
            .as_deref()
            .ok_or_else(|| SyncError::Config("sync needs MongoDB: set MONGODB_URI".into()))?;
        let app = sqlx::postgres::PgPoolOptions::new()
            .max_connections(config.postgres.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| {
                SyncError::Unavailable(format!(
                    "cannot connect to the application database ({e}); check DATABASE_URL"
                ))
            })?;
        let mut options = mongodb::options::ClientOptions::parse(uri)
            .await
            .map_err(|e| SyncError::Config(format!("MONGODB_URI is not usable: {e}")))?;
        options.app_name = Some("ferry".into());
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(10));
        let client = mongodb::Client::with_options(options)
            .map_err(|e| SyncError::Config(format!("MONGODB_URI: {e}")))?;
        Ok(Self {
            app,
            mongo: client.database(&config.mongodb.database),
            recent: Arc::default(),
        })
    }

    /// The catalog as it is now.
    pub async fn catalog(&self, config: &Config) -> Result<Catalog, SyncError> {
        Catalog::discover(&self.app, &config.sync, &config.postgres.schema).await
    }

    /// The catalog, read at most [`CATALOG_REUSE`] ago: for the per-row and per-chunk jobs,
    /// which would otherwise spend more time reading the catalog than syncing.
    pub async fn recent_catalog(&self, config: &Config) -> Result<Arc<Catalog>, SyncError> {
        let mut recent = self.recent.lock().await;
        if let Some((at, catalog)) = recent.as_ref()
            && at.elapsed() < CATALOG_REUSE
        {
            return Ok(catalog.clone());
        }
        let catalog = Arc::new(self.catalog(config).await?);
        *recent = Some((Instant::now(), catalog.clone()));
        Ok(catalog)
    }
}

/// What went wrong in a sync, classified once, here.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Configuration or arguments: will not get better by retrying.
    #[error("{0}")]
    Config(String),
    /// A service is down or busy: retry.
    #[error("{0}")]
    Unavailable(String),
    /// A job this sync fans out was refused by the checks every enqueue passes.
    #[error(transparent)]
    Enqueue(#[from] crate::enqueue::EnqueueError),
    #[error("Postgres failed to {what}: {source}")]
    Db {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("MongoDB failed to {what}: {message}")]
    Mongo {
        what: &'static str,
        message: String,
        transient: bool,
    },
}

impl SyncError {
    pub(crate) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Db { what, source }
    }

    pub(crate) fn mongo(what: &'static str) -> impl FnOnce(mongodb::error::Error) -> Self {
        move |e| {
            use mongodb::error::ErrorKind;
            let transient = match &*e.kind {
                ErrorKind::Authentication { .. } | ErrorKind::InvalidArgument { .. } => false,
                ErrorKind::Command(c) => !matches!(c.code, 13 | 18 | 2 | 9 | 72),
                ErrorKind::InsertMany(_) | ErrorKind::BulkWrite(_) | ErrorKind::Write(_) => false,
                _ => true,
            };
            Self::Mongo {
                what,
                message: e.to_string(),
                transient,
            }
        }
    }
}

impl From<SyncError> for JobError {
    fn from(e: SyncError) -> Self {
        let transient = match &e {
            SyncError::Config(_) | SyncError::Enqueue(_) => false,
            SyncError::Unavailable(_) => true,
            SyncError::Db { source, .. } => ferry_record::is_transient(source),
            SyncError::Mongo { transient, .. } => *transient,
        };
        if transient {
            JobError::Retryable(Failure::of(e))
        } else {
            JobError::Permanent(Failure::of(e))
        }
    }
}

/// The sync target of a job's worker, connected on the first sync job and shared by the
/// later ones; or a permanent error saying what to configure.
pub(crate) async fn target(ctx: &JobContext) -> Result<Target, JobError> {
    let config = &ctx.deps.config;
    ctx.deps
        .clients
        .get_or_try_init(|| Target::connect(config))
        .await
        .map_err(JobError::from)
}

/// A key value as Postgres text, for binding.
pub(crate) fn bson_text(v: &Bson) -> String {
    match v {
        Bson::String(s) => s.clone(),
        Bson::DateTime(d) => d.try_to_rfc3339_string().unwrap_or_default(),
        Bson::Decimal128(d) => d.to_string(),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(f) => f.to_string(),
        Bson::Boolean(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// A key value from JSON (a job's arguments or a captured change) as Postgres text.
pub(crate) fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
