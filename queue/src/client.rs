//! The queue client: enqueue, inspect, cancel and re-queue. Used by workers, the CLI and tests.

use std::{collections::BTreeMap, time::Duration};

use redis::{AsyncCommands, AsyncConnectionConfig, aio::ConnectionManager};
use serde::Serialize;
use uuid::Uuid;

use crate::{AttemptError, GROUP, JobRecord, JobState, Keys, NewJob, QueueError, now_us, scripts};

/// Enqueue scripts take this many jobs per call, so one call never stalls Redis for long.
const ENQUEUE_CHUNK: usize = 500;

/// A connection to ferry's queues in one Redis. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    client: redis::Client,
    prefix: String,
    keep_finished: Duration,
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

/// Which jobs `list` returns.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<String>,
    /// Enqueued at or after (µs).
    pub since_us: Option<i64>,
    pub error_contains: Option<String>,
    pub limit: usize,
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
}

impl Queue {
    /// Connects to the Redis and key prefix of `config`, as every ferry process does.
    pub async fn for_config(config: &ferry_config::Config) -> Result<Self, QueueError> {
        Self::connect(
            &config.redis.url,
            &config.redis.prefix,
            config.worker.keep_finished,
        )
        .await
    }

    pub async fn connect(
        url: &str,
        prefix: &str,
        keep_finished: Duration,
    ) -> Result<Self, QueueError> {
        if url.starts_with("rediss://") {
            // redis's TLS asks rustls for the process-wide crypto provider, and with both ring
            // and aws-lc-rs in the dependency tree rustls picks none by itself. Err: another
            // was installed first, which serves as well.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let client = redis::Client::open(url).map_err(|e| QueueError::BadUrl(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(2);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| QueueError::Unreachable(e.to_string()))?;
        let queue = Self {
            conn,
            client,
            prefix: prefix.to_owned(),
            keep_finished,
        };
        queue.ping().await?;
        Ok(queue)
    }

    /// A dedicated connection for commands that block (XREADGROUP BLOCK), which would stall
    /// every other request sharing a multiplexed connection.
    pub(crate) async fn blocking_connection(
        &self,
        block: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, QueueError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(block + Duration::from_secs(5)));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| QueueError::Unreachable(e.to_string()))
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn keys(&self, queue: &str) -> Keys {
        Keys::new(&self.prefix, queue)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
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

    pub fn keep_finished(&self) -> Duration {
        self.keep_finished
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

    /// Creates the consumer group (and stream) if missing. Starting at id 0 delivers entries
    /// enqueued before the first worker ever ran.
    pub async fn ensure_group(&self, queue: &str) -> Result<(), QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => {
                Err(QueueError::redis("create consumer group")(e))
            }
            _ => Ok(()),
        }
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
            call.arg(&keys.base)
                .arg(now)
                .arg(self.keep_finished.as_secs().max(1))
                .arg(chunk.len());
            for job in chunk {
                call.arg(job.id.to_string())
                    .arg(&job.kind)
                    .arg(&job.args)
                    .arg(job.run_at_us.unwrap_or(now))
                    .arg(job.max_attempts)
                    .arg(job.idempotency_key.as_deref().unwrap_or(""))
                    .arg(job.coalesce_key.as_deref().unwrap_or(""));
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

    /// Jobs Redis still holds (finished ones for `worker.keep_finished`), newest first.
    /// Scans the queue's job hashes: an operator's query, not a hot path.
    pub async fn list(
        &self,
        queue: &str,
        filter: &JobFilter,
    ) -> Result<Vec<JobRecord>, QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let mut names: Vec<String> = Vec::new();
        {
            let mut iter = conn
                .scan_match::<_, String>(keys.job_pattern())
                .await
                .map_err(QueueError::redis("scan jobs"))?;
            use futures::StreamExt;
            while let Some(key) = iter.next().await {
                names.push(key.map_err(QueueError::redis("scan jobs"))?);
            }
        }
        let mut out = Vec::new();
        for chunk in names.chunks(500) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.hgetall(key);
            }
            let hashes: Vec<std::collections::HashMap<String, String>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(QueueError::redis("read jobs"))?;
            for (key, hash) in chunk.iter().zip(hashes) {
                let Some(id) = key.rsplit(':').next().and_then(|s| Uuid::parse_str(s).ok()) else {
                    continue;
                };
                if hash.is_empty() {
                    continue;
                }
                let job = JobRecord::from_hash(queue, id, hash)?;
                if filter.matches(&job) {
                    out.push(job);
                }
            }
        }
        out.sort_by(|a, b| b.enqueued_us.cmp(&a.enqueued_us).then(b.id.cmp(&a.id)));
        if filter.limit > 0 {
            out.truncate(filter.limit);
        }
        Ok(out)
    }

    pub async fn cancel(&self, queue: &str, id: Uuid) -> Result<CancelResult, QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let reply: String = scripts::CANCEL
            .key(&keys.stream)
            .arg(&keys.base)
            .arg(id.to_string())
            .arg(now_us())
            .arg(self.keep_finished.as_secs().max(1))
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
        let (groups, first) = self.waiting_entries(queue, 1).await?;
        if let Some(group) = group_info(&groups) {
            stats.pending = group.get("pending").copied().unwrap_or(0);
            stats.ready = group.get("lag").copied().unwrap_or(0);
        }
        if let Some((entry, _)) = first.first()
            && let Some(ms) = entry_ms(entry)
        {
            stats.oldest_ready_age_ms = Some((now_us() / 1000 - ms).max(0));
        }
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
    /// The `XINFO GROUPS` reply of a queue's stream and the first `count` entries not yet
    /// delivered to the `workers` group (they follow the group's last-delivered id).
    pub(crate) async fn waiting_entries(
        &self,
        queue: &str,
        count: usize,
    ) -> Result<(redis::Value, Vec<Entry>), QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let groups: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&keys.stream)
            .query_async(&mut conn)
            .await
            .unwrap_or(redis::Value::Nil);
        let start = group_last_delivered(&groups)
            .map(|l| format!("({l}"))
            .unwrap_or_else(|| "-".into());
        let entries: Vec<Entry> = redis::cmd("XRANGE")
            .arg(&keys.stream)
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

impl JobFilter {
    fn matches(&self, job: &JobRecord) -> bool {
        self.state.is_none_or(|s| s == job.state)
            && self.kind.as_ref().is_none_or(|k| *k == job.kind)
            && self.since_us.is_none_or(|t| job.enqueued_us >= t)
            && self.error_contains.as_ref().is_none_or(|needle| {
                job.last_error
                    .as_ref()
                    .is_some_and(|e| e.to_lowercase().contains(&needle.to_lowercase()))
            })
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

fn group_last_delivered(reply: &redis::Value) -> Option<String> {
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
