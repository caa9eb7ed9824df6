//! Volume and latency smoke checks. The speed goals themselves are measured in `bench/`.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use ferry_jobs::{JobContext, JobError, Kind, Settings};
use ferry_queue::{JobState, NewJob};
use ferry_tests::TestEnv;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_50000_due_jobs_is_processed_without_error() {
    let env = TestEnv::new("[worker]\nconcurrency = 512\nbatch = 512\n").await;
    let jobs: Vec<_> = (0..50_000).map(|_| env.job("noop", "{}").1).collect();
    env.queue.enqueue("default", &jobs).await.unwrap();
    assert_eq!(env.count("noop", "queued").await, 50_000);
    let worker = env.start_worker();
    env.wait_for_count("noop", "succeeded", 50_000, Duration::from_secs(120))
        .await;
    worker.stop().await;
    let stats = env.queue.stats("default").await.unwrap();
    assert_eq!(stats.by_kind["noop"]["queued"], 0);
    assert_eq!(stats.by_kind["noop"]["running"], 0);
    assert_eq!(stats.by_kind["noop"].get("dead").copied().unwrap_or(0), 0);
    assert_eq!((stats.ready, stats.pending), (0, 0));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_picks_a_new_job_up_at_once() {
    let env = TestEnv::new("").await;
    let worker = env.start_worker();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::new();
    for _ in 0..50 {
        let id = env.enqueue("noop", "{}").await;
        let started = Instant::now();
        let job = env
            .wait_for(id, Duration::from_secs(5), |j| {
                j.state == JobState::Succeeded
            })
            .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        latencies.push(job.started_us.unwrap() - job.enqueued_us);
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    // Generous bound for a loaded CI machine; bench/ measures the real figure.
    assert!(p50 < 10_000, "p50 pickup {p50} µs; all: {latencies:?}");
    worker.stop().await;
    env.cleanup().await;
}

/// Attempts of `test.gauge` executing right now, and the most seen at once.
static NOW: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

/// Counts how many of its attempts execute at once.
struct Gauge;

impl Kind for Gauge {
    const NAME: &'static str = "test.gauge";
    type Args = serde_json::Value;

    fn defaults() -> Settings {
        Settings::default()
    }

    async fn run(&self, _: serde_json::Value, _: JobContext) -> Result<(), JobError> {
        let now = NOW.fetch_add(1, Ordering::SeqCst) + 1;
        MOST.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        NOW.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A slot is free once its attempt ends, before the outcome is recorded, so fetching and
/// recording overlap; `worker.concurrency` must still bound the attempts that execute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_runs_more_attempts_at_once_than_its_concurrency() {
    let env = TestEnv::new("[worker]\nconcurrency = 4\nbatch = 256\n").await;
    let jobs: Vec<_> = (0..400)
        .map(|_| NewJob::new(Gauge::NAME, "{}", 1))
        .collect();
    env.queue.enqueue("default", &jobs).await.unwrap();
    let mut registry = ferry_jobs::builtin(&env.config);
    registry.register(Gauge);
    let token = CancellationToken::new();
    let worker = tokio::spawn(ferry_worker::run_with(
        env.config.clone(),
        registry,
        ferry_worker::Options::default(),
        token.clone(),
    ));
    env.wait_for_count(Gauge::NAME, "succeeded", 400, Duration::from_secs(60))
        .await;
    token.cancel();
    worker.await.unwrap().unwrap();
    assert_eq!(
        MOST.load(Ordering::SeqCst),
        4,
        "attempts executing at once, with worker.concurrency = 4"
    );
    env.cleanup().await;
}
