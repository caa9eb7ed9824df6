//! The ferry worker: one apalis worker per queue, fed by ferry's Redis Streams backend.
//!
//! `run(config, options, shutdown)` takes its shutdown from outside (a signal in the binary,
//! a token in tests): on shutdown it stops fetching, gives running jobs
//! `worker.shutdown_grace` to finish or checkpoint, records every outcome, and returns.

mod dispatch;
mod identity;

use std::{sync::Arc, time::Duration};

use apalis::prelude::WorkerBuilder;
use ferry_config::Config;
use ferry_jobs::{Deps, Registry};
use ferry_queue::{BackendOptions, Queue, StreamBackend};
use ferry_record::Record;
use tokio_util::sync::CancellationToken;

pub use dispatch::Dispatcher;
/// ferry's own kinds: a program adds its kinds to this registry and hands it to [`run_with`].
pub use ferry_jobs::builtin;
pub use identity::{host, worker_id};

/// Choices made on the command line rather than in config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Queues to consume; empty means config's `worker.queues`, or every known queue.
    pub queues: Vec<String>,
    /// Jobs at once on every queue, over config's `[queues.NAME]` and `worker.concurrency`.
    pub concurrency: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] ferry_config::ConfigError),
    #[error(transparent)]
    Record(#[from] ferry_record::RecordError),
    #[error(transparent)]
    Queue(#[from] ferry_queue::QueueError),
    #[error("worker for queue {queue} failed: {message}")]
    Runtime { queue: String, message: String },
}

/// Runs the built-in kinds until `shutdown` fires, then drains and returns.
pub async fn run(
    config: Arc<Config>,
    options: Options,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let registry = ferry_jobs::builtin(&config);
    run_with(config, registry, options, shutdown).await
}

/// Runs the kinds of `registry` (the built-in ones and any a program registered itself, see
/// `examples/custom-kind`) until `shutdown` fires; `[kinds.NAME]` applies to all of them.
pub async fn run_with(
    config: Arc<Config>,
    registry: Registry,
    options: Options,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let registry = Arc::new(registry.configured()?);
    let queues = choose_queues(&config, &options, &registry)?;
    let record = Record::connect(&config.postgres).await?;
    record.check_migrated().await?;
    let queue = Queue::for_config(&config).await?;
    warn_about_eviction(&queue).await;
    let warming = record.clone();
    tokio::spawn(async move { warming.warm(4).await });

    let id = worker_id();
    let deps = Deps::new(config.clone(), record, queue.clone(), registry.clone(), &id);
    tracing::info!(worker = %id, queues = ?queues, "worker starting");

    let mut running = Vec::new();
    for name in &queues {
        let concurrency = options
            .concurrency
            .unwrap_or_else(|| config.concurrency(name));
        tracing::info!(queue = %name, concurrency, "serving queue");
        let dispatcher = Dispatcher::new(registry.clone(), deps.clone(), shutdown.clone());
        let backend = StreamBackend::start(
            queue.clone(),
            BackendOptions {
                queue: name.clone(),
                consumer: id.clone(),
                concurrency,
                batch: config.worker.batch,
                heartbeat: config.worker.heartbeat,
                reclaim_after: config.worker.reclaim_after,
                block: Duration::from_secs(1),
                keep_dead: Duration::from_secs(7 * 24 * 3600),
                on_failure: dispatcher.failure_rule(),
            },
            shutdown.clone(),
        )
        .await?;
        let worker = WorkerBuilder::new(format!("{name}@{id}"))
            .backend(backend)
            .build(dispatcher);
        let signal = shutdown.clone();
        let queue_name = name.clone();
        running.push(async move {
            worker
                .run_until(async move {
                    signal.cancelled().await;
                    Ok::<(), apalis::prelude::WorkerError>(())
                })
                .await
                .map_err(|e| WorkerError::Runtime {
                    queue: queue_name,
                    message: e.to_string(),
                })
        });
    }
    futures::future::try_join_all(running).await?;
    tracing::info!(worker = %id, "worker stopped");
    Ok(())
}

fn choose_queues(
    config: &Config,
    options: &Options,
    registry: &Registry,
) -> Result<Vec<String>, WorkerError> {
    let known = registry.queues();
    let wanted: Vec<String> = if !options.queues.is_empty() {
        options.queues.clone()
    } else if !config.worker.queues.is_empty() {
        config.worker.queues.clone()
    } else {
        known.iter().cloned().collect()
    };
    for q in &wanted {
        if !known.contains(q) {
            return Err(ferry_config::ConfigError::new(
                "worker.queues (--queues)",
                format!("no job kind uses queue {q:?}"),
                format!(
                    "use some of: {}",
                    known.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
            .into());
        }
    }
    Ok(wanted)
}

async fn warn_about_eviction(queue: &Queue) {
    match queue.maxmemory_policy().await {
        Ok(Some(policy)) if policy != "noeviction" => tracing::warn!(
            policy,
            "Redis maxmemory-policy is not noeviction: under memory pressure Redis may drop queued jobs; set `maxmemory-policy noeviction` (and `appendonly yes`)"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(error = %e, "could not read maxmemory-policy (managed Redis often hides CONFIG)")
        }
    }
}
