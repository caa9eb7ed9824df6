//! ferry's configuration: `ferry.toml` plus the conventional environment variables.
//!
//! Loaded once, validated before anything connects; every error names the key and the fix.
//!
//! ```
//! let config = ferry_config::Config::from_toml_str(
//!     "[redis]\nurl = \"redis://127.0.0.1:6379\"\n[worker]\nconcurrency = 8\n",
//!     &ferry_config::Env::empty(),
//! )
//! .unwrap();
//! assert_eq!(config.worker.concurrency, 8);
//! ```

mod duration;
mod env;
mod error;

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::Deserialize;

pub use env::Env;
pub use error::ConfigError;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub postgres: Postgres,
    #[serde(default)]
    pub redis: Redis,
    #[serde(default)]
    pub worker: Worker,
    /// Per-kind overrides of the defaults each kind declares, keyed by kind name.
    #[serde(default)]
    pub kinds: BTreeMap<String, KindOverrides>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Postgres {
    /// The application database (`DATABASE_URL`).
    pub url: Option<String>,
    /// Where schema `ferry` lives (`FERRY_DATABASE_URL`); defaults to `url`.
    pub ferry_url: Option<String>,
    /// The schema holding ferry's durable record (`FERRY_SCHEMA`).
    pub schema: String,
    pub max_connections: u32,
}

impl Default for Postgres {
    fn default() -> Self {
        Self {
            url: None,
            ferry_url: None,
            schema: "ferry".into(),
            max_connections: 8,
        }
    }
}

impl Postgres {
    /// The URL of the database holding schema `ferry`.
    pub fn record_url(&self) -> Option<&str> {
        self.ferry_url.as_deref().or(self.url.as_deref())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Redis {
    /// `REDIS_URL`
    pub url: String,
    /// Prefix of every key ferry writes (`FERRY_REDIS_PREFIX`), so several installs share a Redis.
    pub prefix: String,
}

impl Default for Redis {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "ferry".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Worker {
    /// Jobs run at once by one worker process, per queue.
    pub concurrency: usize,
    /// Most jobs fetched from Redis in one round trip.
    pub batch: usize,
    /// Queues to consume; empty means every queue a known kind uses.
    pub queues: Vec<String>,
    /// How often a worker proves it is alive and refreshes its running jobs.
    #[serde(with = "duration")]
    pub heartbeat: Duration,
    /// A running job whose worker has been silent this long is re-queued.
    #[serde(with = "duration")]
    pub reclaim_after: Duration,
    /// On SIGTERM, how long running jobs get to finish or checkpoint.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// How long finished jobs stay inspectable in Redis.
    #[serde(with = "duration")]
    pub keep_finished: Duration,
}

impl Default for Worker {
    fn default() -> Self {
        Self {
            concurrency: 64,
            batch: 256,
            queues: Vec::new(),
            heartbeat: Duration::from_secs(2),
            reclaim_after: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(30),
            keep_finished: Duration::from_secs(24 * 3600),
        }
    }
}

/// Overrides of one kind's declared defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindOverrides {
    pub max_attempts: Option<u32>,
    #[serde(default, with = "duration::option")]
    pub backoff_base: Option<Duration>,
    #[serde(default, with = "duration::option")]
    pub backoff_cap: Option<Duration>,
    #[serde(default, with = "duration::option")]
    pub timeout: Option<Duration>,
    pub concurrency: Option<usize>,
}

impl Config {
    /// Loads `path`, then applies the environment. A missing file is an error only when
    /// `required` (the user named it); otherwise the defaults apply.
    pub fn load(path: &Path, required: bool, env: &Env) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
            Err(e) => {
                return Err(ConfigError::new(
                    "--config",
                    format!("cannot read {}: {e}", path.display()),
                    "pass an existing file with --config or FERRY_CONFIG",
                ));
            }
        };
        Self::from_toml_str(&text, env)
    }

    pub fn from_toml_str(text: &str, env: &Env) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(ConfigError::from_toml)?;
        config.apply_env(env);
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, env: &Env) {
        if let Some(v) = env.get("DATABASE_URL") {
            self.postgres.url = Some(v);
        }
        if let Some(v) = env.get("FERRY_DATABASE_URL") {
            self.postgres.ferry_url = Some(v);
        }
        if let Some(v) = env.get("FERRY_SCHEMA") {
            self.postgres.schema = v;
        }
        if let Some(v) = env.get("REDIS_URL") {
            self.redis.url = v;
        }
        if let Some(v) = env.get("FERRY_REDIS_PREFIX") {
            self.redis.prefix = v;
        }
    }

    /// Checks every value that can be checked without connecting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("postgres.url (DATABASE_URL)", &self.postgres.url),
            (
                "postgres.ferry_url (FERRY_DATABASE_URL)",
                &self.postgres.ferry_url,
            ),
        ] {
            if let Some(value) = value {
                check_url(
                    key,
                    value,
                    &["postgres", "postgresql"],
                    "postgres://user@host:5432/db",
                )?;
            }
        }
        if !is_identifier(&self.postgres.schema) {
            return Err(ConfigError::new(
                "postgres.schema (FERRY_SCHEMA)",
                format!("{:?} is not a plain identifier", self.postgres.schema),
                "use lower-case letters, digits and underscores, starting with a letter",
            ));
        }
        check_url(
            "redis.url (REDIS_URL)",
            &self.redis.url,
            &["redis", "rediss"],
            "redis://host:6379",
        )?;
        let prefix = &self.redis.prefix;
        if prefix.is_empty() || prefix.contains(['{', '}', ' ']) {
            return Err(ConfigError::new(
                "redis.prefix (FERRY_REDIS_PREFIX)",
                format!("{prefix:?} is empty or holds braces or spaces"),
                "use a short name such as \"ferry\"; braces are reserved for hash tags",
            ));
        }
        positive("worker.concurrency", self.worker.concurrency)?;
        positive("worker.batch", self.worker.batch)?;
        for (key, d) in [
            ("worker.heartbeat", self.worker.heartbeat),
            ("worker.reclaim_after", self.worker.reclaim_after),
            ("worker.keep_finished", self.worker.keep_finished),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(
                    key,
                    "is zero",
                    "give a duration such as \"2s\"",
                ));
            }
        }
        if self.worker.reclaim_after < self.worker.heartbeat * 3 {
            return Err(ConfigError::new(
                "worker.reclaim_after",
                "is shorter than three heartbeats, so live workers would lose their jobs",
                "make it at least 3 x worker.heartbeat",
            ));
        }
        for queue in &self.worker.queues {
            if !is_identifier(queue) {
                return Err(ConfigError::new(
                    "worker.queues",
                    format!("{queue:?} is not a plain name"),
                    "use lower-case letters, digits and underscores",
                ));
            }
        }
        for (kind, o) in &self.kinds {
            let key = |field: &str| format!("kinds.{kind}.{field}");
            if o.max_attempts == Some(0) {
                return Err(ConfigError::new(
                    key("max_attempts"),
                    "is 0",
                    "use 1 or more",
                ));
            }
            if o.concurrency == Some(0) {
                return Err(ConfigError::new(
                    key("concurrency"),
                    "is 0",
                    "use 1 or more",
                ));
            }
            if let (Some(base), Some(cap)) = (o.backoff_base, o.backoff_cap)
                && base > cap
            {
                return Err(ConfigError::new(
                    key("backoff_base"),
                    "is larger than backoff_cap",
                    "make backoff_base at most backoff_cap",
                ));
            }
        }
        Ok(())
    }
}

fn positive(key: &str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(key, "is 0", "use 1 or more"));
    }
    Ok(())
}

fn check_url(key: &str, value: &str, schemes: &[&str], example: &str) -> Result<(), ConfigError> {
    let fix = format!("give a URL like {example}");
    let parsed = url::Url::parse(value)
        .map_err(|e| ConfigError::new(key, format!("is not a URL ({e})"), &fix))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(ConfigError::new(
            key,
            format!(
                "has scheme {:?}, expected {}",
                parsed.scheme(),
                schemes.join(" or ")
            ),
            &fix,
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) && parsed.scheme().starts_with("redis") {
        return Err(ConfigError::new(key, "has no host", &fix));
    }
    Ok(())
}

/// Whether `s` may be used as an SQL identifier or a queue name without quoting.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= 63
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, &Env::empty())
    }

    #[test]
    fn defaults_are_valid() {
        let c = load("").unwrap();
        assert_eq!(c.redis.prefix, "ferry");
        assert_eq!(c.worker.reclaim_after, Duration::from_secs(15));
    }

    #[test]
    fn env_overrides_file() {
        let env = Env::from_pairs([
            ("REDIS_URL", "redis://10.0.0.1:6380"),
            ("DATABASE_URL", "postgres://a@b/c"),
        ]);
        let c = Config::from_toml_str("[redis]\nurl = \"redis://x:1\"\n", &env).unwrap();
        assert_eq!(c.redis.url, "redis://10.0.0.1:6380");
        assert_eq!(c.postgres.record_url(), Some("postgres://a@b/c"));
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("[redis]\nurl = \"http://x\"\n").unwrap_err();
        assert!(e.to_string().contains("redis.url"), "{e}");
        let e = load("[worker]\nconcurency = 3\n").unwrap_err();
        assert!(e.to_string().contains("concurency"), "{e}");
        let e = load("[postgres]\nschema = \"Robert'); drop\"\n").unwrap_err();
        assert!(e.to_string().contains("postgres.schema"), "{e}");
        let e = load("[worker]\nheartbeat = \"10s\"\nreclaim_after = \"15s\"\n").unwrap_err();
        assert!(e.to_string().contains("reclaim_after"), "{e}");
        let e = load("[kinds.fail]\nbackoff_base = \"5s\"\nbackoff_cap = \"1s\"\n").unwrap_err();
        assert!(e.to_string().contains("kinds.fail.backoff_base"), "{e}");
    }

    #[test]
    fn sections_may_be_partial() {
        let c = load("[postgres]\nschema = \"x\"\n[worker]\nbatch = 5\n").unwrap();
        assert_eq!((c.postgres.max_connections, c.worker.concurrency), (8, 64));
    }

    #[test]
    fn durations_parse() {
        let c = load("[worker]\nshutdown_grace = \"1m 30s\"\n[kinds.sleep]\ntimeout = \"2h\"\n")
            .unwrap();
        assert_eq!(c.worker.shutdown_grace, Duration::from_secs(90));
        assert_eq!(c.kinds["sleep"].timeout, Some(Duration::from_secs(7200)));
    }
}
