//! What a webhook's answer means for the job: 2xx succeeds; 408, 429 and 5xx are tried again
//! (when the answer says, after its `Retry-After`); a redirect and every other 4xx are final.

use std::time::{Duration, SystemTime};

use reqwest::{
    Response, StatusCode,
    header::{HeaderMap, LOCATION, RETRY_AFTER},
};

use crate::{Cause, Failure, JobError};

/// How much of a failed answer's body its error keeps.
const BODY_START: usize = 200;

/// How much of a successful answer's body is read so that its connection can be reused;
/// a longer body is dropped with its connection.
const DRAIN_LIMIT: usize = 64 * 1024;

/// An answer that was not a success, as the job's error says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status} from {method} {url}{redirect}: {body:?}", redirect = redirect_note(location.as_deref()))]
pub struct Refusal {
    pub status: StatusCode,
    pub method: String,
    pub url: String,
    /// The first [`BODY_START`] bytes of the body (lossy UTF-8).
    pub body: String,
    /// Where a redirect pointed.
    pub location: Option<String>,
}

fn redirect_note(location: Option<&str>) -> String {
    match location {
        Some(to) => format!(
            " redirecting to {to:?}, which ferry does not follow since it may lie outside [http] allow; send the job to the final URL"
        ),
        None => String::new(),
    }
}

/// The job's result for `response` to `method url`.
pub async fn outcome(mut response: Response, method: &str, url: &str) -> Result<(), JobError> {
    let status = response.status();
    if status.is_success() {
        let mut read = 0;
        while read <= DRAIN_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        return Ok(());
    }
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let location = status
        .is_redirection()
        .then(|| response.headers().get(LOCATION))
        .flatten()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let refusal = Refusal {
        status,
        method: method.to_owned(),
        url: url.to_owned(),
        body: body_start(&mut response).await,
        location,
    };
    let again = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    Err(match (again, retry_after) {
        (true, Some(after)) => JobError::RetryAfter {
            after,
            cause: Cause::new(refusal),
        },
        (true, None) => JobError::Retryable(Failure::of(refusal)),
        (false, _) => JobError::Permanent(Failure::of(refusal)),
    })
}

/// The first [`BODY_START`] bytes of the body, cut at a character boundary.
async fn body_start(response: &mut Response) -> String {
    let mut start = Vec::new();
    while start.len() < BODY_START {
        match response.chunk().await {
            Ok(Some(chunk)) => start.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let mut text = String::from_utf8_lossy(&start).into_owned();
    if text.len() > BODY_START {
        let mut end = BODY_START;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The wait `Retry-After` asks for: whole seconds, or an HTTP date (past dates: none).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits to count is "a very long time"; the dispatcher caps it.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, value.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        for (value, want) in [
            ("1", Some(Duration::from_secs(1))),
            (" 120 ", Some(Duration::from_secs(120))),
            (
                "99999999999999999999999",
                Some(Duration::from_secs(u64::MAX)),
            ),
            (
                "Wed, 21 Oct 2015 07:28:00 GMT",
                Some(Duration::from_secs(10)),
            ),
            ("Wed, 21 Oct 2015 07:00:00 GMT", Some(Duration::ZERO)),
            ("-5", None),
            ("soon", None),
        ] {
            assert_eq!(retry_after(&headers(value), now), want, "{value}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn a_redirect_says_why_it_is_not_followed() {
        let r = Refusal {
            status: StatusCode::FOUND,
            method: "POST".into(),
            url: "https://app.internal/a".into(),
            body: String::new(),
            location: Some("https://elsewhere/".into()),
        };
        let text = r.to_string();
        assert!(
            text.contains("HTTP 302 Found") && text.contains("does not follow"),
            "{text}"
        );
    }
}
