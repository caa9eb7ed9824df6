//! What `ferry schedules ls` shows, and pausing: read from the record and the queue, so any
//! host can answer while the schedulers run elsewhere.

use chrono::{DateTime, Utc};
use ferry_queue::Queue;
use ferry_record::Record;
use serde::Serialize;
use uuid::Uuid;

use crate::{Planned, SchedulerError};

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleStatus {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub kind: String,
    pub enabled: bool,
    pub paused: bool,
    pub catch_up: ferry_config::CatchUp,
    /// None while disabled or paused.
    pub next_fire: Option<DateTime<Utc>>,
    pub last_fire: Option<DateTime<Utc>>,
    pub last_job: Option<Uuid>,
    /// The last fire's job state (`queued` ... `succeeded`, `dead`), or `expired` once Redis
    /// has forgotten a finished job.
    pub last_outcome: Option<String>,
    /// Fires that came due while no scheduler ran.
    pub missed: i64,
    /// Of those, how many catch_up left out.
    pub skipped: i64,
    /// Fires enqueued so far.
    pub fires: i64,
}

/// The status of every configured schedule, in config order.
pub async fn statuses(
    planned: &[Planned],
    record: &Record,
    queue: &Queue,
    now: DateTime<Utc>,
) -> Result<Vec<ScheduleStatus>, SchedulerError> {
    let mut out = Vec::new();
    for p in planned {
        let s = &p.schedule;
        let row: Option<(bool, DateTime<Utc>, i64, i64)> = sqlx::query_as(
            "SELECT paused, checked_until, missed, skipped FROM schedules WHERE name = $1",
        )
        .bind(&s.name)
        .fetch_optional(record.pool())
        .await
        .map_err(SchedulerError::db("read schedule"))?;
        let (paused, checked_until, missed, skipped) = row.unwrap_or((false, now, 0, 0));
        let last: Option<(DateTime<Utc>, Uuid, i64)> = sqlx::query_as(
            "SELECT fire_time, job_id, count(*) OVER () FROM schedule_fires WHERE schedule = $1
             ORDER BY fire_time DESC LIMIT 1",
        )
        .bind(&s.name)
        .fetch_optional(record.pool())
        .await
        .map_err(SchedulerError::db("read last fire"))?;
        let last_outcome = match &last {
            Some((_, id, _)) => Some(outcome(record, queue, &p.settings.queue, *id).await?),
            None => None,
        };
        out.push(ScheduleStatus {
            name: s.name.clone(),
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            kind: s.kind.clone(),
            enabled: s.enabled,
            paused,
            catch_up: s.catch_up,
            next_fire: (s.enabled && !paused)
                .then(|| p.next_after(checked_until.max(now)))
                .flatten(),
            last_fire: last.map(|l| l.0),
            last_job: last.map(|l| l.1),
            last_outcome,
            missed,
            skipped,
            fires: last.map_or(0, |l| l.2),
        });
    }
    Ok(out)
}

async fn outcome(
    record: &Record,
    queue: &Queue,
    queue_name: &str,
    id: Uuid,
) -> Result<String, SchedulerError> {
    if let Some(job) = queue.job(queue_name, id).await? {
        return Ok(job.state.to_string());
    }
    Ok(if record.dead_job(id).await?.is_some() {
        "dead".into()
    } else {
        "expired".into()
    })
}

/// Pauses or resumes a schedule; `actor` goes to the audit log. A paused schedule's fires
/// are neither enqueued nor counted as missed, and resuming starts at the next fire.
pub async fn set_paused(
    record: &Record,
    name: &str,
    paused: bool,
    actor: &str,
) -> Result<(), SchedulerError> {
    sqlx::query(
        "INSERT INTO schedules (name, paused, checked_until) VALUES ($1, $2, now())
         ON CONFLICT (name) DO UPDATE SET paused = $2,
             checked_until = CASE WHEN $2 THEN schedules.checked_until
                                  ELSE greatest(schedules.checked_until, now()) END",
    )
    .bind(name)
    .bind(paused)
    .execute(record.pool())
    .await
    .map_err(SchedulerError::db("pause schedule"))?;
    let action = if paused {
        "schedule.pause"
    } else {
        "schedule.resume"
    };
    record
        .audit(actor, action, Some(name), serde_json::json!({}))
        .await?;
    Ok(())
}
