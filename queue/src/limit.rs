//! Limits shared by every worker: at most N holders of a named permit at once (e.g. bulk
//! writers to one MongoDB cluster), kept in Redis so scaling workers cannot overload a target.
//! A permit expires after its lease, so a crashed holder frees its slot.

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use crate::{Queue, QueueError, now_us};

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        -- KEYS[1] zset of holders by expiry. ARGV: now_us, max, token, expires_us
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
        if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
          redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
          return 1
        end
        return 0",
    )
});

/// A held slot; give it back with [`Queue::release`].
#[derive(Debug)]
pub struct Permit {
    key: String,
    token: String,
}

impl Queue {
    /// Waits for one of `max` slots named `name`, polling every few milliseconds.
    pub async fn acquire(
        &self,
        name: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Permit, QueueError> {
        let key = format!("{}:{{limits}}:{name}", self.prefix());
        let token = format!("{:016x}", rand_token());
        let mut pause = Duration::from_millis(2);
        loop {
            let mut conn = self.conn();
            let now = now_us();
            let got: i64 = ACQUIRE
                .key(&key)
                .arg(now)
                .arg(max)
                .arg(&token)
                .arg(now + lease.as_micros() as i64)
                .invoke_async(&mut conn)
                .await
                .map_err(QueueError::redis("acquire a shared limit"))?;
            if got == 1 {
                return Ok(Permit { key, token });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    pub async fn release(&self, permit: Permit) -> Result<(), QueueError> {
        let mut conn = self.conn();
        redis::cmd("ZREM")
            .arg(&permit.key)
            .arg(&permit.token)
            .query_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(QueueError::redis("release a shared limit"))
    }
}

fn rand_token() -> u64 {
    uuid::Uuid::now_v7().as_u128() as u64 ^ (std::process::id() as u64) << 32
}
