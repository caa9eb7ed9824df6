//! Limits shared by every worker: at most N holders of a named permit at once (e.g. bulk
//! writers to one MongoDB cluster), kept in Redis so scaling workers cannot overload a target.
//! A permit expires after its lease, so a crashed holder frees its slot.

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use crate::{Queue, QueueError, conn::Conn, now_us};

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

/// A held slot; give it back with [`Queue::release`]. A permit dropped unreleased (its job
/// timed out or was cancelled mid-write) is given back in the background: otherwise it would
/// hold its slot until the lease ends, and with one slot every writer would wait that long.
pub struct Permit {
    key: String,
    token: String,
    conn: Option<Conn>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("key", &self.key)
            .field("token", &self.token)
            .finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let (Some(mut conn), Ok(runtime)) =
            (self.conn.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let (key, token) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        runtime.spawn(async move {
            // Best effort: if this fails too, the lease still frees the slot.
            let _ = give_back(&mut conn, &key, &token).await;
        });
    }
}

async fn give_back(conn: &mut Conn, key: &str, token: &str) -> redis::RedisResult<()> {
    redis::cmd("ZREM")
        .arg(key)
        .arg(token)
        .query_async::<i64>(conn)
        .await
        .map(drop)
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
                return Ok(Permit {
                    key,
                    token,
                    conn: Some(conn),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    pub async fn release(&self, mut permit: Permit) -> Result<(), QueueError> {
        let mut conn = permit.conn.take().unwrap_or_else(|| self.conn());
        give_back(&mut conn, &permit.key, &permit.token)
            .await
            .map_err(QueueError::redis("release a shared limit"))
    }
}

fn rand_token() -> u64 {
    uuid::Uuid::now_v7().as_u128() as u64 ^ (std::process::id() as u64) << 32
}
