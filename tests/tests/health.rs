//! `/readyz` probes every configured dependency: a real `s3s-fs` store answering, then
//! stopped, then frozen (no answer at all), and a real SMTP sink.

use std::time::{Duration, Instant};

use ferry_tests::{
    TestEnv,
    api::{API_CONFIG, ApiServer},
    s3::{S3Server, SECRET_KEY},
    smtp::SmtpSink,
};
use serde_json::Value;

async fn readyz(api: &ApiServer) -> (u16, Value) {
    let res = reqwest::get(api.at("/readyz")).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// A 503, answered well within an orchestrator's probe timeout.
async fn not_ready(api: &ApiServer) -> Value {
    let started = Instant::now();
    let (status, body) = readyz(api).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(status, 503, "{body}");
    body
}

#[tokio::test]
async fn readyz_names_a_store_that_is_down_and_is_ok_when_all_answer() {
    let mut s3 = S3Server::start("ready-bucket");
    let sink = SmtpSink::start(&[]);
    let env = TestEnv::new(&format!(
        "{API_CONFIG}{}[notify]\nsmtp_url = \"{}\"\n",
        s3.store_toml("uploads", "ready-bucket", SECRET_KEY),
        sink.url()
    ))
    .await;
    let api = ApiServer::start(env.config.clone()).await;

    let (status, body) = readyz(&api).await;
    assert_eq!(status, 200, "{body}");
    for name in ["store uploads", "mongodb", "smtp"] {
        assert_eq!(body["dependencies"][name], "ok", "{name}: {body}");
    }

    s3.kill();
    let body = not_ready(&api).await;
    assert_eq!(
        body["failing"],
        serde_json::json!(["store uploads"]),
        "{body}"
    );
    assert_eq!(
        body["dependencies"]["store uploads"], "unavailable",
        "{body}"
    );
    assert_eq!(body["dependencies"]["mongodb"], "ok", "{body}");
    // The answer names the store, not the client's error (which holds the endpoint).
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");

    s3.restart();
    s3.freeze();
    let body = not_ready(&api).await;
    assert!(
        body["dependencies"]["store uploads"]
            .as_str()
            .unwrap()
            .starts_with("no answer within"),
        "{body}"
    );
    s3.kill();
    s3.restart();

    let (status, body) = readyz(&api).await;
    assert_eq!(status, 200, "{body}");
    api.stop().await;
    env.cleanup().await;
}
