//! Rate limits shared by every worker: at most `count` starts per period under one name (a
//! kind, or a target such as a webhook host), kept in Redis beside the permits of
//! [`crate::limit`] in the `{limits}` hash slot, so they hold on a Redis Cluster too.
//!
//! # Design: reservations, not polling
//!
//! The limiter is GCRA written as reservations. `PREFIX:{limits}:rate:NAME` holds the next
//! free start time; one script call hands the caller that time as its slot and moves the
//! next free time on by one interval (`period / count`, rounded up). Slots are therefore
//! exactly one interval apart, so no window of one period ever holds more than `count`
//! slots, and no caller ever asks twice for the same start: there is no polling, no retry
//! loop and no herd, however many jobs wait.
//!
//! What the caller does with its slot depends on how far off it is:
//! - within [`HOLD_AFTER`]: it sleeps until the slot, in place (a snooze could not be that
//!   precise: the promoter looks at due jobs every 200 ms);
//! - further: the script also records the slot under the caller's id in
//!   `PREFIX:{limits}:rate:NAME:held`, and the job snoozes (the attempt is given back) until
//!   [`SNOOZE_LEAD`] before it. When it comes back, on any worker, the same call finds the
//!   held slot and hands it back instead of a new one, and the job sleeps the rest in place.
//!   So 200 jobs at 20/s are each fetched twice: once to get a slot, once to run in it.
//! - A job back more than [`LATE_OK`] after its slot (a long queue ahead of it) has lost it:
//!   running then could put one start too many in a later window, so it takes a new slot.
//!   Lost slots cost throughput, never the limit.
//!
//! Times are Redis's clock (`TIME` in the script), so workers whose clocks disagree still
//! share one line; callers only ever get durations back. There is no burst allowance: a
//! limit of 20/s starts one job every 50 ms, never 20 at once.
//!
//! Reservations are not capped: a backlog of 50,000 jobs at 20/s gets slots up to 40 min
//! ahead at once and sits as scheduled jobs until then. Changing a rate applies to slots
//! handed out after the change; held ones keep their time.

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use crate::{Queue, QueueError};

/// Slots at most this far off are waited for in place; further ones are held for a snooze.
pub const HOLD_AFTER: Duration = Duration::from_millis(250);
/// A snoozed job comes back this long before its slot: the promoter may be up to 200 ms late.
pub const SNOOZE_LEAD: Duration = Duration::from_millis(200);
/// A job back this late for its held slot still runs in it; later, it takes a new slot.
pub const LATE_OK: Duration = Duration::from_millis(20);

static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        -- KEYS[1] next free slot (µs, Redis clock), KEYS[2] zset of held slots by holder.
        -- ARGV: interval_us, holder, hold_after_us, late_ok_us.
        -- Returns {µs from now to the slot (negative when late), 1 if newly reserved, slot}.
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local interval, holder = tonumber(ARGV[1]), ARGV[2]
        local hold, late = tonumber(ARGV[3]), tonumber(ARGV[4])
        -- Lua would print these 16-digit numbers with 14 significant digits.
        local function int(x) return string.format('%.0f', x) end
        local held = redis.call('ZSCORE', KEYS[2], holder)
        if held then
          held = tonumber(held)
          -- Back early (clocks of workers differ): keep holding, snooze again.
          if held - now > hold then return {held - now, 0, held} end
          redis.call('ZREM', KEYS[2], holder)
          if held >= now - late then return {held - now, 0, held} end
        end
        local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
        local ttl = math.floor((slot + interval - now) / 1000) + 1000
        redis.call('SET', KEYS[1], int(slot + interval), 'PX', ttl)
        if slot - now > hold then
          redis.call('ZADD', KEYS[2], int(slot), holder)
          redis.call('PEXPIRE', KEYS[2], ttl + 60000)
        end
        -- Slots whose holders never came back (cancelled jobs) go once they are stale.
        redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. int(now - late))
        return {slot - now, 1, slot}",
    )
});

/// One start granted by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// How long until the slot (zero when it is now or just past).
    pub wait: Duration,
    /// The slot, µs since the epoch on Redis's clock.
    pub at_us: i64,
    /// Handed out by this call (the caller was delayed by the limit if `wait` > 0), rather
    /// than a slot held since an earlier call.
    pub fresh: bool,
}

impl Slot {
    /// How long to snooze before coming back for this slot, when it is too far off to wait
    /// for in place; `None` means: sleep `wait`, then start.
    pub fn snooze(&self) -> Option<Duration> {
        (self.wait > HOLD_AFTER).then(|| self.wait - SNOOZE_LEAD)
    }
}

impl Queue {
    /// The next start under limit `name` (one start per `interval`) for `holder` (a job id):
    /// the slot it holds from an earlier call, or a new one. One script call.
    pub async fn reserve_start(
        &self,
        name: &str,
        holder: &str,
        interval: Duration,
    ) -> Result<Slot, QueueError> {
        let key = format!("{}:{{limits}}:rate:{name}", self.prefix());
        let (wait, fresh, at_us): (i64, i64, i64) = RESERVE
            .key(&key)
            .key(format!("{key}:held"))
            .arg(interval.as_micros().max(1) as u64)
            .arg(holder)
            .arg(HOLD_AFTER.as_micros() as u64)
            .arg(LATE_OK.as_micros() as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(QueueError::redis("reserve a start under a rate limit"))?;
        Ok(Slot {
            wait: Duration::from_micros(wait.max(0) as u64),
            at_us,
            fresh: fresh == 1,
        })
    }

    /// Counts one job of `kind` on `queue` delayed by a rate limit, for `/metrics`
    /// (`ferry_jobs_rate_delayed_total`).
    pub async fn count_rate_delayed(&self, queue: &str, kind: &str) -> Result<(), QueueError> {
        redis::cmd("HINCRBY")
            .arg(format!("{}:metrics", self.keys(queue).base))
            .arg(format!("{kind}|rate_delayed"))
            .arg(1)
            .query_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(QueueError::redis("count a job delayed by a rate limit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_slots_are_waited_for_far_ones_snoozed_for() {
        let slot = |ms| Slot {
            wait: Duration::from_millis(ms),
            at_us: 0,
            fresh: true,
        };
        assert_eq!(slot(0).snooze(), None);
        assert_eq!(slot(250).snooze(), None);
        assert_eq!(slot(1200).snooze(), Some(Duration::from_millis(1000)));
    }
}
