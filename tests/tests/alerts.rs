//! Alerts on a real local webhook: a dead job is announced once with its kind, id and error,
//! more deaths of the kind within the window come as one digest, a webhook that hangs slows
//! no job, and a stale backup raises its alert and shows its age in /metrics.

use std::time::{Duration, Instant};

use ferry_tests::{
    TestEnv,
    api::{API_CONFIG, ApiServer},
    hook::Hook,
};

async fn dead_count(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM dead_jobs")
        .fetch_one(env.record.pool())
        .await
        .unwrap()
}

async fn wait_dead(env: &TestEnv, n: i64, timeout: Duration) -> Duration {
    let started = Instant::now();
    while dead_count(env).await < n {
        assert!(
            started.elapsed() < timeout,
            "{n} dead jobs not reached in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_dead_job_alerts_once_and_fifty_more_make_one_digest() {
    let hook = Hook::start(false).await;
    let env = TestEnv::new(&format!(
        "[alerts]\nwebhook = \"{}\"\ncheck_every = \"300ms\"\ndead_digest_every = \"10s\"\n",
        hook.url
    ))
    .await;
    let worker = env.start_worker();
    let scheduler = env.start_scheduler();

    let first = env
        .enqueue("fail", r#"{"times": 1, "permanent": true}"#)
        .await;
    let posts = hook.wait_for(1, Duration::from_secs(30)).await;
    let alert = &posts[0];
    assert_eq!(alert["topic"], "job.dead", "{alert:#}");
    assert_eq!(alert["details"]["kind"], "fail", "{alert:#}");
    assert_eq!(alert["details"]["job_id"], first.to_string(), "{alert:#}");
    let error = alert["details"]["error"].as_str().unwrap();
    assert!(error.contains("fail"), "{alert:#}");
    let text = alert["text"].as_str().unwrap();
    assert!(
        text.contains(&first.to_string()) && text.contains(&format!("ferry jobs show {first}")),
        "Slack text says what and where to look: {text}"
    );
    let first_at = Instant::now();

    for _ in 0..50 {
        env.enqueue("fail", r#"{"times": 1, "permanent": true}"#)
            .await;
    }
    wait_dead(&env, 51, Duration::from_secs(60)).await;
    // Inside the window nothing more is posted; after it, one digest of the 50.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(first_at.elapsed()) / 2).await;
    assert_eq!(hook.posts().len(), 1, "{:#?}", hook.posts());
    let posts = hook.wait_for(2, Duration::from_secs(30)).await;
    let digest = &posts[1];
    assert_eq!(digest["count"], 50, "{digest:#}");
    assert_eq!(digest["details"]["kind"], "fail");
    assert!(
        digest["message"]
            .as_str()
            .unwrap()
            .starts_with("50 jobs of kind fail")
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        hook.posts().len(),
        2,
        "one digest, not 50 posts: {:#?}",
        hook.posts()
    );

    let recorded: Vec<(String, i32, String)> =
        sqlx::query_as("SELECT topic, count, state FROM alerts ORDER BY id")
            .fetch_all(env.record.pool())
            .await
            .unwrap();
    assert_eq!(
        recorded,
        vec![
            ("job.dead".into(), 1, "sent".into()),
            ("job.dead".into(), 50, "sent".into())
        ]
    );
    scheduler.stop().await;
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_webhook_that_hangs_slows_no_job_and_its_failure_is_recorded_without_the_url() {
    let hook = Hook::start(true).await;
    let env = TestEnv::new(&format!(
        "[alerts]\nwebhook = \"{}\"\ncheck_every = \"200ms\"\ntimeout = \"2s\"\n",
        hook.url
    ))
    .await;
    let worker = env.start_worker();
    let scheduler = env.start_scheduler();
    env.enqueue("fail", r#"{"times": 1, "permanent": true}"#)
        .await;
    wait_dead(&env, 1, Duration::from_secs(20)).await;
    // While the scheduler waits on the hanging webhook, jobs keep dying and running at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    for _ in 0..50 {
        env.enqueue("fail", r#"{"times": 1, "permanent": true}"#)
            .await;
    }
    let took = wait_dead(&env, 51, Duration::from_secs(60)).await;
    assert!(
        took < Duration::from_secs(10),
        "50 jobs took {took:?} to die while the webhook hung"
    );
    let noop = env.enqueue("noop", "{}").await;
    env.wait_for(noop, Duration::from_secs(5), |j| {
        j.state == ferry_queue::JobState::Succeeded
    })
    .await;
    eprintln!(
        "50 dead jobs in {:?} with the webhook hanging",
        started.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let (state, error) = loop {
        let row: (String, Option<String>) =
            sqlx::query_as("SELECT state, last_error FROM alerts ORDER BY id LIMIT 1")
                .fetch_one(env.record.pool())
                .await
                .unwrap();
        if row.1.is_some() || Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let error = error.expect("the failed post is recorded");
    assert_eq!(state, "pending", "tried again later");
    assert!(error.contains("did not answer"), "{error}");
    assert!(
        !error.contains("secret-token-42"),
        "the URL leaked: {error}"
    );
    scheduler.stop().await;
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_stale_backup_raises_its_alert_and_shows_its_age() {
    let hook = Hook::start(false).await;
    let env = TestEnv::new(&format!(
        "{API_CONFIG}[alerts]\nwebhook = \"{}\"\ncheck_every = \"300ms\"\n",
        hook.url
    ))
    .await;
    // A verified backup of `app`, taken now, then moved 30 hours back: older than the 26 h
    // default of alerts.backup_max_age. `fresh` is a database backed up an hour ago.
    for (database, hours) in [("app", 30), ("fresh", 1)] {
        sqlx::query(
            "INSERT INTO backups (id, job_id, database, store, object_key, bytes, sha256,
                 compression, server_version, pg_dump_version, started_at, duration_ms,
                 row_counts, verified_at)
             VALUES (gen_random_uuid(), gen_random_uuid(), $1, 'file:///tmp', 'k', 1, 'x',
                 'zstd', '16', '16', now(), 1, '{}', now())",
        )
        .bind(database)
        .execute(env.record.pool())
        .await
        .unwrap();
        sqlx::query(
            "UPDATE backups SET created_at = created_at - make_interval(hours => $2),
                 started_at = started_at - make_interval(hours => $2),
                 verified_at = verified_at - make_interval(hours => $2)
             WHERE database = $1",
        )
        .bind(database)
        .bind(hours)
        .execute(env.record.pool())
        .await
        .unwrap();
    }
    let scheduler = env.start_scheduler();
    let posts = hook.wait_for(1, Duration::from_secs(30)).await;
    let alert = &posts[0];
    assert_eq!(
        (alert["topic"].as_str(), alert["subject"].as_str()),
        (Some("backup.stale"), Some("app")),
        "{alert:#}"
    );
    assert!(
        alert["message"].as_str().unwrap().contains("is 30h 0m old"),
        "{alert:#}"
    );
    assert!(
        alert["where"]
            .as_str()
            .unwrap()
            .contains("ferry backup list --database app")
    );
    // Announced once per alerts.repeat_every, not every pass; the fresh one not at all.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.posts().len(), 1, "{:#?}", hook.posts());

    let api = ApiServer::start(env.config.clone()).await;
    let text = reqwest::get(api.at("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let age = |name: &str, db: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("database") == Some(db))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            })
    };
    let stale = age("ferry_backup_newest_verified_age_seconds", "app").expect(&text);
    assert!((30.0 * 3600.0..30.1 * 3600.0).contains(&stale), "{stale}");
    let fresh = age("ferry_backup_newest_age_seconds", "fresh").expect(&text);
    assert!((3600.0..3700.0).contains(&fresh), "{fresh}");
    assert!(text.contains("ferry_relay_backlog 0"), "{text}");
    api.stop().await;
    scheduler.stop().await;
    env.cleanup().await;
}
