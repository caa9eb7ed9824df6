//! The command line contract: exit codes, messages, JSON shapes, idempotency.

use ferry_tests::TestEnv;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn bad_input_exits_2_with_a_clear_message_and_enqueues_nothing() {
    let env = TestEnv::new("").await;
    let cases: &[(&[&str], &str)] = &[
        (
            &["enqueue", "noop", "--args", "{not json"],
            "not valid JSON",
        ),
        (&["enqueue", "nosuchkind"], "unknown job kind"),
        (
            &["enqueue", "sleep", "--args", r#"{"ms": "soon"}"#],
            "arguments for sleep do not fit",
        ),
        (
            &["enqueue", "sleep", "--args", "[1]"],
            "must be a JSON object",
        ),
        (&["enqueue", "noop", "--at", "whenever"], "--at"),
        (&["jobs", "ls", "--state", "sleepy"], "unknown state"),
    ];
    for (args, message) in cases {
        let out = env.ferry(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }

    let file = std::env::temp_dir().join(format!("{}-jobs.jsonl", env.name));
    std::fs::write(
        &file,
        "{\"kind\":\"noop\"}\n{\"kind\":\"sleep\",\"args\":{\"ms\":-1}}\n",
    )
    .unwrap();
    let out = env.ferry(&["enqueue", "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    std::fs::remove_file(&file).unwrap();

    let stats = env.queue.stats("default").await.unwrap();
    assert!(
        stats.by_kind.is_empty(),
        "something was enqueued: {stats:?}"
    );
    assert_eq!(stats.ready, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn unreachable_services_and_bad_config_exit_2() {
    let env = TestEnv::new("").await;
    let out = env
        .command(&["enqueue", "noop"])
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("REDIS_URL"), "{}", stderr(&out));

    let out = env
        .command(&["migrate"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("Postgres"), "{}", stderr(&out));

    let out = env
        .command(&["stats"])
        .env("REDIS_URL", "http://example")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("redis.url"), "{}", stderr(&out));

    let out = env.ferry(&["--config", "/nonexistent/ferry.toml", "stats"]);
    assert_eq!(out.status.code(), Some(2));
    env.cleanup().await;
}

#[tokio::test]
async fn idempotency_keys_return_the_first_job_and_files_enqueue_in_bulk() {
    let env = TestEnv::new("").await;
    let first = env.ferry(&["--json", "enqueue", "noop", "--key", "user-42"]);
    let second = env.ferry(&["--json", "enqueue", "noop", "--key", "user-42"]);
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let second: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(
        (first["created"].as_bool(), second["created"].as_bool()),
        (Some(true), Some(false))
    );

    let lines: String = (0..100)
        .map(|i| format!("{{\"kind\":\"noop\",\"key\":\"k{}\"}}\n", i % 80))
        .collect();
    let mut child = env
        .command(&["--json", "enqueue", "--file", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 100);
    assert_eq!(rows.iter().filter(|r| r["created"] == true).count(), 80);
    assert_eq!(env.count("noop", "queued").await, 81);

    let out = env.ferry(&["--json", "stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["by_kind"]["noop"]["queued"], 81);
    for state in [
        "queued",
        "scheduled",
        "running",
        "retrying",
        "succeeded",
        "dead",
        "cancelled",
    ] {
        assert!(
            stats["by_kind"]["fail"].get(state).is_some(),
            "stats lacks {state}"
        );
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_wait_exits_on_the_job_outcome() {
    let env = TestEnv::new("").await;
    let worker = env.start_worker();
    let ok = env.ferry(&[
        "enqueue",
        "sleep",
        "--args",
        r#"{"ms": 300, "steps": 3}"#,
        "--wait",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let bad = env.ferry(&[
        "enqueue",
        "fail",
        "--args",
        r#"{"permanent": true}"#,
        "--wait",
    ]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("permanent failure"));

    let runs = env.ferry(&["--json", "runs", "ls"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["done"], 3);
    worker.stop().await;
    env.cleanup().await;
}
