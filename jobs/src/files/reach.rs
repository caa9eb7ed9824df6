//! Reachability: every rewritten URL must name an object the destination holds, and, when
//! asked (`check_http`), answer a plain HTTP request the way a browser would fetch it.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use percent_encoding::percent_decode_str;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Side, rewrite};
use crate::JobError;

/// How many unreachable URLs a report names.
const SAMPLE: usize = 20;

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub checked: u64,
    pub unreachable: u64,
    /// Up to 20 of them, with the column they are in and why.
    pub sample: Vec<String>,
}

/// The store key a URL under `public_url` names; None when it is not under it.
pub fn key_of(url: &str, public_url: &str) -> Option<String> {
    let rest = url.strip_prefix(public_url)?;
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    Some(percent_decode_str(rest).decode_utf8_lossy().into_owned())
}

/// Checks every URL `run_id` rewrote against the destination, `transfers` at a time; with
/// `http`, each is also fetched (HEAD) and must answer 2xx.
pub async fn check(
    pool: &PgPool,
    run_id: Uuid,
    to: &Side,
    transfers: usize,
    http: bool,
) -> Result<Report, JobError> {
    let public_url = to.public_url.as_deref().unwrap_or_default();
    let client = http
        .then(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| JobError::permanent_from("cannot build an HTTP client", e))
        })
        .transpose()?;
    let client = &client;
    let mut report = Report::default();
    let mut after: Option<(String, Value)> = None;
    loop {
        let page = rewrite::rewritten(pool, run_id, after.as_ref(), 1000).await?;
        let Some((target, key, _)) = page.last() else {
            return Ok(report);
        };
        after = Some((target.clone(), key.clone()));
        let results: Vec<(String, Option<String>)> = stream::iter(page)
            .map(|(target, _, url)| async move {
                let problem = match key_of(&url, public_url) {
                    // The side's public URL ends with its prefix; the rest is relative to it.
                    Some(rel) => match to.store.head(&to.key(&rel)).await? {
                        None => Some("not in the store".to_owned()),
                        Some(_) => match client {
                            Some(c) => answers(c, &url).await,
                            None => None,
                        },
                    },
                    None => Some(format!("not under {public_url}")),
                };
                Ok::<_, JobError>((format!("{target}: {url}"), problem))
            })
            .buffer_unordered(transfers)
            .try_collect()
            .await?;
        for (what, problem) in results {
            report.checked += 1;
            if let Some(problem) = problem {
                report.unreachable += 1;
                if report.sample.len() < SAMPLE {
                    report.sample.push(format!("{what} ({problem})"));
                }
            }
        }
    }
}

/// Why the URL does not answer, or None when it does (2xx).
async fn answers(client: &reqwest::Client, url: &str) -> Option<String> {
    match client.head(url).send().await {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => Some(format!("HTTP {}", r.status())),
        Err(e) => Some(format!("no answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_urls_under_the_public_url() {
        let base = "https://files.example.com/uploads/avatars";
        assert_eq!(
            key_of(&format!("{base}/a%20b.png?v=2"), base).as_deref(),
            Some("a b.png")
        );
        assert_eq!(key_of("https://elsewhere/x.png", base), None);
    }
}
