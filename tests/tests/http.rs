//! Webhook jobs (kind `http`) against a real HTTP endpoint on 127.0.0.1 in this process: what
//! is retried and when, what is dead, the signature on every request, and the allow list and
//! token scope at enqueue.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use ferry_queue::{JobRecord, JobState};
use ferry_tests::{TestEnv, api::ApiServer};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "webhook-secret-for-tests-01";
const ADMIN: &str = "admin-token-for-http-00001";
const APP: &str = "enqueue-token-for-http-001";

/// One answer of the endpoint: status, `Retry-After`, body.
type Reply = (u16, Option<&'static str>, &'static str);

/// One request the endpoint received.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

/// An HTTP endpoint answering `replies` in order, then 200; it records every request.
struct Endpoint {
    /// `http://127.0.0.1:PORT/`
    url: String,
    script: Arc<Script>,
}

impl Endpoint {
    async fn start(replies: &[Reply]) -> Self {
        let script = Arc::new(Script {
            replies: Mutex::new(replies.iter().copied().collect()),
            seen: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, script }
    }

    fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }
}

async fn answer(State(script): State<Arc<Script>>, headers: HeaderMap, body: Bytes) -> Response {
    script.seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        headers,
        body,
    });
    let (status, retry_after, body) = script
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, None, "ok"));
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}

/// A test install whose webhooks may call `endpoint`, signed with [`SECRET`], retried after
/// `backoff_base` (so a test can tell a `Retry-After` wait from the backoff).
async fn install(endpoint: &Endpoint, backoff_base: &str) -> TestEnv {
    TestEnv::with_env(
        &format!(
            "[http]\nallow = [\"{}\"]\nsecret_env = \"HTTP_TEST_SECRET\"\n[kinds.http]\nbackoff_base = \"{backoff_base}\"\nbackoff_cap = \"10s\"\n",
            endpoint.url
        ),
        &[("HTTP_TEST_SECRET", SECRET)],
    )
    .await
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// Recomputes the signature over the raw body received, as a receiver would.
fn assert_signed(seen: &Seen) {
    let timestamp = header(seen, "x-ferry-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&seen.body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        header(seen, "x-ferry-signature"),
        format!("sha256={want}"),
        "body {:?}",
        seen.body
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sent: u64 = timestamp.parse().unwrap();
    assert!(now.abs_diff(sent) < 60, "timestamp {sent} vs now {now}");
}

async fn finished(env: &TestEnv, id: uuid::Uuid) -> JobRecord {
    env.wait_for(id, Duration::from_secs(30), |j| {
        matches!(j.state, JobState::Succeeded | JobState::Dead)
    })
    .await
}

/// Enqueues one webhook job with `args`, runs a worker until the job has succeeded or died.
async fn run_to_end(env: &TestEnv, args: Value) -> JobRecord {
    let id = env.enqueue("http", &args.to_string()).await;
    let worker = env.start_worker();
    let job = finished(env, id).await;
    worker.stop().await;
    job
}

#[tokio::test]
async fn a_503_then_200_is_retried_once_and_succeeds() {
    let endpoint = Endpoint::start(&[(503, None, "busy")]).await;
    let env = install(&endpoint, "100ms").await;
    let job = run_to_end(&env, json!({"url": endpoint.url, "body": {"order": 42}})).await;

    assert_eq!(
        (job.state, job.attempts),
        (JobState::Succeeded, 2),
        "{job:?}"
    );
    let seen = endpoint.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(header(s, "x-ferry-job-id"), job.id.to_string());
        assert_eq!(header(s, "x-ferry-attempt"), (i + 1).to_string());
        assert_eq!(&s.body[..], br#"{"order":42}"#);
        assert_signed(s);
    }
    env.cleanup().await;
}

#[tokio::test]
async fn a_400_is_dead_after_one_attempt_with_its_status_and_body() {
    let endpoint = Endpoint::start(&[(400, None, "unknown order 42")]).await;
    let env = install(&endpoint, "100ms").await;
    let job = run_to_end(&env, json!({"url": endpoint.url, "body": {"order": 42}})).await;

    assert_eq!((job.state, job.attempts), (JobState::Dead, 1), "{job:?}");
    let error = job.last_error.unwrap_or_default();
    assert!(
        error.contains("HTTP 400") && error.contains("unknown order 42"),
        "{error}"
    );
    assert_eq!(endpoint.seen().len(), 1);
    let dead = env
        .record
        .dead_job(job.id)
        .await
        .unwrap()
        .expect("archived");
    assert!(dead.last_error.contains("HTTP 400"), "{}", dead.last_error);
    env.cleanup().await;
}

#[tokio::test]
async fn every_request_carries_a_valid_signature_over_its_exact_body() {
    let endpoint = Endpoint::start(&[]).await;
    let env = install(&endpoint, "100ms").await;
    let bodies = [
        json!({"url": endpoint.url, "body": {"name": "Zoë", "n": [1, 2.5, null]}}),
        json!({"url": endpoint.url, "body": "plain text, not JSON: {\"a\":1}"}),
        json!({"url": format!("{}orders?id=7", endpoint.url), "method": "PUT", "headers": {"X-App": "billing"}}),
    ];
    let mut ids = Vec::new();
    for args in &bodies {
        ids.push(env.enqueue("http", &args.to_string()).await);
    }
    let worker = env.start_worker();
    for id in &ids {
        assert_eq!(finished(&env, *id).await.state, JobState::Succeeded);
    }
    worker.stop().await;

    let seen = endpoint.seen();
    assert_eq!(seen.len(), bodies.len());
    for s in &seen {
        assert_signed(s);
    }
    let by_id = |id: uuid::Uuid| {
        seen.iter()
            .find(|s| header(s, "x-ferry-job-id") == id.to_string())
            .unwrap()
    };
    assert_eq!(
        by_id(ids[1]).body,
        Bytes::from_static(br#"plain text, not JSON: {"a":1}"#)
    );
    let put = by_id(ids[2]);
    assert!(put.body.is_empty());
    assert_eq!(header(put, "x-app"), "billing");
    env.cleanup().await;
}

#[tokio::test]
async fn retry_after_on_a_429_sets_when_the_next_attempt_comes() {
    let endpoint = Endpoint::start(&[(429, Some("1"), "slow down")]).await;
    // The backoff alone would retry within 50 ms.
    let env = install(&endpoint, "50ms").await;
    let job = run_to_end(&env, json!({"url": endpoint.url})).await;

    assert_eq!(
        (job.state, job.attempts),
        (JobState::Succeeded, 2),
        "{job:?}"
    );
    let seen = endpoint.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    env.cleanup().await;
}

/// `[api]` with both tokens and the default enqueue kinds.
fn api(allow: &str) -> String {
    format!(
        "[api]\ntoken = \"{APP}\"\nadmin_token = \"{ADMIN}\"\n[http]\nallow = [{allow}]\nsecret_env = \"HTTP_TEST_SECRET\"\n"
    )
}

async fn post(server: &ApiServer, token: &str, args: Value) -> (StatusCode, Value) {
    let res = reqwest::Client::new()
        .post(server.at("/v1/jobs"))
        .bearer_auth(token)
        .json(&json!({"kind": "http", "args": args}))
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_enqueue_token_may_enqueue_http_by_default() {
    let env = TestEnv::new(&api("\"https://app.internal/hooks/\"")).await;
    let server = ApiServer::start(env.config.clone()).await;
    let (status, res) = post(
        &server,
        APP,
        json!({"url": "https://app.internal/hooks/welcome", "body": {"user": 7}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    assert_eq!(res["queue"], "http");
    server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_url_outside_allow_is_refused_at_enqueue() {
    let env = TestEnv::new(&api("\"https://app.internal/hooks/\"")).await;
    let server = ApiServer::start(env.config.clone()).await;
    for url in [
        "https://app.internal.evil.com/hooks/x",
        "https://app.internal/admin",
        "https://app.internal/hooks/../admin",
        "http://app.internal/hooks/x",
    ] {
        let (status, res) = post(&server, APP, json!({"url": url})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {res}");
        let error = res["error"].as_str().unwrap_or_default();
        assert!(error.contains("[http] allow"), "{url}: {error}");
    }
    let (status, res) = post(
        &server,
        ADMIN,
        json!({"url": "https://app.internal/hooks/a", "retry": 3}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused: {res}"
    );
    server.stop().await;

    let out = env.ferry(&[
        "enqueue",
        "http",
        "--args",
        r#"{"url": "https://app.internal.evil.com/hooks/x"}"#,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[http] allow"), "{stderr}");

    // With nothing allowed, every URL is refused, and the error names the setting.
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("allow = [\"https://app.internal/hooks/\"]", "allow = []");
    let config = ferry_config::Config::from_toml_str(&text, &ferry_config::Env::empty()).unwrap();
    let server = ApiServer::start(Arc::new(config)).await;
    let (status, res) = post(&server, APP, json!({"url": "https://app.internal/hooks/a"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    assert!(
        res["error"]
            .as_str()
            .unwrap_or_default()
            .contains("FERRY_HTTP__ALLOW"),
        "{res}"
    );
    server.stop().await;
    env.cleanup().await;
}

/// The README's code block (` ```LANG `) that follows `heading`.
fn readme_block(heading: &str, lang: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let rest = &readme[readme.find(heading).expect(heading)..];
    let fence = format!("```{lang}\n");
    let start = rest.find(&fence).expect(&fence) + fence.len();
    let end = start + rest[start..].find("```").unwrap();
    rest[start..end].to_owned()
}

/// Runs `program` with the request's timestamp, signature and body in the environment;
/// returns what it printed.
fn verdicts(program: &str, args: &[&str], seen: &Seen) -> String {
    let hex: String = seen.body.iter().map(|b| format!("{b:02x}")).collect();
    let out = std::process::Command::new(program)
        .args(args)
        .env("FERRY_HTTP_SECRET", SECRET)
        .env("TS", header(seen, "x-ferry-timestamp"))
        .env("SIG", header(seen, "x-ferry-signature"))
        .env("BODY_HEX", hex)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn the_readme_snippets_accept_a_real_request_and_refuse_a_tampered_body() {
    let endpoint = Endpoint::start(&[]).await;
    let env = install(&endpoint, "100ms").await;
    let job = run_to_end(
        &env,
        json!({"url": endpoint.url, "body": {"user_id": 42, "name": "Zoë"}}),
    )
    .await;
    assert_eq!(job.state, JobState::Succeeded);
    let seen = endpoint.seen().remove(0);

    let python = format!(
        "{}\nimport os\nheaders = {{'x-ferry-timestamp': os.environ['TS'], 'x-ferry-signature': os.environ['SIG']}}\nbody = bytes.fromhex(os.environ['BODY_HEX'])\nprint(verify_ferry(headers, body), verify_ferry(headers, body + b' '))\n",
        readme_block("In **Python**", "python")
    );
    assert_eq!(verdicts("python3", &["-c", &python], &seen), "True False");

    let node = format!(
        "{}\nconst h = {{'x-ferry-timestamp': process.env.TS, 'x-ferry-signature': process.env.SIG}};\nfunction verdict(body) {{\n  let out = 'next';\n  const res = {{ status: (c) => {{ out = String(c); return {{ end() {{}} }}; }} }};\n  verifyFerry({{ get: (n) => h[n], body }}, res, () => {{}});\n  return out;\n}}\nconst body = Buffer.from(process.env.BODY_HEX, 'hex');\nconsole.log(verdict(body), verdict(Buffer.concat([body, Buffer.from(' ')])));\n",
        readme_block("Verifying a request in **Node**", "js")
    );
    assert_eq!(verdicts("node", &["-e", &node], &seen), "next 401");
    env.cleanup().await;
}

#[tokio::test]
async fn without_a_secret_jobs_die_naming_the_variable_unless_unsigned_is_chosen() {
    let endpoint = Endpoint::start(&[]).await;
    let allow = format!("[http]\nallow = [\"{}\"]\n", endpoint.url);
    let env = TestEnv::new(&allow).await;
    let job = run_to_end(&env, json!({"url": endpoint.url})).await;
    assert_eq!((job.state, job.attempts), (JobState::Dead, 1), "{job:?}");
    let error = job.last_error.unwrap_or_default();
    assert!(
        error.contains("FERRY_HTTP_SECRET") && error.contains("unsigned"),
        "{error}"
    );
    assert!(endpoint.seen().is_empty(), "nothing is sent unsigned");
    env.cleanup().await;

    let env = TestEnv::new(&format!("{allow}unsigned = true\n")).await;
    let job = run_to_end(&env, json!({"url": endpoint.url})).await;
    assert_eq!(job.state, JobState::Succeeded);
    let seen = endpoint.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("x-ferry-signature").is_none());
    assert_eq!(header(&seen[0], "x-ferry-job-id"), job.id.to_string());
    env.cleanup().await;
}
