//! `[kinds.NAME]` overrides reach every job of the kind, including the ones ferry enqueues
//! itself: a full sync's chunks take the chunk kind's `max_attempts` and `queue`, and the
//! sync follows them on that queue to the end; the CLI, the API, schedule fires and alert
//! mail all build their jobs through the one enqueue path.

use std::time::{Duration, Instant};

use ferry_queue::{JobFilter, JobRecord, JobState, Priority};
use ferry_tests::{
    TestEnv,
    api::{API_CONFIG, ApiServer, ENQUEUE_TOKEN},
    smtp::SmtpSink,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_override_applies_to_the_chunks_a_full_sync_enqueues() {
    let env = TestEnv::new(
        "[sync]\nschemas = [\"{schema}\"]\nchunk_size = 100\npages_per_chunk = 1\n\
         [kinds.\"sync.chunk\"]\nmax_attempts = 2\nqueue = \"bulk\"\n",
    )
    .await;
    env.sql(
        "CREATE TABLE items (id int8 PRIMARY KEY, name text);
         INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 450) i;",
    )
    .await;
    let worker = env.start_worker();
    let out = env.ferry(&["--json", "sync", "full"]);
    assert!(out.status.success(), "{out:?}");
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let job = env
        .wait_for(id, Duration::from_secs(60), |j| j.state.is_final())
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let runs = env.record.runs(None, 1000).await.unwrap();
    let chunks: Vec<_> = runs.iter().filter(|r| r.kind == "sync.chunk").collect();
    // 450 rows in chunks of 100: four bounds and the open range after the last.
    assert_eq!(chunks.len(), 5, "{runs:#?}");
    for chunk in chunks {
        let job = env.queue.job("bulk", chunk.id).await.unwrap();
        let job = job.unwrap_or_else(|| panic!("chunk {} is not on queue bulk", chunk.id));
        assert_eq!(
            (job.max_attempts, job.state),
            (2, JobState::Succeeded),
            "{job:?}"
        );
        assert!(env.queue.job("sync", chunk.id).await.unwrap().is_none());
    }
    worker.stop().await;
    env.cleanup().await;
}

/// `examples/custom-kind`: a program registers its own kind beside ferry's, runs them with
/// `ferry_worker::run_with`, and a `[kinds."example.greet"]` override reaches the new kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_custom_kind_runs_on_run_with_beside_a_built_in_kind() {
    let env = TestEnv::new("").await;
    let bin = ferry_tests::ferry_bin().with_file_name("custom-kind");
    if !bin.exists() {
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "custom-kind"])
            .status()
            .unwrap();
        assert!(built.success(), "cargo build -p custom-kind");
    }
    // The stock config of this test plus an override only the example's registry knows.
    let config = env.config_path.with_extension("example.toml");
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[kinds.\"example.greet\"]\nqueue = \"greetings\"\n"),
    )
    .unwrap();
    let greeting = env.config_path.with_extension("greeting.txt");
    let out = std::process::Command::new(&bin)
        .arg(&config)
        .arg(&greeting)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("example.greet ")
            && lines[0].ends_with(" succeeded on queue greetings"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("noop ") && lines[1].ends_with(" succeeded on queue default"));
    let id = lines[0].split(' ').nth(1).unwrap();
    assert_eq!(
        std::fs::read_to_string(&greeting).unwrap(),
        format!("hello ferry from job {id}\n")
    );
    let _ = std::fs::remove_file(&greeting);
    let _ = std::fs::remove_file(&config);
    env.cleanup().await;
}

/// The jobs of `kind` waiting, running or done on `queue`.
async fn jobs_on(env: &TestEnv, queue: &str, kind: &str) -> Vec<JobRecord> {
    let filter = JobFilter {
        kind: Some(kind.into()),
        ..JobFilter::default()
    };
    env.queue.list(queue, &filter).await.unwrap()
}

/// `[kinds.noop]` and `[kinds."notify.send"]` move both kinds to their own queue with their
/// own attempts and priority; every job of them, whoever enqueued it, carries all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_reach_jobs_of_the_cli_the_api_the_scheduler_and_alert_mail() {
    let sink = SmtpSink::start(&[]);
    let env = TestEnv::new(&format!(
        "{API_CONFIG}[alerts]\nemail = [\"ops@ferry.test\"]\ncheck_every = \"300ms\"\n\
         [notify]\nsmtp_url = \"{}\"\nfrom = \"Ferry <ferry@ferry.test>\"\n\
         [[schedule]]\nname = \"tick\"\ncron = \"* * * * * *\"\nkind = \"noop\"\n\
         [kinds.noop]\nqueue = \"slow\"\nmax_attempts = 3\npriority = \"low\"\n\
         [kinds.\"notify.send\"]\nqueue = \"mail\"\nmax_attempts = 4\npriority = \"low\"\n",
        sink.url()
    ))
    .await;
    let out = env.ferry(&["--json", "enqueue", "noop"]);
    assert!(out.status.success(), "{out:?}");
    let api = ApiServer::start(env.config.clone()).await;
    let reply = reqwest::Client::new()
        .post(api.at("/v1/jobs"))
        .bearer_auth(ENQUEUE_TOKEN)
        .json(&serde_json::json!({"kind": "noop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), reqwest::StatusCode::ACCEPTED);
    let worker = env.start_worker();
    let scheduler = env.start_scheduler();
    // A job that dies raises an alert, which is mailed through a notify.send job.
    env.enqueue("fail", r#"{"times": 1, "permanent": true}"#)
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let noop = jobs_on(&env, "slow", "noop").await;
        let owners = |o: &str| {
            noop.iter()
                .filter(|j| j.owner.as_deref() == Some(o))
                .count()
        };
        let mail = jobs_on(&env, "mail", "notify.send").await;
        if owners("scheduler") > 0 && !mail.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "noop jobs on slow: {noop:#?}\nnotify.send jobs on mail: {mail:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    scheduler.stop().await;
    worker.stop().await;
    api.stop().await;

    let noop = jobs_on(&env, "slow", "noop").await;
    for owner in ["cli", "api", "scheduler"] {
        let job = noop
            .iter()
            .find(|j| j.owner.as_deref() == Some(owner))
            .unwrap_or_else(|| panic!("no noop job of {owner} on queue slow: {noop:#?}"));
        assert_eq!(
            (job.max_attempts, job.priority),
            (3, Priority::Low),
            "{job:#?}"
        );
    }
    assert!(jobs_on(&env, "default", "noop").await.is_empty());
    let mail = jobs_on(&env, "mail", "notify.send").await;
    assert_eq!(mail.len(), 1, "{mail:#?}");
    assert_eq!(
        (
            mail[0].max_attempts,
            mail[0].priority,
            mail[0].owner.as_deref()
        ),
        (4, Priority::Low, Some("scheduler")),
        "{mail:#?}"
    );
    env.cleanup().await;
}
