//! Crash recovery: killed workers, resumed checkpoints, fenced leases.

use std::time::Duration;

use ferry_jobs::diag::SleepCheckpoint;
use ferry_queue::JobState;
use ferry_record::{Progress, RecordError};
use ferry_tests::{TestEnv, signal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_workers_loses_no_job_and_runs_none_twice() {
    let env = TestEnv::new("[worker]\nconcurrency = 10\n").await;
    let mut ids = Vec::new();
    let jobs: Vec<_> = (0..60)
        .map(|_| env.job("sleep", r#"{"ms": 400}"#).1)
        .collect();
    for (id, _) in env.queue.enqueue("default", &jobs).await.unwrap() {
        ids.push(id);
    }
    let mut a = env.spawn_worker_process("a");
    let mut b = env.spawn_worker_process("b");
    tokio::time::sleep(Duration::from_millis(900)).await;
    signal(&a, "KILL");
    a.wait().unwrap();

    env.wait_for_count("sleep", "succeeded", 60, Duration::from_secs(40))
        .await;
    let mut twice = 0;
    for id in &ids {
        let job = env.job_record(*id).await.unwrap();
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert!(job.attempts <= 2, "{job:?}");
        if job.attempts == 2 {
            twice += 1;
            let errors = env.queue.attempt_errors("default", *id).await.unwrap();
            assert_eq!(errors.len(), 1);
            assert!(
                errors[0].error.contains("stopped heartbeating"),
                "{errors:?}"
            );
        }
    }
    // Only the jobs the killed worker held ran again: at most its concurrency, at least one.
    assert!((1..=10).contains(&twice), "{twice} jobs ran twice");
    let stats = env.queue.stats("default").await.unwrap();
    assert_eq!(stats.by_kind["sleep"]["recovered"], twice);
    assert_eq!(stats.by_kind["sleep"]["running"], 0);
    assert_eq!(stats.pending, 0);

    signal(&b, "TERM");
    assert!(b.wait().unwrap().success());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_long_job_resumes_from_its_checkpoint() {
    let env = TestEnv::new("").await;
    let id = env.enqueue("sleep", r#"{"ms": 4000, "steps": 40}"#).await;
    let mut first = env.spawn_worker_process("first");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let run = env.record.run(id).await.unwrap();
        if run.as_ref().is_some_and(|r| r.done >= 10) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no progress: {run:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&first, "KILL");
    first.wait().unwrap();
    let before = env.record.run(id).await.unwrap().unwrap();

    let mut second = env.spawn_worker_process("second");
    let job = env
        .wait_for(id, Duration::from_secs(20), |j| j.state.is_final())
        .await;
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 2));
    let run = env.record.run(id).await.unwrap().unwrap();
    assert_eq!(run.lease_epoch, 2);
    assert_eq!(run.state, "succeeded");
    assert_eq!(run.done, 40);
    let resumed: SleepCheckpoint = serde_json::from_value(run.resumed_from.unwrap()).unwrap();
    assert!(
        resumed.steps_done >= 10,
        "resumed from {resumed:?}, not from zero"
    );
    assert!(resumed.steps_done >= before.done as u32);
    signal(&second, "TERM");
    assert!(second.wait().unwrap().success());
    env.cleanup().await;
}

#[tokio::test]
async fn a_stale_lease_cannot_overwrite_a_newer_checkpoint() {
    let env = TestEnv::new("").await;
    let id = uuid::Uuid::now_v7();
    let args = serde_json::json!({"ms": 1});
    let old = env
        .record
        .open_run(id, "sleep", &args, "worker-a")
        .await
        .unwrap();
    old.save(&SleepCheckpoint { steps_done: 3 }, Progress::default())
        .await
        .unwrap();
    let new = env
        .record
        .open_run(id, "sleep", &args, "worker-b")
        .await
        .unwrap();
    assert_eq!((old.epoch(), new.epoch()), (1, 2));
    assert_eq!(
        new.checkpoint::<SleepCheckpoint>().unwrap(),
        Some(SleepCheckpoint { steps_done: 3 })
    );

    let stale = old
        .save(&SleepCheckpoint { steps_done: 99 }, Progress::default())
        .await;
    assert!(
        matches!(stale, Err(RecordError::LeaseLost { epoch: 1, .. })),
        "{stale:?}"
    );
    new.save(&SleepCheckpoint { steps_done: 4 }, Progress::default())
        .await
        .unwrap();
    let run = env.record.run(id).await.unwrap().unwrap();
    assert_eq!(
        run.checkpoint.unwrap(),
        serde_json::json!({"steps_done": 4})
    );
    assert!(
        old.finish(ferry_record::RunState::Failed, Some("late"))
            .await
            .is_err()
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_running_longer_than_reclaim_after_stay_with_their_live_worker() {
    // reclaim_after is 2 s in tests; these jobs run 3.5 s, five at a time.
    let env = TestEnv::new("").await;
    let jobs: Vec<_> = (0..5)
        .map(|_| env.job("sleep", r#"{"ms": 3500}"#).1)
        .collect();
    let ids: Vec<_> = env
        .queue
        .enqueue("default", &jobs)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut worker = env.spawn_worker_process("long");
    env.wait_for_count("sleep", "succeeded", 5, Duration::from_secs(20))
        .await;
    for id in ids {
        let job = env.job_record(id).await.unwrap();
        assert_eq!(
            job.attempts, 1,
            "a live worker's job was taken from it: {job:?}"
        );
    }
    assert_eq!(
        env.queue.stats("default").await.unwrap().by_kind["sleep"]
            .get("recovered")
            .copied()
            .unwrap_or(0),
        0
    );
    signal(&worker, "TERM");
    assert!(worker.wait().unwrap().success());
    env.cleanup().await;
}
