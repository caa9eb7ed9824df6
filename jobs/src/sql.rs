//! `sql`: runs a maintenance statement named in `[sql.statements]` (cleanup functions,
//! `REFRESH MATERIALIZED VIEW`, `VACUUM`), with a timeout. Only names travel in jobs; the
//! SQL lives in config, so a job can never carry a statement of its own.

use std::{str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};
use sqlx::{ConnectOptions, postgres::PgConnectOptions};

use crate::{Backoff, JobContext, JobError, Kind, Settings};

pub struct Sql;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlArgs {
    /// A name from `[sql.statements]`.
    pub statement: String,
}

impl Kind for Sql {
    const NAME: &'static str = "sql";
    type Args = SqlArgs;

    fn defaults() -> Settings {
        Settings {
            max_attempts: 3,
            backoff: Backoff {
                base: Duration::from_secs(30),
                cap: Duration::from_secs(600),
            },
            // Each job opens a Postgres connection of its own, and the default queue runs up
            // to 512 jobs at once: maintenance statements never need that many.
            concurrency: Some(4),
            ..Settings::default()
        }
    }

    async fn run(&self, args: SqlArgs, ctx: JobContext) -> Result<(), JobError> {
        let config = &ctx.deps.config;
        let name = &args.statement;
        let (sql, timeout) = config.sql.statement(name).map_err(JobError::permanent)?;
        let url = config.postgres.url.as_deref().ok_or_else(|| {
            JobError::permanent("sql needs the application database: set DATABASE_URL")
        })?;
        // A connection of its own, outside any transaction (VACUUM refuses to run in one),
        // with the timeout enforced by the server, which also stops the statement there.
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| JobError::permanent_from("DATABASE_URL is not usable", e))?
            .options([("statement_timeout", timeout.as_millis().to_string())])
            .application_name("ferry sql");
        let mut conn = options
            .connect()
            .await
            .map_err(|e| classify(name, "connect", e))?;
        let started = std::time::Instant::now();
        let result = tokio::select! {
            r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn) => r,
            _ = ctx.cancelled() => return Err(JobError::Cancelled),
        };
        match result {
            Ok(done) => {
                tracing::info!(statement = %name, rows = done.rows_affected(), elapsed = ?started.elapsed(), "statement done");
                Ok(())
            }
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("57014") => {
                Err(JobError::retryable(format!(
                    "statement {name} was stopped after its timeout of {} (sql.timeout or sql.statements.{name}.timeout)",
                    humantime::format_duration(timeout)
                )))
            }
            Err(e) => Err(classify(name, "run", e)),
        }
    }
}

fn classify(name: &str, what: &str, e: sqlx::Error) -> JobError {
    JobError::db(format!("statement {name}: failed to {what}"), e)
}
