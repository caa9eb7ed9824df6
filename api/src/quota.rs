//! `api.max_waiting_per_token`: an enqueue token cannot fill Redis. Its cap counts the jobs of
//! the kinds it may enqueue that wait (queued, scheduled or retrying), read from the queues'
//! state counters at most every [`FRESH`]; a request never waits for the read while a
//! recent figure exists, so the cap may be passed by what arrives within that time.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use ferry_jobs::Registry;
use ferry_queue::Queue;

use crate::{ApiError, auth::Caller};

const FRESH: Duration = Duration::from_millis(250);
const WAITING: [&str; 3] = ["queued", "scheduled", "retrying"];

/// Waiting jobs per kind.
type Waiting = Arc<BTreeMap<String, i64>>;

#[derive(Debug, Default)]
pub struct Quota {
    /// When read, and waiting jobs per kind (shared, so a request does not copy the map).
    last: Mutex<Option<(Instant, Waiting)>>,
    reading: AtomicBool,
}

impl Quota {
    /// 429 when `caller`'s kinds already have `max` jobs waiting.
    pub async fn check(
        &self,
        caller: &Caller,
        max: u64,
        queue: &Queue,
        registry: &Registry,
    ) -> Result<(), ApiError> {
        let Some(kinds) = caller.kinds() else {
            return Ok(());
        };
        let waiting = self.waiting(queue, registry).await?;
        let n: i64 = kinds.iter().filter_map(|k| waiting.get(k)).sum();
        if n >= max as i64 {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{n} jobs of this token's kinds are waiting, at api.max_waiting_per_token ({max}); retry when workers have caught up, or raise the setting"
                ),
            ));
        }
        Ok(())
    }

    async fn waiting(&self, queue: &Queue, registry: &Registry) -> Result<Waiting, ApiError> {
        let cached = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((at, counts)) = cached
            && (at.elapsed() < FRESH || self.reading.swap(true, Ordering::AcqRel))
        {
            return Ok(counts);
        }
        self.reading.store(true, Ordering::Release);
        let read = read(queue, registry).await;
        self.reading.store(false, Ordering::Release);
        let counts = Arc::new(read?);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), counts.clone()));
        Ok(counts)
    }
}

async fn read(queue: &Queue, registry: &Registry) -> Result<BTreeMap<String, i64>, ApiError> {
    let mut counts = BTreeMap::new();
    for name in registry.queues() {
        for (kind, states) in queue.stats(&name).await?.by_kind {
            let n: i64 = WAITING.iter().filter_map(|s| states.get(*s)).sum();
            *counts.entry(kind).or_insert(0) += n;
        }
    }
    Ok(counts)
}
