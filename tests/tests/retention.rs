//! Bounded Redis memory and listing from indexes: finished jobs are retired by count and age,
//! `jobs ls` reads per-state indexes, dead jobs stay listable and retryable from Postgres.

use std::time::{Duration, Instant};

use ferry_jobs::manage;
use ferry_queue::{JobFilter, JobState};
use ferry_record::DeadFilter;
use ferry_tests::TestEnv;

/// Job hashes this test's install holds in Redis.
async fn job_hashes(env: &TestEnv) -> usize {
    let client = redis::Client::open(ferry_tests::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:{{default}}:job:*", env.name))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.len()
}

fn env_jobs(default: usize) -> usize {
    std::env::var("FERRY_TEST_RETENTION_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_capped_at_10000_finished_keeps_about_10000_hashes() {
    // 300,000 by the issue; FERRY_TEST_RETENTION_JOBS lowers it on a slow machine.
    let total = env_jobs(300_000);
    let env = TestEnv::new(
        "[worker]\nconcurrency = 512\nbatch = 512\n[queues.default]\nkeep_finished_count = 10000\n",
    )
    .await;
    let dead: Vec<_> = (0..5)
        .map(|_| env.job("fail", r#"{"permanent": true}"#).1)
        .collect();
    env.queue.enqueue("default", &dead).await.unwrap();
    let worker = env.start_worker();
    for chunk in 0..total.div_ceil(50_000) {
        let n = (total - chunk * 50_000).min(50_000);
        let jobs: Vec<_> = (0..n).map(|_| env.job("noop", "{}").1).collect();
        env.queue.enqueue("default", &jobs).await.unwrap();
    }
    env.wait_for_count("noop", "succeeded", total as i64, Duration::from_secs(900))
        .await;
    env.wait_for_count("fail", "dead", 5, Duration::from_secs(30))
        .await;
    worker.stop().await;

    // 10,000 succeeded and the 5 dead (capped apart, per state); a finish batch may retire
    // its excess one call late.
    let hashes = job_hashes(&env).await;
    assert!(
        (10_000..=10_600).contains(&hashes),
        "{hashes} job hashes after {total} jobs through a queue keeping 10,000"
    );

    let started = Instant::now();
    let filter = JobFilter {
        limit: 20,
        ..JobFilter::default()
    };
    let rows = manage::list(&env.queue, &env.record, &env.registry, &filter)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(rows.len(), 20);
    // Generous for a debug build on a shared machine; bench/ measures the real figure.
    assert!(took < Duration::from_millis(200), "jobs ls took {took:?}");

    let dead_filter = JobFilter {
        state: Some(JobState::Dead),
        limit: 50,
        ..JobFilter::default()
    };
    let dead_rows = manage::list(&env.queue, &env.record, &env.registry, &dead_filter)
        .await
        .unwrap();
    assert_eq!(dead_rows.len(), 5, "{dead_rows:?}");
    let targets = manage::dead_targets(
        &env.record,
        &DeadFilter {
            limit: 10,
            ..DeadFilter::default()
        },
    )
    .await
    .unwrap();
    let report = manage::retry(
        &env.queue,
        &env.record,
        &env.registry,
        &targets,
        None,
        "test",
    )
    .await
    .unwrap();
    assert_eq!(report.requeued, 5, "{report:?}");
    let queued = env
        .queue
        .list(
            "default",
            &JobFilter {
                state: Some(JobState::Queued),
                kind: Some("fail".into()),
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(queued.len(), 5);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_past_their_age_are_retired_even_when_the_queue_goes_idle() {
    let env = TestEnv::new("[queues.default]\nkeep_finished = \"2s\"\n").await;
    let worker = env.start_worker();
    let jobs: Vec<_> = (0..50).map(|_| env.job("noop", "{}").1).collect();
    env.queue.enqueue("default", &jobs).await.unwrap();
    env.wait_for_count("noop", "succeeded", 50, Duration::from_secs(30))
        .await;
    assert_eq!(job_hashes(&env).await, 50);
    let deadline = Instant::now() + Duration::from_secs(20);
    while job_hashes(&env).await > 0 {
        assert!(
            Instant::now() < deadline,
            "finished jobs outlived keep_finished on an idle queue"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = env
        .queue
        .list("default", &JobFilter::default())
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_by_state_kind_and_time_follows_every_move() {
    let env = TestEnv::new("").await;
    let now = ferry_queue::now_us();
    let mut later = env.job("noop", "{}").1;
    later.run_at_us = Some(now + 3_600_000_000);
    let mut sleeper = env.job("sleep", r#"{"ms": 1}"#).1;
    sleeper.run_at_us = Some(now + 3_600_000_000);
    let waiting = env.job("noop", "{}").1;
    env.queue
        .enqueue(
            "default",
            &[later.clone(), sleeper.clone(), waiting.clone()],
        )
        .await
        .unwrap();
    let list = |state: Option<JobState>, kind: Option<&str>| {
        let filter = JobFilter {
            state,
            kind: kind.map(str::to_owned),
            since_us: Some(now - 1),
            ..JobFilter::default()
        };
        let queue = env.queue.clone();
        async move {
            let mut ids: Vec<_> = queue
                .list("default", &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut scheduled = vec![later.id, sleeper.id];
    scheduled.sort();
    assert_eq!(list(Some(JobState::Scheduled), None).await, scheduled);
    assert_eq!(
        list(Some(JobState::Scheduled), Some("sleep")).await,
        vec![sleeper.id]
    );
    assert_eq!(list(Some(JobState::Queued), None).await, vec![waiting.id]);
    // Waiting jobs are listed from every place they wait: the high stream, and a tenant's
    // backlog past its window (8) as well as its entries in the streams.
    let mut tenant_jobs: Vec<_> = (0..10)
        .map(|_| {
            let mut job = env.job("noop", "{}").1;
            job.tenant = Some("acme".into());
            job
        })
        .collect();
    // The ninth of acme waits in its backlog, tagged with its priority's letter.
    tenant_jobs[8].priority = ferry_queue::Priority::Low;
    tenant_jobs[9].priority = ferry_queue::Priority::High;
    tenant_jobs[9].tenant = None;
    env.queue.enqueue("default", &tenant_jobs).await.unwrap();
    let mut queued: Vec<_> = tenant_jobs.iter().map(|j| j.id).collect();
    queued.push(waiting.id);
    queued.sort();
    assert_eq!(list(Some(JobState::Queued), None).await, queued);
    for job in &tenant_jobs {
        env.queue.cancel("default", job.id).await.unwrap();
    }
    assert_eq!(list(Some(JobState::Queued), None).await, vec![waiting.id]);
    env.queue.cancel("default", later.id).await.unwrap();
    assert_eq!(
        list(Some(JobState::Scheduled), None).await,
        vec![sleeper.id]
    );
    let mut cancelled: Vec<_> = tenant_jobs.iter().map(|j| j.id).collect();
    cancelled.push(later.id);
    cancelled.sort();
    assert_eq!(list(Some(JobState::Cancelled), None).await, cancelled);
    assert_eq!(list(None, Some("noop")).await.len(), 12);
    // Nothing enqueued after now.
    let filter = JobFilter {
        since_us: Some(ferry_queue::now_us()),
        ..JobFilter::default()
    };
    assert!(env.queue.list("default", &filter).await.unwrap().is_empty());
    env.cleanup().await;
}

/// Entries in the default stream (acknowledged ones not yet trimmed, running and waiting).
async fn stream_len(env: &TestEnv) -> i64 {
    let client = redis::Client::open(ferry_tests::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("XLEN")
        .arg(env.queue.keys("default").stream)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Acknowledged stream entries are dropped in whole nodes behind the oldest running job; a
/// long job holds that point, so past 10,000 kept entries they go one by one again. The
/// running job is listed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_entries_are_trimmed_even_behind_a_long_job() {
    let env = TestEnv::new("[worker]\nconcurrency = 64\n").await;
    let worker = env.start_worker();
    let noops = |n: usize| (0..n).map(|_| env.job("noop", "{}").1).collect::<Vec<_>>();

    env.queue.enqueue("default", &noops(20_000)).await.unwrap();
    env.wait_for_count("noop", "succeeded", 20_000, Duration::from_secs(120))
        .await;
    let len = stream_len(&env).await;
    assert!(len < 1_000, "{len} entries left after 20,000 jobs ran");

    let long = env.enqueue("sleep", r#"{"ms": 600000}"#).await;
    env.wait_for(long, Duration::from_secs(10), |j| {
        j.state == JobState::Running
    })
    .await;
    env.queue.enqueue("default", &noops(30_000)).await.unwrap();
    env.wait_for_count("noop", "succeeded", 50_000, Duration::from_secs(180))
        .await;
    let len = stream_len(&env).await;
    assert!(
        len <= 10_000 + 2_000,
        "{len} entries kept behind one running job after 30,000 more ran"
    );

    // Running jobs are listed from the streams' pending entries (they have no index).
    let running = JobFilter {
        state: Some(JobState::Running),
        ..JobFilter::default()
    };
    let listed = env.queue.list("default", &running).await.unwrap();
    assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![long]);
    env.queue.cancel("default", long).await.unwrap();
    env.wait_for(long, Duration::from_secs(10), |j| j.state.is_final())
        .await;
    env.queue.enqueue("default", &noops(10)).await.unwrap();
    env.wait_for_count("noop", "succeeded", 50_010, Duration::from_secs(30))
        .await;
    let len = stream_len(&env).await;
    assert!(len < 1_000, "{len} entries left once the long job ended");
    worker.stop().await;
    env.cleanup().await;
}
