//! Dashboard sessions: random, server-side, revoked at sign-out and by a new admin token;
//! cross-site posts refused; failed sign-ins limited and audited.

use std::sync::Arc;

use ferry_config::{Config, Env};
use ferry_tests::{TestEnv, api::ApiServer};
use reqwest::{Client, StatusCode, redirect::Policy};

use super::{ADMIN, api_config, audited};

fn client() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

/// Signs in; returns the `Set-Cookie` header.
async fn sign_in(server: &ApiServer, token: &str) -> (StatusCode, String) {
    let res = client()
        .post(server.at("/dashboard/login"))
        .header("origin", server.url.as_str())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (res.status(), cookie)
}

fn session(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn stats_with(server: &ApiServer, cookie: &str) -> StatusCode {
    client()
        .get(server.at("/v1/stats"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn sessions_are_random_and_sign_out_revokes_them() {
    let env = TestEnv::new(&api_config("")).await;
    let server = ApiServer::start(env.config.clone()).await;
    let (status, first) = sign_in(&server, ADMIN).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        first.contains("HttpOnly") && first.contains("SameSite=Strict"),
        "{first}"
    );
    let (_, second) = sign_in(&server, ADMIN).await;
    assert_ne!(
        session(&first),
        session(&second),
        "every sign-in gets its own id"
    );
    let cookie = session(&first);
    assert_eq!(stats_with(&server, &cookie).await, StatusCode::OK);

    let out = client()
        .post(server.at("/dashboard/logout"))
        .header("cookie", &cookie)
        .header("origin", server.url.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        stats_with(&server, &cookie).await,
        StatusCode::UNAUTHORIZED,
        "the old cookie still works after sign-out"
    );
    assert_eq!(stats_with(&server, &session(&second)).await, StatusCode::OK);
    audited(&env, "dashboard.logout", 1).await;
    server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_new_admin_token_ends_every_session_and_cookies_are_secure_by_default() {
    let env = TestEnv::new(&api_config("")).await;
    let server = ApiServer::start(env.config.clone()).await;
    let (_, set) = sign_in(&server, ADMIN).await;
    let cookie = session(&set);
    assert_eq!(stats_with(&server, &cookie).await, StatusCode::OK);
    server.stop().await;

    // The same install restarted with a rotated admin token and the default cookie flags.
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace(ADMIN, "rotated-admin-token-0001")
        .replace("insecure_cookies = true\n", "");
    let rotated = Arc::new(Config::from_toml_str(&text, &Env::empty()).unwrap());
    let server = ApiServer::start(rotated).await;
    assert_eq!(stats_with(&server, &cookie).await, StatusCode::UNAUTHORIZED);
    let (status, set) = sign_in(&server, "rotated-admin-token-0001").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(set.contains("Secure"), "{set}");
    server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn cookie_posts_from_another_origin_are_refused() {
    let env = TestEnv::new(&api_config("")).await;
    let server = ApiServer::start(env.config.clone()).await;
    let (_, set) = sign_in(&server, ADMIN).await;
    let cookie = session(&set);
    let retry = |origin: Option<&'static str>| {
        let mut req = client()
            .post(server.at("/v1/jobs/retry"))
            .header("cookie", &cookie)
            .json(&serde_json::json!({"dry_run": true}));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(
        retry(Some("https://evil.example")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        retry(None).await,
        StatusCode::FORBIDDEN,
        "no Origin nor Referer"
    );
    let own = client()
        .post(server.at("/v1/jobs/retry"))
        .header("cookie", &cookie)
        .header("origin", server.url.as_str())
        .json(&serde_json::json!({"dry_run": true}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(own, StatusCode::OK);
    let forged = client()
        .post(server.at("/dashboard/login"))
        .header("origin", "https://evil.example")
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        forged,
        StatusCode::FORBIDDEN,
        "a login posted from another site"
    );
    audited(&env, "auth.cross_site_refused", 2).await;
    server.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn twenty_wrong_sign_ins_are_limited_and_audited() {
    let env = TestEnv::new(&api_config("")).await;
    let server = ApiServer::start(env.config.clone()).await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(
            sign_in(&server, &format!("wrong-token-guess-{i:04}"))
                .await
                .0,
        );
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[10..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Blocked means blocked: the right token and bearer guesses wait out the minute too.
    assert_eq!(
        sign_in(&server, ADMIN).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let bearer = client()
        .get(server.at("/v1/stats"))
        .bearer_auth("another-wrong-guess-0001")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(bearer, StatusCode::TOO_MANY_REQUESTS);

    let log = audited(&env, "dashboard.login_failed", 10).await;
    let failed = log.iter().filter(|a| a.action == "dashboard.login_failed");
    assert_eq!(failed.clone().count(), 10);
    assert!(
        failed.clone().all(|a| a.actor == "client:127.0.0.1"),
        "{log:?}"
    );
    assert!(
        !format!("{log:?}").contains("wrong-token-guess"),
        "a guess was logged"
    );
    audited(&env, "auth.client_blocked", 1).await;
    server.stop().await;
    env.cleanup().await;
}
