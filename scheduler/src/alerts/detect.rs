//! What the scheduler alerts on. [`dead_jobs`] announces each dead job once, the first of
//! a kind at once and the rest of `alerts.dead_digest_every` in one digest; [`standing`]
//! finds conditions that last (a stale backup, a stuck run, a relay backlog, a late
//! schedule), which the caller announces again at most every `alerts.repeat_every`.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use ferry_config::Config;
use ferry_record::Record;
use serde_json::json;
use uuid::Uuid;

use super::{NewAlert, raised_since};
use crate::{Planned, SchedulerError};

/// Dead jobs read per pass; more wait for the next.
const DEAD_BATCH: i64 = 10_000;
/// Job ids an alert lists.
const LISTED: usize = 20;
/// Characters of an error an alert quotes.
const ERROR_CHARS: usize = 1000;

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// `text`, with the dashboard's address when one is configured.
fn hint(config: &Config, text: String) -> String {
    match &config.alerts.dashboard_url {
        Some(url) => format!("{text}; dashboard: {url}"),
        None => text,
    }
}

fn age(d: TimeDelta) -> String {
    let minutes = d.num_minutes();
    if minutes >= 120 {
        format!("{}h {}m", minutes / 60, minutes % 60)
    } else {
        format!("{minutes}m {}s", d.num_seconds() % 60)
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() <= ERROR_CHARS {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(ERROR_CHARS).collect();
        format!("{cut}...")
    }
}

/// Dead jobs not yet announced, per kind: announced now unless the kind had an alert within
/// the digest window, then marked announced.
pub(super) async fn dead_jobs(
    tx: &mut sqlx::PgConnection,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<NewAlert>, SchedulerError> {
    let rows: Vec<(Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, kind, last_error, died_at FROM dead_jobs WHERE alerted_at IS NULL
         ORDER BY kind, died_at, id LIMIT $1",
    )
    .bind(DEAD_BATCH)
    .fetch_all(&mut *tx)
    .await
    .map_err(SchedulerError::db("read dead jobs to announce"))?;
    let mut by_kind: BTreeMap<String, Vec<(Uuid, String, DateTime<Utc>)>> = BTreeMap::new();
    for (id, kind, error, died) in rows {
        by_kind.entry(kind).or_default().push((id, error, died));
    }
    let window_start = now - delta(config.alerts.dead_digest_every);
    let mut alerts = Vec::new();
    for (kind, jobs) in by_kind {
        let topic = if kind.starts_with("backup.") {
            "backup.failed"
        } else {
            "job.dead"
        };
        if raised_since(tx, topic, &kind, window_start).await? {
            continue; // the window's digest comes when it ends
        }
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.0).collect();
        let (newest, error, _) = jobs.last().expect("grouped rows are never empty");
        let error = clip(error);
        let n = jobs.len();
        let what = if topic == "backup.failed" {
            "backup job"
        } else {
            "job"
        };
        let (title, message, look) = if n == 1 {
            (
                format!("{kind} {what} failed for good"),
                format!("{what} {newest} (kind {kind}) failed for good: {error}"),
                format!("ferry jobs show {newest}"),
            )
        } else {
            (
                format!("{n} {kind} {what}s failed for good"),
                format!(
                    "{n} {what}s of kind {kind} failed for good since {}; the newest, {newest}: {error}",
                    jobs[0].2.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                format!("ferry jobs ls --state dead --kind {kind}; ferry jobs show {newest}"),
            )
        };
        let look = if topic == "backup.failed" {
            format!("{look}; ferry backup list")
        } else {
            look
        };
        alerts.push(NewAlert {
            topic,
            subject: kind.clone(),
            count: n as i64,
            title,
            message,
            hint: hint(config, look),
            details: json!({
                "kind": kind,
                "job_id": newest,
                "error": error,
                "count": n,
                "job_ids": ids.iter().rev().take(LISTED).collect::<Vec<_>>(),
            }),
        });
        sqlx::query("UPDATE dead_jobs SET alerted_at = $2 WHERE id = ANY($1)")
            .bind(&ids)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(SchedulerError::db("mark dead jobs announced"))?;
    }
    Ok(alerts)
}

/// Conditions that hold now.
pub(super) async fn standing(
    tx: &mut sqlx::PgConnection,
    record: &Record,
    config: &Config,
    planned: &[Planned],
    now: DateTime<Utc>,
) -> Result<Vec<NewAlert>, SchedulerError> {
    let mut alerts = stale_backups(record, config, now).await?;
    alerts.extend(stuck_runs(tx, config, now).await?);
    alerts.extend(relay_backlog(record, config, now).await?);
    alerts.extend(late_schedules(tx, config, planned, now).await?);
    Ok(alerts)
}

/// The newest verified backup older than `alerts.backup_max_age`, per database that has
/// backups; with none verified, the oldest backup stands in (nothing has been proven since).
async fn stale_backups(
    record: &Record,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<NewAlert>, SchedulerError> {
    let max = delta(config.alerts.backup_max_age);
    let mut alerts = Vec::new();
    for b in record.backup_ages().await? {
        let since = b.newest_verified.unwrap_or(b.oldest);
        if now - since <= max {
            continue;
        }
        let db = &b.database;
        let message = match b.newest_verified {
            Some(at) => format!(
                "the newest verified backup of database {db} is {} old (taken {}); alerts.backup_max_age is {}",
                age(now - at),
                at.format("%Y-%m-%d %H:%M UTC"),
                humantime::format_duration(config.alerts.backup_max_age)
            ),
            None => format!(
                "no backup of database {db} has passed a verify; the oldest is {} old",
                age(now - b.oldest)
            ),
        };
        alerts.push(NewAlert {
            topic: "backup.stale",
            subject: db.clone(),
            count: 1,
            title: format!("backup of {db} is stale"),
            message,
            hint: hint(
                config,
                format!(
                    "ferry backup list --database {db}; ferry schedules ls; ferry jobs ls --state dead --kind backup.run"
                ),
            ),
            details: json!({
                "database": db,
                "newest": b.newest,
                "newest_verified": b.newest_verified,
                "age_seconds": (now - since).num_seconds(),
            }),
        });
    }
    Ok(alerts)
}

/// Runs silent for `alerts.stuck_after` (and at least `scheduler.reconcile_after`): the
/// reconciler would have revived them long since if it could.
async fn stuck_runs(
    tx: &mut sqlx::PgConnection,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<NewAlert>, SchedulerError> {
    let after = config
        .alerts
        .stuck_after
        .max(config.scheduler.reconcile_after);
    let rows: Vec<(Uuid, String, DateTime<Utc>, Option<String>)> = sqlx::query_as(
        "SELECT id, kind, heartbeat_at, lease_owner FROM runs
         WHERE state IN ('running', 'interrupted') AND heartbeat_at < $1 AND heartbeat_at > $2
         ORDER BY heartbeat_at LIMIT 20",
    )
    .bind(now - delta(after))
    .bind(now - delta(config.worker.keep_finished))
    .fetch_all(tx)
    .await
    .map_err(SchedulerError::db("find stuck runs"))?;
    Ok(rows
        .into_iter()
        .map(|(id, kind, heartbeat, owner)| NewAlert {
            topic: "run.stuck",
            subject: id.to_string(),
            count: 1,
            title: format!("{kind} run {id} is stuck"),
            message: format!(
                "run {id} (kind {kind}) has been silent for {} (last heartbeat {}, worker {}); the reconciler could not revive it",
                age(now - heartbeat),
                heartbeat.format("%Y-%m-%d %H:%M:%S UTC"),
                owner.as_deref().unwrap_or("-")
            ),
            hint: hint(
                config,
                format!("ferry runs show {id}; ferry jobs show {id}; then ferry jobs retry {id} or ferry jobs cancel {id}"),
            ),
            details: json!({"run_id": id, "kind": kind, "heartbeat_at": heartbeat, "lease_owner": owner}),
        })
        .collect())
}

async fn relay_backlog(
    record: &Record,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<NewAlert>, SchedulerError> {
    let limit = config.alerts.relay_backlog;
    let backlog = record.relay_backlog(limit as i64 + 1).await?;
    if backlog.changes as u64 <= limit {
        return Ok(Vec::new());
    }
    let oldest = backlog.oldest.map_or(String::new(), |at| {
        format!("; the oldest waits for {}", age(now - at))
    });
    Ok(vec![NewAlert {
        topic: "relay.backlog",
        subject: "sync_changes".into(),
        count: backlog.changes,
        title: "change relay is behind".into(),
        message: format!(
            "more than {limit} captured changes wait for the relay{oldest} (alerts.relay_backlog)"
        ),
        hint: hint(
            config,
            "the scheduler's log (relaying captured changes); ferry stats (sync.entity jobs waiting); ferry_relay_backlog in /metrics".into(),
        ),
        details: json!({"changes_at_least": backlog.changes, "oldest": backlog.oldest}),
    }])
}

/// A due fire not enqueued within `scheduler.late_after`, and fires missed while no
/// scheduler ran (counted by the fires loop as it catches up).
async fn late_schedules(
    tx: &mut sqlx::PgConnection,
    config: &Config,
    planned: &[Planned],
    now: DateTime<Utc>,
) -> Result<Vec<NewAlert>, SchedulerError> {
    let late_after = delta(config.scheduler.late_after);
    let mut alerts = Vec::new();
    for p in planned.iter().filter(|p| p.schedule.enabled) {
        let name = &p.schedule.name;
        let row: Option<(bool, DateTime<Utc>, i64)> =
            sqlx::query_as("SELECT paused, checked_until, missed FROM schedules WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(SchedulerError::db("read a schedule"))?;
        let Some((paused, checked_until, missed)) = row else {
            continue;
        };
        if paused {
            continue;
        }
        let look = hint(
            config,
            format!(
                "ferry schedules ls; the scheduler's log; ferry_schedule_last_fire_age_seconds{{schedule=\"{name}\"}} in /metrics"
            ),
        );
        if let Some(due) = p.next_after(checked_until)
            && due <= now - late_after
        {
            alerts.push(NewAlert {
                topic: "schedule.late",
                subject: name.clone(),
                count: 1,
                title: format!("schedule {name} is late"),
                message: format!(
                    "schedule {name} ({}): the fire due at {} has not been enqueued after {} (scheduler.late_after)",
                    p.schedule.kind,
                    due.format("%Y-%m-%d %H:%M:%S UTC"),
                    age(now - due)
                ),
                hint: look.clone(),
                details: json!({"schedule": name, "kind": p.schedule.kind, "due": due}),
            });
        }
        let announced: Option<i64> = sqlx::query_scalar(
            "SELECT (details->>'missed')::bigint FROM alerts
             WHERE topic = 'schedule.missed' AND subject = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(SchedulerError::db("read the last missed-fires alert"))?
        .flatten();
        let new = missed - announced.unwrap_or(0);
        if new > 0 {
            alerts.push(NewAlert {
                topic: "schedule.missed",
                subject: name.clone(),
                count: new,
                title: format!("schedule {name} missed {new} fires"),
                message: format!(
                    "schedule {name} ({}) missed {new} fires while no scheduler ran; catch_up = {:?} decided which were enqueued late",
                    p.schedule.kind, p.schedule.catch_up
                ),
                hint: look,
                details: json!({"schedule": name, "kind": p.schedule.kind, "missed": missed, "new": new}),
            });
        }
    }
    Ok(alerts)
}
