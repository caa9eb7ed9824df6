//! The ferry scheduler: cron fires enqueued exactly once across any number of replicas, the
//! change relays that turn trigger-captured rows into `sync.entity` jobs and into the jobs of
//! `[[on_change]]` rules, and the reconciler
//! that re-dispatches long runs whose job Redis lost.
//!
//! `run(config, shutdown)` takes its shutdown from outside; [`run_with_clock`] also takes the
//! clock, and [`Fires::tick`] takes the time itself, so tests drive time without sleeping.

mod alerts;
mod calendar;
mod clock;
mod fires;
mod on_change;
mod reconcile;
mod relay;
mod status;

use std::sync::Arc;

use ferry_config::{Config, ConfigError};
use ferry_queue::Queue;
use ferry_record::Record;
use tokio_util::sync::CancellationToken;

pub use alerts::Alerter;
pub use calendar::fires_after;
pub use clock::{Clock, SystemClock};
pub use fires::{Fires, Planned, TickReport, plan, plan_with_maintenance};
pub use reconcile::Reconciler;
pub use status::{ScheduleStatus, set_paused, statuses};

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Record(#[from] ferry_record::RecordError),
    #[error(transparent)]
    Queue(#[from] ferry_queue::QueueError),
    #[error("scheduler database error ({context}): {message}")]
    Db {
        context: &'static str,
        message: String,
    },
    /// A fire's job did not pass the checks every enqueue passes.
    #[error("schedule {schedule}: its job cannot be enqueued: {source}")]
    Fire {
        schedule: String,
        source: ferry_jobs::enqueue::EnqueueError,
    },
}

impl SchedulerError {
    pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |e| Self::Db {
            context,
            message: e.to_string(),
        }
    }
}

/// Runs until `shutdown` fires, on the system clock.
pub async fn run(config: Arc<Config>, shutdown: CancellationToken) -> Result<(), SchedulerError> {
    run_with_clock(config, Arc::new(SystemClock), shutdown).await
}

/// Runs until `shutdown` fires. Schedules are checked against the known kinds before anything
/// connects, so a bad schedule stops the scheduler at once, naming it.
pub async fn run_with_clock(
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<(), SchedulerError> {
    let registry = Arc::new(ferry_jobs::registry(&config)?);
    let planned = plan_with_maintenance(&config, &registry)?;
    let rules = ferry_jobs::events::Rules::compile(&config, &registry)?;
    let record = Record::connect(&config.postgres).await?;
    record.check_migrated().await?;
    let queue = Queue::for_config(&config).await?;
    let replica = format!("scheduler-{}", ferry_worker::worker_id());
    tracing::info!(replica, schedules = planned.len(), "scheduler starting");

    let alerter = Alerter::new(
        record.clone(),
        queue.clone(),
        registry.clone(),
        config.clone(),
        planned.clone(),
    );
    let fires = Fires::new(planned, record.clone(), queue.clone(), &config, &replica);
    fires.register(clock.now()).await?;
    let rules = (!rules.is_empty()).then(|| {
        on_change::run(
            record.clone(),
            queue.clone(),
            registry.clone(),
            rules,
            config.sync.relay_interval,
            shutdown.clone(),
        )
    });
    let reconciler = Reconciler::new(record.clone(), queue.clone(), registry.clone(), &config);
    let relay = (config.mongodb.uri.is_some() && config.postgres.url.is_some()).then(|| {
        relay::run(
            record.clone(),
            queue.clone(),
            registry.clone(),
            config.sync.relay_interval,
            shutdown.clone(),
        )
    });
    tokio::join!(
        fires.run(clock.clone(), shutdown.clone()),
        reconciler.run(clock.clone(), shutdown.clone()),
        alerter.run(clock, shutdown.clone()),
        async {
            if let Some(relay) = relay {
                relay.await;
            }
        },
        async {
            if let Some(rules) = rules {
                rules.await;
            }
        },
    );
    tracing::info!(replica, "scheduler stopped");
    Ok(())
}

/// Sleeps `pause`, or less if `shutdown` fires first.
pub(crate) async fn pause(pause: std::time::Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = shutdown.cancelled() => {}
    }
}
