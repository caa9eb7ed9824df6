//! How much Redis memory one queue takes, for `ferry stats`: the queue's own keys measured
//! with `MEMORY USAGE`, its job hashes estimated from a sample (the indexes and, for waiting
//! and running jobs, the state counters count them, so nothing is scanned). Idempotency, coalesce and owner marks are not counted: they expire by
//! themselves (see docs/operations.md, "Scale").

use redis::AsyncCommands;
use serde::Serialize;

use crate::{JobState, Queue, QueueError};

/// Job hashes measured per state to estimate the rest.
const SAMPLE: usize = 8;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct QueueMemory {
    /// Estimated bytes: the queue's keys plus its job hashes.
    pub bytes: u64,
    /// Job hashes Redis holds for the queue (every state).
    pub jobs: u64,
}

impl Queue {
    pub async fn memory(&self, queue: &str) -> Result<QueueMemory, QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let [high, _, low] = keys.streams();
        let mut fixed = vec![
            keys.stream.clone(),
            high,
            low,
            format!("{}:tadm", keys.base),
            format!("{}:tring", keys.base),
            keys.delayed.clone(),
            keys.stats.clone(),
            keys.workers.clone(),
            format!("{}:metrics", keys.base),
        ];
        let mut memory = QueueMemory::default();
        // Waiting and running jobs have no index: the state counters count them and the
        // streams (and backlogs) give a sample.
        let counts: std::collections::HashMap<String, i64> = conn
            .hgetall(&keys.stats)
            .await
            .map_err(QueueError::redis("count jobs"))?;
        let unindexed = |state: JobState| -> u64 {
            counts
                .iter()
                .filter(|(field, _)| field.rsplit('|').next() == Some(state.as_str()))
                .map(|(_, n)| (*n).max(0) as u64)
                .sum()
        };
        for state in JobState::ALL {
            let index = keys.index(state);
            let (count, sample): (u64, Vec<String>) = match state {
                JobState::Queued | JobState::Running => {
                    let count = unindexed(state);
                    if count == 0 {
                        continue;
                    }
                    let mut ids = if state == JobState::Queued {
                        self.waiting_ids(queue, SAMPLE).await?
                    } else {
                        self.running_ids(queue, SAMPLE).await?
                    };
                    ids.truncate(SAMPLE);
                    (count, ids)
                }
                _ => {
                    let count: u64 = conn
                        .zcard(&index)
                        .await
                        .map_err(QueueError::redis("count jobs"))?;
                    fixed.push(index.clone());
                    if count == 0 {
                        continue;
                    }
                    let sample = redis::cmd("ZRANDMEMBER")
                        .arg(&index)
                        .arg(SAMPLE)
                        .query_async(&mut conn)
                        .await
                        .map_err(QueueError::redis("sample jobs"))?;
                    (count, sample)
                }
            };
            memory.jobs += count;
            let mut measured = Vec::new();
            for id in &sample {
                if let Some(bytes) = usage(&mut conn, &keys.job(id)).await? {
                    measured.push(bytes);
                }
            }
            if !measured.is_empty() {
                let mean = measured.iter().sum::<u64>() / measured.len() as u64;
                memory.bytes += mean * count;
            }
        }
        for key in &fixed {
            memory.bytes += usage(&mut conn, key).await?.unwrap_or(0);
        }
        Ok(memory)
    }
}

async fn usage(conn: &mut crate::Conn, key: &str) -> Result<Option<u64>, QueueError> {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(QueueError::redis("measure memory"))
}
