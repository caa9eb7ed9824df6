//! notify and sql against real Postgres and Redis, and a private SMTP server per test that
//! can be told to refuse (`tests/smtp_sink.py`).

use std::{
    collections::{HashMap, HashSet},
    process::Stdio,
    time::{Duration, Instant},
};

use ferry_queue::JobState;
use ferry_tests::{
    TestEnv, WorkerProcess, signal,
    smtp::{SmtpSink, free_port},
};
use serde_json::{Value, json};
use uuid::Uuid;

const NOTIFY: &str = r#"
[notify]
smtp_url = "@SMTP@"
from = "Ferry <noreply@ferry.test>"
table = "{schema}.notifications"
chunk_size = 50
rate = 200
[notify.templates.welcome]
subject = "Welcome, {{ name }}"
text = "Hello {{ name }}, your account is ready."
html = "<p>Hello {{ name }}</p>"
[notify.templates.reset]
subject = "Set a new password"
text = "Hello {{ name }}, please set a new password: {{ link }}"
[notify.audiences]
everyone = "SELECT email, id AS user_id, name FROM {schema}.users"
[kinds."notify.send"]
max_attempts = 30
backoff_base = "100ms"
backoff_cap = "300ms"
[kinds."notify.broadcast"]
backoff_base = "100ms"
backoff_cap = "300ms"
"#;

const APP: &str = "CREATE TABLE notifications (
    id bigserial PRIMARY KEY, user_id bigint NOT NULL, title text NOT NULL, body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now())";

async fn setup(smtp_url: &str, extra: &str) -> TestEnv {
    let env = TestEnv::new(&format!("{}{extra}", NOTIFY.replace("@SMTP@", smtp_url))).await;
    env.sql(APP).await;
    env
}

async fn send(env: &TestEnv, args: Value, key: Option<&str>) -> Uuid {
    let (queue, mut job) = env.job("notify.send", &args.to_string());
    job.idempotency_key = key.map(str::to_owned);
    env.queue.enqueue(&queue, &[job]).await.unwrap()[0].0
}

async fn finished(env: &TestEnv, id: Uuid) -> ferry_queue::JobRecord {
    env.wait_for(id, Duration::from_secs(30), |j| j.state.is_final())
        .await
}

async fn scalar(env: &TestEnv, sql: &str) -> i64 {
    let sql = sql
        .replace("{app}", &env.app_schema())
        .replace("{ferry}", &env.name);
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(env.record.pool())
        .await
        .unwrap()
}

fn output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn welcome(k: usize) -> Value {
    json!({
        "to": format!("user{k}@ferry.test"),
        "user_id": k,
        "template": "welcome",
        "data": {"name": format!("User {k}")}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sends_with_fifteen_keys_make_fifteen_emails_and_fifteen_rows() {
    let sink = SmtpSink::start(&[]);
    let env = setup(&sink.url(), "").await;
    let worker = env.start_worker();
    let mut ids = Vec::new();
    for i in 0..20 {
        let k = i % 15;
        ids.push(send(&env, welcome(k), Some(&format!("welcome-{k}"))).await);
    }
    let first: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(first.len(), 15, "the queue returns the first job for a key");
    for id in &first {
        assert_eq!(finished(&env, *id).await.state, JobState::Succeeded);
    }
    worker.stop().await;

    // The queue forgot the keys; the same five keys enqueued again become new jobs, and the
    // delivery record keeps them from sending or writing anything.
    // As `worker.keep_finished` or a Redis failover would: only the durable record still
    // knows which keys were sent.
    env.forget_redis().await;
    let worker = env.start_worker();
    for k in 0..5 {
        let id = send(&env, welcome(k), Some(&format!("welcome-{k}"))).await;
        assert!(!first.contains(&id));
        assert_eq!(finished(&env, id).await.state, JobState::Succeeded);
    }
    worker.stop().await;

    let mails = sink.mails();
    assert_eq!(mails.len(), 15, "{mails:#?}");
    for k in 0..15 {
        assert_eq!(sink.count_to(&format!("user{k}@ferry.test")), 1, "user{k}");
    }
    let three = mails.iter().find(|m| m.to == ["user3@ferry.test"]).unwrap();
    assert_eq!(three.subject.as_deref(), Some("Welcome, User 3"));
    assert!(three.data.contains("<p>Hello User 3</p>"), "{}", three.data);
    assert!(
        three
            .message_id
            .as_deref()
            .is_some_and(|m| m.ends_with("@ferry.test>"))
    );
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM \"{app}\".notifications").await,
        15
    );
    assert_eq!(
        scalar(&env, "SELECT count(DISTINCT user_id) FROM \"{app}\".notifications WHERE title LIKE 'Welcome, User %'").await,
        15
    );
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM \"{ferry}\".notify_deliveries WHERE state = 'sent' AND attempts = 1 AND in_app_at IS NOT NULL").await,
        15
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_451_is_retried_until_accepted_and_a_550_is_dead_with_the_reply() {
    let sink = SmtpSink::start(&[
        "--tempfail",
        "slow@ferry.test:2",
        "--reject",
        "gone@ferry.test",
    ]);
    let env = setup(&sink.url(), "").await;
    let worker = env.start_worker();
    let args = |to: &str| json!({"to": to, "template": "welcome", "data": {"name": "N"}});
    let slow = send(&env, args("slow@ferry.test"), None).await;
    let gone = send(&env, args("gone@ferry.test"), None).await;

    let job = finished(&env, slow).await;
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Succeeded, 3),
        "{job:?}"
    );
    assert_eq!(sink.count_to("slow@ferry.test"), 1);

    let job = finished(&env, gone).await;
    assert_eq!((job.state, job.attempts), (JobState::Dead, 1), "{job:?}");
    let error = job.last_error.unwrap_or_default();
    assert!(
        error.contains("550") && error.contains("mailbox unavailable"),
        "{error}"
    );
    assert_eq!(sink.count_to("gone@ferry.test"), 0);
    worker.stop().await;

    // Delivery status per message, from `jobs show`.
    let out = env.ferry(&["--json", "jobs", "show", &slow.to_string()]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &shown["deliveries"][0];
    assert_eq!(
        (d["state"].as_str(), d["attempts"].as_i64()),
        (Some("sent"), Some(3)),
        "{shown:#}"
    );
    assert!(d["reply"].as_str().unwrap().starts_with("250 "), "{d}");
    let text = output(&env.ferry(&["jobs", "show", &gone.to_string()]));
    assert!(text.contains("messages  1: failed 1"), "{text}");
    assert!(
        text.contains("failed gone@ferry.test") && text.contains("550"),
        "{text}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_permanent_with_a_clear_message() {
    let sink = SmtpSink::start(&[]);
    let env = setup(&sink.url(), "[sql.statements]\nvacuum = \"VACUUM\"\n").await;
    let worker = env.start_worker();
    let cases = [
        (
            "notify.send",
            json!({"to": "a@ferry.test", "template": "nope"}),
            "unknown template \"nope\"; [notify.templates] has: reset, welcome",
        ),
        (
            "notify.send",
            json!({"to": "a@ferry.test", "template": "welcome", "data": {}}),
            "template welcome (subject) uses {{ name }} missing from data",
        ),
        (
            "notify.send",
            json!({"to": "not an address", "template": "welcome", "data": {"name": "x"}}),
            "malformed address \"not an address\"",
        ),
        (
            "notify.send",
            json!({"template": "welcome", "data": {"name": "x"}}),
            "give to (an email address), user_id",
        ),
        (
            "notify.broadcast",
            json!({"template": "welcome", "audience": "nobody"}),
            "unknown audience \"nobody\"; [notify.audiences] has: everyone",
        ),
        (
            "sql",
            json!({"statement": "drop_everything"}),
            "unknown statement \"drop_everything\"; [sql.statements] has: vacuum",
        ),
    ];
    let mut ids = Vec::new();
    for (kind, args, _) in &cases {
        ids.push(env.enqueue(kind, &args.to_string()).await);
    }
    for (id, (kind, args, message)) in ids.into_iter().zip(&cases) {
        let job = finished(&env, id).await;
        assert_eq!(
            (job.state, job.attempts),
            (JobState::Dead, 1),
            "{kind} {args}: {job:?}"
        );
        let error = job.last_error.unwrap_or_default();
        assert!(error.contains(message), "{kind} {args}: {error}");
    }
    worker.stop().await;
    assert!(sink.mails().is_empty());

    // The CLI finds the same mistakes before enqueueing anything.
    for (args, message) in [
        (
            &[
                "notify",
                "send",
                "--to",
                "a@ferry.test",
                "--template",
                "nope",
            ][..],
            "unknown template",
        ),
        (
            &[
                "notify",
                "send",
                "--to",
                "a@ferry.test",
                "--template",
                "welcome",
            ][..],
            "{{ name }}",
        ),
        (
            &[
                "notify",
                "send",
                "--to",
                "a b",
                "--template",
                "welcome",
                "--data",
                "{\"name\":\"x\"}",
            ][..],
            "malformed address",
        ),
        (
            &[
                "notify",
                "broadcast",
                "--template",
                "reset",
                "--audience",
                "nobody",
            ][..],
            "unknown audience",
        ),
    ] {
        let out = env.ferry(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", output(&out));
        assert!(output(&out).contains(message), "{args:?}: {}", output(&out));
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_smtp_server_is_retried_until_it_is_back() {
    let port = free_port();
    let env = setup(&format!("smtp://127.0.0.1:{port}"), "").await;
    let worker = env.start_worker();
    let id = send(&env, welcome(1), Some("down")).await;
    let job = env
        .wait_for(id, Duration::from_secs(20), |j| {
            j.state == JobState::Retrying && j.attempts >= 2
        })
        .await;
    let error = job.last_error.unwrap_or_default();
    assert!(error.contains("unavailable"), "{error}");
    let sink = SmtpSink::on_port(port, &[]);
    assert_eq!(finished(&env, id).await.state, JobState::Succeeded);
    assert_eq!(sink.count_to("user1@ferry.test"), 1);
    // The in-app row was written once, on the first attempt, not once per attempt.
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM \"{app}\".notifications").await,
        1
    );
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_resumes_after_its_worker_is_killed_and_mails_everyone_once() {
    let sink = SmtpSink::start(&[]);
    let env = setup(&sink.url(), "").await;
    env.sql(
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL);
         INSERT INTO users SELECT i, 'user' || i || '@ferry.test', 'User ' || i FROM generate_series(1, 500) i",
    )
    .await;
    let mut first = env.spawn_worker_process("first");
    let id = env
        .enqueue(
            "notify.broadcast",
            r#"{"template": "reset", "audience": "everyone", "data": {"link": "https://app.test/reset"}}"#,
        )
        .await;
    // Killed mid-chunk: some of the chunk's recipients were mailed after the last checkpoint,
    // and the resumed run must skip exactly those.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mailed = sink.mails().len();
        if mailed >= 125 && !mailed.is_multiple_of(50) {
            break;
        }
        assert!(Instant::now() < deadline, "the broadcast did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&first, "KILL");
    first.wait().unwrap();
    let at_kill = sink.mails().len();
    let killed = env.record.run(id).await.unwrap().unwrap();
    let checkpointed = killed.done;
    let after = killed.checkpoint.unwrap()["after"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(at_kill < 500, "the broadcast ended before the kill");
    eprintln!("killed after {at_kill} mails, {checkpointed} checkpointed, up to {after}");
    // Someone signs up meanwhile, with an address ordered before the checkpoint's: a run that
    // resumes after its checkpoint never reaches them; one that started over would mail them.
    env.sql("INSERT INTO users VALUES (0, 'a-late@ferry.test', 'Late')")
        .await;

    let _second = env.spawn_worker_process("second");
    let job = env
        .wait_for(id, Duration::from_secs(60), |j| j.state.is_final())
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");

    let mut per_recipient: HashMap<String, usize> = HashMap::new();
    for mail in sink.mails() {
        for to in mail.to {
            *per_recipient.entry(to).or_default() += 1;
        }
    }
    let missing: Vec<i32> = (1..=500)
        .filter(|i| !per_recipient.contains_key(&format!("user{i}@ferry.test")))
        .collect();
    let twice: Vec<&String> = per_recipient
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(to, _)| to)
        .collect();
    // The first worker died with up to notify.connections messages `committing`: marked
    // after the server's 354, no reply recorded. The resumed run finds them in doubt and
    // records them `unconfirmed` instead of sending them again.
    let unconfirmed = scalar(
        &env,
        "SELECT count(*) FROM \"{ferry}\".notify_deliveries WHERE state = 'unconfirmed'",
    )
    .await;
    eprintln!(
        "kill run: {} recipients mailed twice, {} missing, {unconfirmed} unconfirmed ({at_kill} mails before the kill)",
        twice.len(),
        missing.len()
    );
    assert!(twice.is_empty(), "mailed twice: {twice:?}");
    let stray: Vec<&String> = per_recipient
        .keys()
        .filter(|to| !(1..=500).any(|i| **to == format!("user{i}@ferry.test")))
        .collect();
    assert!(stray.is_empty(), "mailed outside the audience: {stray:?}");
    // The resumed attempt's work: it mailed only recipients after its checkpoint.
    let remaining: HashSet<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT email FROM \"{}\".users WHERE email::text > $1",
        env.app_schema()
    )))
    .bind(&after)
    .fetch_all(env.record.pool())
    .await
    .unwrap()
    .into_iter()
    .collect();
    let resumed: Vec<String> = sink.mails()[at_kill..]
        .iter()
        .flat_map(|m| m.to.clone())
        .collect();
    assert!(!resumed.is_empty(), "the second attempt mailed nobody");
    for to in &resumed {
        assert!(
            remaining.contains(to),
            "the resumed run mailed {to}, before its checkpoint {after}"
        );
    }
    // The price of never sending twice: a worker killed after Postgres committed the mark and
    // before it wrote the data loses that message. Never silently: it is `unconfirmed`.
    for i in &missing {
        let state = scalar(
            &env,
            &format!(
                "SELECT count(*) FROM \"{{ferry}}\".notify_deliveries
                 WHERE recipient = 'user{i}@ferry.test' AND state = 'unconfirmed'"
            ),
        )
        .await;
        assert_eq!(state, 1, "user{i} was never mailed and is not unconfirmed");
    }
    assert!(
        unconfirmed <= 8,
        "at most notify.connections messages were in flight: {unconfirmed}"
    );
    assert_eq!(
        scalar(
            &env,
            "SELECT count(*) FROM \"{ferry}\".notify_deliveries WHERE state NOT IN ('sent', 'unconfirmed')",
        )
        .await,
        0
    );
    // The unconfirmed ones were sent by one attempt only, and say why they were not sent again.
    assert_eq!(
        scalar(
            &env,
            "SELECT count(*) FROM \"{ferry}\".notify_deliveries WHERE state = 'unconfirmed'
               AND attempts = 1 AND reply LIKE '%not sent again'",
        )
        .await,
        unconfirmed
    );
    // The broadcast's own count, and `jobs show`, say the same as the table.
    let checkpoint = env.record.run(id).await.unwrap().unwrap().checkpoint;
    assert_eq!(
        checkpoint.as_ref().and_then(|c| c["unconfirmed"].as_i64()),
        Some(unconfirmed),
        "{checkpoint:?}"
    );
    let text = output(&env.ferry(&["jobs", "show", &id.to_string()]));
    let counts = if unconfirmed > 0 {
        format!(
            "messages  500: sent {}, unconfirmed {unconfirmed}",
            500 - unconfirmed
        )
    } else {
        "messages  500: sent 500".to_owned()
    };
    assert!(text.contains(&counts), "{text}");
    // In-app rows are written in the delivery record's transaction: exactly one each.
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM \"{app}\".notifications").await,
        500
    );
    assert_eq!(
        scalar(
            &env,
            "SELECT count(DISTINCT user_id) FROM \"{app}\".notifications"
        )
        .await,
        500
    );
    let run = env.record.run(id).await.unwrap().unwrap();
    assert_eq!(
        (run.state.as_str(), run.done, run.total),
        ("succeeded", 500, Some(501)),
        "the late user is counted in the audience, behind the cursor"
    );
    assert!(run.lease_epoch >= 2, "the second worker resumed the run");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_passwords_appear_in_no_log_error_or_payload() {
    const PASSWORD: &str = "S3cret-Passw0rd";
    const WRONG: &str = "Wr0ng-Passw0rd";
    let sink = SmtpSink::start(&[
        "--auth",
        &format!("ferry:{PASSWORD}"),
        "--reject",
        "gone@ferry.test",
    ]);
    let env = setup(&sink.url(), "").await;
    let worker = |label: &str, password: &str| {
        let log = std::env::temp_dir().join(format!("ferry-{}-{label}.log", env.name));
        let child = env
            .command(&["worker"])
            .env(
                "SMTP_URL",
                format!("smtp://ferry:{password}@127.0.0.1:{}", sink.port),
            )
            .env("FERRY_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        (WorkerProcess(child), log)
    };
    let (right, right_log) = worker("right", PASSWORD);
    let ok = send(&env, welcome(1), None).await;
    let gone = send(
        &env,
        json!({"to": "gone@ferry.test", "template": "welcome", "data": {"name": "G"}}),
        None,
    )
    .await;
    assert_eq!(finished(&env, ok).await.state, JobState::Succeeded);
    assert_eq!(finished(&env, gone).await.state, JobState::Dead);
    assert_eq!(
        sink.mails()[0].auth.as_deref(),
        Some("ferry"),
        "the worker authenticated"
    );
    drop(right);

    let (_wrong, wrong_log) = worker("wrong", WRONG);
    let refused = send(&env, welcome(2), None).await;
    let job = finished(&env, refused).await;
    assert_eq!(job.state, JobState::Dead, "{job:?}");
    assert!(
        job.last_error.as_deref().unwrap_or("").contains("535"),
        "{job:?}"
    );

    let bad_url = env
        .command(&[
            "notify",
            "send",
            "--to",
            "a@ferry.test",
            "--template",
            "welcome",
            "--data",
            "{\"name\":\"x\"}",
        ])
        .env("SMTP_URL", format!("smtpx://ferry:{PASSWORD}@127.0.0.1:1"))
        .output()
        .unwrap();
    assert_eq!(bad_url.status.code(), Some(2));
    let mut seen = vec![
        std::fs::read_to_string(&right_log).unwrap(),
        std::fs::read_to_string(&wrong_log).unwrap(),
        output(&bad_url),
        output(&env.ferry(&["--json", "jobs", "ls"])),
    ];
    for id in [ok, gone, refused] {
        seen.push(output(&env.ferry(&[
            "--json",
            "jobs",
            "show",
            &id.to_string(),
        ])));
        seen.push(output(&env.ferry(&["jobs", "show", &id.to_string()])));
    }
    assert!(
        seen[0].contains("notification sent"),
        "debug logs were captured: {}",
        seen[0]
    );
    for text in &seen {
        assert!(
            !text.contains(PASSWORD) && !text.contains(WRONG),
            "a password leaked: {text}"
        );
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_runs_only_named_statements_within_their_timeout() {
    let extra = r#"
[sql]
timeout = "10s"
[sql.statements]
cleanup = "SELECT {schema}.cleanup_old_notifications()"
refresh = "REFRESH MATERIALIZED VIEW {schema}.notification_counts"
slow = { sql = "SELECT pg_sleep(5)", timeout = "200ms" }
[kinds.sql]
max_attempts = 2
backoff_base = "100ms"
backoff_cap = "200ms"
"#;
    let env = setup(&format!("smtp://127.0.0.1:{}", free_port()), extra).await;
    let app = env.app_schema();
    env.sql(&format!(
        "INSERT INTO notifications (user_id, title, body, created_at)
           VALUES (1, 'old', 'b', now() - interval '100 days'), (2, 'new', 'b', now());
         CREATE FUNCTION cleanup_old_notifications() RETURNS bigint LANGUAGE sql AS $$
           WITH gone AS (DELETE FROM \"{app}\".notifications WHERE created_at < now() - interval '90 days' RETURNING 1)
           SELECT count(*) FROM gone $$;
         CREATE MATERIALIZED VIEW notification_counts AS
           SELECT user_id, count(*) AS n FROM notifications GROUP BY user_id WITH NO DATA"
    ))
    .await;
    let worker = env.start_worker();
    let slow = env.enqueue("sql", r#"{"statement": "slow"}"#).await;
    let cleanup = env.enqueue("sql", r#"{"statement": "cleanup"}"#).await;
    assert_eq!(finished(&env, cleanup).await.state, JobState::Succeeded);
    let refresh = env.enqueue("sql", r#"{"statement": "refresh"}"#).await;
    assert_eq!(finished(&env, refresh).await.state, JobState::Succeeded);
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM \"{app}\".notifications").await,
        1
    );
    assert_eq!(
        scalar(
            &env,
            "SELECT sum(n)::int8 FROM \"{app}\".notification_counts"
        )
        .await,
        1
    );
    let job = finished(&env, slow).await;
    assert_eq!((job.state, job.attempts), (JobState::Dead, 2), "{job:?}");
    let error = job.last_error.unwrap_or_default();
    assert!(
        error.contains("stopped after its timeout of 200ms"),
        "{error}"
    );
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_left_committing_is_not_sent_again_and_shows_unconfirmed() {
    let sink = SmtpSink::start(&[]);
    let env = setup(&sink.url(), "").await;
    // As a worker killed between completing the data and recording the reply leaves it.
    let id = send(&env, welcome(1), Some("doubt")).await;
    env.sql(&format!(
        "INSERT INTO \"{}\".notify_deliveries (key, job_id, template, recipient, state, attempts)
         VALUES ('send:doubt', '{id}', 'welcome', 'user1@ferry.test', 'committing', 1)",
        env.name
    ))
    .await;
    let worker = env.start_worker();
    let job = finished(&env, id).await;
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Succeeded, 1),
        "{job:?}"
    );
    worker.stop().await;
    assert!(sink.mails().is_empty(), "{:#?}", sink.mails());
    // The in-app part is its own claim: written once, as for any message.
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM \"{app}\".notifications").await,
        1
    );

    let out = env.ferry(&["--json", "jobs", "show", &id.to_string()]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &shown["deliveries"][0];
    assert_eq!(
        (d["state"].as_str(), d["attempts"].as_i64()),
        (Some("unconfirmed"), Some(1)),
        "{shown:#}"
    );
    assert_eq!(
        d["reply"].as_str(),
        Some(
            "in doubt: the worker stopped between marking the message committing and recording the server's reply, so the server may have it; not sent again"
        ),
        "{d}"
    );
    let text = output(&env.ferry(&["jobs", "show", &id.to_string()]));
    assert!(text.contains("messages  1: unconfirmed 1"), "{text}");
    assert!(
        text.contains("message   unconfirmed user1@ferry.test (attempts 1, in-app row written)"),
        "{text}"
    );

    // A later job with the same key (the queue forgot the first) sends nothing either.
    env.forget_redis().await;
    let worker = env.start_worker();
    let again = send(&env, welcome(1), Some("doubt")).await;
    assert_eq!(finished(&env, again).await.state, JobState::Succeeded);
    worker.stop().await;
    assert!(sink.mails().is_empty());
    env.cleanup().await;
}

/// An SMTP server that accepts everything up to the end-of-data marker of `email`'s message,
/// then closes the connection without a reply (`after_data`), or closes it instead of
/// answering `RCPT TO` (not `after_data`). Every message of other recipients gets 250.
async fn cutting_server(email: &'static str, after_data: bool) -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = tokio::io::BufReader::new(read).lines();
                write.write_all(b"220 cutting\r\n").await?;
                let (mut in_data, mut cut) = (false, false);
                while let Some(line) = lines.next_line().await? {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if in_data {
                        if line != "." {
                            continue;
                        }
                        in_data = false;
                        if cut {
                            return Ok(());
                        }
                        b"250 2.0.0 queued\r\n"
                    } else if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 cutting\r\n"
                    } else if upper.starts_with("RCPT") && upper.contains(&email.to_uppercase()) {
                        if !after_data {
                            return Ok(());
                        }
                        cut = true;
                        b"250 OK\r\n"
                    } else if upper.starts_with("DATA") {
                        in_data = true;
                        b"354 go ahead\r\n"
                    } else if upper.starts_with("QUIT") {
                        write.write_all(b"221 bye\r\n").await?;
                        return Ok(());
                    } else {
                        b"250 OK\r\n"
                    };
                    write.write_all(reply).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_after_the_data_is_unconfirmed_and_before_it_is_retried() {
    let port = cutting_server("user1@ferry.test", true).await;
    let env = setup(&format!("smtp://127.0.0.1:{port}"), "").await;
    let worker = env.start_worker();
    let id = send(&env, welcome(1), None).await;
    let job = finished(&env, id).await;
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Succeeded, 1),
        "{job:?}"
    );
    let reply = scalar_text(
        &env,
        "SELECT state || ': ' || reply FROM \"{ferry}\".notify_deliveries",
    )
    .await;
    assert!(
        reply.starts_with(
            "unconfirmed: the connection failed after the message was complete, before the server's reply ("
        ) && reply.ends_with("); not sent again"),
        "{reply}"
    );
    // The pool dropped the cut connection: the next message goes out on a new one.
    let next = send(&env, welcome(2), None).await;
    assert_eq!(finished(&env, next).await.state, JobState::Succeeded);
    worker.stop().await;

    // Cut before the data: nothing can have been mailed, so it is retried.
    let port = cutting_server("user3@ferry.test", false).await;
    let env2 = setup(&format!("smtp://127.0.0.1:{port}"), "").await;
    let worker = env2.start_worker();
    let id = send(&env2, welcome(3), None).await;
    let job = env2
        .wait_for(id, Duration::from_secs(20), |j| {
            j.state == JobState::Retrying && j.attempts >= 2
        })
        .await;
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or("")
            .contains("unavailable"),
        "{job:?}"
    );
    assert_eq!(
        scalar_text(&env2, "SELECT state FROM \"{ferry}\".notify_deliveries").await,
        "queued"
    );
    worker.stop().await;
    env2.cleanup().await;
    env.cleanup().await;
}

async fn scalar_text(env: &TestEnv, sql: &str) -> String {
    let sql = sql
        .replace("{app}", &env.app_schema())
        .replace("{ferry}", &env.name);
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(env.record.pool())
        .await
        .unwrap()
}
