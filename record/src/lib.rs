//! ferry's durable record in Postgres: what people and resumed jobs need when Redis is gone.
//!
//! Tables live in one schema (default `ferry`, configurable so tests and installs can share a
//! database); connections set `search_path` to it, and migrations are embedded once, here.

mod audit;
pub mod copy_text;
mod dead;
mod delivery;
mod error;
mod figures;
mod run;
mod unconfirmed;

use std::str::FromStr;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

pub use audit::{AuditEntry, NewAudit};
pub use dead::{DeadFilter, DeadJob};
pub use delivery::{DeliveryRow, NewDelivery, NotSent, Prior};
pub use error::{RecordError, is_transient};
pub use figures::{BackupAges, RelayBacklog};
pub use run::{Lease, Progress, RunRow, RunState};
pub use unconfirmed::Unconfirmed;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A handle on the durable record. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Record {
    pool: PgPool,
    schema: String,
}

impl Record {
    /// Connects to the database holding the record. Does not migrate.
    pub async fn connect(config: &ferry_config::Postgres) -> Result<Self, RecordError> {
        let url = config.record_url().ok_or(RecordError::NotConfigured)?;
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| RecordError::BadUrl(e.to_string()))?
            .options([("search_path", config.schema.as_str())])
            .application_name("ferry");
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(RecordError::connect)?;
        Ok(Self {
            pool,
            schema: config.schema.clone(),
        })
    }

    /// Opens up to `n` connections now and keeps them idle in the pool, so a job's first
    /// burst of queries does not wait for connection setup (with TLS, a handshake each).
    pub async fn warm(&self, n: u32) {
        let mut held = Vec::new();
        for _ in 0..n.min(self.pool.options().get_max_connections()) {
            match self.pool.acquire().await {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
    }

    /// Creates the schema if needed and applies pending migrations. Idempotent.
    pub async fn migrate(&self) -> Result<(), RecordError> {
        // The schema name was checked to be a plain identifier by config validation.
        debug_assert!(ferry_config::is_identifier(&self.schema));
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.schema);
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&self.pool)
            .await
            .map_err(RecordError::query("create schema"))?;
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| RecordError::Migrate(e.to_string()))
    }

    /// Fails with a clear message when `ferry migrate` has not been run.
    pub async fn check_migrated(&self) -> Result<(), RecordError> {
        let present: bool =
            sqlx::query_scalar("SELECT to_regclass(current_schema() || '.runs') IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(RecordError::query("check schema"))?;
        if present {
            Ok(())
        } else {
            Err(RecordError::NotMigrated(self.schema.clone()))
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), RecordError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(RecordError::query("answer a ping"))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }
}
