//! Bearer tokens with two scopes, and the dashboard's session cookie.
//!
//! Tokens are compared by their SHA-256 digests in constant time, so neither the content nor
//! the length of a token leaks through timing. Tokens are never logged: nothing here logs,
//! and error messages never repeat what was sent.

use axum::{
    extract::FromRequestParts,
    http::{StatusCode, header::AUTHORIZATION, request::Parts},
};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use ferry_config::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

/// The dashboard's cookie: a digest of the admin token, so the cookie never holds the token
/// itself and changing the token ends every session.
pub const SESSION_COOKIE: &str = "ferry_session";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `FERRY_API_TOKEN`: enqueue, and read the jobs it enqueued.
    Enqueue,
    /// `FERRY_ADMIN_TOKEN`: everything.
    Admin,
}

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub scope: Scope,
    /// Signed in to the dashboard rather than sending a bearer token.
    pub dashboard: bool,
}

impl Caller {
    /// The audit log's `actor`.
    pub fn actor(&self) -> &'static str {
        match (self.scope, self.dashboard) {
            (Scope::Admin, true) => "dashboard:admin",
            (Scope::Admin, false) => "api:admin",
            (Scope::Enqueue, _) => "api:enqueue",
        }
    }
}

fn digest(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

/// Whether `given` is the configured token (an unset token matches nothing).
pub fn token_matches(configured: Option<&Secret>, given: &str) -> bool {
    configured
        .is_some_and(|t| bool::from(digest(t.expose().as_bytes()).ct_eq(&digest(given.as_bytes()))))
}

/// The session cookie's value for `admin_token`.
pub fn session_value(admin_token: &Secret) -> String {
    let mut input = b"ferry dashboard session\0".to_vec();
    input.extend_from_slice(admin_token.expose().as_bytes());
    digest(&input).iter().map(|b| format!("{b:02x}")).collect()
}

/// The session cookie for a signed-in admin: HttpOnly (scripts cannot read it), SameSite
/// Strict (other sites cannot send it), scoped to the whole server.
pub fn session_cookie(admin_token: &Secret) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, session_value(admin_token)))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build()
}

/// Whether the request carries a valid dashboard session.
pub fn has_session(state: &AppState, jar: &CookieJar) -> bool {
    match (
        state.config().api.admin_token.as_ref(),
        jar.get(SESSION_COOKIE),
    ) {
        (Some(token), Some(cookie)) => bool::from(
            session_value(token)
                .as_bytes()
                .ct_eq(cookie.value().as_bytes()),
        ),
        _ => false,
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let api = &state.config().api;
        if let Some(header) = parts.headers.get(AUTHORIZATION) {
            let token = header
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
            return if token_matches(api.admin_token.as_ref(), token) {
                Ok(Self {
                    scope: Scope::Admin,
                    dashboard: false,
                })
            } else if token_matches(api.token.as_ref(), token) {
                Ok(Self {
                    scope: Scope::Enqueue,
                    dashboard: false,
                })
            } else {
                Err(unauthorized(
                    "the bearer token is not valid; use FERRY_API_TOKEN (enqueue) or FERRY_ADMIN_TOKEN (admin)",
                ))
            };
        }
        let jar = CookieJar::from_headers(&parts.headers);
        if has_session(state, &jar) {
            return Ok(Self {
                scope: Scope::Admin,
                dashboard: true,
            });
        }
        Err(unauthorized(
            "no token: send `Authorization: Bearer TOKEN` with FERRY_API_TOKEN (enqueue) or FERRY_ADMIN_TOKEN (admin)",
        ))
    }
}

/// A caller with the admin scope; the enqueue scope gets 403.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.scope != Scope::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this route needs the admin token (FERRY_ADMIN_TOKEN); the enqueue token may only enqueue and read the jobs it enqueued",
            ));
        }
        Ok(Self(caller))
    }
}
