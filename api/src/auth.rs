//! Who is calling: bearer tokens (the admin token, the enqueue token, named tokens) and the
//! dashboard's session cookie, each with the kinds it may enqueue.
//!
//! Tokens are compared by their SHA-256 digests in constant time, so neither the content nor
//! the length of a token leaks through timing. Tokens are never logged: nothing here logs,
//! and error messages never repeat what was sent. Failures are counted per client address
//! ([`crate::throttle`]) and audited.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{Method, StatusCode, header::AUTHORIZATION, request::Parts},
};
use axum_extra::extract::cookie::CookieJar;
use ferry_config::{Api, Secret};
use ferry_jobs::enqueue::Origin;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState, session};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// An enqueue token: enqueue its kinds, and read the jobs it enqueued.
    Enqueue,
    /// `FERRY_ADMIN_TOKEN`: everything.
    Admin,
}

/// A configured token: its digest, who it is and what it may enqueue.
#[derive(Debug)]
struct Known {
    digest: [u8; 32],
    scope: Scope,
    origin: Origin,
    /// `None`: every kind (the admin token).
    kinds: Option<Arc<[String]>>,
}

/// Every configured token, digested once at start.
#[derive(Debug)]
pub struct Tokens(Vec<Known>);

impl Tokens {
    pub fn new(api: &Api) -> Self {
        let mut known = Vec::new();
        if let Some(t) = &api.admin_token {
            known.push(Known {
                digest: digest(t.expose().as_bytes()),
                scope: Scope::Admin,
                origin: Origin::Admin,
                kinds: None,
            });
        }
        if let Some(t) = &api.token {
            known.push(Known {
                digest: digest(t.expose().as_bytes()),
                scope: Scope::Enqueue,
                origin: Origin::Token("api".into()),
                kinds: Some(api.enqueue_kinds.clone().into()),
            });
        }
        for named in &api.tokens {
            if let Some(t) = &named.secret {
                known.push(Known {
                    digest: digest(t.expose().as_bytes()),
                    scope: Scope::Enqueue,
                    origin: Origin::Token(named.name.clone()),
                    kinds: Some(named.kinds.clone().into()),
                });
            }
        }
        Self(known)
    }

    /// The caller `given` authenticates, if any. Every known digest is compared, so the time
    /// taken does not depend on which one matched.
    fn find(&self, given: &str) -> Option<Caller> {
        let given = digest(given.as_bytes());
        let mut found = None;
        for k in &self.0 {
            if bool::from(k.digest.ct_eq(&given)) {
                found = Some(Caller {
                    scope: k.scope,
                    origin: k.origin.clone(),
                    kinds: k.kinds.clone(),
                    dashboard: false,
                });
            }
        }
        found
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    pub scope: Scope,
    /// The namespace of its idempotency keys.
    pub origin: Origin,
    kinds: Option<Arc<[String]>>,
    /// Signed in to the dashboard rather than sending a bearer token.
    pub dashboard: bool,
}

impl Caller {
    /// The admin signed in to the dashboard.
    pub fn dashboard_admin() -> Self {
        Self {
            scope: Scope::Admin,
            origin: Origin::Admin,
            kinds: None,
            dashboard: true,
        }
    }

    /// The audit log's `actor`.
    pub fn actor(&self) -> String {
        match (&self.origin, self.dashboard) {
            (Origin::Admin, true) => "dashboard:admin".into(),
            (Origin::Admin, false) => "api:admin".into(),
            (Origin::Token(name), _) if name == "api" => "api:enqueue".into(),
            (origin, _) => origin.to_string(),
        }
    }

    /// Whether this caller may enqueue `kind`.
    pub fn may_enqueue(&self, kind: &str) -> bool {
        self.kinds
            .as_ref()
            .is_none_or(|kinds| kinds.iter().any(|k| k == kind))
    }

    /// The setting that lists this caller's kinds, for a refusal's message.
    pub fn kinds_setting(&self) -> String {
        match &self.origin {
            Origin::Token(name) if name != "api" => format!("api.tokens[{name}].kinds"),
            _ => "api.enqueue_kinds".into(),
        }
    }

    /// The kinds this caller may enqueue, for a refusal's message (`None`: all).
    pub fn kinds(&self) -> Option<&[String]> {
        self.kinds.as_deref()
    }
}

pub(crate) fn digest(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

/// Whether `given` is the configured token (an unset token matches nothing).
pub fn token_matches(configured: Option<&Secret>, given: &str) -> bool {
    configured
        .is_some_and(|t| bool::from(digest(t.expose().as_bytes()).ct_eq(&digest(given.as_bytes()))))
}

/// The client's address: the peer of the TCP connection (a proxy in front of ferry is one
/// client; see docs/operations.md).
pub(crate) fn client_ip(parts: &Parts) -> std::net::IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(header) = parts.headers.get(AUTHORIZATION) {
            let ip = client_ip(parts);
            state.throttle().check(ip)?;
            let caller = header
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .and_then(|token| state.tokens().find(token));
            return match caller {
                Some(caller) => Ok(caller),
                None => {
                    state.refused(ip, "auth.bearer_refused", parts.uri.path());
                    Err(unauthorized(
                        "the bearer token is not valid; send `Authorization: Bearer TOKEN` with FERRY_API_TOKEN (enqueue), a token of [[api.tokens]], or FERRY_ADMIN_TOKEN (admin)",
                    ))
                }
            };
        }
        let jar = CookieJar::from_headers(&parts.headers);
        if session::valid(state, &jar).await? {
            if parts.method != Method::GET && parts.method != Method::HEAD {
                session::check_origin(&parts.headers).inspect_err(|_| {
                    state.refused(
                        client_ip(parts),
                        "auth.cross_site_refused",
                        parts.uri.path(),
                    );
                })?;
            }
            return Ok(Self::dashboard_admin());
        }
        Err(unauthorized(
            "no token: send `Authorization: Bearer TOKEN` with FERRY_API_TOKEN (enqueue) or FERRY_ADMIN_TOKEN (admin)",
        ))
    }
}

/// A caller with the admin scope; the enqueue scope gets 403.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.scope != Scope::Admin {
            state.audit_later(
                &caller.actor(),
                "auth.forbidden",
                None,
                serde_json::json!({ "route": parts.uri.path() }),
            );
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this route needs the admin token (FERRY_ADMIN_TOKEN); an enqueue token may only enqueue its kinds and read the jobs it enqueued",
            ));
        }
        Ok(Self(caller))
    }
}
