//! SIGTERM: stop fetching, let running jobs finish or checkpoint, exit 0.

use std::time::{Duration, Instant};

use ferry_queue::JobState;
use ferry_tests::{TestEnv, signal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_jobs_checkpoints_long_ones_and_exits_zero() {
    let env = TestEnv::new("").await;
    let short: Vec<_> = {
        let jobs: Vec<_> = (0..5)
            .map(|_| env.job("sleep", r#"{"ms": 1000}"#).1)
            .collect();
        env.queue
            .enqueue("default", &jobs)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    };
    let long = env
        .enqueue("sleep", r#"{"ms": 6000, "steps": 60, "trace": true}"#)
        .await;
    let mut worker = env.spawn_worker_process("w");
    env.wait_for(long, Duration::from_secs(5), |j| {
        j.state == JobState::Running
    })
    .await;
    for id in &short {
        env.wait_for(*id, Duration::from_secs(5), |j| {
            j.state == JobState::Running
        })
        .await;
    }
    while env
        .record
        .run(long)
        .await
        .unwrap()
        .is_none_or(|r| r.done < 2)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stopped = Instant::now();
    signal(&worker, "TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = env.enqueue("noop", "{}").await;
    let status = worker.wait().unwrap();
    let took = stopped.elapsed();
    assert!(status.success(), "exit status {status:?}");
    // The grace period is 3 s; the short jobs needed under 1 s more.
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");

    for id in &short {
        assert_eq!(
            env.job_record(*id).await.unwrap().state,
            JobState::Succeeded
        );
    }
    // The long job saved its checkpoint and went back to the queue without spending an attempt.
    let job = env.job_record(long).await.unwrap();
    assert!(
        matches!(job.state, JobState::Scheduled | JobState::Queued),
        "{job:?}"
    );
    assert_eq!(job.attempts, 0);
    let run = env.record.run(long).await.unwrap().unwrap();
    assert_eq!(run.state, "interrupted");
    assert!(run.done > 0);
    // Nothing was started after the signal. A blocking read already in flight when the signal
    // came can still deliver a job; the stopping worker hands it back unstarted.
    let late = env.job_record(after).await.unwrap();
    assert!(
        matches!(late.state, JobState::Queued | JobState::Scheduled) && late.attempts == 0,
        "{late:?}"
    );
    assert_eq!(env.queue.stats("default").await.unwrap().pending, 0);

    // The next worker resumes the long job from its checkpoint and sleeps only the steps left.
    let next = env.start_worker();
    env.wait_for(long, Duration::from_secs(15), |j| j.state.is_final())
        .await;
    next.stop().await;
    let [interrupted, resumed] = &env.attempts_of(long).await[..] else {
        panic!("{:?}", env.attempts_of(long).await)
    };
    assert_eq!(
        (
            interrupted.from_step,
            interrupted.steps,
            interrupted.completed
        ),
        (0, run.done as i32, false),
        "the interrupted attempt saved each step it slept"
    );
    assert_eq!(resumed.from_step as i64, run.done, "{resumed:?}");
    assert_eq!(resumed.steps, 60 - resumed.from_step, "{resumed:?}");
    assert!(resumed.completed);
    let run = env.record.run(long).await.unwrap().unwrap();
    assert_eq!((run.lease_epoch, run.done), (2, 60));
    env.cleanup().await;
}
