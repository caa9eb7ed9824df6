//! `ferry serve` over real HTTP against real Postgres, Redis and MongoDB: every route, both
//! token scopes, bad input, idempotency, and metrics that parse and move when jobs run.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use ferry_queue::JobState;
use ferry_tests::{
    TestEnv,
    api::{ADMIN_TOKEN, API_CONFIG, ApiServer, ENQUEUE_TOKEN},
    signal,
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const NO_ID: &str = "0190f0f0-0000-7000-8000-000000000000";

/// Every route, with a body that is acceptable, and the exact status it answers with no
/// token, a wrong token, the enqueue token and the admin token (`None`: needs none).
#[allow(clippy::type_complexity)]
fn routes() -> Vec<(Method, String, Option<Value>, Option<[u16; 2]>)> {
    use Method as M;
    let id = NO_ID;
    vec![
        (
            M::POST,
            "/v1/jobs".into(),
            Some(json!({"kind": "noop"})),
            Some([202, 202]),
        ),
        (M::GET, "/v1/jobs".into(), None, Some([403, 200])),
        // The enqueue token did not create it; the admin finds no such job.
        (M::GET, format!("/v1/jobs/{id}"), None, Some([403, 404])),
        (
            M::POST,
            format!("/v1/jobs/{id}/retry"),
            None,
            Some([403, 404]),
        ),
        (
            M::POST,
            "/v1/jobs/retry".into(),
            Some(json!({"dry_run": true})),
            Some([403, 200]),
        ),
        (
            M::POST,
            format!("/v1/jobs/{id}/cancel"),
            None,
            Some([403, 404]),
        ),
        (M::GET, "/v1/runs".into(), None, Some([403, 200])),
        (M::GET, format!("/v1/runs/{id}"), None, Some([403, 404])),
        (M::GET, "/v1/stats".into(), None, Some([403, 200])),
        (
            M::POST,
            "/v1/queues/default/pause".into(),
            None,
            Some([403, 200]),
        ),
        (
            M::POST,
            "/v1/queues/default/resume".into(),
            None,
            Some([403, 200]),
        ),
        (M::GET, "/v1/backups".into(), None, Some([403, 200])),
        (M::GET, "/v1/schedules".into(), None, Some([403, 200])),
        (
            M::POST,
            "/v1/sync/full".into(),
            Some(json!({})),
            Some([403, 202]),
        ),
        // Either token may sync a row; this table is not mirrored.
        (
            M::POST,
            "/v1/sync/entity".into(),
            Some(json!({"table": "nosuch", "key": 1})),
            Some([400, 400]),
        ),
        (M::GET, "/v1/sync/status".into(), None, Some([403, 200])),
        (
            M::POST,
            "/v1/import/run".into(),
            Some(json!({})),
            Some([403, 202]),
        ),
        (M::GET, "/v1/import/status".into(), None, Some([403, 200])),
        (M::GET, "/metrics".into(), None, None),
        (M::GET, "/healthz".into(), None, None),
        (M::GET, "/readyz".into(), None, None),
        (M::GET, "/openapi.json".into(), None, None),
    ]
}

struct Api {
    client: Client,
    server: ApiServer,
}

impl Api {
    async fn start(env: &TestEnv) -> Self {
        Self {
            client: Client::new(),
            server: ApiServer::start(env.config.clone()).await,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.server.at(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN_TOKEN), body.as_ref())
            .await
    }

    async fn metrics(&self) -> prometheus_parse::Scrape {
        let res = self
            .client
            .get(self.server.at("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let text = res.text().await.unwrap();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .unwrap_or_else(|e| panic!("metrics do not parse: {e}\n{text}"))
    }
}

fn error_of(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_owned()
}

/// The value of a counter or gauge sample named `name` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.samples.iter().find_map(|s| {
        let matches = s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
        match (&s.value, matches) {
            (prometheus_parse::Value::Counter(v), true)
            | (prometheus_parse::Value::Gauge(v), true)
            | (prometheus_parse::Value::Untyped(v), true) => Some(*v),
            _ => None,
        }
    })
}

/// The `_count` of a histogram for a kind.
fn histogram_count(scrape: &prometheus_parse::Scrape, name: &str, kind: &str) -> u64 {
    scrape
        .samples
        .iter()
        .find_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets)
                if s.metric == name && s.labels.get("kind") == Some(kind) =>
            {
                buckets.last().map(|b| b.count as u64)
            }
            _ => None,
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn every_route_checks_its_scope() {
    let env = TestEnv::new(API_CONFIG).await;
    let api = Api::start(&env).await;
    for (method, path, body, expected) in routes() {
        let what = format!("{method} {path}");
        let (none, _) = api.call(method.clone(), &path, None, body.as_ref()).await;
        let Some([enqueue_status, admin_status]) = expected else {
            assert_eq!(none, StatusCode::OK, "{what} without a token");
            continue;
        };
        let (wrong, wrong_body) = api
            .call(
                method.clone(),
                &path,
                Some("not-the-token-at-all-000"),
                body.as_ref(),
            )
            .await;
        let (enqueue, enqueue_body) = api
            .call(method.clone(), &path, Some(ENQUEUE_TOKEN), body.as_ref())
            .await;
        let (admin, admin_body) = api
            .call(method.clone(), &path, Some(ADMIN_TOKEN), body.as_ref())
            .await;
        assert_eq!(none, StatusCode::UNAUTHORIZED, "{what} without a token");
        assert_eq!(wrong, StatusCode::UNAUTHORIZED, "{what} with a wrong token");
        assert!(
            error_of(&wrong_body).contains("FERRY_ADMIN_TOKEN"),
            "{what}: {wrong_body}"
        );
        assert!(
            !error_of(&wrong_body).contains("not-the-token"),
            "{what} echoes the token"
        );
        assert_eq!(
            enqueue.as_u16(),
            enqueue_status,
            "{what} with the enqueue token: {enqueue_body}"
        );
        if enqueue == StatusCode::FORBIDDEN {
            assert!(
                error_of(&enqueue_body).contains("admin"),
                "{what}: {enqueue_body}"
            );
        }
        assert_eq!(
            admin.as_u16(),
            admin_status,
            "{what} with the admin token: {admin_body}"
        );
    }
    api.server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn bad_input_is_400_with_a_message_and_enqueues_nothing() {
    let env = TestEnv::new(API_CONFIG).await;
    let api = Api::start(&env).await;
    let raw = |body: &'static str, content_type: &'static str| {
        api.client
            .post(api.server.at("/v1/jobs"))
            .bearer_auth(ENQUEUE_TOKEN)
            .header("content-type", content_type)
            .body(body)
    };
    for (body, status, message) in [
        ("{\"kind\": \"noop\"", StatusCode::BAD_REQUEST, "EOF"),
        ("[1, 2]", StatusCode::BAD_REQUEST, "Failed to deserialize"),
        (
            "{\"kind\": \"nosuchkind\"}",
            StatusCode::BAD_REQUEST,
            "unknown job kind",
        ),
        (
            "{\"kind\": \"sleep\", \"args\": {\"ms\": \"soon\"}}",
            StatusCode::BAD_REQUEST,
            "arguments for sleep do not fit",
        ),
        (
            "{\"kind\": \"noop\", \"args\": [1]}",
            StatusCode::BAD_REQUEST,
            "must be a JSON object",
        ),
        (
            "{\"kind\": \"noop\", \"when\": 1}",
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "{\"kind\": \"noop\", \"run_at\": \"whenever\"}",
            StatusCode::BAD_REQUEST,
            "run_at",
        ),
    ] {
        let res = raw(body, "application/json").send().await.unwrap();
        assert_eq!(res.status(), status, "{body}");
        let answer: Value = res.json().await.unwrap();
        assert!(error_of(&answer).contains(message), "{body}: {answer}");
    }
    let res = raw("{\"kind\": \"noop\"}", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!(
        "{{\"kind\": \"noop\", \"args\": {{\"x\": \"{}\"}}}}",
        "a".repeat(8000)
    );
    let res = api
        .client
        .post(api.server.at("/v1/jobs"))
        .bearer_auth(ENQUEUE_TOKEN)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = api.admin(Method::GET, "/v1/jobs/not-a-uuid", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("not a job id"), "{body}");
    let (status, body) = api.admin(Method::GET, "/v1/jobs?state=sleepy", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("unknown state"), "{body}");

    let stats = env.queue.stats("default").await.unwrap();
    assert!(
        stats.by_kind.is_empty(),
        "something was enqueued: {stats:?}"
    );
    api.server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn idempotent_enqueue_returns_the_same_id_and_the_enqueue_token_reads_only_its_jobs() {
    let env = TestEnv::new(API_CONFIG).await;
    let api = Api::start(&env).await;
    let post = |key: &'static str| {
        api.client
            .post(api.server.at("/v1/jobs"))
            .bearer_auth(ENQUEUE_TOKEN)
            .header("Idempotency-Key", key)
            .json(&json!({"kind": "noop"}))
            .send()
    };
    let first: Value = post("order-42").await.unwrap().json().await.unwrap();
    let res = post("order-42").await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let second: Value = res.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(
        (first["created"].clone(), second["created"].clone()),
        (json!(true), json!(false))
    );
    let (_, by_body) = api
        .call(
            Method::POST,
            "/v1/jobs",
            Some(ENQUEUE_TOKEN),
            Some(&json!({"kind": "noop", "idempotency_key": "order-42"})),
        )
        .await;
    assert_eq!(by_body["id"], first["id"]);
    let other: Value = post("order-43").await.unwrap().json().await.unwrap();
    assert_ne!(other["id"], first["id"]);

    let id = first["id"].as_str().unwrap();
    let (status, job) = api
        .call(
            Method::GET,
            &format!("/v1/jobs/{id}"),
            Some(ENQUEUE_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["job"]["kind"], "noop");
    let (_, theirs) = api
        .admin(Method::POST, "/v1/jobs", Some(json!({"kind": "noop"})))
        .await;
    let (status, body) = api
        .call(
            Method::GET,
            &format!("/v1/jobs/{}", theirs["id"].as_str().unwrap()),
            Some(ENQUEUE_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let stats = env.queue.stats("default").await.unwrap();
    assert_eq!(stats.by_kind["noop"]["queued"], 3);
    api.server.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_retry_and_cancel_jobs_and_each_action_is_audited() {
    let env = TestEnv::new(&format!("{API_CONFIG}[kinds.fail]\nmax_attempts = 1\n")).await;
    let api = Api::start(&env).await;
    let worker = env.start_worker();
    let (status, dead) = api
        .admin(
            Method::POST,
            "/v1/jobs",
            Some(json!({"kind": "fail", "args": {"permanent": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{dead}");
    let dead_id: uuid::Uuid = dead["id"].as_str().unwrap().parse().unwrap();
    env.wait_for(dead_id, Duration::from_secs(10), |j| {
        j.state == JobState::Dead
    })
    .await;
    // Burial in Postgres follows the outcome; wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.record.dead_job(dead_id).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "the dead job was not archived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, rows) = api.admin(Method::GET, "/v1/jobs?state=dead", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows[0]["id"], dead["id"], "{rows}");
    assert!(
        rows[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("permanent"),
        "{rows}"
    );
    let (_, detail) = api
        .admin(Method::GET, &format!("/v1/jobs/{dead_id}"), None)
        .await;
    assert_eq!(detail["dead"]["kind"], "fail", "{detail}");

    let (_, dry) = api
        .admin(
            Method::POST,
            "/v1/jobs/retry",
            Some(json!({"kind": "fail", "dry_run": true})),
        )
        .await;
    assert_eq!(dry["ids"], json!([dead_id]), "{dry}");
    assert_eq!(dry["requeued"], 0);
    // The retry ran: the job finished again, later, and its record holds a second error.
    let first_end = env.job_record(dead_id).await.unwrap().finished_us.unwrap();
    let (status, retried) = api
        .admin(Method::POST, &format!("/v1/jobs/{dead_id}/retry"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["requeued"], 1);
    env.wait_for(dead_id, Duration::from_secs(10), |j| {
        j.state == JobState::Dead && j.finished_us.is_some_and(|t| t > first_end)
    })
    .await;
    let errors = wait_dead_errors(&env, dead_id, 2).await;
    assert!(
        errors
            .iter()
            .all(|e| e["error"].as_str().unwrap().contains("permanent")),
        "{errors:?}"
    );

    // The filtered retry re-queues exactly the dead jobs whose error matches.
    let (_, other) = api
        .admin(
            Method::POST,
            "/v1/jobs",
            Some(json!({"kind": "fail", "args": {"times": 1}})),
        )
        .await;
    let other_id: uuid::Uuid = other["id"].as_str().unwrap().parse().unwrap();
    wait_dead_errors(&env, other_id, 1).await;
    let (_, filtered) = api
        .admin(
            Method::POST,
            "/v1/jobs/retry",
            Some(json!({"error": "permanent"})),
        )
        .await;
    assert_eq!(filtered["requeued"], 1, "{filtered}");
    assert_eq!(filtered["ids"], json!([dead_id]), "{filtered}");
    wait_dead_errors(&env, dead_id, 3).await;
    assert_eq!(
        env.record
            .dead_job(other_id)
            .await
            .unwrap()
            .unwrap()
            .errors
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (_, none) = api
        .admin(
            Method::POST,
            "/v1/jobs/retry",
            Some(json!({"error": "no such error"})),
        )
        .await;
    assert_eq!(
        (&none["requeued"], &none["ids"]),
        (&json!(0), &json!([])),
        "{none}"
    );

    let (_, later) = api
        .admin(
            Method::POST,
            "/v1/jobs",
            Some(json!({"kind": "noop", "run_at": "1h"})),
        )
        .await;
    let later_id = later["id"].as_str().unwrap();
    let (status, cancelled) = api
        .admin(Method::POST, &format!("/v1/jobs/{later_id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["result"], "cancelled");
    let (status, body) = api
        .admin(Method::POST, &format!("/v1/jobs/{NO_ID}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, stats) = api.admin(Method::GET, "/v1/stats", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["by_kind"]["noop"]["cancelled"], 1, "{stats}");

    let audit = env.record.audit_log(50).await.unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.actor.as_str(), a.action.as_str()))
        .collect();
    for action in ["jobs.enqueue", "jobs.retry", "jobs.cancel"] {
        assert!(
            actions.contains(&("api:admin", action)),
            "{action}: {actions:?}"
        );
    }
    worker.stop().await;
    api.server.stop().await;
    env.cleanup().await;
}

/// The archived errors of dead job `id`, once there are `n` of them.
async fn wait_dead_errors(env: &TestEnv, id: uuid::Uuid, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dead = env.record.dead_job(id).await.unwrap();
        let errors = dead
            .as_ref()
            .map(|d| d.errors.as_array().unwrap().clone())
            .unwrap_or_default();
        if errors.len() >= n && dead.is_some_and(|d| d.retried_at.is_none()) {
            assert_eq!(errors.len(), n, "{errors:?}");
            return errors;
        }
        assert!(Instant::now() < deadline, "{id}: {errors:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_when_jobs_run() {
    let env = TestEnv::new(&format!("{API_CONFIG}[kinds.fail]\nmax_attempts = 2\nbackoff_base = \"10ms\"\nbackoff_cap = \"10ms\"\n")).await;
    let api = Api::start(&env).await;
    let before = api.metrics().await;
    let noop = [("kind", "noop")];
    assert_eq!(sample(&before, "ferry_jobs_started_total", &noop), None);

    for _ in 0..3 {
        env.enqueue("noop", "{}").await;
    }
    // The oldest job has waited at least this long, and not much longer.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting = api.metrics().await;
    assert_eq!(sample(&waiting, "ferry_queue_depth", &noop), Some(3.0));
    let age = sample(&waiting, "ferry_queue_oldest_job_age_seconds", &noop).unwrap();
    assert!((1.5..60.0).contains(&age), "{age}");

    let worker = env.start_worker();
    env.wait_for_count("noop", "succeeded", 3, Duration::from_secs(10))
        .await;
    let fail = env.enqueue("fail", r#"{"times": 5}"#).await;
    env.wait_for(fail, Duration::from_secs(10), |j| j.state == JobState::Dead)
        .await;
    let after = api.metrics().await;
    assert_eq!(sample(&after, "ferry_queue_depth", &noop), Some(0.0));
    assert_eq!(sample(&after, "ferry_jobs_started_total", &noop), Some(3.0));
    assert_eq!(
        sample(&after, "ferry_jobs_succeeded_total", &noop),
        Some(3.0)
    );
    assert_eq!(
        histogram_count(&after, "ferry_job_duration_seconds", "noop"),
        3
    );
    assert_eq!(
        histogram_count(&after, "ferry_job_enqueue_to_start_seconds", "noop"),
        3
    );
    let f = [("kind", "fail")];
    assert_eq!(sample(&after, "ferry_jobs_started_total", &f), Some(2.0));
    assert_eq!(sample(&after, "ferry_jobs_failed_total", &f), Some(2.0));
    assert_eq!(sample(&after, "ferry_job_retries_total", &f), Some(1.0));
    assert_eq!(sample(&after, "ferry_jobs_dead_total", &f), Some(1.0));
    assert_eq!(sample(&after, "ferry_jobs_succeeded_total", &f), Some(0.0));
    assert_eq!(
        sample(&after, "ferry_workers", &[("queue", "default")]),
        Some(1.0)
    );

    // A running long job shows its progress.
    let long = env.enqueue("sleep", r#"{"ms": 3000, "steps": 30}"#).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = api.metrics().await;
        let id = long.to_string();
        if let Some(p) = sample(&scrape, "ferry_run_progress_ratio", &[("run", &id)])
            && p > 0.0
        {
            assert!(p <= 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "no progress for run {long}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.stop().await;
    api.server.stop().await;
    env.cleanup().await;
}

const SCHOOL: &str = "[sync]\nschemas = [\"{schema}\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_routes_run_a_full_sync_report_status_and_enqueue_on_write() {
    let env = TestEnv::new(&format!("{API_CONFIG}{SCHOOL}")).await;
    env.load_school().await;
    let api = Api::start(&env).await;
    let worker = env.start_worker();
    let (status, body) = api
        .admin(
            Method::POST,
            "/v1/sync/full",
            Some(json!({"tables": ["nosuch.table"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, run) = api
        .admin(Method::POST, "/v1/sync/full", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let id = run["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, r) = api
            .admin(Method::GET, &format!("/v1/runs/{id}"), None)
            .await;
        if status == StatusCode::OK && r["state"] == "succeeded" {
            assert_eq!(r["percent"], json!(100.0), "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "full sync did not finish: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, tables) = api.admin(Method::GET, "/v1/sync/status", None).await;
    assert_eq!(status, StatusCode::OK, "{tables}");
    let tables = tables.as_array().unwrap();
    assert!(!tables.is_empty(), "{tables:?}");
    for t in tables {
        assert_eq!(t["source_rows"], t["mirror_documents"], "{t}");
        assert!(t["last_sync_at"].is_string(), "{t}");
    }

    let courses = format!("{}.courses", env.app_schema());
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/sync/entity",
            Some(ENQUEUE_TOKEN),
            Some(&json!({"table": courses, "key": {"id": "nope"}})),
        )
        .await;
    // The key's type is checked when the job reads the row; the enqueue itself is accepted.
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/sync/entity",
            Some(ENQUEUE_TOKEN),
            Some(&json!({"table": "nosuch", "key": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(!error_of(&body).is_empty());
    let audit = env.record.audit_log(10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "sync.full" && a.actor == "api:admin")
    );
    worker.stop().await;
    api.server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn openapi_describes_every_api_route_and_the_dashboard_needs_a_session() {
    let env = TestEnv::new(API_CONFIG).await;
    let api = Api::start(&env).await;
    let (status, doc) = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths: BTreeMap<String, Value> = serde_json::from_value(doc["paths"].clone()).unwrap();
    for (_, path, _, _) in routes() {
        if path == "/metrics" || path == "/openapi.json" {
            continue;
        }
        let templated = path
            .replace(NO_ID, "{id}")
            .replace("/queues/default/", "/queues/{name}/");
        assert!(
            paths.contains_key(&templated),
            "{templated} missing: {:?}",
            paths.keys()
        );
    }
    assert!(doc["components"]["securitySchemes"]["admin"].is_object());

    let page = api
        .client
        .get(api.server.at("/dashboard"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"token\""), "{page}");
    let res = api
        .client
        .get(api.server.at("/dashboard/panel/queues"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let no_redirect = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let wrong = no_redirect
        .post(api.server.at("/dashboard/login"))
        .header("origin", api.server.url.as_str())
        .form(&[("token", ENQUEUE_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let ok = no_redirect
        .post(api.server.at("/dashboard/login"))
        .header("origin", api.server.url.as_str())
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(ADMIN_TOKEN), "the cookie holds the token");
    let session = cookie.split(';').next().unwrap().to_owned();
    let res = no_redirect
        .get(api.server.at("/dashboard/panel/queues"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = no_redirect
        .get(api.server.at("/v1/stats"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the session works for the API"
    );
    let audit = env.record.audit_log(10).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "dashboard.login"));
    api.server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn ferry_serve_needs_an_admin_token_serves_and_stops_on_sigterm() {
    let env = TestEnv::new("").await;
    let out = env.ferry(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FERRY_ADMIN_TOKEN"), "{stderr}");
    env.cleanup().await;

    let env = TestEnv::new(API_CONFIG).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::env::temp_dir().join(format!("ferry-{}-serve.log", env.name));
    let mut child = env
        .command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(res) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            assert_eq!(res.status(), StatusCode::OK);
            break;
        }
        assert!(Instant::now() < deadline, "ferry serve did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = client
        .get(format!("http://127.0.0.1:{port}/v1/stats"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains(ADMIN_TOKEN), "the token reached the log");
    let _ = std::fs::remove_file(log);
    env.cleanup().await;
}

#[tokio::test]
async fn schedules_show_their_next_fire_in_the_api_and_the_dashboard() {
    let env = TestEnv::new(&format!(
        "{API_CONFIG}[[schedule]]\nname = \"nightly-noop\"\ncron = \"0 30 2 * * *\"\ntimezone = \"Europe/Berlin\"\nkind = \"noop\"\n"
    ))
    .await;
    let api = Api::start(&env).await;
    let (status, all) = api.admin(Method::GET, "/v1/schedules", None).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let s = &all[0];
    assert_eq!(s["name"], "nightly-noop", "{all}");
    assert_eq!(
        (s["kind"].as_str(), s["paused"].as_bool()),
        (Some("noop"), Some(false))
    );
    // 02:30 in Berlin is 00:30 or 01:30 UTC, depending on the season.
    let next = s["next_fire"].as_str().unwrap_or_default();
    assert!(
        next.contains("T00:30:00") || next.contains("T01:30:00"),
        "{all}"
    );

    let no_redirect = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = no_redirect
        .post(api.server.at("/dashboard/login"))
        .header("origin", api.server.url.as_str())
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    let session = cookie.split(';').next().unwrap().to_owned();
    let panel = no_redirect
        .get(api.server.at("/dashboard/panel/schedules"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        panel.contains("data-schedule=\"nightly-noop\"") && panel.contains("active"),
        "{panel}"
    );
    api.server.stop().await;
    env.cleanup().await;
}
