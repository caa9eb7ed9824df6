//! `[stores.NAME]`: named object stores (S3-compatible buckets or local directories), the
//! sources and targets of backups and file migrations.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Env, Secret};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `s3://bucket[/prefix]` or `file:///path`.
    pub url: String,
    /// S3 API endpoint (`S3_ENDPOINT`); empty means AWS itself.
    pub endpoint: Option<String>,
    /// `S3_REGION`, default `us-east-1`.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`
    pub secret_access_key: Option<Secret>,
    /// How URLs of this store's objects look where the application stores them.
    pub public_url: Option<String>,
    /// How long one request may take (default 300 s): a listing page, a part, a small
    /// object. A download has no such limit (it fails after two minutes without progress),
    /// and a single PUT gets this plus a second per MiB.
    #[serde(default, with = "crate::duration::option")]
    pub request_timeout: Option<std::time::Duration>,
}

/// Where a store lives, resolved from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    S3 { bucket: String, prefix: String },
    File { root: PathBuf },
}

impl StoreConfig {
    /// A store given by URL alone (`backup.target = "s3://..."`), credentials from the
    /// environment.
    pub fn from_url(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            ..Self::default()
        }
    }

    /// Fills unset S3 settings from the environment; returns the fields filled and from which
    /// variable.
    pub(crate) fn apply_env(&mut self, env: &Env) -> Vec<(&'static str, &'static str)> {
        let mut filled = Vec::new();
        if !self.url.starts_with("s3://") {
            return filled;
        }
        let mut fill = |slot: &mut Option<String>, field, var| {
            if slot.is_none() {
                *slot = env.get(var);
                if slot.is_some() {
                    filled.push((field, var));
                }
            }
        };
        fill(&mut self.endpoint, "endpoint", "S3_ENDPOINT");
        fill(&mut self.region, "region", "S3_REGION");
        fill(
            &mut self.access_key_id,
            "access_key_id",
            "AWS_ACCESS_KEY_ID",
        );
        if self.secret_access_key.is_none() {
            self.secret_access_key = env.get("AWS_SECRET_ACCESS_KEY").map(Secret::new);
            if self.secret_access_key.is_some() {
                filled.push(("secret_access_key", "AWS_SECRET_ACCESS_KEY"));
            }
        }
        filled
    }

    /// Parses `url`; `key` names the config key in errors.
    pub fn location(&self, key: &str) -> Result<Location, ConfigError> {
        let fix = "use s3://bucket/prefix or file:///absolute/path";
        if let Some(rest) = self.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid {
                return Err(ConfigError::new(
                    key,
                    format!("{bucket:?} is not an S3 bucket name"),
                    "use 3-63 lower-case letters, digits, dots and hyphens",
                ));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if let Some(path) = self.url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(ConfigError::new(
                    key,
                    format!("{:?} is not an absolute path", self.url),
                    fix,
                ));
            }
            return Ok(Location::File {
                root: PathBuf::from(path),
            });
        }
        Err(ConfigError::new(
            key,
            format!("{:?} is neither an s3:// nor a file:// URL", self.url),
            fix,
        ))
    }

    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let location = self.location(&format!("{key}.url"))?;
        if let Some(endpoint) = &self.endpoint {
            crate::check_url(
                &format!("{key}.endpoint (S3_ENDPOINT)"),
                endpoint,
                &["http", "https"],
                "http://127.0.0.1:9000",
            )?;
        }
        if matches!(location, Location::S3 { .. })
            && self.access_key_id.is_some() != self.secret_access_key.is_some()
        {
            return Err(ConfigError::new(
                key,
                "has only one of access_key_id and secret_access_key",
                "give both (or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            ));
        }
        Ok(())
    }
}
