//! The queue client: enqueue, inspect, cancel and re-queue. Used by workers, the CLI and tests.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use ferry_config::Keep;
use redis::AsyncCommands;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    AttemptError, GROUP, JobRecord, JobState, Keys, NewJob, QueueError,
    conn::{Client, Conn},
    now_us, scripts,
};

/// Enqueue scripts take this many jobs per call, so one call never stalls Redis for long.
const ENQUEUE_CHUNK: usize = 500;

/// A connection to ferry's queues in one Redis or one Redis Cluster. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    conn: Conn,
    client: Client,
    prefix: String,
    /// Retention of finished jobs per queue; `default_keep` for queues not named.
    keep: Arc<BTreeMap<String, Keep>>,
    default_keep: Keep,
    tenants: ferry_config::Tenants,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelResult {
    /// It was waiting; it will not run.
    Cancelled,
    /// It is running; its worker was asked to stop.
    Requested,
    Missing,
    /// Already finished in this state.
    AlreadyFinal(JobState),
}

/// What `requeue` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequeueResult {
    Requeued,
    /// It was waiting for a retry or its time; it now runs at once.
    RunNow,
    /// Nothing to do: the job is in this state.
    Unchanged(JobState),
}

/// One queue's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueStats {
    /// kind → state → count; `recovered` counts jobs re-queued from dead workers.
    pub by_kind: BTreeMap<String, BTreeMap<String, i64>>,
    /// Entries waiting in the stream, not yet delivered to a worker.
    pub ready: i64,
    /// Delivered to a worker and not yet acknowledged.
    pub pending: i64,
    /// Scheduled and retrying jobs.
    pub delayed: i64,
    /// Age of the oldest entry not yet delivered.
    pub oldest_ready_age_ms: Option<i64>,
    pub workers: i64,
    /// Redis memory of the queue; only `ferry stats` measures it (not the dashboard's polls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::QueueMemory>,
    /// No worker starts the queue's jobs while it is paused.
    pub paused: bool,
    /// Waiting and running jobs per tenant: the busiest by name, the rest as "other".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<crate::TenantLoad>,
}

impl Queue {
    /// Connects to the Redis and key prefix of `config`, as every ferry process does.
    pub async fn for_config(config: &ferry_config::Config) -> Result<Self, QueueError> {
        let keep = Keep {
            age: config.worker.keep_finished,
            count: config.worker.keep_finished_count,
        };
        let mut queue = Self::connect(&config.redis.url, &config.redis.prefix, keep).await?;
        queue.tenants = config.tenants;
        queue.keep = Arc::new(
            config
                .queues
                .keys()
                .map(|name| (name.clone(), config.keep(name)))
                .collect(),
        );
        Ok(queue)
    }

    /// Connects to `url`: one Redis, or a Redis Cluster given by comma-separated seed nodes.
    /// Finished jobs are kept as `keep` says on every queue.
    pub async fn connect(url: &str, prefix: &str, keep: Keep) -> Result<Self, QueueError> {
        let client = Client::open(url)?;
        let conn = client.shared().await?;
        let queue = Self {
            conn,
            client,
            prefix: prefix.to_owned(),
            keep: Arc::default(),
            default_keep: keep,
            tenants: ferry_config::Tenants::default(),
        };
        queue.ping().await?;
        Ok(queue)
    }

    /// A dedicated connection for commands that block (XREADGROUP BLOCK), which would stall
    /// every other request sharing a multiplexed connection.
    pub(crate) async fn blocking_connection(&self, block: Duration) -> Result<Conn, QueueError> {
        self.client.blocking(block).await
    }

    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// The shared connection, for keys of ferry's that are not a queue's (the API's marks).
    pub fn redis(&self) -> Conn {
        self.conn.clone()
    }

    /// Whether `REDIS_URL` named a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.client.is_cluster()
    }

    pub fn keys(&self, queue: &str) -> Keys {
        Keys::new(&self.prefix, queue)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The tenant window and hard cap the scripts apply (`[tenants]`), as script arguments.
    pub(crate) fn tenant_limits(&self) -> (u32, u32) {
        (self.tenants.window, self.tenants.max_running)
    }

    pub(crate) fn tenant_top(&self) -> usize {
        self.tenants.top
    }

    /// How many finished jobs `queue` keeps in Redis, and for how long.
    pub fn keep(&self, queue: &str) -> Keep {
        self.keep.get(queue).copied().unwrap_or(self.default_keep)
    }

    /// `PUBLISH channel payload` on the queue's connection (the channel as given, no prefix:
    /// it is the application's name); returns how many subscribers got it.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<i64, QueueError> {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.conn())
            .await
            .map_err(QueueError::redis("publish"))
    }

    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| QueueError::Unreachable(e.to_string()))
    }

    /// The server's `maxmemory-policy`; anything but `noeviction` can silently drop jobs.
    pub async fn maxmemory_policy(&self) -> Result<Option<String>, QueueError> {
        let mut conn = self.conn();
        let reply: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("read maxmemory-policy"))?;
        Ok(reply.get(1).cloned())
    }

    /// Creates the consumer group (and stream) of each priority if missing. Starting at id 0
    /// delivers entries enqueued before the first worker ever ran.
    pub async fn ensure_group(&self, queue: &str) -> Result<(), QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        for stream in keys.streams() {
            let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            if let Err(e) = created
                && e.code() != Some("BUSYGROUP")
            {
                return Err(QueueError::redis("create consumer group")(e));
            }
        }
        Ok(())
    }

    /// Enqueues jobs atomically per chunk; returns each job's id and whether it was created
    /// (false: its idempotency key already named a job, whose id is returned).
    pub async fn enqueue(
        &self,
        queue: &str,
        jobs: &[NewJob],
    ) -> Result<Vec<(Uuid, bool)>, QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let now = now_us();
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            let mut call = scripts::ENQUEUE.key(&keys.stream);
            let (window, cap) = self.tenant_limits();
            call.arg(&keys.base)
                .arg(now)
                .arg(self.keep(queue).age.as_secs().max(1))
                .arg(window)
                .arg(cap)
                .arg(chunk.len());
            for job in chunk {
                call.arg(job.id.to_string())
                    .arg(&job.kind)
                    .arg(&job.args)
                    .arg(job.run_at_us.unwrap_or(now))
                    .arg(job.max_attempts)
                    .arg(job.idempotency_key.as_deref().unwrap_or(""))
                    .arg(job.coalesce_key.as_deref().unwrap_or(""))
                    .arg(job.owner.as_deref().unwrap_or(""))
                    .arg(crate::job::wire(job.priority))
                    .arg(job.tenant.as_deref().unwrap_or(""));
            }
            let reply: Vec<String> = call
                .invoke_async(&mut conn)
                .await
                .map_err(QueueError::redis("enqueue"))?;
            for pair in reply.chunks(2) {
                let id = parse_id(&pair[0])?;
                out.push((id, pair[1] == "1"));
            }
        }
        Ok(out)
    }

    pub async fn job(&self, queue: &str, id: Uuid) -> Result<Option<JobRecord>, QueueError> {
        let mut conn = self.conn();
        let hash: std::collections::HashMap<String, String> = conn
            .hgetall(self.keys(queue).job(&id.to_string()))
            .await
            .map_err(QueueError::redis("read job"))?;
        if hash.is_empty() {
            return Ok(None);
        }
        JobRecord::from_hash(queue, id, hash).map(Some)
    }

    /// Looks a job up in each of `queues`.
    pub async fn find(&self, queues: &[String], id: Uuid) -> Result<Option<JobRecord>, QueueError> {
        for queue in queues {
            if let Some(job) = self.job(queue, id).await? {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// When worker `consumer` last proved itself alive on `queue`, in ms since the epoch;
    /// `None` once the queue has forgotten it.
    pub async fn worker_seen(
        &self,
        queue: &str,
        consumer: &str,
    ) -> Result<Option<i64>, QueueError> {
        let mut conn = self.conn();
        let score: Option<f64> = conn
            .zscore(self.keys(queue).workers, consumer)
            .await
            .map_err(QueueError::redis("read worker heartbeat"))?;
        Ok(score.map(|ms| ms as i64))
    }

    /// Workers that proved themselves alive on `queue` within `within`, by Redis's clock (the
    /// one heartbeats are compared with when workers decide another is dead).
    pub async fn live_workers(
        &self,
        queue: &str,
        within: Duration,
    ) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn();
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("read the server's time"))?;
        let since = secs * 1000 + micros / 1000 - within.as_millis() as i64;
        conn.zrangebyscore(self.keys(queue).workers, since, "+inf")
            .await
            .map_err(QueueError::redis("read worker heartbeats"))
    }

    /// Every failed attempt of a job, oldest first.
    pub async fn attempt_errors(
        &self,
        queue: &str,
        id: Uuid,
    ) -> Result<Vec<AttemptError>, QueueError> {
        let mut conn = self.conn();
        let raw: Vec<String> = conn
            .lrange(self.keys(queue).errors(&id.to_string()), 0, -1)
            .await
            .map_err(QueueError::redis("read attempt errors"))?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    pub async fn cancel(&self, queue: &str, id: Uuid) -> Result<CancelResult, QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let reply: String = scripts::CANCEL
            .key(&keys.stream)
            .arg(&keys.base)
            .arg(id.to_string())
            .arg(now_us())
            .arg(self.keep(queue).age.as_secs().max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(QueueError::redis("cancel job"))?;
        Ok(match reply.as_str() {
            "cancelled" => CancelResult::Cancelled,
            "requested" => CancelResult::Requested,
            "missing" => CancelResult::Missing,
            other => CancelResult::AlreadyFinal(other.parse().unwrap_or(JobState::Cancelled)),
        })
    }

    /// Re-queues `job` under its own id with fresh attempts (a dead, cancelled or lost job),
    /// or makes a delayed one due now.
    pub async fn requeue(&self, queue: &str, job: &NewJob) -> Result<RequeueResult, QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let reply: String = scripts::REQUEUE
            .key(&keys.stream)
            .arg(&keys.base)
            .arg(now_us())
            .arg(job.id.to_string())
            .arg(&job.kind)
            .arg(&job.args)
            .arg(job.max_attempts)
            .arg(job.idempotency_key.as_deref().unwrap_or(""))
            .arg(job.owner.as_deref().unwrap_or(""))
            .arg(crate::job::wire(job.priority))
            .arg(job.tenant.as_deref().unwrap_or(""))
            .arg(self.tenants.window)
            .arg(self.tenants.max_running)
            .invoke_async(&mut conn)
            .await
            .map_err(QueueError::redis("re-queue job"))?;
        Ok(match reply.as_str() {
            "requeued" => RequeueResult::Requeued,
            "now" => RequeueResult::RunNow,
            other => RequeueResult::Unchanged(other.parse().unwrap_or(JobState::Queued)),
        })
    }

    /// Re-queues a job recorded as running whose worker has not been seen since
    /// `alive_after_ms` and whose stream entry is gone, so the queue's reclaim cannot recover
    /// it. Returns whether it did; otherwise the job is missing, not running, its worker is
    /// alive, or its entry is still pending (the reclaim's to handle).
    pub async fn revive(
        &self,
        queue: &str,
        id: Uuid,
        alive_after_ms: i64,
    ) -> Result<bool, QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let reply: String = scripts::REVIVE
            .key(&keys.stream)
            .arg(&keys.base)
            .arg(GROUP)
            .arg(id.to_string())
            .arg(now_us() / 1000)
            .arg(alive_after_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(QueueError::redis("revive job"))?;
        Ok(reply == "requeued")
    }

    pub async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let counts: BTreeMap<String, i64> = conn
            .hgetall(&keys.stats)
            .await
            .map_err(QueueError::redis("read stats"))?;
        let mut stats = QueueStats::default();
        for (field, count) in counts {
            if let Some((kind, state)) = field.split_once('|') {
                stats
                    .by_kind
                    .entry(kind.to_owned())
                    .or_default()
                    .insert(state.to_owned(), count.max(0));
            }
        }
        stats.delayed = conn
            .zcard(&keys.delayed)
            .await
            .map_err(QueueError::redis("read stats"))?;
        stats.workers = conn
            .zcard(&keys.workers)
            .await
            .map_err(QueueError::redis("read stats"))?;
        for stream in keys.streams() {
            let (groups, first) = self.waiting_entries(&stream, 1).await?;
            if let Some(group) = group_info(&groups) {
                stats.pending += group.get("pending").copied().unwrap_or(0);
                stats.ready += group.get("lag").copied().unwrap_or(0);
            }
            if let Some((entry, _)) = first.first()
                && let Some(ms) = entry_ms(entry)
            {
                let age = (now_us() / 1000 - ms).max(0);
                stats.oldest_ready_age_ms =
                    Some(stats.oldest_ready_age_ms.map_or(age, |a| a.max(age)));
            }
        }
        stats.paused = self.is_paused(queue).await?;
        stats.tenants = self.tenant_stats(queue).await?;
        Ok(stats)
    }
}

/// A stream entry as XRANGE returns it: id and fields.
pub(crate) type Entry = (String, BTreeMap<String, String>);

/// Stream ids begin with their creation time in ms.
pub(crate) fn entry_ms(id: &str) -> Option<i64> {
    id.split('-').next().and_then(|m| m.parse().ok())
}

impl Queue {
    /// The `XINFO GROUPS` reply of one of a queue's streams; nil when no worker has created
    /// the stream yet.
    pub(crate) async fn stream_groups(&self, stream: &str) -> redis::Value {
        redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut self.conn())
            .await
            .unwrap_or(redis::Value::Nil)
    }

    /// The `XINFO GROUPS` reply of one of a queue's streams and the first `count` entries not
    /// yet delivered to the `workers` group (they follow the group's last-delivered id).
    pub(crate) async fn waiting_entries(
        &self,
        stream: &str,
        count: usize,
    ) -> Result<(redis::Value, Vec<Entry>), QueueError> {
        let groups = self.stream_groups(stream).await;
        let mut conn = self.conn();
        let start = group_last_delivered(&groups)
            .map(|l| format!("({l}"))
            .unwrap_or_else(|| "-".into());
        let entries: Vec<Entry> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(QueueError::redis("read waiting entries"))?;
        Ok((groups, entries))
    }
}

fn parse_id(s: &str) -> Result<Uuid, QueueError> {
    Uuid::parse_str(s).map_err(|e| QueueError::Corrupt {
        id: s.to_owned(),
        message: e.to_string(),
    })
}

/// The `workers` group's numeric fields from an `XINFO GROUPS` reply.
fn group_info(reply: &redis::Value) -> Option<BTreeMap<String, i64>> {
    group_fields(reply).map(|fields| {
        fields
            .into_iter()
            .filter_map(|(k, v)| match v {
                redis::Value::Int(i) => Some((k, *i)),
                _ => None,
            })
            .collect()
    })
}

pub(crate) fn group_last_delivered(reply: &redis::Value) -> Option<String> {
    group_fields(reply)?
        .into_iter()
        .find(|(k, _)| k == "last-delivered-id")
        .and_then(|(_, v)| redis::from_redis_value_ref::<String>(v).ok())
}

fn group_fields(reply: &redis::Value) -> Option<Vec<(String, &redis::Value)>> {
    let redis::Value::Array(groups) = reply else {
        return None;
    };
    groups.iter().find_map(|group| {
        let pairs: Vec<(String, &redis::Value)> = match group {
            redis::Value::Array(items) => items
                .chunks(2)
                .filter_map(|kv| {
                    Some((redis::from_redis_value_ref::<String>(&kv[0]).ok()?, &kv[1]))
                })
                .collect(),
            redis::Value::Map(items) => items
                .iter()
                .filter_map(|(k, v)| Some((redis::from_redis_value_ref::<String>(k).ok()?, v)))
                .collect(),
            _ => return None,
        };
        let is_ours = pairs.iter().any(|(k, v)| {
            k == "name" && redis::from_redis_value_ref::<String>(v).is_ok_and(|n| n == GROUP)
        });
        is_ours.then_some(pairs)
    })
}
