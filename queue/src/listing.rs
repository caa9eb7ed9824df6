//! Listing jobs from the per-state indexes (`P:{q}:idx:STATE`, kept by the Lua scripts),
//! never by scanning job hashes: the cost follows the page asked for, not what Redis holds.
//! Waiting and running jobs have no index: waiting ones are the streams' entries not yet
//! delivered and the tenants' backlogs, running ones the streams' pending entries. So an
//! enqueue, a start and a finish each write one sorted set less.

use std::collections::HashMap;

use redis::AsyncCommands;
use uuid::Uuid;

use crate::{JobRecord, JobState, Queue, QueueError};

/// Index entries read per round trip when a filter (kind, error) may skip some.
const PAGE: usize = 500;
/// Most index entries one state's listing examines; bounds a filter that matches little.
const MAX_EXAMINED: usize = 100_000;

/// Which jobs `list` returns.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<String>,
    /// Enqueued at or after (µs).
    pub since_us: Option<i64>,
    pub error_contains: Option<String>,
    /// 0: no limit.
    pub limit: usize,
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

    /// Whether every indexed job at or after `since_us` matches, so a page can be exactly
    /// as long as the limit.
    fn selects_by_index_only(&self) -> bool {
        self.kind.is_none() && self.error_contains.is_none()
    }
}

impl Queue {
    /// Jobs Redis still holds (finished ones as `[queues.NAME]` retention keeps them),
    /// newest first: waiting and running jobs by enqueue time, finished ones by finish time.
    pub async fn list(
        &self,
        queue: &str,
        filter: &JobFilter,
    ) -> Result<Vec<JobRecord>, QueueError> {
        let states = match filter.state {
            Some(state) => vec![state],
            None => JobState::ALL.to_vec(),
        };
        let want = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        let mut out = Vec::new();
        for state in states {
            out.extend(self.list_state(queue, state, filter, want).await?);
        }
        out.sort_by(|a, b| b.enqueued_us.cmp(&a.enqueued_us).then(b.id.cmp(&a.id)));
        out.truncate(want);
        Ok(out)
    }

    /// Ids of the jobs whose stream entries are delivered and not yet acknowledged: the
    /// running ones, plus any whose outcome is being recorded. At most `max` per stream.
    pub(crate) async fn running_ids(
        &self,
        queue: &str,
        max: usize,
    ) -> Result<Vec<String>, QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let mut ids = Vec::new();
        for stream in keys.streams() {
            let pending: Vec<(String, String, u64, u64)> = match redis::cmd("XPENDING")
                .arg(&stream)
                .arg(crate::GROUP)
                .arg("-")
                .arg("+")
                .arg(max)
                .query_async(&mut conn)
                .await
            {
                Ok(pending) => pending,
                // A stream no worker has created yet has no group and holds nothing.
                Err(e) if e.code() == Some("NOGROUP") => continue,
                Err(e) => return Err(QueueError::redis("read running jobs")(e)),
            };
            if pending.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for (entry, ..) in &pending {
                pipe.cmd("XRANGE").arg(&stream).arg(entry).arg(entry);
            }
            let entries: Vec<Vec<crate::client::Entry>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(QueueError::redis("read running jobs' entries"))?;
            ids.extend(
                entries
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, mut fields)| fields.remove("id")),
            );
        }
        Ok(ids)
    }

    /// Ids of the jobs waiting to start, newest last within each source: the entries of each
    /// stream after the group's last-delivered id, and each tenant's backlog. At most `max`
    /// (the newest) from each.
    pub(crate) async fn waiting_ids(
        &self,
        queue: &str,
        max: usize,
    ) -> Result<Vec<String>, QueueError> {
        let keys = self.keys(queue);
        let mut conn = self.conn();
        let mut ids = Vec::new();
        for stream in keys.streams() {
            let groups = self.stream_groups(&stream).await;
            // No group yet: no worker has read the stream, every entry waits.
            let after = crate::client::group_last_delivered(&groups)
                .map_or_else(|| "-".to_owned(), |l| format!("({l}"));
            let entries: Vec<crate::client::Entry> = redis::cmd("XREVRANGE")
                .arg(&stream)
                .arg("+")
                .arg(after)
                .arg("COUNT")
                .arg(max)
                .query_async(&mut conn)
                .await
                .map_err(QueueError::redis("read waiting entries"))?;
            ids.extend(
                entries
                    .into_iter()
                    .filter_map(|(_, mut fields)| fields.remove("id")),
            );
        }
        let ring: Vec<String> = conn
            .lrange(format!("{}:tring", keys.base), 0, -1)
            .await
            .map_err(QueueError::redis("read the tenant ring"))?;
        if !ring.is_empty() {
            let mut pipe = redis::pipe();
            for t in &ring {
                pipe.lrange(format!("{}:tq:{t}", keys.base), -(max as isize), -1);
            }
            let backlogs: Vec<Vec<String>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(QueueError::redis("read tenant backlogs"))?;
            // Backlog items carry their priority's letter before the id (see prelude.lua).
            ids.extend(
                backlogs
                    .into_iter()
                    .flatten()
                    .map(|e| e.trim_start_matches(['h', 'l']).to_owned()),
            );
        }
        Ok(ids)
    }

    /// The jobs of `ids` in one round trip, each `None` when its hash is gone; ids that are
    /// not UUIDs are skipped.
    async fn read_jobs<'a>(
        &self,
        queue: &str,
        ids: &'a [String],
    ) -> Result<Vec<(&'a String, Option<JobRecord>)>, QueueError> {
        let keys = self.keys(queue);
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(keys.job(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(QueueError::redis("read jobs"))?;
        let mut out = Vec::with_capacity(ids.len());
        for (raw, hash) in ids.iter().zip(hashes) {
            let Ok(id) = Uuid::parse_str(raw) else {
                continue;
            };
            let job = if hash.is_empty() {
                None
            } else {
                Some(JobRecord::from_hash(queue, id, hash)?)
            };
            out.push((raw, job));
        }
        Ok(out)
    }

    /// The jobs of `ids` still in `state` that match; newest enqueued first.
    async fn list_ids(
        &self,
        queue: &str,
        ids: &[String],
        state: JobState,
        filter: &JobFilter,
        want: usize,
    ) -> Result<Vec<JobRecord>, QueueError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(PAGE) {
            for (_, job) in self.read_jobs(queue, chunk).await? {
                if let Some(job) = job.filter(|j| j.state == state && filter.matches(j)) {
                    out.push(job);
                }
            }
        }
        out.sort_by(|a, b| b.enqueued_us.cmp(&a.enqueued_us).then(b.id.cmp(&a.id)));
        out.truncate(want);
        Ok(out)
    }

    async fn list_state(
        &self,
        queue: &str,
        state: JobState,
        filter: &JobFilter,
        want: usize,
    ) -> Result<Vec<JobRecord>, QueueError> {
        // Without a filter the newest `want` of each source are enough; with one, up to
        // MAX_EXAMINED of each are read.
        let per_source = if filter.selects_by_index_only() {
            want.min(MAX_EXAMINED)
        } else {
            MAX_EXAMINED
        };
        match state {
            JobState::Running => {
                let ids = self.running_ids(queue, MAX_EXAMINED).await?;
                return self.list_ids(queue, &ids, state, filter, want).await;
            }
            JobState::Queued => {
                let ids = self.waiting_ids(queue, per_source).await?;
                return self.list_ids(queue, &ids, state, filter, want).await;
            }
            _ => {}
        }
        let keys = self.keys(queue);
        let index = keys.index(state);
        let mut conn = self.conn();
        // The per-kind state counters (`ferry stats`) say whether the kind has any job in this
        // state: without one, a kind filter would read the whole index to find nothing (10,000
        // dead jobs of other kinds took 200 ms). Finished states' counters never go down, so a
        // kind whose jobs all retired is still read.
        if let Some(kind) = &filter.kind {
            let count: Option<i64> = conn
                .hget(&keys.stats, format!("{kind}|{}", state.as_str()))
                .await
                .map_err(QueueError::redis("read job counts"))?;
            if count.unwrap_or(0) <= 0 {
                return Ok(Vec::new());
            }
        }
        // Every score is at or after the enqueue time, so older scores cannot match `since`.
        let min = filter.since_us.map_or("-inf".to_owned(), |t| t.to_string());
        // With a filter, a page starts at the size asked for and grows up to PAGE: a filter
        // that matches most jobs (`--kind` of the only busy kind) reads about what it returns,
        // one that matches little still reads PAGE entries per round trip.
        let index_only = filter.selects_by_index_only();
        let mut page = if index_only {
            want.min(PAGE * 10)
        } else {
            want.saturating_add(want / 2).clamp(1, PAGE)
        };
        let (mut out, mut stale, mut offset) = (Vec::new(), Vec::new(), 0);
        while out.len() < want && offset < MAX_EXAMINED {
            let ids: Vec<String> = conn
                .zrevrangebyscore_limit(&index, "+inf", &min, offset as isize, page as isize)
                .await
                .map_err(QueueError::redis("read job index"))?;
            if ids.is_empty() {
                break;
            }
            for (raw, job) in self.read_jobs(queue, &ids).await? {
                match job {
                    // Gone: retired or expired between the two reads, or an index entry a
                    // cancellation's expiry left behind.
                    None => stale.push(raw.clone()),
                    Some(job) if filter.matches(&job) && out.len() < want => out.push(job),
                    Some(_) => {}
                }
            }
            if ids.len() < page {
                break;
            }
            offset += ids.len();
            if !index_only {
                page = (page * 4).min(PAGE);
            }
        }
        if !stale.is_empty() {
            let _: Result<i64, _> = conn.zrem(&index, &stale).await;
        }
        Ok(out)
    }
}
