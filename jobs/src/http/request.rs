//! A webhook job's arguments turned into the request to send, checked the same way when the
//! job is enqueued and each time it runs (the allow list may have shrunk in between).

use std::collections::BTreeMap;

use bytes::Bytes;
use reqwest::{
    Method,
    header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

/// Arguments of an `http` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpArgs {
    /// Must lie under a prefix of `[http] allow`.
    pub url: String,
    #[serde(default = "post")]
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A string is sent as it is (`text/plain`), anything else as JSON (`application/json`),
    /// unless `headers` sets `content-type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

fn post() -> String {
    "POST".into()
}

/// Methods a webhook may use.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Headers ferry sets itself: a job may not forge its signature or frame its own request.
const RESERVED: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// Why a job's arguments cannot become a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error(transparent)]
    Url(#[from] ferry_config::Refused),
    #[error("method {0:?} is not one of {methods}", methods = METHODS.join(", "))]
    Method(String),
    #[error("header {name:?} is not a valid HTTP header: {reason}")]
    Header { name: String, reason: String },
    #[error("header {0:?} is set by ferry and may not be given")]
    Reserved(String),
}

/// The request an `http` job sends, less what each attempt adds (signature, attempt).
#[derive(Debug, Clone)]
pub struct Plan {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    /// The exact bytes sent, and signed.
    pub body: Bytes,
}

impl Plan {
    pub fn new(args: &HttpArgs, config: &ferry_config::Http) -> Result<Self, Invalid> {
        let url = config.check_url(&args.url)?;
        let upper = args.method.to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            return Err(Invalid::Method(args.method.clone()));
        }
        let method = Method::from_bytes(upper.as_bytes())
            .map_err(|_| Invalid::Method(args.method.clone()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &args.headers {
            let invalid = |reason: String| Invalid::Header {
                name: name.clone(),
                reason,
            };
            let header =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
            if header.as_str().starts_with("x-ferry-") || RESERVED.contains(&header.as_str()) {
                return Err(Invalid::Reserved(name.clone()));
            }
            let value = HeaderValue::from_str(value).map_err(|e| invalid(e.to_string()))?;
            headers.append(header, value);
        }
        let (body, content_type) = match &args.body {
            None => (Bytes::new(), None),
            Some(Value::String(text)) => {
                (Bytes::from(text.clone()), Some("text/plain; charset=utf-8"))
            }
            Some(json) => (Bytes::from(json.to_string()), Some("application/json")),
        };
        if let Some(content_type) = content_type
            && !headers.contains_key(CONTENT_TYPE)
        {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        Ok(Self {
            method,
            url,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn plan(args: Value) -> Result<Plan, Invalid> {
        let config = ferry_config::Http {
            allow: vec!["https://app.internal/hooks/".into()],
            ..Default::default()
        };
        Plan::new(&serde_json::from_value(args).unwrap(), &config)
    }

    #[test]
    fn bodies_are_sent_as_given_with_a_fitting_content_type() {
        let p = plan(json!({"url": "https://app.internal/hooks/a", "body": {"b": 1}})).unwrap();
        assert_eq!(
            (p.method.as_str(), &p.body[..]),
            ("POST", &br#"{"b":1}"#[..])
        );
        assert_eq!(p.headers[CONTENT_TYPE], "application/json");
        let p = plan(json!({"url": "https://app.internal/hooks/a", "method": "put", "body": "a=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}})).unwrap();
        assert_eq!((p.method.as_str(), &p.body[..]), ("PUT", &b"a=1"[..]));
        assert_eq!(p.headers[CONTENT_TYPE], "application/x-www-form-urlencoded");
        let p = plan(json!({"url": "https://app.internal/hooks/a", "method": "GET"})).unwrap();
        assert!(p.body.is_empty() && p.headers.is_empty());
    }

    #[test]
    fn forged_or_broken_headers_and_odd_methods_are_refused() {
        let url = "https://app.internal/hooks/a";
        for (args, want) in [
            (
                json!({"url": url, "headers": {"X-Ferry-Signature": "sha256=00"}}),
                "set by ferry",
            ),
            (
                json!({"url": url, "headers": {"Host": "evil.com"}}),
                "set by ferry",
            ),
            (
                json!({"url": url, "headers": {"bad name": "x"}}),
                "not a valid HTTP header",
            ),
            (
                json!({"url": url, "headers": {"a": "line\nbreak"}}),
                "not a valid HTTP header",
            ),
            (json!({"url": url, "method": "CONNECT"}), "not one of"),
            (json!({"url": "https://elsewhere/"}), "outside [http] allow"),
        ] {
            let e = plan(args.clone()).unwrap_err().to_string();
            assert!(e.contains(want), "{args}: {e}");
        }
    }
}
