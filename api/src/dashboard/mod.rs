//! The admin dashboard: server-rendered HTML (maud) with a little JavaScript that refreshes
//! each panel from the server and sends the buttons' requests to the JSON API. No build step.
//!
//! Signing in with the admin token sets an HttpOnly, SameSite=Strict cookie holding a digest
//! of the token. The API's write routes take JSON bodies or none, and the cookie is never
//! sent by other sites, so pages elsewhere cannot act with an admin's session.

mod panels;

use axum::{
    Form, Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::{
    AppState,
    auth::{SESSION_COOKIE, has_session, session_cookie, token_matches},
};

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
    if !has_session(&state, &jar) {
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

async fn login(State(state): State<AppState>, jar: CookieJar, Form(form): Form<Login>) -> Response {
    let Some(admin) = state.config().api.admin_token.as_ref() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    if !token_matches(Some(admin), &form.token) {
        let page = login_page(Some("That is not the admin token."));
        return (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response();
    }
    if let Err(e) = state
        .record()
        .audit(
            "dashboard:admin",
            "dashboard.login",
            None,
            serde_json::json!({}),
        )
        .await
    {
        return crate::ApiError::from(e).into_response();
    }
    (jar.add(session_cookie(admin)), Redirect::to("/dashboard")).into_response()
}

async fn logout(jar: CookieJar) -> Response {
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    (jar, Redirect::to("/dashboard")).into_response()
}

async fn panel(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(name): Path<String>,
) -> Response {
    if !has_session(&state, &jar) {
        return (StatusCode::UNAUTHORIZED, "sign in again").into_response();
    }
    match panels::NAMES.iter().find(|n| **n == name) {
        Some(name) => Html(panels::render(&state, name).await.into_string()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such panel").into_response(),
    }
}
