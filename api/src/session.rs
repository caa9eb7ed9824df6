//! Dashboard sessions: a random id in an HttpOnly cookie, the session itself in Redis with an
//! idle and an absolute lifetime. Signing out deletes it; changing the admin token ends every
//! session (each remembers a fingerprint of the token it was opened with).
//!
//! Requests that change something and are authenticated by the cookie must come from the
//! dashboard's own origin (`Origin`, else `Referer`), so another site cannot act with an
//! admin's session even in a browser that ignores SameSite.

use axum::http::{HeaderMap, StatusCode, header};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use chrono::Utc;
use ferry_config::Secret;
use redis::AsyncCommands;

use crate::{ApiError, AppState, auth::digest};

pub const SESSION_COOKIE: &str = "ferry_session";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Redis holds a digest of the id, so a read of Redis does not hand out sessions.
fn key(state: &AppState, id: &str) -> String {
    format!(
        "{}:api:session:{}",
        state.config().redis.prefix,
        hex(&digest(id.as_bytes()))
    )
}

/// Which admin token a session was opened with.
fn fingerprint(admin: &Secret) -> String {
    let mut input = b"ferry dashboard session\0".to_vec();
    input.extend_from_slice(admin.expose().as_bytes());
    hex(&digest(&input)[..16])
}

fn unreachable(e: redis::RedisError) -> ApiError {
    ApiError::from(ferry_queue::QueueError::Unreachable(e.to_string()))
}

/// Opens a session for the signed-in admin and returns its cookie.
pub async fn open(state: &AppState, admin: &Secret) -> Result<Cookie<'static>, ApiError> {
    let id = hex(&rand::random::<[u8; 32]>());
    let api = &state.config().api;
    let value = format!("{}|{}", Utc::now().timestamp(), fingerprint(admin));
    let _: () = state
        .redis()
        .set_ex(key(state, &id), value, api.session_idle.as_secs().max(1))
        .await
        .map_err(unreachable)?;
    Ok(Cookie::build((SESSION_COOKIE, id))
        .http_only(true)
        .secure(!api.insecure_cookies)
        .same_site(SameSite::Strict)
        .path("/")
        .build())
}

/// Whether the request carries a live session; each use restarts its idle time.
pub async fn valid(state: &AppState, jar: &CookieJar) -> Result<bool, ApiError> {
    let (Some(cookie), Some(admin)) = (
        jar.get(SESSION_COOKIE),
        state.config().api.admin_token.as_ref(),
    ) else {
        return Ok(false);
    };
    let key = key(state, cookie.value());
    let mut redis = state.redis();
    let Some(value): Option<String> = redis.get(&key).await.map_err(unreachable)? else {
        return Ok(false);
    };
    let api = &state.config().api;
    let live = value.split_once('|').is_some_and(|(opened, fp)| {
        let age = Utc::now().timestamp() - opened.parse::<i64>().unwrap_or(0);
        fp == fingerprint(admin) && age >= 0 && (age as u64) < api.session_max.as_secs()
    });
    if live {
        let _: () = redis
            .expire(&key, api.session_idle.as_secs().max(1) as i64)
            .await
            .map_err(unreachable)?;
    } else {
        let _: () = redis.del(&key).await.map_err(unreachable)?;
    }
    Ok(live)
}

/// Ends the request's session, if it has one.
pub async fn close(state: &AppState, jar: &CookieJar) -> Result<(), ApiError> {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        let _: () = state
            .redis()
            .del(key(state, cookie.value()))
            .await
            .map_err(unreachable)?;
    }
    Ok(())
}

/// The scheme-less `host[:port]` of an `Origin` or `Referer` value.
fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// Refuses a request whose `Origin` (or, without one, `Referer`) is not this server's
/// `Host`: a form or script on another site posting with the admin's cookie.
pub fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST);
    let from = text(header::ORIGIN)
        .filter(|o| *o != "null")
        .or_else(|| text(header::REFERER));
    match (host, from.and_then(authority)) {
        (Some(host), Some(from)) if host.eq_ignore_ascii_case(from) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-site request refused: a dashboard request that changes something must come from the dashboard's own page (Origin or Referer of this server); an API client sends `Authorization: Bearer TOKEN` instead of the cookie",
        )),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::check_origin;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_servers_own_origin_passes() {
        let host = (header::HOST, "127.0.0.1:8080");
        assert!(
            check_origin(&headers(&[
                host.clone(),
                (header::ORIGIN, "http://127.0.0.1:8080")
            ]))
            .is_ok()
        );
        assert!(
            check_origin(&headers(&[
                host.clone(),
                (header::REFERER, "https://127.0.0.1:8080/dashboard")
            ]))
            .is_ok()
        );
        assert!(
            check_origin(&headers(&[
                host.clone(),
                (header::ORIGIN, "https://evil.example")
            ]))
            .is_err()
        );
        assert!(check_origin(&headers(&[host.clone(), (header::ORIGIN, "null")])).is_err());
        assert!(check_origin(&headers(&[host])).is_err());
    }
}
