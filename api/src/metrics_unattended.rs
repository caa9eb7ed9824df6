//! The `/metrics` figures for unattended operation, the same numbers the scheduler's alerts
//! judge from: backup ages per database, the change-relay backlog, seconds since each
//! schedule's last fire, dead jobs per kind.

use chrono::{DateTime, Utc};
use ferry_record::{BackupAges, RelayBacklog};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, gauge::ConstGauge},
};

use crate::{ApiError, AppState};

/// The relay backlog is counted up to this many rows, so a scrape stays cheap.
const BACKLOG_CAP: i64 = 1_000_000;

#[derive(Debug)]
pub struct Unattended {
    now: DateTime<Utc>,
    backups: Vec<BackupAges>,
    relay: RelayBacklog,
    last_fires: Vec<(String, DateTime<Utc>)>,
    dead: Vec<(String, i64)>,
}

pub async fn snapshot(state: &AppState) -> Result<Unattended, ApiError> {
    let record = state.record();
    let configured: Vec<&str> = state
        .config()
        .schedules
        .iter()
        .map(|s| s.name.as_str())
        .chain(
            state
                .config()
                .retention
                .builtin_schedule()
                .is_some()
                .then_some("ferry-maintenance"),
        )
        .collect();
    let mut last_fires = record.last_fires().await?;
    last_fires.retain(|(name, _)| configured.contains(&name.as_str()));
    Ok(Unattended {
        now: Utc::now(),
        backups: record.backup_ages().await?,
        relay: record.relay_backlog(BACKLOG_CAP).await?,
        last_fires,
        dead: record.dead_by_kind().await?,
    })
}

type Rows = Vec<(Vec<(&'static str, String)>, f64)>;

impl Collector for Unattended {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut gauge = |name: &str, help: &str, rows: Rows| {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, value) in rows {
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
            Ok::<(), std::fmt::Error>(())
        };
        let seconds = |at: DateTime<Utc>| (self.now - at).num_milliseconds() as f64 / 1000.0;
        let db = |b: &BackupAges| vec![("database", b.database.clone())];
        gauge(
            "ferry_backup_newest_age_seconds",
            "Age of the newest backup of each database (pruned backups left out).",
            self.backups
                .iter()
                .map(|b| (db(b), seconds(b.newest)))
                .collect(),
        )?;
        gauge(
            "ferry_backup_newest_verified_age_seconds",
            "Age of the newest backup of each database whose last verify passed.",
            self.backups
                .iter()
                .filter_map(|b| Some((db(b), seconds(b.newest_verified?))))
                .collect(),
        )?;
        gauge(
            "ferry_relay_backlog",
            "Captured changes waiting for the relay (counted up to 1,000,000).",
            vec![(Vec::new(), self.relay.changes as f64)],
        )?;
        gauge(
            "ferry_relay_oldest_change_age_seconds",
            "Age of the oldest captured change waiting for the relay (0 when none waits).",
            vec![(Vec::new(), self.relay.oldest.map_or(0.0, seconds))],
        )?;
        gauge(
            "ferry_schedule_last_fire_age_seconds",
            "Seconds since each schedule's newest fire was enqueued (its fire time).",
            self.last_fires
                .iter()
                .map(|(name, at)| (vec![("schedule", name.clone())], seconds(*at)))
                .collect(),
        )?;
        gauge(
            "ferry_dead_jobs",
            "Jobs that failed for good and were not re-queued, in the durable record.",
            self.dead
                .iter()
                .map(|(kind, n)| (vec![("kind", kind.clone())], *n as f64))
                .collect(),
        )?;
        Ok(())
    }
}
