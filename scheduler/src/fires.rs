//! Cron fires, enqueued exactly once however many replicas run.
//!
//! Per schedule, one transaction: lock the schedule's row (`SKIP LOCKED`: a replica that finds
//! it taken leaves the tick to the holder), walk the calendar from `checked_until` to now,
//! claim the fires to enqueue in `schedule_fires` (primary key `(schedule, fire_time)`:
//! `ON CONFLICT DO NOTHING` keeps only fires nobody claimed), enqueue them with an
//! idempotency key naming the fire, move `checked_until`, commit. If the enqueue fails,
//! nothing is committed and the next tick tries again; if the commit fails after the enqueue,
//! the retry's enqueue finds the key and returns the first job: once either way.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use ferry_config::{CatchUp, Config, ConfigError, Schedule};
use ferry_jobs::{
    Registry, Settings,
    enqueue::{self, Origin, Prepared},
};
use ferry_queue::{NewJob, Queue};
use ferry_record::Record;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{Clock, SchedulerError, calendar::fires_after};

/// A schedule checked against the registry: its kind, queue and arguments are known good.
#[derive(Debug, Clone)]
pub struct Planned {
    pub schedule: Schedule,
    pub cron: cron::Schedule,
    pub tz: chrono_tz::Tz,
    /// Its kind's effective settings (`[kinds.NAME]` applied): queue, attempts, priority.
    pub settings: Settings,
    /// The arguments, validated against the kind.
    pub args: serde_json::Value,
}

impl Planned {
    /// The job of one fire, `id` as claimed and `key` naming the fire, settled like any other
    /// enqueue so `[kinds.NAME]` (priority and tenant too) reaches it.
    fn fire(&self, id: Uuid, key: String) -> Result<NewJob, SchedulerError> {
        let keys = enqueue::Keys {
            idempotency: Some(key),
            ..enqueue::Keys::default()
        };
        let Prepared { mut job, .. } = enqueue::settle(
            &self.settings,
            &Origin::Scheduler,
            &self.schedule.kind,
            self.args.clone(),
            keys,
            None,
        )
        .map_err(|source| SchedulerError::Fire {
            schedule: self.schedule.name.clone(),
            source,
        })?;
        job.id = id;
        Ok(job)
    }

    /// The next fire after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        fires_after(&self.cron, self.tz, after).next()
    }
}

/// Checks every schedule's kind and arguments against the registry; an error names the
/// schedule and the fix. Cron expressions and zones were checked when config loaded.
pub fn plan(config: &Config, registry: &Registry) -> Result<Vec<Planned>, ConfigError> {
    let mut out = Vec::new();
    for (i, s) in config.schedules.iter().enumerate() {
        let entry = registry.get(&s.kind).map_err(|e| {
            ConfigError::new(
                s.key(i, "kind"),
                format!("{:?} names no job kind", e.name),
                format!("use one of: {}", e.known),
            )
        })?;
        let args = s.args.to_string();
        let value = enqueue::args_object(&args).map_err(|problem| {
            ConfigError::new(
                s.key(i, "args"),
                problem.to_string(),
                "give the arguments as a table",
            )
        })?;
        entry.validate(&args).map_err(|problem| {
            ConfigError::new(
                s.key(i, "args"),
                problem.to_string(),
                format!("give the arguments kind {} takes (see the README)", s.kind),
            )
        })?;
        let invalid = |key: &str, problem: String| {
            ConfigError::new(
                s.key(i, key),
                problem,
                "see the Scheduler section of the README",
            )
        };
        out.push(Planned {
            cron: s.cron().map_err(|p| invalid("cron", p))?,
            tz: s.tz().map_err(|p| invalid("timezone", p))?,
            settings: entry.settings().clone(),
            args: value,
            schedule: s.clone(),
        });
    }
    Ok(out)
}

/// [`plan`], plus the daily `maintenance.prune` of `[retention]` unless a configured
/// schedule already runs that kind or `retention.schedule` is empty. Only the scheduler
/// fires it; `schedules ls` shows the configured schedules.
pub fn plan_with_maintenance(
    config: &Config,
    registry: &Registry,
) -> Result<Vec<Planned>, ConfigError> {
    let mut planned = plan(config, registry)?;
    if let Some(builtin) = config.retention.builtin_schedule()
        && !planned.iter().any(|p| p.schedule.kind == builtin.kind)
    {
        let mut only = config.clone();
        only.schedules = vec![builtin];
        planned.extend(plan(&only, registry)?);
    }
    Ok(planned)
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// (schedule, fire time, job id) for each fire enqueued.
    pub enqueued: Vec<(String, DateTime<Utc>, Uuid)>,
    /// Fires that came due while no scheduler ran.
    pub missed: u64,
    /// Of those, how many catch_up left out.
    pub skipped: u64,
}

pub struct Fires {
    planned: Vec<Planned>,
    record: Record,
    queue: Queue,
    replica: String,
    tick: Duration,
    late_after: TimeDelta,
    catch_up_limit: usize,
}

impl Fires {
    pub fn new(
        planned: Vec<Planned>,
        record: Record,
        queue: Queue,
        config: &Config,
        replica: &str,
    ) -> Self {
        let s = &config.scheduler;
        Self {
            planned,
            record,
            queue,
            replica: replica.to_owned(),
            tick: s.tick,
            late_after: TimeDelta::from_std(s.late_after).unwrap_or(TimeDelta::MAX),
            catch_up_limit: s.catch_up_limit,
        }
    }

    /// Records schedules seen for the first time as checked up to `now`: a new schedule
    /// starts with its next fire, not with a catch-up of its past.
    pub async fn register(&self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        let names: Vec<&str> = self
            .planned
            .iter()
            .map(|p| p.schedule.name.as_str())
            .collect();
        sqlx::query(
            "INSERT INTO schedules (name, checked_until) SELECT unnest($1::text[]), $2
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&names)
        .bind(now)
        .execute(self.record.pool())
        .await
        .map_err(SchedulerError::db("register schedules"))?;
        Ok(())
    }

    /// Handles every fire due by `now`.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, SchedulerError> {
        if self.planned.is_empty() {
            return Ok(TickReport::default());
        }
        let names: Vec<&str> = self
            .planned
            .iter()
            .map(|p| p.schedule.name.as_str())
            .collect();
        let checked: HashMap<String, DateTime<Utc>> =
            sqlx::query_as("SELECT name, checked_until FROM schedules WHERE name = ANY($1)")
                .bind(&names)
                .fetch_all(self.record.pool())
                .await
                .map_err(SchedulerError::db("read schedules"))?
                .into_iter()
                .collect();
        let mut report = TickReport::default();
        for p in &self.planned {
            // Only a due fire takes the lock and writes: a tick between fires is this read.
            let Some(since) = checked.get(&p.schedule.name) else {
                continue;
            };
            if p.next_after(*since).is_some_and(|next| next <= now) {
                self.tick_one(p, now, &mut report).await?;
            }
        }
        Ok(report)
    }

    /// The earliest next fire of an enabled schedule.
    pub fn next_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.planned
            .iter()
            .filter(|p| p.schedule.enabled)
            .filter_map(|p| p.next_after(now))
            .min()
    }

    /// Ticks at each fire, and at least every `scheduler.tick`, until shutdown.
    pub async fn run(&self, clock: Arc<dyn Clock>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let now = clock.now();
            match self.tick(now).await {
                Ok(r) if !r.enqueued.is_empty() || r.missed > 0 => tracing::info!(
                    enqueued = r.enqueued.len(),
                    missed = r.missed,
                    skipped = r.skipped,
                    "schedules fired"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "checking schedules failed; trying again"),
            }
            let now = clock.now();
            let wait = self
                .next_fire(now)
                .and_then(|next| (next - now).to_std().ok())
                .map_or(self.tick, |d| d.min(self.tick));
            // A few milliseconds past the fire, so the fire is due when the tick looks.
            crate::pause(wait + Duration::from_millis(5), &shutdown).await;
        }
    }

    async fn tick_one(
        &self,
        p: &Planned,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), SchedulerError> {
        let name = &p.schedule.name;
        let mut tx = self
            .record
            .pool()
            .begin()
            .await
            .map_err(SchedulerError::db("begin"))?;
        let row: Option<(bool, DateTime<Utc>)> = sqlx::query_as(
            "SELECT paused, checked_until FROM schedules WHERE name = $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(SchedulerError::db("lock schedule"))?;
        // Taken by another replica, or not registered yet: nothing to do here.
        let Some((paused, checked_until)) = row else {
            return Ok(());
        };
        if checked_until >= now {
            return Ok(());
        }
        let mut late_count = 0u64;
        let mut fires = Vec::new();
        if !paused && p.schedule.enabled {
            let keep = match p.schedule.catch_up {
                CatchUp::Latest => 1,
                CatchUp::All => self.catch_up_limit,
                CatchUp::Skip => 0,
            };
            let late_before = now - self.late_after;
            // Only the newest `keep` late fires are kept, so a long downtime costs a walk of
            // the calendar, not memory.
            let mut late = VecDeque::new();
            for at in fires_after(&p.cron, p.tz, checked_until).take_while(|at| *at <= now) {
                if at <= late_before {
                    late_count += 1;
                    late.push_back(at);
                    if late.len() > keep {
                        late.pop_front();
                    }
                } else {
                    fires.push((at, false));
                }
            }
            fires.splice(0..0, late.into_iter().map(|at| (at, true)));
        }
        let skipped = late_count - fires.iter().filter(|(_, late)| *late).count() as u64;

        let claimed = self.claim(&mut tx, name, &fires, now).await?;
        if !claimed.is_empty() {
            let kind = &p.schedule.kind;
            let jobs = claimed
                .iter()
                .map(|(at, id)| p.fire(*id, fire_key(name, *at, None)))
                .collect::<Result<Vec<NewJob>, SchedulerError>>()?;
            let ids = self.queue.enqueue(&p.settings.queue, &jobs).await?;
            for ((at, claimed_id), (mut id, _created)) in claimed.iter().zip(ids) {
                if id != *claimed_id {
                    // An earlier claim of this fire enqueued it and then failed to commit: the
                    // key returned its job, which is the one to record — if it is this
                    // schedule's kind. Keys are namespaced per caller and kind, so nobody else
                    // can hold one; should a job of another kind turn up anyway, the fire
                    // still runs, under a key of its own.
                    let adopted = self.queue.job(&p.settings.queue, id).await?;
                    if adopted.as_ref().is_some_and(|j| j.kind != *kind) {
                        tracing::error!(schedule = %name, %id, "a fire's key named a job of another kind; enqueueing the fire anew");
                        let job = p.fire(*claimed_id, fire_key(name, *at, Some(*claimed_id)))?;
                        id = self.queue.enqueue(&p.settings.queue, &[job]).await?[0].0;
                    }
                    if id != *claimed_id {
                        sqlx::query(
                            "UPDATE schedule_fires SET job_id = $3
                             WHERE schedule = $1 AND fire_time = $2",
                        )
                        .bind(name)
                        .bind(at)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(SchedulerError::db("record fire"))?;
                    }
                }
                report.enqueued.push((name.clone(), *at, id));
            }
        }
        sqlx::query(
            "UPDATE schedules SET checked_until = $2, missed = missed + $3, skipped = skipped + $4
             WHERE name = $1",
        )
        .bind(name)
        .bind(now)
        .bind(late_count as i64)
        .bind(skipped as i64)
        .execute(&mut *tx)
        .await
        .map_err(SchedulerError::db("move checked_until"))?;
        tx.commit()
            .await
            .map_err(SchedulerError::db("commit fires"))?;
        if late_count > 0 {
            tracing::warn!(
                schedule = %name,
                missed = late_count,
                skipped,
                catch_up = ?p.schedule.catch_up,
                "fires were missed while no scheduler ran"
            );
        }
        report.missed += late_count;
        report.skipped += skipped;
        Ok(())
    }

    /// Inserts the fires; returns those this call claimed, with their new job ids.
    async fn claim(
        &self,
        tx: &mut sqlx::PgConnection,
        name: &str,
        fires: &[(DateTime<Utc>, bool)],
        now: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, Uuid)>, SchedulerError> {
        if fires.is_empty() {
            return Ok(Vec::new());
        }
        let times: Vec<DateTime<Utc>> = fires.iter().map(|f| f.0).collect();
        let late: Vec<bool> = fires.iter().map(|f| f.1).collect();
        let ids: Vec<Uuid> = fires.iter().map(|_| Uuid::now_v7()).collect();
        let mut claimed: Vec<(DateTime<Utc>, Uuid)> = sqlx::query_as(
            "INSERT INTO schedule_fires (schedule, fire_time, job_id, late, claimed_by, claimed_at)
             SELECT $1, t, j, l, $2, $3
             FROM unnest($4::timestamptz[], $5::uuid[], $6::bool[]) AS f(t, j, l)
             ON CONFLICT (schedule, fire_time) DO NOTHING
             RETURNING fire_time, job_id",
        )
        .bind(name)
        .bind(&self.replica)
        .bind(now)
        .bind(&times)
        .bind(&ids)
        .bind(&late)
        .fetch_all(tx)
        .await
        .map_err(SchedulerError::db("claim fires"))?;
        claimed.sort();
        Ok(claimed)
    }
}

/// The idempotency key of a fire: the same for every replica, in the scheduler's namespace
/// (`scheduler/KIND/schedule:NAME:TIME`), which no token or CLI can write to.
fn fire_key(schedule: &str, at: DateTime<Utc>, claim: Option<Uuid>) -> String {
    let mut key = format!(
        "schedule:{schedule}:{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    if let Some(claim) = claim {
        key.push_str(&format!(":{claim}"));
    }
    key
}
