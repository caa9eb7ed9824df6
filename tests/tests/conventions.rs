//! Config conventions through the real binary: the `FERRY_SECTION__KEY` rule as `ferry config
//! check` shows it, and mail sent with the `SMTP_HOST` family instead of `SMTP_URL`.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use ferry_tests::{TestEnv, WorkerProcess, smtp::SmtpSink};
use serde_json::Value;

#[tokio::test]
async fn config_check_shows_what_the_environment_set_and_masks_secrets() {
    let env = TestEnv::new("").await;
    let out = env
        .command(&["--json", "config", "check"])
        .env("FERRY_WORKER__CONCURRENCY", "7")
        .env(
            "DATABASE_URL",
            "postgres://ferry:hunter2@127.0.0.1:5432/app",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let settings: Vec<Value> = serde_json::from_str(&text).unwrap();
    let get = |key: &str| {
        settings
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .clone()
    };
    let concurrency = get("worker.concurrency");
    assert_eq!(
        (
            concurrency["value"].as_str(),
            concurrency["source"].as_str()
        ),
        (Some("7"), Some("FERRY_WORKER__CONCURRENCY"))
    );
    assert_eq!(get("postgres.url")["source"], "DATABASE_URL");
    assert_eq!(get("redis.prefix")["source"], "file");
    assert_eq!(get("worker.batch")["source"], "default");

    let bad = env
        .command(&["config", "check"])
        .env("FERRY_WORKER__CONCURRENCY", "seven")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("FERRY_WORKER__CONCURRENCY"), "{stderr}");
    env.cleanup().await;
}

#[tokio::test]
async fn mail_goes_out_with_smtp_host_port_and_secure() {
    let sink = SmtpSink::start(&[]);
    let env = TestEnv::new(
        "[notify]\nfrom = \"Ferry <noreply@ferry.test>\"\n[notify.templates.welcome]\nsubject = \"Welcome, {{ name }}\"\ntext = \"Hello {{ name }}\"\n",
    )
    .await;
    let port = sink.port.to_string();
    let smtp = [
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", port.as_str()),
        ("SMTP_SECURE", "false"),
    ];
    let log = std::env::temp_dir().join(format!("ferry-{}-smtp-host-worker.log", env.name));
    let _worker = WorkerProcess(
        env.command(&["worker"])
            .envs(smtp)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let out = env
        .command(&[
            "notify",
            "send",
            "--to",
            "ada@ferry.test",
            "--template",
            "welcome",
            "--data",
            r#"{"name": "Ada"}"#,
            "--wait",
        ])
        .envs(smtp)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\nworker log: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.count_to("ada@ferry.test") == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].subject.as_deref(), Some("Welcome, Ada"));
    env.cleanup().await;
}
