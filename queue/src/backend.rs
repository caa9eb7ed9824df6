//! The apalis backend: feeds a worker from one queue's stream.
//!
//! Four background tasks serve one worker process on one queue:
//! - the fetcher reads only as many jobs as the worker has free slots (no job waits in a local
//!   buffer while another worker idles), in batches, blocking in `XREADGROUP` when idle so a
//!   new job starts at once. A slot is free as soon as its job has run: the outcome's
//!   recording does not hold it, so fetching and recording overlap instead of taking turns
//!   (at `worker.concurrency` 64 taking turns cost about half the no-op throughput);
//! - the finisher records outcomes and acknowledges entries in batches;
//! - the heartbeat keeps this worker's running entries fresh, delivers cancellations, and
//!   re-queues the entries of workers that went silent (`XAUTOCLAIM`);
//! - the promoter moves due delayed and retrying jobs into the stream.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::{
    backend::{Backend, BackendConfig, finalize::Ephemeral},
    task::{Task, task_id::RandomId},
    worker::context::WorkerContext,
};
use futures::{FutureExt, future::BoxFuture};
use redis::streams::StreamReadReply;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    AckLayer, Conn, FailureRule, Finished, GROUP, Job, Keys, Outcome, Queue, QueueError, now_us,
    scripts,
};

/// Most outcomes recorded by one finish script.
const FINISH_BATCH: usize = 512;
/// Most delayed jobs promoted by one script call.
const PROMOTE_BATCH: usize = 1000;
/// The promoter looks at least this often, so jobs scheduled by other processes start on time.
const PROMOTE_EVERY: Duration = Duration::from_millis(200);
/// How often a worker looks whether its paused queue was resumed.
const PAUSED_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct BackendOptions {
    pub queue: String,
    /// This worker process's identity in the consumer group; unique per process.
    pub consumer: String,
    pub concurrency: usize,
    pub batch: usize,
    pub heartbeat: Duration,
    pub reclaim_after: Duration,
    /// Longest single wait in `XREADGROUP BLOCK`; bounds how long a stop takes.
    pub block: Duration,
    pub keep_dead: Duration,
    /// What an attempt that ended without an outcome (a failing layer) comes to.
    pub on_failure: FailureRule,
}

pub(crate) struct Shared {
    queue: Queue,
    keys: Keys,
    /// Retention of this queue's finished jobs.
    keep: ferry_config::Keep,
    name: Arc<str>,
    pub(crate) opts: BackendOptions,
    /// Entry id → (job id, cancel token) for every job fetched and not yet recorded finished.
    inflight: Mutex<HashMap<String, (Uuid, CancellationToken)>>,
    /// Jobs fetched whose attempt has not ended yet (handed to the worker or running); what
    /// `concurrency` limits. The others in `inflight` only wait for their outcome's recording.
    running: AtomicUsize,
    capacity: Notify,
    finished: mpsc::UnboundedSender<Finished>,
    /// Stop fetching.
    stop: CancellationToken,
    /// Everything recorded; stop the background tasks.
    closed: CancellationToken,
}

/// A worker's source of jobs from one queue. Build with [`StreamBackend::start`].
pub struct StreamBackend {
    jobs: Option<mpsc::Receiver<Job>>,
    fetcher: Option<tokio::task::JoinHandle<()>>,
    shared: Arc<Shared>,
    closing: Option<BoxFuture<'static, Result<(), QueueError>>>,
}

impl std::fmt::Debug for StreamBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBackend")
            .field("queue", &self.shared.opts.queue)
            .finish_non_exhaustive()
    }
}

impl StreamBackend {
    /// Joins the queue's consumer group and starts fetching. `shutdown` stops fetching; jobs
    /// already running finish and are recorded when the worker closes the backend.
    pub async fn start(
        queue: Queue,
        opts: BackendOptions,
        shutdown: CancellationToken,
    ) -> Result<Self, QueueError> {
        queue.ensure_group(&opts.queue).await?;
        let blocking = queue.blocking_connection(opts.block).await?;
        let (jobs_tx, jobs_rx) = mpsc::channel(opts.batch.max(1));
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            keys: queue.keys(&opts.queue),
            keep: queue.keep(&opts.queue),
            name: Arc::from(opts.queue.as_str()),
            queue,
            opts,
            inflight: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
            capacity: Notify::new(),
            finished: finished_tx,
            stop: shutdown.child_token(),
            closed: CancellationToken::new(),
        });
        let fetcher = tokio::spawn(fetch_loop(shared.clone(), blocking, jobs_tx));
        tokio::spawn(finish_loop(shared.clone(), finished_rx));
        tokio::spawn(heartbeat_loop(shared.clone()));
        tokio::spawn(promote_loop(shared.clone()));
        Ok(Self {
            jobs: Some(jobs_rx),
            fetcher: Some(fetcher),
            shared,
            closing: None,
        })
    }
}

impl Backend for StreamBackend {
    type Task = Task<Job>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Option<Result<Task<Job>, QueueError>>> {
        match self.jobs.as_mut() {
            Some(jobs) => jobs
                .poll_recv(cx)
                .map(|job| job.map(|job| Ok(Task::new(job)))),
            None => Poll::Ready(None),
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        let shared = self.shared.clone();
        let jobs = self.jobs.take();
        let fetcher = self.fetcher.take();
        self.closing
            .get_or_insert_with(|| close(shared, jobs, fetcher).boxed())
            .poll_unpin(cx)
    }
}

impl BackendConfig for StreamBackend {
    type Args = Job;
    type Id = RandomId;
    type Kind = Ephemeral;
    type Config = BackendOptions;
    type Layer = AckLayer;

    fn config(&self) -> &BackendOptions {
        &self.shared.opts
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> AckLayer {
        AckLayer {
            shared: self.shared.clone(),
        }
    }
}

/// Stops fetching, gives back fetched jobs that never started, waits until every outcome
/// is recorded, then leaves the consumer group.
async fn close(
    shared: Arc<Shared>,
    jobs: Option<mpsc::Receiver<Job>>,
    fetcher: Option<tokio::task::JoinHandle<()>>,
) -> Result<(), QueueError> {
    shared.stop.cancel();
    if let Some(mut jobs) = jobs {
        // Jobs the fetcher still delivers (its last blocking read may end after the stop)
        // fail to send and are given back by the fetcher itself.
        jobs.close();
        while let Some(job) = jobs.recv().await {
            shared.ended(Finished::new(&job, Outcome::Snooze { at_us: now_us() }));
        }
    }
    if let Some(fetcher) = fetcher {
        let _ = fetcher.await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while shared.inflight_len() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let unrecorded = shared.inflight_len();
    if unrecorded > 0 {
        tracing::warn!(
            queue = %shared.name,
            unrecorded,
            "could not record every outcome before stopping; those jobs are re-queued by another worker after worker.reclaim_after"
        );
    }
    shared.closed.cancel();
    let mut conn = shared.queue.conn();
    let _: Result<(), _> = redis::cmd("ZREM")
        .arg(&shared.keys.workers)
        .arg(&shared.opts.consumer)
        .query_async(&mut conn)
        .await;
    if unrecorded == 0 {
        for stream in shared.keys.streams() {
            let _: Result<i64, _> = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(stream)
                .arg(GROUP)
                .arg(&shared.opts.consumer)
                .query_async(&mut conn)
                .await;
        }
    }
    Ok(())
}

impl Shared {
    fn inflight_len(&self) -> usize {
        self.inflight.lock().unwrap().len()
    }

    /// Jobs the fetcher may take now: free slots, as long as the outcomes still waiting to
    /// be recorded stay within a few finish batches (if Redis falls behind in recording,
    /// fetching slows down with it instead of piling up unrecorded jobs).
    fn free(&self) -> usize {
        let slots = self
            .opts
            .concurrency
            .saturating_sub(self.running.load(Ordering::Acquire));
        let unrecorded =
            (self.opts.concurrency + 2 * FINISH_BATCH).saturating_sub(self.inflight_len());
        slots.min(unrecorded)
    }

    /// An attempt ended (or a fetched job was given back unstarted): its slot is free now,
    /// its outcome goes to the finisher.
    pub(crate) fn ended(&self, finished: Finished) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        let _ = self.finished.send(finished);
        self.capacity.notify_one();
    }

    /// Parses jobs started at `now` (9 fields each, see `start` in prelude.lua) and tracks
    /// them; `None` when the queue is paused.
    fn started(&self, reply: Vec<String>, now: i64) -> Option<Vec<Job>> {
        if reply.len() == 1 && reply[0] == "paused" {
            return None;
        }
        Some(self.track(reply, now))
    }

    fn track(&self, reply: Vec<String>, now: i64) -> Vec<Job> {
        let mut inflight = self.inflight.lock().unwrap();
        let jobs: Vec<Job> = reply
            .chunks_exact(9)
            .filter_map(|f| {
                let id = Uuid::parse_str(&f[1]).ok()?;
                let cancel = CancellationToken::new();
                inflight.insert(f[0].clone(), (id, cancel.clone()));
                Some(Job {
                    id,
                    queue: self.name.clone(),
                    kind: f[2].clone(),
                    args: f[3].clone(),
                    attempt: f[4].parse().unwrap_or(1),
                    max_attempts: f[5].parse().unwrap_or(1),
                    enqueued_us: f[6].parse().unwrap_or(0),
                    idempotency_key: Some(f[7].clone()).filter(|k| !k.is_empty()),
                    cancel,
                    entry: f[0].clone(),
                    tenant: f[8].clone(),
                    started_us: now,
                })
            })
            .collect();
        self.running.fetch_add(jobs.len(), Ordering::AcqRel);
        jobs
    }

    /// Takes up to `count` jobs, highest priority first; `None` when the queue is paused.
    async fn fetch(&self, count: usize) -> Result<Option<Vec<Job>>, QueueError> {
        let mut conn = self.queue.conn();
        let (window, cap) = self.queue.tenant_limits();
        let now = now_us();
        let reply: Vec<String> = scripts::FETCH
            .key(&self.keys.stream)
            .arg(&self.keys.base)
            .arg(GROUP)
            .arg(&self.opts.consumer)
            .arg(count)
            .arg(now)
            .arg(window)
            .arg(cap)
            .invoke_async(&mut conn)
            .await
            .map_err(QueueError::redis("fetch jobs"))?;
        Ok(self.started(reply, now))
    }

    /// Waits up to `opts.block` for new entries on any priority's stream, then starts their
    /// jobs; `None` when the queue was paused meanwhile (the entries go back).
    async fn fetch_blocking(
        &self,
        blocking: &mut Conn,
        count: usize,
    ) -> Result<Option<Vec<Job>>, QueueError> {
        let streams = self.keys.streams();
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.opts.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(self.opts.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&streams)
            .arg(&[">", ">", ">"][..])
            .query_async(blocking)
            .await
            .map_err(QueueError::redis("wait for jobs"))?;
        let Some(reply) = reply else {
            return Ok(Some(Vec::new()));
        };
        let mut call = scripts::START.key(&self.keys.stream);
        let (window, cap) = self.queue.tenant_limits();
        let now = now_us();
        call.arg(&self.keys.base)
            .arg(GROUP)
            .arg(&self.opts.consumer)
            .arg(now)
            .arg(window)
            .arg(cap);
        let mut any = false;
        for key in &reply.keys {
            // The scripts know an entry's stream by a prefix letter (see prelude.lua).
            let prefix = if key.key == streams[0] {
                "h"
            } else if key.key == streams[2] {
                "l"
            } else {
                ""
            };
            for entry in &key.ids {
                let id: Option<String> = entry.get("id");
                call.arg(format!("{prefix}{}", entry.id))
                    .arg(id.unwrap_or_default());
                any = true;
            }
        }
        if !any {
            return Ok(Some(Vec::new()));
        }
        let mut conn = self.queue.conn();
        let started: Vec<String> = call
            .invoke_async(&mut conn)
            .await
            .map_err(QueueError::redis("start jobs"))?;
        Ok(self.started(started, now))
    }

    async fn finish(&self, batch: &[Finished]) -> Result<(), QueueError> {
        let mut call = scripts::FINISH.key(&self.keys.stream);
        let (window, cap) = self.queue.tenant_limits();
        call.arg(&self.keys.base)
            .arg(GROUP)
            .arg(now_us())
            .arg(self.keep.age.as_secs().max(1))
            .arg(self.opts.keep_dead.as_secs().max(1))
            .arg(self.keep.count)
            .arg(window)
            .arg(cap)
            .arg(batch.len());
        for f in batch {
            let error = f.outcome.error();
            call.arg(&f.entry)
                .arg(f.id.to_string())
                .arg(f.outcome.state().as_str())
                .arg(f.outcome.run_at_us())
                .arg(
                    error
                        .map(|e| serde_json::to_string(e).unwrap_or_default())
                        .unwrap_or_default(),
                )
                .arg(error.map(|e| e.error.as_str()).unwrap_or(""))
                .arg(&f.kind)
                .arg(f.attempt)
                .arg(f.enqueued_us)
                .arg(f.started_us)
                .arg(&f.tenant);
        }
        let mut conn = self.queue.conn();
        let _: i64 = call
            .invoke_async(&mut conn)
            .await
            .map_err(QueueError::redis("record outcomes"))?;
        Ok(())
    }
}

async fn fetch_loop(shared: Arc<Shared>, mut blocking: Conn, jobs: mpsc::Sender<Job>) {
    let mut pause = Duration::from_millis(50);
    while !shared.stop.is_cancelled() {
        let free = shared.free();
        if free == 0 {
            tokio::select! {
                _ = shared.capacity.notified() => {}
                _ = shared.stop.cancelled() => break,
            }
            continue;
        }
        let count = free.min(shared.opts.batch);
        let fetched = match shared.fetch(count).await {
            Ok(Some(fetched)) if fetched.is_empty() => {
                shared.fetch_blocking(&mut blocking, count).await
            }
            other => other,
        };
        match fetched {
            Ok(None) => {
                tokio::select! {
                    _ = tokio::time::sleep(PAUSED_POLL) => {}
                    _ = shared.stop.cancelled() => break,
                }
            }
            Ok(Some(fetched)) => {
                pause = Duration::from_millis(50);
                for job in fetched {
                    if let Err(mpsc::error::SendError(job)) = jobs.send(job).await {
                        shared.ended(Finished::new(&job, Outcome::Snooze { at_us: now_us() }));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(queue = %shared.name, error = %e, "fetching jobs failed; retrying in {pause:?}");
                if let QueueError::Redis { source, .. } = &e
                    && source.code() == Some("NOGROUP")
                {
                    let _ = shared.queue.ensure_group(&shared.opts.queue).await;
                }
                if e.is_transient()
                    && let Ok(conn) = shared.queue.blocking_connection(shared.opts.block).await
                {
                    blocking = conn;
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shared.stop.cancelled() => break,
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn finish_loop(shared: Arc<Shared>, mut finished: mpsc::UnboundedReceiver<Finished>) {
    let mut batch = Vec::with_capacity(FINISH_BATCH);
    loop {
        tokio::select! {
            item = finished.recv() => match item {
                Some(item) => batch.push(item),
                None => return,
            },
            _ = shared.closed.cancelled() => return,
        }
        while batch.len() < FINISH_BATCH {
            match finished.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let mut pause = Duration::from_millis(50);
        // Outcomes are never dropped: until Redis takes them, the entries stay pending.
        while let Err(e) = shared.finish(&batch).await {
            tracing::warn!(queue = %shared.name, error = %e, jobs = batch.len(), "recording outcomes failed; retrying in {pause:?}");
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shared.closed.cancelled() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        {
            let mut inflight = shared.inflight.lock().unwrap();
            for f in &batch {
                inflight.remove(&f.entry);
            }
        }
        shared.capacity.notify_one();
        batch.clear();
    }
}

async fn heartbeat_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.opts.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.closed.cancelled() => return,
        }
        if let Err(e) = heartbeat(&shared).await {
            tracing::warn!(queue = %shared.name, error = %e, "heartbeat failed");
        }
        match reclaim(&shared).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(queue = %shared.name, jobs = n, "re-queued jobs of a silent worker")
            }
            Err(e) => tracing::warn!(queue = %shared.name, error = %e, "reclaiming jobs failed"),
        }
    }
}

async fn heartbeat(shared: &Shared) -> Result<(), QueueError> {
    let (entries, ids): (Vec<String>, Vec<Uuid>) = {
        let inflight = shared.inflight.lock().unwrap();
        inflight.iter().map(|(e, (id, _))| (e.clone(), *id)).unzip()
    };
    let mut call = scripts::HEARTBEAT.key(&shared.keys.stream);
    call.arg(&shared.keys.base)
        .arg(GROUP)
        .arg(&shared.opts.consumer)
        .arg(now_us() / 1000)
        .arg(entries.len());
    for e in &entries {
        call.arg(e);
    }
    for id in &ids {
        call.arg(id.to_string());
    }
    let mut conn = shared.queue.conn();
    let cancel: Vec<String> = call
        .invoke_async(&mut conn)
        .await
        .map_err(QueueError::redis("heartbeat"))?;
    if !cancel.is_empty() {
        let inflight = shared.inflight.lock().unwrap();
        for (id, token) in inflight.values() {
            if cancel.iter().any(|c| *c == id.to_string()) {
                token.cancel();
            }
        }
    }
    Ok(())
}

async fn reclaim(shared: &Shared) -> Result<i64, QueueError> {
    let mut conn = shared.queue.conn();
    let (window, cap) = shared.queue.tenant_limits();
    scripts::RECLAIM
        .key(&shared.keys.stream)
        .arg(&shared.keys.base)
        .arg(GROUP)
        .arg(&shared.opts.consumer)
        .arg(now_us() / 1000)
        .arg(shared.opts.reclaim_after.as_millis() as u64)
        .arg(100)
        .arg(window)
        .arg(cap)
        .invoke_async(&mut conn)
        .await
        .map_err(QueueError::redis("reclaim jobs"))
}

async fn promote_loop(shared: Arc<Shared>) {
    loop {
        let mut conn = shared.queue.conn();
        let reply: Result<(i64, String), _> = scripts::PROMOTE
            .key(&shared.keys.stream)
            .arg(&shared.keys.base)
            .arg(now_us())
            .arg(PROMOTE_BATCH)
            .arg(shared.keep.age.as_secs().max(1))
            .arg(shared.opts.keep_dead.as_secs().max(1))
            .arg(shared.keep.count)
            .arg(shared.queue.tenant_limits().0)
            .arg(shared.queue.tenant_limits().1)
            .invoke_async(&mut conn)
            .await;
        let wait = match reply {
            Ok((moved, _)) if moved as usize >= PROMOTE_BATCH => Duration::ZERO,
            Ok((_, next)) => match next.parse::<f64>() {
                Ok(next) if next >= 0.0 => {
                    let until = (next as i64 - now_us()).max(0) as u64;
                    Duration::from_micros(until).min(PROMOTE_EVERY)
                }
                _ => PROMOTE_EVERY,
            },
            Err(e) => {
                tracing::warn!(queue = %shared.name, error = %e, "promoting due jobs failed");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.closed.cancelled() => return,
        }
    }
}
