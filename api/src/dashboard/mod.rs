//! The admin dashboard: server-rendered HTML (maud) with a little JavaScript that refreshes
//! each panel from the server and sends the buttons' requests to the JSON API. No build step.
//!
//! Signing in with the admin token opens a server-side session ([`crate::session`]): an
//! HttpOnly, SameSite=Strict, Secure cookie holding a random id. Sign-ins are limited per
//! client address and audited, failures included; every cookie-authenticated request that
//! changes something must come from this server's own origin.

mod panels;

use std::net::SocketAddr;

use axum::{
    Form, Router,
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::{
    ApiError, AppState,
    auth::token_matches,
    session::{self, SESSION_COOKIE},
};

/// Whether the request has a live session; Redis being down reads as signed out.
async fn has_session(state: &AppState, jar: &CookieJar) -> bool {
    session::valid(state, jar).await.unwrap_or(false)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard", get(page))
        .route("/dashboard/login", post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/panel/{name}", get(panel))
        .route("/dashboard/app.js", get(script))
        .route("/dashboard/app.css", get(style))
}

const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/dashboard/app.css";
            }
            body { (body) }
        }
    }
}

fn login_page(problem: Option<&str>) -> Markup {
    layout(
        "ferry: sign in",
        html! {
            main.login {
                h1 { "ferry" }
                form method="post" action="/dashboard/login" {
                    label for="token" { "Admin token (FERRY_ADMIN_TOKEN)" }
                    input #token type="password" name="token" autocomplete="current-password" required;
                    button #login type="submit" { "Sign in" }
                }
                @if let Some(p) = problem { p.error { (p) } }
            }
        },
    )
}

async fn page(State(state): State<AppState>, jar: CookieJar) -> Response {
    if !has_session(&state, &jar).await {
        return Html(login_page(None).into_string()).into_response();
    }
    let mut sections = Vec::new();
    for name in panels::NAMES {
        sections.push((name, panels::render(&state, name).await));
    }
    let body = html! {
        header {
            h1 { "ferry" }
            span #flash role="status" {}
            form method="post" action="/dashboard/logout" { button type="submit" { "Sign out" } }
        }
        @for (name, markup) in &sections {
            section.panel id=(format!("panel-{name}")) data-panel=(name) { (markup) }
        }
        script src="/dashboard/app.js" {}
    };
    Html(layout("ferry dashboard", body).into_string()).into_response()
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<Login>,
) -> Response {
    let Some(admin) = state.config().api.admin_token.as_ref() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let ip = peer.ip();
    // A sign-in form posted from another site would sign the browser in to the attacker's
    // idea of this server: only the login page's own origin may post it.
    if let Err(e) = session::check_origin(&headers) {
        state.refused(ip, "dashboard.login_cross_site", "/dashboard/login");
        return e.into_response();
    }
    if let Err(e) = state.throttle().check(ip) {
        return e.into_response();
    }
    if !token_matches(Some(admin), &form.token) {
        state.refused(ip, "dashboard.login_failed", "/dashboard/login");
        let page = login_page(Some("That is not the admin token."));
        return (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response();
    }
    let opened = async {
        let cookie = session::open(&state, admin).await?;
        state
            .record()
            .audit(
                "dashboard:admin",
                "dashboard.login",
                None,
                serde_json::json!({ "client": ip.to_string() }),
            )
            .await?;
        Ok::<_, ApiError>(cookie)
    };
    match opened.await {
        Ok(cookie) => (jar.add(cookie), Redirect::to("/dashboard")).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Ends the session on the server, not only in this browser.
async fn logout(State(state): State<AppState>, headers: HeaderMap, jar: CookieJar) -> Response {
    if let Err(e) = session::check_origin(&headers) {
        return e.into_response();
    }
    if has_session(&state, &jar).await {
        if let Err(e) = session::close(&state, &jar).await {
            return e.into_response();
        }
        state.audit_later(
            "dashboard:admin",
            "dashboard.logout",
            None,
            serde_json::json!({}),
        );
    }
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    (jar, Redirect::to("/dashboard")).into_response()
}

async fn panel(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(name): Path<String>,
) -> Response {
    if !has_session(&state, &jar).await {
        return (StatusCode::UNAUTHORIZED, "sign in again").into_response();
    }
    match panels::NAMES.iter().find(|n| **n == name) {
        Some(name) => Html(panels::render(&state, name).await.into_string()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such panel").into_response(),
    }
}
