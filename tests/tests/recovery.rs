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
        .map(|_| env.job("sleep", r#"{"ms": 2000, "trace": true}"#).1)
        .collect();
    for (id, _) in env.queue.enqueue("default", &jobs).await.unwrap() {
        ids.push(id);
    }
    let mut a = env.spawn_worker_process("a");
    let mut b = env.spawn_worker_process("b");
    // Kill `a` while it holds a full set of jobs, well before any of them completes: a job that
    // completed but was not yet acknowledged would run again, as at-least-once allows.
    let killed = a.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env
        .attempts()
        .await
        .iter()
        .filter(|r| r.ran_in(killed))
        .count()
        < 10
    {
        assert!(
            std::time::Instant::now() < deadline,
            "worker a started no jobs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
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

    // The jobs' own account: each completed exactly once, in its last attempt, and every run
    // that did not complete was cut short by the kill.
    let attempts = env.attempts().await;
    let mut cut_short = 0;
    for id in &ids {
        let runs: Vec<_> = attempts.iter().filter(|a| a.job_id == *id).collect();
        let job = env.job_record(*id).await.unwrap();
        let completed: Vec<_> = runs.iter().filter(|a| a.completed).collect();
        assert_eq!(completed.len(), 1, "job {id} completed {completed:?}");
        assert_eq!(completed[0].attempt as u32, job.attempts, "{runs:?}");
        assert!(!completed[0].ran_in(killed), "{runs:?}");
        for run in runs.iter().filter(|a| !a.completed) {
            assert!(
                run.ran_in(killed),
                "a live worker's run was repeated: {runs:?}"
            );
            assert_eq!(run.attempt, 1, "{runs:?}");
            cut_short += 1;
        }
    }
    assert!(
        (1..=twice).contains(&cut_short),
        "{cut_short} runs cut short, {twice} jobs ran twice"
    );

    signal(&b, "TERM");
    assert!(b.wait().unwrap().success());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_long_job_resumes_from_its_checkpoint() {
    let env = TestEnv::new("").await;
    let id = env
        .enqueue("sleep", r#"{"ms": 4000, "steps": 40, "trace": true}"#)
        .await;
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
    let first_pid = first.id();
    signal(&first, "KILL");
    first.wait().unwrap();
    let before = env.record.run(id).await.unwrap().unwrap();
    // The wait above saw 10 steps done; the kill must also have come before the last one.
    assert!(before.done < 40, "finished before the kill: {before:?}");

    let mut second = env.spawn_worker_process("second");
    let job = env
        .wait_for(id, Duration::from_secs(20), |j| j.state.is_final())
        .await;
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 2));
    let run = env.record.run(id).await.unwrap().unwrap();
    assert_eq!(run.lease_epoch, 2);
    assert_eq!(run.state, "succeeded");
    assert_eq!(run.done, 40);
    // The work each attempt did: the second began at the checkpoint and slept only the rest.
    let [killed, resumed] = &env.attempts_of(id).await[..] else {
        panic!("{:?}", env.attempts_of(id).await)
    };
    assert!(killed.ran_in(first_pid) && !killed.completed, "{killed:?}");
    assert_eq!(killed.from_step, 0);
    assert_eq!(resumed.from_step as i64, before.done, "{resumed:?}");
    assert_eq!(resumed.steps, 40 - resumed.from_step, "{resumed:?}");
    assert!(resumed.completed);
    // At most the step slept but not yet saved when the kill came is slept twice.
    assert!(
        (0..=1).contains(&(killed.steps - resumed.from_step)),
        "{killed:?} {resumed:?}"
    );
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

/// A worker that went silent (paused here with SIGSTOP) loses its job to another worker; when
/// it wakes and reports the old attempt, that late outcome must be dropped: the job stays
/// with the attempt that now runs it, and ends only when that attempt does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_outcome_from_a_paused_worker_is_dropped() {
    // reclaim_after is 2 s in tests; the job sleeps 4 s in each attempt.
    let env = TestEnv::new("").await;
    let id = env.enqueue("sleep", r#"{"ms": 4000, "trace": true}"#).await;
    let a = env.spawn_worker_process("a");
    let running_in = |pid: u32| {
        let env = &env;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !env.attempts_of(id).await.iter().any(|r| r.ran_in(pid)) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{pid} did not start the job"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    running_in(a.id()).await;
    signal(&a, "STOP");
    let mut b = env.spawn_worker_process("b");
    running_in(b.id()).await;
    // Woken with about 2 s of its attempt left; the new attempt has about 4 s.
    signal(&a, "CONT");
    let job = loop {
        let job = env.job_record(id).await.unwrap();
        if job.state.is_final() {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let runs = env.attempts_of(id).await;
    assert!(
        runs.iter().any(|r| r.ran_in(b.id()) && r.completed),
        "the job ended ({:?}) before the attempt running it did: {runs:?}",
        job.state
    );
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Succeeded, 2),
        "{job:?}"
    );
    let mut a = a;
    for w in [&mut a, &mut b] {
        signal(w, "TERM");
        assert!(w.wait().unwrap().success());
    }
    env.cleanup().await;
}
