//! Figures that say whether ferry is doing its unattended work: backup ages, the change-relay
//! backlog, the last fire of each schedule, dead jobs per kind. Read by `/metrics` and by the
//! scheduler's alerts, so both judge from the same numbers.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Record, RecordError};

/// The backups of one database that are not pruned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BackupAges {
    pub database: String,
    pub newest: DateTime<Utc>,
    /// The newest backup whose last verify passed.
    pub newest_verified: Option<DateTime<Utc>>,
    pub oldest: DateTime<Utc>,
}

/// Captured changes waiting for the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RelayBacklog {
    /// Counted up to the cap given, so a huge backlog costs a bounded scan.
    pub changes: i64,
    pub oldest: Option<DateTime<Utc>>,
}

impl Record {
    /// Per database with a backup: the newest, the newest verified and the oldest backup.
    pub async fn backup_ages(&self) -> Result<Vec<BackupAges>, RecordError> {
        sqlx::query_as(
            "SELECT database, max(created_at) AS newest,
                    max(created_at) FILTER (WHERE verified_at IS NOT NULL AND verify_error IS NULL)
                        AS newest_verified,
                    min(created_at) AS oldest
             FROM backups WHERE deleted_at IS NULL GROUP BY database ORDER BY database",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(RecordError::query("read backup ages"))
    }

    pub async fn relay_backlog(&self, cap: i64) -> Result<RelayBacklog, RecordError> {
        let (changes, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM sync_changes LIMIT $1) c),
                    (SELECT min(at) FROM sync_changes)",
        )
        .bind(cap)
        .fetch_one(&self.pool)
        .await
        .map_err(RecordError::query("read the relay backlog"))?;
        Ok(RelayBacklog { changes, oldest })
    }

    /// Each schedule's newest fire.
    pub async fn last_fires(&self) -> Result<Vec<(String, DateTime<Utc>)>, RecordError> {
        sqlx::query_as(
            "SELECT s.name, f.fire_time FROM schedules s
             CROSS JOIN LATERAL (SELECT fire_time FROM schedule_fires
                                 WHERE schedule = s.name ORDER BY fire_time DESC LIMIT 1) f
             ORDER BY s.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(RecordError::query("read last fires"))
    }

    /// Dead jobs not re-queued, per kind.
    pub async fn dead_by_kind(&self) -> Result<Vec<(String, i64)>, RecordError> {
        sqlx::query_as(
            "SELECT kind, count(*) FROM dead_jobs WHERE retried_at IS NULL
             GROUP BY kind ORDER BY kind",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(RecordError::query("count dead jobs"))
    }
}
