//! Trust: what each token may do, keys that belong to their owner, dashboard sessions that
//! can be revoked, placeholder secrets and quotas — over real HTTP against real Postgres and
//! Redis, with the default `[api]` settings unless a test says otherwise.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use ferry_config::{Config, Env};
use ferry_queue::JobState;
use ferry_scheduler::{Fires, plan};
use ferry_tests::{TestEnv, api::ApiServer};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-trust-0001";
const APP: &str = "enqueue-token-for-trust-01";
const BILLING: &str = "billing-token-for-trust-01";

/// Both tokens and the default scopes; plain http cookies for the session tests.
fn api_config(extra: &str) -> String {
    format!("[api]\ntoken = \"{APP}\"\nadmin_token = \"{ADMIN}\"\ninsecure_cookies = true\n{extra}")
}

/// The test's config with `[[api.tokens]]` values taken from `vars`.
fn with_env(env: &TestEnv, vars: &[(&str, &str)]) -> Arc<Config> {
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    Arc::new(Config::from_toml_str(&text, &Env::from_pairs(vars.iter().copied())).unwrap())
}

async fn post(server: &ApiServer, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let res = Client::new()
        .post(server.at(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Audit entries by action, once `want` of `action` have been written (they are batched).
async fn audited(env: &TestEnv, action: &str, want: usize) -> Vec<ferry_record::AuditEntry> {
    for _ in 0..100 {
        let log = env.record.audit_log(1000).await.unwrap();
        if log.iter().filter(|a| a.action == action).count() >= want {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {want} {action} entries in the audit log");
}

#[tokio::test]
async fn the_enqueue_token_enqueues_only_its_kinds_and_every_enqueue_is_audited() {
    let env = TestEnv::new(&api_config("")).await;
    let server = ApiServer::start(env.config.clone()).await;
    let allowed = [
        json!({"kind": "sync.entity", "args": {"table": "public.users", "key": 1}}),
        json!({"kind": "notify.send", "args": {"template": "welcome", "to": "a@example.com"}}),
    ];
    let mut ids = Vec::new();
    for body in &allowed {
        let (status, res) = post(&server, "/v1/jobs", APP, body.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}: {res}");
        ids.push(res["id"].as_str().unwrap().to_owned());
    }
    let refused = [
        json!({"kind": "sql", "args": {"name": "vacuum"}}),
        json!({"kind": "sync.full"}),
        json!({"kind": "backup.prune"}),
        json!({"kind": "files.migrate", "args": {}}),
        json!({"kind": "notify.broadcast", "args": {}}),
        json!({"kind": "sleep", "args": {"ms": 3_600_000}}),
        json!({"kind": "noop"}),
    ];
    for body in &refused {
        let (status, res) = post(&server, "/v1/jobs", APP, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {res}");
        let error = res["error"].as_str().unwrap();
        assert!(
            error.contains(body["kind"].as_str().unwrap()) && error.contains("api.enqueue_kinds"),
            "{error}"
        );
    }
    // The admin token keeps every kind.
    let (status, res) = post(&server, "/v1/jobs", ADMIN, json!({"kind": "noop"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    ids.push(res["id"].as_str().unwrap().to_owned());

    let log = audited(&env, "jobs.enqueue", 3).await;
    let enqueues: BTreeMap<String, (String, Value)> = log
        .iter()
        .filter(|a| a.action == "jobs.enqueue")
        .map(|a| {
            (
                a.target.clone().unwrap(),
                (a.actor.clone(), a.details.clone()),
            )
        })
        .collect();
    assert_eq!(enqueues.len(), 3, "{enqueues:?}");
    for (id, kind, actor) in [
        (&ids[0], "sync.entity", "api:enqueue"),
        (&ids[1], "notify.send", "api:enqueue"),
        (&ids[2], "noop", "api:admin"),
    ] {
        let (who, details) = &enqueues[id];
        assert_eq!(
            (who.as_str(), details["kind"].as_str()),
            (actor, Some(kind))
        );
    }
    let log = audited(&env, "jobs.enqueue_refused", refused.len()).await;
    let refusals: Vec<&str> = log
        .iter()
        .filter(|a| a.action == "jobs.enqueue_refused")
        .map(|a| a.details["kind"].as_str().unwrap())
        .collect();
    assert_eq!(refusals.len(), refused.len(), "{refusals:?}");
    // Nothing refused reached a queue: only the three accepted jobs exist.
    let mut queued = BTreeMap::new();
    for name in env.registry.queues() {
        for (kind, states) in env.queue.stats(&name).await.unwrap().by_kind {
            queued.insert(kind, states.get("queued").copied().unwrap_or(0));
        }
    }
    let expected: BTreeMap<String, i64> = [("noop", 1), ("notify.send", 1), ("sync.entity", 1)]
        .map(|(k, n)| (k.to_owned(), n))
        .into();
    assert_eq!(queued, expected);
    server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn named_tokens_have_their_own_kinds_jobs_and_audit_name() {
    let extra =
        "[[api.tokens]]\nname = \"billing\"\nenv = \"BILLING_FERRY_TOKEN\"\nkinds = [\"noop\"]\n";
    let env = TestEnv::new(&api_config(extra)).await;
    let config = with_env(&env, &[("BILLING_FERRY_TOKEN", BILLING)]);
    let server = ApiServer::start(config).await;
    let (status, res) = post(&server, "/v1/jobs", BILLING, json!({"kind": "noop"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    let id = res["id"].as_str().unwrap().to_owned();
    let (status, res) = post(
        &server,
        "/v1/jobs",
        BILLING,
        json!({"kind": "notify.send", "args": {"template": "x"}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{res}");
    assert!(
        res["error"]
            .as_str()
            .unwrap()
            .contains("api.tokens[billing].kinds"),
        "{res}"
    );

    let read = |token: &'static str| {
        let url = server.at(&format!("/v1/jobs/{id}"));
        async move {
            Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(read(BILLING).await, StatusCode::OK);
    assert_eq!(
        read(APP).await,
        StatusCode::FORBIDDEN,
        "another token's job"
    );
    let log = audited(&env, "jobs.enqueue", 1).await;
    let entry = log.iter().find(|a| a.action == "jobs.enqueue").unwrap();
    assert_eq!(entry.actor, "token:billing");
    server.stop().await;
    env.cleanup().await;
}

/// The hijack found in round 1: an app pre-sends the keys of the next ten fires; the
/// scheduler must still run its own kind at every fire.
#[tokio::test]
async fn keys_sent_ahead_by_an_app_cannot_suppress_a_schedule() {
    let schedule = "[[schedule]]\nname = \"nightly\"\ncron = \"* * * * * *\"\nkind = \"noop\"\n";
    let env = TestEnv::new(&api_config(&format!(
        "enqueue_kinds = [\"sleep\"]\n{schedule}"
    )))
    .await;
    let server = ApiServer::start(env.config.clone()).await;
    let start: DateTime<Utc> = "2026-06-01T02:00:00Z".parse().unwrap();
    let fire = |i: i64| {
        (start + TimeDelta::seconds(i)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    // What each pre-send got is checked after the fires ran, so that a ferry accepting the
    // keys fails on the hijack itself (a fire running another kind), not only on a status.
    let mut answers = Vec::new();
    for i in 1..=10 {
        let body = json!({"kind": "sleep", "args": {"ms": 3_600_000}});
        // The scheduler's own key form is reserved for it…
        let mut reserved = body.clone();
        reserved["idempotency_key"] = json!(format!("schedule:nightly:{}", fire(i)));
        answers.push(("reserved", post(&server, "/v1/jobs", APP, reserved).await));
        // …and a key spelled like the stored form lands in the app's own namespace.
        let mut lookalike = body.clone();
        lookalike["idempotency_key"] =
            json!(format!("scheduler/noop/schedule:nightly:{}", fire(i)));
        answers.push(("lookalike", post(&server, "/v1/jobs", APP, lookalike).await));
    }
    // Someone with Redis access plants the exact stored key of fire 3 on a job of another kind.
    let (queue, mut planted) = env.job("sleep", "{\"ms\": 3600000}");
    planted.idempotency_key = Some(format!("scheduler/noop/schedule:nightly:{}", fire(3)));
    env.queue.enqueue(&queue, &[planted]).await.unwrap();

    let planned = plan(&env.config, &env.registry).unwrap();
    let fires = Fires::new(
        planned,
        env.record.clone(),
        env.queue.clone(),
        &env.config,
        "a",
    );
    fires.register(start).await.unwrap();
    let mut enqueued = Vec::new();
    for i in 1..=10 {
        let report = fires
            .tick(start + TimeDelta::milliseconds(i * 1000 + 5))
            .await
            .unwrap();
        enqueued.extend(report.enqueued.into_iter().map(|(_, _, id)| id));
    }
    assert_eq!(enqueued.len(), 10, "one job per fire");
    let worker = env.start_worker();
    for id in &enqueued {
        let job = env
            .wait_for(*id, Duration::from_secs(20), |j| {
                j.state == JobState::Succeeded
            })
            .await;
        assert_eq!(job.kind, "noop", "fire {id} ran another kind");
    }
    for (key, (status, res)) in answers {
        if key == "reserved" {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
            assert!(
                res["error"].as_str().unwrap().contains("scheduler"),
                "{res}"
            );
        } else {
            assert_eq!(status, StatusCode::ACCEPTED, "{res}");
            assert_eq!(res["created"], true, "{res}");
        }
    }
    worker.stop().await;
    server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn owner_marks_follow_creation_not_keys() {
    let env = TestEnv::new(&api_config("enqueue_kinds = [\"noop\"]\n")).await;
    let server = ApiServer::start(env.config.clone()).await;
    let body = json!({"kind": "noop", "idempotency_key": "report-7"});
    let (_, first) = post(&server, "/v1/jobs", ADMIN, body.clone()).await;
    let (_, again) = post(&server, "/v1/jobs", APP, body).await;
    // Different callers, different namespaces: the app got a job of its own.
    assert_ne!(first["id"], again["id"], "{first} {again}");
    assert_eq!(again["created"], true);
    let admin_job = first["id"].as_str().unwrap();
    let status = Client::new()
        .get(server.at(&format!("/v1/jobs/{admin_job}")))
        .bearer_auth(APP)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the admin's job is not the app's"
    );
    server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_enqueued() {
    let env = TestEnv::new(&api_config("enqueue_kinds = [\"noop\", \"sleep\"]\n")).await;
    let server = ApiServer::start(env.config.clone()).await;
    let far = (Utc::now() + TimeDelta::days(400)).to_rfc3339();
    for (body, says) in [
        (
            json!({"kind": "noop", "args": {"name": "a\u{0}b"}}),
            "args.name holds a NUL",
        ),
        (
            json!({"kind": "sleep", "args": {"ms": 1, "x": ["ok", "\u{0}"]}}),
            "NUL",
        ),
        (json!({"kind": "noop", "args": {"k\u{0}": 1}}), "NUL"),
        (json!({"kind": "noop", "run_at": far}), "days ahead"),
    ] {
        let (status, res) = post(&server, "/v1/jobs", APP, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {res}");
        assert!(res["error"].as_str().unwrap().contains(says), "{res}");
    }
    let stats = env.queue.stats("default").await.unwrap();
    assert!(
        stats.by_kind.is_empty(),
        "something was enqueued: {stats:?}"
    );
    server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_token_cannot_fill_redis_past_its_quota() {
    let env = TestEnv::new(&api_config(
        "enqueue_kinds = [\"noop\"]\nmax_waiting_per_token = 5\n",
    ))
    .await;
    let server = ApiServer::start(env.config.clone()).await;
    for _ in 0..5 {
        let (status, res) = post(&server, "/v1/jobs", APP, json!({"kind": "noop"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    }
    // The waiting counts are read at most every 250 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, res) = post(&server, "/v1/jobs", APP, json!({"kind": "noop"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{res}");
    assert!(
        res["error"]
            .as_str()
            .unwrap()
            .contains("api.max_waiting_per_token"),
        "{res}"
    );
    let (status, _) = post(&server, "/v1/jobs", ADMIN, json!({"kind": "noop"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the admin has no quota");
    server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_placeholder_token_refuses_to_start() {
    let env = TestEnv::new("").await;
    for (var, value) in [
        ("FERRY_ADMIN_TOKEN", "CHANGE-ME-admin-token"),
        ("FERRY_API_TOKEN", "CHANGE-ME-api-token"),
    ] {
        let mut child = env
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .env("FERRY_ADMIN_TOKEN", ADMIN)
            .env(var, value)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A server that accepts the placeholder would serve forever: give it 20 s to refuse.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("ferry serve started with {var} = {value:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(var) && stderr.contains("openssl rand -hex 32"),
            "{stderr}"
        );
        assert!(
            !stderr.contains(value),
            "the error repeats the secret: {stderr}"
        );
    }
    env.cleanup().await;
}

#[path = "trust/sessions.rs"]
mod sessions;
