//! The alerts that watch standing conditions rather than single failures, each raised by a
//! real scheduler against real Postgres and Redis: a run silent for hours that the reconciler
//! cannot revive, a change relay that has fallen behind, a schedule whose fires stopped; and
//! the alert mail sent through notify to a real SMTP server.

use std::time::Duration;

use ferry_tests::{TestEnv, hook::Hook, smtp::SmtpSink};

const CHECK: &str = "check_every = \"300ms\"\n";

async fn exec(env: &TestEnv, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(env.record.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_run_silent_for_hours_that_the_reconciler_leaves_raises_one_stuck_alert() {
    let hook = Hook::start(false).await;
    let env = TestEnv::new(&format!("[alerts]\nwebhook = \"{}\"\n{CHECK}", hook.url)).await;
    // Its job still waits in Redis (no worker serves the queue), so the reconciler leaves it
    // alone: only an operator can help, which is what the alert is for. A second run is
    // quiet for 10 s only, well inside alerts.stuck_after.
    let stuck = env.enqueue("noop", "{}").await;
    let busy = env.enqueue("noop", "{}").await;
    for (id, silent) in [(stuck, "2 hours"), (busy, "10 seconds")] {
        sqlx::query(
            "INSERT INTO runs (id, kind, args, state, lease_epoch, lease_owner, started_at, heartbeat_at)
             VALUES ($1, 'noop', '{}', 'running', 1, 'worker-gone',
                     now() - interval '3 hours', now() - $2::interval)",
        )
        .bind(id)
        .bind(silent)
        .execute(env.record.pool())
        .await
        .unwrap();
    }
    let scheduler = env.start_scheduler();
    let posts = hook.wait_for(1, Duration::from_secs(30)).await;
    let alert = &posts[0];
    assert_eq!(alert["topic"], "run.stuck", "{alert:#}");
    assert_eq!(alert["subject"], stuck.to_string(), "{alert:#}");
    let message = alert["message"].as_str().unwrap();
    assert!(
        message.contains("silent for 2h 0m") && message.contains("worker-gone"),
        "{message}"
    );
    assert!(
        alert["where"]
            .as_str()
            .unwrap()
            .contains(&format!("ferry jobs retry {stuck}")),
        "{alert:#}"
    );
    // Several passes later: still one post, none for the run that is merely quiet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let posts = hook.posts();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    scheduler.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_relay_backlog_over_its_threshold_raises_its_alert_and_one_at_it_does_not() {
    let hook = Hook::start(false).await;
    let env = TestEnv::new(&format!(
        "[alerts]\nwebhook = \"{}\"\n{CHECK}relay_backlog = 5\n[sync]\nrelay_interval = \"1h\"\n",
        hook.url
    ))
    .await;
    let change = "INSERT INTO sync_changes (table_name, key, op)
                  SELECT 'app.orders', jsonb_build_object('id', i), 'insert'";
    exec(&env, &format!("{change} FROM generate_series(1, 5) i")).await;
    // A stalled relay: another transaction holds the five changes, so the relay skips them
    // (FOR UPDATE SKIP LOCKED), finds nothing, and pauses for its hour.
    let mut stall = env.record.pool().begin().await.unwrap();
    sqlx::query("SELECT id FROM sync_changes FOR UPDATE")
        .execute(&mut *stall)
        .await
        .unwrap();
    let scheduler = env.start_scheduler();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        hook.posts(),
        Vec::<serde_json::Value>::new(),
        "5 is not over 5"
    );

    exec(&env, &format!("{change} FROM generate_series(6, 8) i")).await;
    let posts = hook.wait_for(1, Duration::from_secs(30)).await;
    let alert = &posts[0];
    assert_eq!(alert["topic"], "relay.backlog", "{alert:#}");
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .starts_with("more than 5 captured changes wait for the relay; the oldest waits for"),
        "{alert:#}"
    );
    assert_eq!(alert["details"]["changes_at_least"], 6, "{alert:#}");
    stall.rollback().await.unwrap();
    scheduler.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_schedule_whose_fires_stop_raises_a_late_alert() {
    let hook = Hook::start(false).await;
    let env = TestEnv::new(&format!(
        "[alerts]\nwebhook = \"{}\"\n{CHECK}[scheduler]\nlate_after = \"2s\"\n\
         [[schedule]]\nname = \"tick\"\ncron = \"* * * * * *\"\nkind = \"noop\"\n",
        hook.url
    ))
    .await;
    let scheduler = env.start_scheduler();
    let fires = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM schedule_fires WHERE schedule = 'tick'")
            .fetch_one(env.record.pool())
            .await
            .unwrap()
    };
    // Firing every second, it is never late.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(fires().await >= 2, "the schedule does not fire");
    assert_eq!(hook.posts(), Vec::<serde_json::Value>::new());

    // A replica that took the schedule's row and hangs: the others skip it, nothing fires.
    let mut hung = env.record.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM schedules WHERE name = 'tick' FOR UPDATE")
        .execute(&mut *hung)
        .await
        .unwrap();
    let stopped_at = fires().await;
    let posts = hook.wait_for(1, Duration::from_secs(30)).await;
    let alert = &posts[0];
    assert_eq!(
        (alert["topic"].as_str(), alert["subject"].as_str()),
        (Some("schedule.late"), Some("tick")),
        "{alert:#}"
    );
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("has not been enqueued after"),
        "{alert:#}"
    );
    assert!(
        fires().await <= stopped_at + 1,
        "fires went on while locked"
    );
    hung.rollback().await.unwrap();
    scheduler.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_dead_job_is_mailed_to_the_alert_addresses_through_notify() {
    let sink = SmtpSink::start(&[]);
    let env = TestEnv::new(&format!(
        "[alerts]\nemail = [\"ops@ferry.test\", \"oncall@ferry.test\"]\n{CHECK}\
         [notify]\nsmtp_url = \"{}\"\nfrom = \"Ferry <ferry@ferry.test>\"\n",
        sink.url()
    ))
    .await;
    let worker = env.start_worker();
    let scheduler = env.start_scheduler();
    let id = env
        .enqueue("fail", r#"{"times": 1, "permanent": true}"#)
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sink.mails().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "alert mails: {:#?}",
            sink.mails()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = sink.mails();
    assert_eq!(mails.len(), 2, "one mail per address, once: {mails:#?}");
    for to in ["ops@ferry.test", "oncall@ferry.test"] {
        assert_eq!(sink.count_to(to), 1, "{mails:#?}");
    }
    let mail = &mails[0];
    assert!(
        mail.subject.as_deref().unwrap_or("").contains("fail"),
        "{mail:#?}"
    );
    assert!(
        mail.data.contains(&id.to_string()) && mail.data.contains(&format!("ferry jobs show {id}")),
        "the mail names the job and where to look: {}",
        mail.data
    );
    scheduler.stop().await;
    worker.stop().await;
    env.cleanup().await;
}
