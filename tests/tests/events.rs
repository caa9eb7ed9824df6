//! Events (issue 19) against real Postgres, Redis and SMTP servers: realtime fan-out of in-app
//! rows, `[[on_change]]` rules relayed by three schedulers, at-least-once email.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ferry_queue::JobState;
use ferry_tests::{TestEnv, signal, smtp::SmtpSink};
use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

const APP: &str = "CREATE TABLE notifications (
    id bigserial PRIMARY KEY, user_id bigint NOT NULL, title text NOT NULL, body text NOT NULL,
    link text, type text, organization_id bigint, data jsonb,
    created_at timestamptz NOT NULL DEFAULT now())";

const TEMPLATES: &str = r#"
[notify.templates.welcome]
subject = "Welcome, {{ name }}"
text = "Hello {{ name }}"
[notify.templates.enrolled]
subject = "New enrollment in course {{ course }}"
text = "Student {{ student }} enrolled."
[notify.templates.reset]
subject = "Set a new password"
text = "Hello {{ name }}, please set a new password."
delivery = "at_least_once"
"#;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_gets_the_row_with_its_extra_columns_within_a_second() {
    let env = TestEnv::new(&format!(
        "[notify]\ntable = \"{{schema}}.notifications\"\nrealtime = \"{{schema}}:notifications\"\nrealtime_pg = true\n[notify.columns]\nkind = \"type\"\n{TEMPLATES}{}",
        ferry_tests::api::API_CONFIG
    ))
    .await;
    env.sql(APP).await;
    let channel = format!("{}:notifications:42", env.app_schema());
    let client = redis::Client::open(ferry_tests::redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    let mut messages = pubsub.into_on_message();
    let mut listener = sqlx::postgres::PgListener::connect_with(env.record.pool())
        .await
        .unwrap();
    listener.listen(&channel).await.unwrap();

    let worker = env.start_worker();
    // Warm up: the worker's pools connect on the first message.
    let warm = env
        .enqueue(
            "notify.send",
            r#"{"user_id": 41, "template": "welcome", "data": {"name": "W"}}"#,
        )
        .await;
    assert_eq!(finished(&env, warm).await.state, JobState::Succeeded);

    let args = json!({
        "user_id": 42,
        "template": "enrolled",
        "data": {"course": "Maths", "student": "Ann"},
        "columns": {
            "link": "/courses/7/enrollments/9",
            "kind": "enrollment",
            "organization_id": 3,
            "data": {"course_id": 7, "student_id": 9}
        }
    });
    let sent = Instant::now();
    let id = env.enqueue("notify.send", &args.to_string()).await;
    let message = tokio::time::timeout(Duration::from_secs(1), messages.next())
        .await
        .expect("the row was published within 1 s")
        .unwrap();
    let elapsed = sent.elapsed();
    let row: Value = serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap();
    eprintln!("published {elapsed:?} after enqueue: {row}");
    assert_eq!(row["title"], "New enrollment in course Maths", "{row}");
    assert_eq!(row["link"], "/courses/7/enrollments/9", "{row}");
    assert_eq!(row["type"], "enrollment", "{row}");
    assert_eq!(row["organization_id"], 3, "{row}");
    assert_eq!(
        row["data"],
        json!({"course_id": 7, "student_id": 9}),
        "{row}"
    );
    assert_eq!(row["user_id"], 42, "{row}");
    let pg = tokio::time::timeout(Duration::from_secs(1), listener.recv())
        .await
        .expect("pg_notify arrived")
        .unwrap();
    let pg_row: Value = serde_json::from_str(pg.payload()).unwrap();
    assert_eq!(pg_row, row);
    assert_eq!(finished(&env, id).await.state, JobState::Succeeded);
    assert_eq!(
        scalar(
            &env,
            "SELECT count(*) FROM \"{app}\".notifications WHERE type = 'enrollment' AND link LIKE '/courses/7/%' AND organization_id = 3 AND data->>'course_id' = '7'"
        )
        .await,
        1
    );

    // A column the table does not have is refused, named, with the ones it has; nothing is
    // written. The user, title and body columns are not the caller's to set.
    for (columns, message) in [
        (json!({"colour": "red"}), "columns.colour: "),
        (
            json!({"title": "mine"}),
            "columns.title: column \"title\" gets the rendered subject",
        ),
        (
            json!({"link; DROP TABLE x": "1"}),
            "has no column \"link; DROP TABLE x\"",
        ),
    ] {
        let args = json!({"user_id": 42, "template": "welcome", "data": {"name": "X"}, "columns": columns});
        let id = env.enqueue("notify.send", &args.to_string()).await;
        let job = finished(&env, id).await;
        assert_eq!(job.state, JobState::Dead, "{job:?}");
        let error = job.last_error.unwrap_or_default();
        assert!(error.contains(message), "{error}");
        if message.starts_with("columns.colour") {
            assert!(error.contains("link, organization_id"), "{error}");
        }
    }

    // A publish that fails (a payload too long for pg_notify) loses nothing: the row is
    // written, the job succeeds, and the miss is recorded and counted.
    let long = "x".repeat(9000);
    let id = env
        .enqueue(
            "notify.send",
            &json!({"user_id": 42, "template": "welcome", "data": {"name": long}}).to_string(),
        )
        .await;
    assert_eq!(finished(&env, id).await.state, JobState::Succeeded);
    worker.stop().await;
    assert_eq!(env.record.realtime_missed().await.unwrap(), 1);
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM \"{ferry}\".notify_deliveries WHERE realtime_missed LIKE 'pg_notify: %payload string too long%'").await,
        1
    );
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM \"{app}\".notifications").await,
        3
    );
    let api = ferry_tests::api::ApiServer::start(env.config.clone()).await;
    let metrics = reqwest::get(api.at("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ferry_notify_realtime_missed_total 1"),
        "{metrics}"
    );
    api.stop().await;
    env.cleanup().await;
}

const RULES: &str = r#"
[sync]
relay_interval = "100ms"
[notify]
table = "{schema}.notifications"
[[on_change]]
table = "{schema}.enrollments"
op = ["insert"]
kind = "notify.send"
args = { template = "enrolled", user_id = "{{ row.instructor_id }}", data = { course = "{{ row.course_id }}", student = "{{ row.student }}" } }
[[on_change]]
table = "{schema}.enrollments"
op = ["delete"]
kind = "noop"
"#;

async fn notify_jobs(env: &TestEnv) -> i64 {
    let stats = env.queue.stats("notify").await.unwrap();
    stats
        .by_kind
        .get("notify.send")
        .map(|s| s.values().sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_inserts_enqueue_a_hundred_jobs_with_three_schedulers_and_updates_none() {
    let env = TestEnv::new(&format!("{RULES}{TEMPLATES}")).await;
    env.sql(&format!(
        "{APP}; CREATE TABLE enrollments (id bigserial PRIMARY KEY, course_id bigint NOT NULL, instructor_id bigint NOT NULL, student text NOT NULL)"
    ))
    .await;
    let out = env.ferry(&["events", "install-triggers"]);
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        output(&out).contains(&format!(
            "{}.enrollments: capturing changes (key id)",
            env.app_schema()
        )),
        "{}",
        output(&out)
    );
    let schedulers: Vec<_> = (0..3)
        .map(|i| env.spawn_scheduler_process(&format!("scheduler{i}")))
        .collect();
    let app = env.app_schema();
    // Ten transactions of ten, while three schedulers relay.
    for t in 0..10 {
        env.sql(&format!(
            "INSERT INTO \"{app}\".enrollments (course_id, instructor_id, student)
             SELECT 7, 100 + i % 3, 'student ' || ({t} * 10 + i) FROM generate_series(1, 10) i"
        ))
        .await;
    }
    // Updates: no rule has op update, so nothing is captured or enqueued.
    env.sql(&format!(
        "UPDATE \"{app}\".enrollments SET student = student || '!'"
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(&env, "SELECT count(*) FROM \"{ferry}\".change_events").await > 0 {
        assert!(Instant::now() < deadline, "the changes were not relayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give every scheduler a few more passes to enqueue anything twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(notify_jobs(&env).await, 100);
    drop(schedulers);

    let worker = env.start_worker();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = env.queue.stats("notify").await.unwrap();
        let done = stats
            .by_kind
            .get("notify.send")
            .and_then(|s| s.get("succeeded"))
            .copied()
            .unwrap_or(0);
        if done == 100 {
            break;
        }
        assert!(Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.stop().await;
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM \"{app}\".notifications WHERE title = 'New enrollment in course 7'").await,
        100
    );
    assert_eq!(
        scalar(&env, "SELECT count(DISTINCT body) FROM \"{app}\".notifications WHERE user_id BETWEEN 100 AND 102").await,
        100
    );
    assert_eq!(
        scalar(
            &env,
            "SELECT count(*) FROM \"{ferry}\".notify_deliveries WHERE key LIKE 'send:ferry/notify.send/change:%'"
        )
        .await,
        100
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_relayed_again_enqueues_nothing_and_a_bad_one_is_kept_with_its_error() {
    let env = TestEnv::new(&format!("{RULES}{TEMPLATES}")).await;
    env.sql(&format!(
        "{APP}; CREATE TABLE enrollments (id bigserial PRIMARY KEY, course_id bigint NOT NULL, instructor_id bigint NOT NULL, student text NOT NULL)"
    ))
    .await;
    let rules = ferry_jobs::events::Rules::compile(&env.config, &env.registry).unwrap();
    let change = |id: i64, op: &'static str, row: Value| {
        let sql = format!(
            "INSERT INTO \"{}\".change_events (id, table_name, op, key, row) VALUES ({id}, '{}.enrollments', '{op}', '{{\"id\": 1}}', '{row}')",
            env.name,
            env.app_schema()
        );
        let pool = env.record.pool().clone();
        async move {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap()
        }
    };
    let row = json!({"id": 1, "course_id": 7, "instructor_id": 100, "student": "A"});
    let insert = |id: i64, row: Value| change(id, "INSERT", row);
    let relay =
        || ferry_jobs::events::relay::relay_once(&env.record, &env.queue, &env.registry, &rules);
    insert(5, row.clone()).await;
    assert_eq!(relay().await.unwrap().jobs, 1);
    // As a relay that enqueued and then failed to commit leaves it: the same change again.
    insert(5, row.clone()).await;
    let again = relay().await.unwrap();
    assert_eq!(
        (again.changes, again.jobs),
        (1, 0),
        "the key named the first job"
    );
    assert_eq!(notify_jobs(&env).await, 1);
    // An update of a table whose rules want inserts (and deletes) starts nothing.
    change(7, "UPDATE", row.clone()).await;
    let update = relay().await.unwrap();
    assert_eq!((update.changes, update.jobs, update.failed), (1, 0, 0));
    // A delete starts the delete rule's job.
    change(8, "DELETE", row.clone()).await;
    assert_eq!(relay().await.unwrap().jobs, 1);
    assert_eq!(notify_jobs(&env).await, 1);
    // The same primary key inserted again is a new row version: its own job, not the first
    // one's key.
    insert(
        9,
        json!({"id": 1, "course_id": 8, "instructor_id": 101, "student": "A"}),
    )
    .await;
    assert_eq!(
        relay().await.unwrap().jobs,
        1,
        "a new version of row 1 starts its own job"
    );
    assert_eq!(notify_jobs(&env).await, 2);
    // A row the rule cannot render (no instructor_id) starts nothing and stays, with why.
    insert(6, json!({"id": 1, "course_id": 7, "student": "B"})).await;
    assert_eq!(relay().await.unwrap().failed, 1);
    let error: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT error FROM \"{}\".change_events WHERE id = 6",
        env.name
    )))
    .fetch_one(env.record.pool())
    .await
    .unwrap();
    assert!(
        error.contains("on_change[0]") && error.contains("row.instructor_id"),
        "{error}"
    );
    assert_eq!(
        relay().await.unwrap().changes,
        0,
        "a kept change is not read again"
    );
    env.cleanup().await;
}

/// One message as an SMTP server saw it.
#[derive(Debug, Clone)]
struct Seen {
    to: String,
    message_id: String,
    accepted: bool,
}

/// An SMTP server that accepts every message, except the first one to `lose`: it reads that
/// message to its end-of-data marker and then never replies and never keeps it, as a server
/// that crashed before queueing it.
async fn losing_server(lose: &'static str) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = tokio::io::BufReader::new(read).lines();
                write.write_all(b"220 losing\r\n").await?;
                let (mut in_data, mut to, mut id) = (false, String::new(), String::new());
                while let Some(line) = lines.next_line().await? {
                    let upper = line.to_ascii_uppercase();
                    if in_data {
                        if let Some(v) = line.strip_prefix("Message-ID: ") {
                            id = v.trim().to_owned();
                        }
                        if line != "." {
                            continue;
                        }
                        in_data = false;
                        let lost = {
                            let mut log = log.lock().unwrap();
                            let lost = to == lose && !log.iter().any(|s| s.to == lose);
                            log.push(Seen {
                                to: to.clone(),
                                message_id: id.clone(),
                                accepted: !lost,
                            });
                            lost
                        };
                        if lost {
                            // Hold the connection, never reply.
                            while lines.next_line().await?.is_some() {}
                            return Ok(());
                        }
                        write.write_all(b"250 2.0.0 queued\r\n").await?;
                        continue;
                    }
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 losing\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        to = line[8..].trim().trim_matches(['<', '>']).to_owned();
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
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_least_once_broadcast_killed_mid_send_leaves_no_recipient_without_a_copy() {
    let (port, seen) = losing_server("user77@ferry.test").await;
    let env = TestEnv::new(&format!(
        "[notify]\nsmtp_url = \"smtp://127.0.0.1:{port}\"\nfrom = \"Ferry <noreply@ferry.test>\"\nchunk_size = 50\nrate = 200\n[notify.audiences]\neveryone = \"SELECT email, name FROM {{schema}}.users\"\n[kinds.\"notify.broadcast\"]\nbackoff_base = \"100ms\"\nbackoff_cap = \"300ms\"\n{TEMPLATES}"
    ))
    .await;
    env.sql(
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL);
         INSERT INTO users SELECT i, 'user' || i || '@ferry.test', 'User ' || i FROM generate_series(1, 150) i",
    )
    .await;
    let mut first = env.spawn_worker_process("first");
    let id = env
        .enqueue(
            "notify.broadcast",
            r#"{"template": "reset", "audience": "everyone"}"#,
        )
        .await;
    // Killed while user77's message is complete and its reply never comes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.lock().unwrap().iter().any(|s| !s.accepted) {
        assert!(
            Instant::now() < deadline,
            "the broadcast did not reach user77"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal(&first, "KILL");
    first.wait().unwrap();

    let _second = env.spawn_worker_process("second");
    let job = env
        .wait_for(id, Duration::from_secs(60), |j| j.state.is_final())
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let seen = seen.lock().unwrap().clone();
    let mut accepted: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in seen.iter().filter(|s| s.accepted) {
        accepted.entry(&s.to).or_default().push(&s.message_id);
    }
    let missing: Vec<i32> = (1..=150)
        .filter(|i| !accepted.contains_key(format!("user{i}@ferry.test").as_str()))
        .collect();
    assert!(missing.is_empty(), "left without a copy: {missing:?}");
    // The resend carries the Message-ID of the copy that was lost, and every recipient who got
    // two copies got the same Message-ID twice.
    let lost = seen.iter().find(|s| !s.accepted).unwrap();
    assert!(lost.message_id.ends_with("@ferry.test>"), "{lost:?}");
    assert_eq!(accepted["user77@ferry.test"], [lost.message_id.as_str()]);
    for (to, ids) in &accepted {
        assert!(ids.iter().all(|i| *i == ids[0]), "{to}: {ids:?}");
    }
    let twice = accepted.values().filter(|ids| ids.len() > 1).count();
    eprintln!("at least once: 150 recipients, {twice} got a second copy");
    assert!(
        twice <= 8,
        "only messages in flight at the kill are sent again"
    );
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM \"{ferry}\".notify_deliveries WHERE state = 'sent' AND delivery = 'at_least_once'").await,
        150
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resends_unconfirmed_mail_with_the_same_message_id() {
    let sink = SmtpSink::start(&[]);
    let env = TestEnv::new(&format!(
        "[notify]\nsmtp_url = \"{}\"\nfrom = \"Ferry <noreply@ferry.test>\"\n{TEMPLATES}",
        sink.url()
    ))
    .await;
    let worker = env.start_worker();
    let id = env
        .enqueue(
            "notify.send",
            r#"{"to": "ann@ferry.test", "template": "welcome", "data": {"name": "Ann"}}"#,
        )
        .await;
    assert_eq!(finished(&env, id).await.state, JobState::Succeeded);
    worker.stop().await;
    // As a lost reply leaves it (at most once: the worker never sends it again by itself).
    env.sql(&format!(
        "UPDATE \"{}\".notify_deliveries SET state = 'unconfirmed', reply = 'no reply', updated_at = now() - interval '2 hours'",
        env.name
    ))
    .await;
    let out = env.ferry(&["notify", "unconfirmed", "ls", "--older-than", "1h"]);
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        output(&out).contains("ann@ferry.test") && output(&out).contains("1 unconfirmed"),
        "{}",
        output(&out)
    );
    let out = env.ferry(&["notify", "unconfirmed", "ls", "--older-than", "3h"]);
    assert!(output(&out).contains("0 unconfirmed"), "{}", output(&out));

    let out = env.ferry(&["notify", "unconfirmed", "resend", "--older-than", "1h"]);
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        output(&out).contains("1 sent again, 0 failed"),
        "{}",
        output(&out)
    );
    let mails = sink.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert!(mails[0].message_id.is_some());
    assert_eq!(mails[0].message_id, mails[1].message_id);
    assert_eq!(
        scalar(&env, "SELECT count(*) FROM \"{ferry}\".notify_deliveries WHERE state = 'sent' AND attempts = 2").await,
        1
    );
    assert_eq!(
        scalar(
            &env,
            "SELECT count(*) FROM \"{ferry}\".audit_log WHERE action = 'notify.resend-unconfirmed'"
        )
        .await,
        1
    );
    let out = env.ferry(&["notify", "unconfirmed", "ls"]);
    assert!(output(&out).contains("0 unconfirmed"), "{}", output(&out));
    env.cleanup().await;
}
