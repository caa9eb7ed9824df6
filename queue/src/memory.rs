//! How much Redis memory one queue takes, for `ferry stats`: the queue's own keys measured
//! with `MEMORY USAGE`, its job hashes estimated from a sample (the indexes count them, so
//! nothing is scanned). Idempotency, coalesce and owner marks are not counted: they expire by
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
            format!("{}:trun", keys.base),
            format!("{}:tring", keys.base),
            keys.delayed.clone(),
            keys.stats.clone(),
            keys.workers.clone(),
            format!("{}:metrics", keys.base),
        ];
        let mut memory = QueueMemory::default();
        for state in JobState::ALL {
            let index = keys.index(state);
            let count: u64 = conn
                .zcard(&index)
                .await
                .map_err(QueueError::redis("count jobs"))?;
            fixed.push(index.clone());
            if count == 0 {
                continue;
            }
            memory.jobs += count;
            let sample: Vec<String> = redis::cmd("ZRANDMEMBER")
                .arg(&index)
                .arg(SAMPLE)
                .query_async(&mut conn)
                .await
                .map_err(QueueError::redis("sample jobs"))?;
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
