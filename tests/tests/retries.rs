//! Retries, dead jobs and re-queueing, through a real worker on real Redis and Postgres.

use std::time::Duration;

use ferry_queue::JobState;
use ferry_tests::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_back_off_with_growing_delays_then_succeed() {
    let env = TestEnv::new("").await;
    let worker = env.start_worker();
    let id = env.enqueue("fail", r#"{"times": 2}"#).await;
    let job = env
        .wait_for(id, Duration::from_secs(15), |j| j.state.is_final())
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.attempts, 3);

    let errors = env.queue.attempt_errors("default", id).await.unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!((errors[0].attempt, errors[1].attempt), (1, 2));
    // fail's backoff: base 500 ms, equal jitter: wait 1 in [250, 500] ms, wait 2 in [500, 1000] ms.
    let first_wait = errors[1].at - errors[0].at;
    let second_wait = job.finished_us.unwrap() / 1000 - errors[1].at;
    assert!(
        (250..900).contains(&first_wait),
        "first wait {first_wait} ms"
    );
    assert!(
        (500..1500).contains(&second_wait),
        "second wait {second_wait} ms"
    );
    assert!(
        second_wait > first_wait,
        "delays must grow: {first_wait} then {second_wait}"
    );
    worker.stop().await;
    env.cleanup().await;
}

/// A kind that panics fails its attempt as a retryable error does and waits the kind's own
/// backoff: one retry rule, whatever ended the attempt. The last attempt's panic leaves the
/// job dead and archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_kind_is_retried_after_its_own_backoff_then_dead() {
    let env = TestEnv::new(
        "[kinds.fail]\nmax_attempts = 2\nbackoff_base = \"20s\"\nbackoff_cap = \"20s\"\n",
    )
    .await;
    let worker = env.start_worker();
    let id = env.enqueue("fail", r#"{"times": 5, "panic": true}"#).await;
    let job = env
        .wait_for(id, Duration::from_secs(10), |j| {
            j.state != JobState::Queued && j.state != JobState::Running
        })
        .await;
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Retrying, 1),
        "{job:?}"
    );
    let errors = env.queue.attempt_errors("default", id).await.unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .error
            .contains("job panicked: fail: planned panic 1 of 5"),
        "{errors:?}"
    );
    // The kind's backoff: equal jitter under a 20 s ceiling waits 10 to 20 s.
    let wait = job.run_at_us.unwrap() / 1000 - errors[0].at;
    assert!((9_900..=20_100).contains(&wait), "retry after {wait} ms");

    let out = env.ferry(&["jobs", "retry", &id.to_string()]);
    assert!(out.status.success(), "{out:?}");
    let job = env
        .wait_for(id, Duration::from_secs(10), |j| j.state.is_final())
        .await;
    assert_eq!((job.state, job.attempts), (JobState::Dead, 2), "{job:?}");
    let dead = env.record.dead_job(id).await.unwrap().expect("archived");
    assert!(
        dead.last_error.contains("planned panic 2 of 5")
            && dead.last_error.contains("(attempt 2 of 2)"),
        "{}",
        dead.last_error
    );
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_dead_after_one_attempt_and_retry_runs_it_again() {
    let env = TestEnv::new("").await;
    let worker = env.start_worker();
    let id = env.enqueue("fail", r#"{"permanent": true}"#).await;
    let job = env
        .wait_for(id, Duration::from_secs(10), |j| j.state.is_final())
        .await;
    assert_eq!((job.state, job.attempts), (JobState::Dead, 1));
    assert!(job.last_error.unwrap().contains("permanent failure"));

    let dead = env
        .record
        .dead_job(id)
        .await
        .unwrap()
        .expect("archived in Postgres");
    assert_eq!(dead.attempts, 1);
    assert_eq!(dead.errors.as_array().unwrap().len(), 1);
    assert_eq!(dead.kind, "fail");

    // `jobs retry` runs it again: attempts start over and a second error is recorded.
    let out = env.ferry(&["jobs", "retry", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_for(id, Duration::from_secs(10), |j| {
        j.state == JobState::Dead && j.finished_us > job.finished_us
    })
    .await;
    let errors = env.queue.attempt_errors("default", id).await.unwrap();
    assert_eq!(errors.len(), 2, "the retried attempt ran: {errors:?}");
    let audit = env.record.audit_log(10).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "jobs.retry"));
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_jobs_survive_the_loss_of_redis_and_can_be_requeued_from_postgres() {
    let env = TestEnv::new("").await;
    let worker = env.start_worker();
    let id = env.enqueue("fail", r#"{"permanent": true}"#).await;
    env.wait_for(id, Duration::from_secs(10), |j| j.state == JobState::Dead)
        .await;
    worker.stop().await;

    // Redis loses everything about the job.
    let client = redis::Client::open(ferry_tests::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys = env.queue.keys("default");
    let _: () = redis::cmd("DEL")
        .arg(keys.job(&id.to_string()))
        .arg(keys.errors(&id.to_string()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(env.job_record(id).await.is_none());

    let out = env.ferry(&["--json", "jobs", "ls", "--state", "dead"]);
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.to_string())
        .expect("listed from Postgres");
    for field in ["id", "kind", "state", "attempts", "args", "last_error"] {
        assert!(row.get(field).is_some(), "jobs ls --json lacks {field}");
    }

    let dry = env.ferry(&[
        "--json",
        "jobs",
        "retry",
        "--state",
        "dead",
        "--kind",
        "fail",
        "--dry-run",
    ]);
    let dry: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(dry["would_retry"], 1);
    assert!(
        env.job_record(id).await.is_none(),
        "dry run changed nothing"
    );

    let out = env.ferry(&["jobs", "retry", "--state", "dead", "--rate", "10/s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = env.job_record(id).await.expect("back in Redis");
    assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
    let dead = env.record.dead_job(id).await.unwrap().unwrap();
    assert!(dead.retried_at.is_some());

    let worker = env.start_worker();
    env.wait_for(id, Duration::from_secs(10), |j| j.state == JobState::Dead)
        .await;
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_retryable_and_exhaust_attempts() {
    let env = TestEnv::new(
        "[kinds.sleep]\ntimeout = \"200ms\"\nmax_attempts = 2\nbackoff_base = \"100ms\"\n",
    )
    .await;
    let worker = env.start_worker();
    let id = env.enqueue("sleep", r#"{"ms": 5000}"#).await;
    let job = env
        .wait_for(id, Duration::from_secs(10), |j| j.state.is_final())
        .await;
    assert_eq!((job.state, job.attempts), (JobState::Dead, 2));
    assert!(job.last_error.unwrap().contains("timed out"));
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_waiting_and_running_jobs() {
    let env = TestEnv::new("").await;
    let later = env
        .queue
        .enqueue(
            "default",
            &[{
                let (_, mut job) = env.job("noop", "{}");
                job.run_at_us = Some(ferry_queue::now_us() + 60_000_000);
                job
            }],
        )
        .await
        .unwrap()[0]
        .0;
    assert_eq!(
        env.job_record(later).await.unwrap().state,
        JobState::Scheduled
    );
    let out = env.ferry(&["jobs", "cancel", &later.to_string()]);
    assert!(out.status.success());
    assert_eq!(
        env.job_record(later).await.unwrap().state,
        JobState::Cancelled
    );

    let worker = env.start_worker();
    let long = env.enqueue("sleep", r#"{"ms": 60000, "steps": 600}"#).await;
    env.wait_for(long, Duration::from_secs(5), |j| {
        j.state == JobState::Running
    })
    .await;
    let out = env.ferry(&["jobs", "cancel", &long.to_string()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("asked to stop"));
    let job = env
        .wait_for(long, Duration::from_secs(5), |j| j.state.is_final())
        .await;
    assert_eq!(job.state, JobState::Cancelled);
    let run = env.record.run(long).await.unwrap().unwrap();
    assert_eq!(run.state, "cancelled");
    worker.stop().await;
    env.cleanup().await;
}
