//! `[retention]`: how long ferry keeps its own record (schema `ferry`), applied by the
//! built-in `maintenance.prune` kind that the scheduler runs daily and by `ferry prune`.
//!
//! A duration of `"0s"` keeps a table forever.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, duration};

const DAY: u64 = 24 * 3600;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Jobs that failed for good, by when they died.
    #[serde(with = "duration")]
    pub dead_jobs: Duration,
    /// Finished runs (succeeded, failed, cancelled), by when they finished. A files run
    /// whose rewrites can still be rolled back is kept.
    #[serde(with = "duration")]
    pub runs: Duration,
    #[serde(with = "duration")]
    pub audit_log: Duration,
    /// notify deliveries in a final state, by their last change.
    #[serde(with = "duration")]
    pub notify_deliveries: Duration,
    /// Schedule fires; the newest fire of each schedule is always kept.
    #[serde(with = "duration")]
    pub schedule_fires: Duration,
    /// Recorded alerts.
    #[serde(with = "duration")]
    pub alerts: Duration,
    /// Manifest rows of backups that `backup prune` deleted. The newest verified backup's
    /// row is never deleted.
    #[serde(with = "duration")]
    pub backups: Duration,
    /// The rollback window of files rewrites: a rewrite older than this (or rolled back this
    /// long ago) can no longer be rolled back, and its old values go.
    #[serde(with = "duration")]
    pub files_rewrites: Duration,
    /// The per-object files ledger, by last change; kept while its run's rewrites can still
    /// be rolled back, and while a multipart upload is open.
    #[serde(with = "duration")]
    pub files_objects: Duration,
    /// Rows deleted per statement: small, so a prune never holds locks the app waits on.
    pub batch: u32,
    /// When the scheduler runs `maintenance.prune` (cron, UTC), unless a `[[schedule]]` of
    /// that kind exists; `""` turns the built-in schedule off.
    pub schedule: String,
}

impl Default for Retention {
    fn default() -> Self {
        let days = |n: u64| Duration::from_secs(n * DAY);
        Self {
            dead_jobs: days(30),
            runs: days(30),
            audit_log: days(365),
            notify_deliveries: days(90),
            schedule_fires: days(30),
            alerts: days(90),
            backups: days(365),
            files_rewrites: days(180),
            files_objects: days(90),
            batch: 1000,
            schedule: "0 30 3 * * *".into(),
        }
    }
}

impl Retention {
    /// The built-in maintenance schedule, if one is to run.
    pub fn builtin_schedule(&self) -> Option<crate::Schedule> {
        (!self.schedule.trim().is_empty()).then(|| crate::Schedule {
            name: "ferry-maintenance".into(),
            cron: self.schedule.clone(),
            timezone: "UTC".into(),
            kind: "maintenance.prune".into(),
            args: serde_json::json!({}),
            enabled: true,
            catch_up: crate::CatchUp::Latest,
        })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.batch) {
            return Err(ConfigError::new(
                "retention.batch",
                format!("{} is out of range", self.batch),
                "use 1 to 100000 rows per delete (default 1000)",
            ));
        }
        if let Some(s) = self.builtin_schedule()
            && let Err(problem) = s.cron()
        {
            return Err(ConfigError::new(
                "retention.schedule",
                problem,
                "give a cron expression such as \"0 30 3 * * *\" (03:30 UTC daily), or \"\" for none",
            ));
        }
        Ok(())
    }
}
