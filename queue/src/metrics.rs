//! The figures workers leave in Redis for `/metrics`: per-kind counters and histograms that
//! the Lua scripts update in the same call that changes a job's state (no extra round trip).

use std::collections::BTreeMap;

use redis::AsyncCommands;
use serde::Serialize;

use crate::{Queue, QueueError, now_us};

/// Upper bounds of the histogram buckets in milliseconds; `queue/lua/prelude.lua` holds the
/// same list in µs (`BOUNDS_US`), and bucket `i` (1-based) there is index `i - 1` here.
pub const BUCKETS_MS: [u64; 11] = [
    1, 5, 25, 100, 500, 1000, 5000, 30000, 120000, 600000, 3600000,
];

/// One histogram as kept: counts per bucket (not cumulative; the last is above every bound)
/// and the sum of observations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub sum_us: i64,
}

impl Histogram {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// What workers recorded for one kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindMetrics {
    /// `failed` (attempts that failed), `retrying` (retries scheduled), `dead`; only ever
    /// grow. Attempts started are `wait.count()`; successes are the state count `succeeded`.
    pub counters: BTreeMap<String, i64>,
    /// Run time of attempts.
    pub duration: Histogram,
    /// From due (enqueued, or its scheduled or retry time) to start.
    pub wait: Histogram,
}

impl Queue {
    /// Counters and histograms of one queue, by kind.
    pub async fn metrics(&self, queue: &str) -> Result<BTreeMap<String, KindMetrics>, QueueError> {
        let mut conn = self.conn();
        let fields: BTreeMap<String, i64> = conn
            .hgetall(format!("{}:metrics", self.keys(queue).base))
            .await
            .map_err(QueueError::redis("read metrics"))?;
        let mut out: BTreeMap<String, KindMetrics> = BTreeMap::new();
        for (field, value) in fields {
            let mut parts = field.splitn(3, '|');
            let (Some(kind), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let m = out.entry(kind.to_owned()).or_default();
            let histogram = match name {
                "duration" => &mut m.duration,
                "wait" => &mut m.wait,
                _ => {
                    m.counters.insert(name.to_owned(), value);
                    continue;
                }
            };
            match parts.next() {
                Some("sum_us") => histogram.sum_us = value,
                Some(bucket) => {
                    if let Ok(i) = bucket.parse::<usize>()
                        && (1..=BUCKETS_MS.len() + 1).contains(&i)
                    {
                        histogram.buckets.resize(BUCKETS_MS.len() + 1, 0);
                        histogram.buckets[i - 1] = value.max(0) as u64;
                    }
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// Age in ms of the oldest job of each kind waiting in the stream (due, not yet taken by
    /// a worker), looking at the first `scan` waiting entries: a kind whose first waiting job
    /// lies deeper is not reported. Two round trips however long the queue.
    pub async fn oldest_waiting(
        &self,
        queue: &str,
        scan: usize,
    ) -> Result<BTreeMap<String, i64>, QueueError> {
        let keys = self.keys(queue);
        let mut entries = Vec::new();
        for stream in keys.streams() {
            entries.extend(self.waiting_entries(&stream, scan).await?.1);
        }
        if entries.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut pipe = redis::pipe();
        for (_, fields) in &entries {
            pipe.hget(
                keys.job(fields.get("id").map_or("", String::as_str)),
                "kind",
            );
        }
        let kinds: Vec<Option<String>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(QueueError::redis("read waiting kinds"))?;
        let now_ms = now_us() / 1000;
        let mut out = BTreeMap::new();
        for ((entry, _), kind) in entries.iter().zip(kinds) {
            let (Some(kind), Some(ms)) = (kind, crate::client::entry_ms(entry)) else {
                continue;
            };
            let age = (now_ms - ms).max(0);
            let oldest = out.entry(kind).or_insert(age);
            *oldest = (*oldest).max(age);
        }
        Ok(out)
    }
}
