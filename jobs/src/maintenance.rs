//! `maintenance.prune`: applies `[retention]` to ferry's own record (schema `ferry`). The
//! scheduler runs it daily; `ferry prune [--dry-run]` runs the same code at once.
//!
//! Rows go in batches of `retention.batch`, each a short statement on an index, so the prune
//! never holds locks that the application or the workers would wait on. Each batch selects
//! its rows by key and checks the condition again as it deletes, so a row that changed in
//! between (a delivery retried, a rewrite rolled back) is left alone.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_config::RecordRetention;
use ferry_record::Record;
use serde::{Deserialize, Serialize};

use crate::{JobContext, JobError, Kind, Settings};

/// A pause between batches, so a long prune leaves room for everyone else.
const BREATHER: Duration = Duration::from_millis(10);

/// One table's rule: its key columns and which rows are past retention (`$1` is the cutoff).
struct Rule {
    table: &'static str,
    key: &'static str,
    expired: &'static str,
    keep: fn(&RecordRetention) -> Duration,
}

const RULES: [Rule; 9] = [
    Rule {
        table: "dead_jobs",
        key: "id",
        expired: "died_at < $1",
        keep: |r| r.dead_jobs,
    },
    Rule {
        table: "runs",
        key: "id",
        // A files run stays while its rewrites can be rolled back.
        expired: "finished_at < $1 AND state IN ('succeeded', 'failed', 'cancelled')
                  AND NOT EXISTS (SELECT 1 FROM files_rewrites w
                                  WHERE w.run_id = runs.id AND w.rolled_back_at IS NULL)",
        keep: |r| r.runs,
    },
    Rule {
        table: "audit_log",
        key: "id",
        expired: "at < $1",
        keep: |r| r.audit_log,
    },
    Rule {
        table: "notify_deliveries",
        key: "key",
        // A message still queued or being sent keeps the row that stops it being sent twice.
        expired: "updated_at < $1 AND state IN ('sent', 'failed', 'unconfirmed')",
        keep: |r| r.notify_deliveries,
    },
    Rule {
        table: "schedule_fires",
        key: "schedule, fire_time",
        // The newest fire of each schedule stays: `schedules ls` and lateness read it.
        expired: "fire_time < $1 AND fire_time < (SELECT max(f.fire_time) FROM schedule_fires f
                                                  WHERE f.schedule = schedule_fires.schedule)",
        keep: |r| r.schedule_fires,
    },
    Rule {
        table: "alerts",
        key: "id",
        expired: "raised_at < $1 AND state <> 'pending'",
        keep: |r| r.alerts,
    },
    Rule {
        table: "backups",
        key: "id",
        // Only records of pruned backups, and never the newest verified backup's record.
        expired: "deleted_at < $1 AND id NOT IN (
                      SELECT DISTINCT ON (database) id FROM backups
                      WHERE verified_at IS NOT NULL AND verify_error IS NULL
                      ORDER BY database, created_at DESC)",
        keep: |r| r.backups,
    },
    Rule {
        table: "files_rewrites",
        key: "run_id, target, row_key",
        expired: "coalesce(rolled_back_at, rewritten_at) < $1",
        keep: |r| r.files_rewrites,
    },
    Rule {
        table: "files_objects",
        key: "source, destination, key",
        // An open multipart upload's row is how the next run aborts it; a run whose rewrites
        // can still be rolled back keeps its ledger.
        expired: "updated_at < $1 AND state <> 'uploading'
                  AND NOT EXISTS (SELECT 1 FROM files_rewrites w
                                  WHERE w.run_id = files_objects.run_id
                                    AND w.rolled_back_at IS NULL)",
        keep: |r| r.files_objects,
    },
];

/// What a prune did to one table (or would do, on a dry run).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pruned {
    pub table: String,
    /// Rows older than this went; None: the table is kept forever.
    pub cutoff: Option<DateTime<Utc>>,
    pub rows: u64,
}

/// Applies `retention` as of `now`. On a dry run, counts what would go and deletes nothing.
pub async fn prune(
    record: &Record,
    retention: &RecordRetention,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Vec<Pruned>, JobError> {
    let mut report = Vec::new();
    for rule in &RULES {
        let keep = (rule.keep)(retention);
        if keep.is_zero() {
            report.push(Pruned {
                table: rule.table.into(),
                cutoff: None,
                rows: 0,
            });
            continue;
        }
        let cutoff = now - chrono::TimeDelta::from_std(keep).unwrap_or(chrono::TimeDelta::MAX);
        let rows = if dry_run {
            count(record, rule, cutoff).await?
        } else {
            delete(record, rule, cutoff, retention.batch).await?
        };
        report.push(Pruned {
            table: rule.table.into(),
            cutoff: Some(cutoff),
            rows,
        });
    }
    Ok(report)
}

fn db(table: &'static str) -> impl Fn(sqlx::Error) -> JobError {
    move |e| JobError::db(format!("pruning {table} failed"), e)
}

async fn count(record: &Record, rule: &Rule, cutoff: DateTime<Utc>) -> Result<u64, JobError> {
    // Table, key and condition are constants of this module, never input.
    let sql = format!("SELECT count(*) FROM {} WHERE {}", rule.table, rule.expired);
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(cutoff)
        .fetch_one(record.pool())
        .await
        .map_err(db(rule.table))?;
    Ok(n as u64)
}

async fn delete(
    record: &Record,
    rule: &Rule,
    cutoff: DateTime<Utc>,
    batch: u32,
) -> Result<u64, JobError> {
    let sql = format!(
        "DELETE FROM {t} WHERE ({k}) IN (SELECT {k} FROM {t} WHERE {e} LIMIT $2) AND {e}",
        t = rule.table,
        k = rule.key,
        e = rule.expired
    );
    let mut total = 0;
    loop {
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(cutoff)
            .bind(i64::from(batch))
            .execute(record.pool())
            .await
            .map_err(db(rule.table))?
            .rows_affected();
        total += done;
        if done < u64::from(batch) {
            return Ok(total);
        }
        tokio::time::sleep(BREATHER).await;
    }
}

/// The built-in maintenance kind.
pub struct Prune;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneArgs {
    #[serde(default)]
    pub dry_run: bool,
}

impl Kind for Prune {
    const NAME: &'static str = "maintenance.prune";
    type Args = PruneArgs;

    fn defaults() -> Settings {
        Settings {
            max_attempts: 3,
            concurrency: Some(1),
            ..Settings::default()
        }
    }

    async fn run(&self, args: PruneArgs, ctx: JobContext) -> Result<(), JobError> {
        let report = prune(
            &ctx.deps.record,
            &ctx.deps.config.retention,
            Utc::now(),
            args.dry_run,
        )
        .await?;
        for p in report.iter().filter(|p| p.rows > 0) {
            tracing::info!(table = %p.table, rows = p.rows, dry_run = args.dry_run, "pruned ferry's record");
        }
        Ok(())
    }
}
