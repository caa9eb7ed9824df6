//! What every handler shares: config, kinds, connections, and the last figures the dashboard
//! computed rates from.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use ferry_config::{Config, ConfigError};
use ferry_jobs::{Registry, sync::Target};
use ferry_queue::Queue;
use ferry_record::Record;
use tokio::sync::{Mutex, OnceCell};

use crate::{ApiError, ServeError};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Arc<Config>,
    registry: Registry,
    queue: Queue,
    record: Record,
    /// Opened on first use: the API runs without sync configured.
    sync: OnceCell<Target>,
    /// The previous sample of finished jobs per kind, for rates.
    finished: Mutex<Option<(Instant, BTreeMap<String, i64>)>>,
}

impl AppState {
    /// Refuses to start without an admin token: the API would be unusable, the dashboard shut.
    pub async fn connect(config: Arc<Config>) -> Result<Self, ServeError> {
        if config.api.admin_token.is_none() {
            return Err(ConfigError::new(
                "api.admin_token (FERRY_ADMIN_TOKEN)",
                "is not set",
                "set FERRY_ADMIN_TOKEN to a random token (e.g. `openssl rand -hex 16`); FERRY_API_TOKEN gives API servers the enqueue scope",
            )
            .into());
        }
        let registry = Registry::new(&config)?;
        let record = Record::connect(&config.postgres).await?;
        record.check_migrated().await?;
        let queue = Queue::for_config(&config).await?;
        Ok(Self(Arc::new(Inner {
            config,
            registry,
            queue,
            record,
            sync: OnceCell::new(),
            finished: Mutex::new(None),
        })))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    pub fn queue(&self) -> &Queue {
        &self.0.queue
    }

    pub fn record(&self) -> &Record {
        &self.0.record
    }

    /// For the marks that tie a job to the enqueue token that created it: the queue's own
    /// connection, so they follow it onto a Redis Cluster.
    pub(crate) fn redis(&self) -> ferry_queue::Conn {
        self.0.queue.redis()
    }

    /// The application database and MongoDB, connected on first use.
    pub async fn sync_target(&self) -> Result<&Target, ApiError> {
        self.0
            .sync
            .get_or_try_init(|| Target::connect(&self.0.config))
            .await
            .map_err(ApiError::from)
    }

    /// Jobs finished per second for each kind since the previous call (at least a second
    /// apart), from the cumulative counts `finished`.
    pub(crate) async fn rates(&self, finished: BTreeMap<String, i64>) -> BTreeMap<String, f64> {
        let mut last = self.0.finished.lock().await;
        let now = Instant::now();
        let rates = match last.as_ref() {
            Some((at, before)) => {
                let secs = now.duration_since(*at).as_secs_f64().max(0.001);
                finished
                    .iter()
                    .map(|(kind, n)| {
                        let delta = n - before.get(kind).copied().unwrap_or(*n);
                        (kind.clone(), delta.max(0) as f64 / secs)
                    })
                    .collect()
            }
            None => BTreeMap::new(),
        };
        if last
            .as_ref()
            .is_none_or(|(at, _)| now.duration_since(*at).as_secs_f64() >= 1.0)
        {
            *last = Some((now, finished));
        }
        rates
    }
}
