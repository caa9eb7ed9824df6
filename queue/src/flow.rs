//! Flow control on a queue: pause and resume, and the per-tenant load that `[tenants]` fair
//! sharing works with. Priorities and tenant admission themselves live in the Lua scripts
//! (`lua/prelude.lua`), since they decide which entry a worker takes next.

use std::collections::BTreeMap;

use redis::AsyncCommands;
use serde::Serialize;

use crate::{Queue, QueueError};

/// One tenant's jobs on a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantLoad {
    /// The tenant, or "other" for the sum of those past `[tenants] top`.
    pub tenant: String,
    /// Not yet started: in its backlog or ready in the streams.
    pub waiting: i64,
    pub running: i64,
}

/// Running jobs read per stream and stats call to count them per tenant: scripts keep no
/// per-tenant running count (it would cost every start and finish a write); the streams'
/// pending entries name the running jobs.
const RUNNING_SCAN: usize = 10_000;

impl Queue {
    /// Running jobs per tenant, from the streams' pending entries and each job's `ten` field.
    async fn running_per_tenant(&self, queue: &str) -> Result<BTreeMap<String, i64>, QueueError> {
        let keys = self.keys(queue);
        let ids = self.running_ids(queue, RUNNING_SCAN).await?;
        let mut conn = self.conn();
        let mut out = BTreeMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(keys.job(id), "ten");
        }
        let tenants: Vec<Option<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("read running jobs' tenants"))?;
        for t in tenants.into_iter().flatten().filter(|t| !t.is_empty()) {
            *out.entry(t).or_insert(0) += 1;
        }
        Ok(out)
    }

    /// Pauses `queue`: it keeps accepting jobs, no worker starts new ones, running ones
    /// finish. Returns false when it was already paused.
    pub async fn pause(&self, queue: &str) -> Result<bool, QueueError> {
        let set: bool = self
            .conn()
            .set_nx(self.keys(queue).paused(), crate::now_us() / 1000)
            .await
            .map_err(QueueError::redis("pause queue"))?;
        Ok(set)
    }

    /// Resumes `queue`; workers see it within their next fetch (at most `worker.block`).
    /// Returns false when it was not paused.
    pub async fn resume(&self, queue: &str) -> Result<bool, QueueError> {
        let removed: i64 = self
            .conn()
            .del(self.keys(queue).paused())
            .await
            .map_err(QueueError::redis("resume queue"))?;
        Ok(removed == 1)
    }

    pub async fn is_paused(&self, queue: &str) -> Result<bool, QueueError> {
        self.conn()
            .exists(self.keys(queue).paused())
            .await
            .map_err(QueueError::redis("read pause"))
    }

    /// Waiting and running jobs per tenant, busiest first: the first `[tenants] top` by name,
    /// the rest summed as "other", so the list (and `/metrics` labels) stays bounded.
    pub async fn tenant_stats(&self, queue: &str) -> Result<Vec<TenantLoad>, QueueError> {
        let base = self.keys(queue).base;
        let mut conn = self.conn();
        let admitted: BTreeMap<String, i64> = conn
            .hgetall(format!("{base}:tadm"))
            .await
            .map_err(QueueError::redis("read tenant counts"))?;
        let running = self.running_per_tenant(queue).await?;
        let ring: Vec<String> = conn
            .lrange(format!("{base}:tring"), 0, -1)
            .await
            .map_err(QueueError::redis("read tenant ring"))?;
        let mut loads: BTreeMap<String, TenantLoad> = BTreeMap::new();
        for (t, n) in &admitted {
            let run = running.get(t).copied().unwrap_or(0).max(0);
            let load = loads.entry(t.clone()).or_default();
            load.running = run;
            load.waiting += (n - run).max(0);
        }
        if !ring.is_empty() {
            let mut pipe = redis::pipe();
            for t in &ring {
                pipe.llen(format!("{base}:tq:{t}"));
            }
            let lens: Vec<i64> = pipe
                .query_async(&mut conn)
                .await
                .map_err(QueueError::redis("read tenant backlogs"))?;
            for (t, len) in ring.iter().zip(lens) {
                loads.entry(t.clone()).or_default().waiting += len;
            }
        }
        let mut loads: Vec<TenantLoad> = loads
            .into_iter()
            .map(|(tenant, load)| TenantLoad { tenant, ..load })
            .filter(|l| l.waiting > 0 || l.running > 0)
            .collect();
        loads.sort_by_key(|l| std::cmp::Reverse(l.waiting + l.running));
        let top = self.tenant_top();
        if loads.len() > top {
            let rest = loads.split_off(top);
            loads.push(TenantLoad {
                tenant: "other".into(),
                waiting: rest.iter().map(|l| l.waiting).sum(),
                running: rest.iter().map(|l| l.running).sum(),
            });
        }
        Ok(loads)
    }
}
