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
//! assert_eq!(config.concurrency("default"), 8);
//! ```

mod alerts;
mod api;
mod backup;
mod backup_env;
mod duration;
mod effective;
mod env;
mod env_rule;
mod error;
mod files;
mod flow;
mod http;
mod import;
mod kinds;
mod notify;
mod on_change;
mod queues;
mod rate;
mod retention;
mod schedule;
mod secret;
mod smtp_parts;
mod sql;
mod store;
mod sync;
mod unix_cron;

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::{Deserialize, Serialize};

pub use alerts::{ALERT_TEMPLATE, Alerts};
pub use api::Api;
pub use backup::{Backup, Retention};
pub use effective::Setting;
pub use env::Env;
pub use error::ConfigError;
pub use files::Files;
pub use flow::{Priority, Tenants};
pub use http::{Http, Refused};
pub use import::{INDEX, Import, ImportChild, ImportCollection, RefSource, Source};
pub use kinds::KindOverrides;
pub use notify::{Columns, Delivery, Notify, SmtpUrl, Template};
pub use on_change::{OnChange, Op};
pub use queues::{Keep, QueueSettings};
pub use rate::Rate;
pub use retention::Retention as RecordRetention;
pub use schedule::{CatchUp, Schedule, Scheduler};
pub use secret::Secret;
pub use sql::{Sql, Statement};
pub use store::{Location, StoreConfig};
pub use sync::{Mongodb, Sync, SyncTable, Timestamps};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Per-queue retention, keyed by queue name.
    #[serde(default)]
    pub queues: BTreeMap<String, QueueSettings>,
    /// Rate limits of named targets (`"http:HOST" = "50/s"`, `"smtp:HOST" = "10/s"`), shared
    /// by every worker; kinds ask with `JobContext::rate_limit` before touching the target.
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
    #[serde(default)]
    pub mongodb: Mongodb,
    #[serde(default)]
    pub sync: Sync,
    /// Named object stores, keyed by name.
    #[serde(default)]
    pub stores: BTreeMap<String, StoreConfig>,
    #[serde(default)]
    pub backup: Backup,
    /// S3 settings from the environment, for stores given by URL alone.
    #[serde(skip)]
    env_store: StoreConfig,
    #[serde(default)]
    pub notify: Notify,
    #[serde(default)]
    pub sql: Sql,
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Cron schedules, `[[schedule]]` in the file.
    #[serde(default, rename = "schedule")]
    pub schedules: Vec<Schedule>,
    #[serde(default)]
    pub files: Files,
    #[serde(default)]
    pub api: Api,
    #[serde(default)]
    pub import: Import,
    #[serde(default)]
    pub alerts: Alerts,
    /// Webhook jobs (kind `http`): allowed URLs and the signing secret.
    #[serde(default)]
    pub http: Http,
    /// Fair sharing between tenants.
    #[serde(default)]
    pub tenants: Tenants,
    /// How long ferry keeps its own record.
    #[serde(default)]
    pub retention: RecordRetention,
    /// Rules routing captured row changes to jobs, `[[on_change]]` in the file.
    #[serde(default)]
    pub on_change: Vec<OnChange>,
    /// Which keys the file and the environment set, for `ferry config check`.
    #[serde(skip)]
    provenance: effective::Provenance,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Worker {
    /// Jobs run at once by one worker process, per queue. Left unset, the `default` queue runs
    /// 512 instead (short jobs, where fetching in large batches is what keeps Redis busy) and
    /// every other queue this (the kinds that wait on other systems). See
    /// [`Config::concurrency`].
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
    /// Most finished jobs of each final state one queue keeps in Redis.
    pub keep_finished_count: usize,
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
            keep_finished_count: 10_000,
        }
    }
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

    /// Reads `text`, then the environment (see `env_rule` for the rule), then validates.
    pub fn from_toml_str(text: &str, env: &Env) -> Result<Self, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(ConfigError::from_toml)?;
        let file = effective::keys(&serde_json::to_value(&table).unwrap_or_default());
        let from_env = env_rule::apply(&mut table, env)?;
        let mut config: Config = table
            .try_into()
            .map_err(|e| ConfigError::from_merged(e, &from_env))?;
        config.provenance = effective::Provenance {
            file,
            env: from_env,
        };
        config.apply_store_env(env);
        config.api.read_token_env(env);
        config.http.read_secret_env(env);
        backup_env::apply(&mut config, env)?;
        if !config.alerts.email.is_empty() {
            config
                .notify
                .templates
                .entry(ALERT_TEMPLATE.into())
                .or_insert_with(Alerts::default_template);
        }
        config.validate()?;
        Ok(config)
    }

    /// The built-in defaults, before file and environment.
    pub(crate) fn defaults() -> Self {
        toml::from_str("").expect("an empty file is a valid configuration")
    }

    /// Settings that fill gaps rather than set a key: S3 credentials for every S3 store that
    /// has none, and the age identity, which only the environment may hold.
    fn apply_store_env(&mut self, env: &Env) {
        for (name, store) in &mut self.stores {
            for (field, var) in store.apply_env(env) {
                self.provenance
                    .env
                    .insert(format!("stores.{name}.{field}"), var.into());
            }
        }
        self.env_store = StoreConfig::from_url("s3://");
        self.env_store.apply_env(env);
        if let Some(v) = env.get("FERRY_AGE_IDENTITY") {
            self.backup.identity = Some(Secret::new(v));
            self.provenance
                .env
                .insert("backup.identity".into(), "FERRY_AGE_IDENTITY".into());
        }
    }

    /// The store `spec` names: a key of `[stores]`, or an `s3://` / `file://` URL (S3
    /// settings then come from the environment). `key` names the config key in errors.
    pub fn store(&self, key: &str, spec: &str) -> Result<StoreConfig, ConfigError> {
        let store = match self.stores.get(spec) {
            Some(store) => store.clone(),
            None if spec.contains("://") => StoreConfig {
                url: spec.to_owned(),
                ..self.env_store.clone()
            },
            None => {
                return Err(ConfigError::new(
                    key,
                    format!("{spec:?} is not a store in [stores] nor a URL"),
                    format!(
                        "name one of [{}] or give s3://bucket/prefix or file:///path",
                        self.stores.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        };
        store.validate(key)?;
        Ok(store)
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
        // Several comma-separated seed nodes name a Redis Cluster.
        for seed in self.redis.url.split(',').map(str::trim) {
            check_url(
                "redis.url (REDIS_URL)",
                seed,
                &["redis", "rediss"],
                "redis://host:6379, or redis://h1:6379,redis://h2:6379 for a cluster",
            )?;
        }
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
        self.validate_sync()?;
        self.validate_queues()?;
        for (name, store) in &self.stores {
            if !is_identifier(name) {
                return Err(ConfigError::new(
                    format!("stores.{name}"),
                    "is not a plain name",
                    "use lower-case letters, digits and underscores",
                ));
            }
            store.validate(&format!("stores.{name}"))?;
        }
        self.backup.validate()?;
        self.store("backup.target", &self.backup.target)?;
        let record_apart =
            self.postgres.ferry_url.is_some() && self.postgres.ferry_url != self.postgres.url;
        self.notify.validate(record_apart)?;
        self.sql.validate()?;
        schedule::validate(&self.scheduler, &self.schedules)?;
        self.files.validate()?;
        self.api.validate()?;
        self.import.validate()?;
        self.alerts.validate(self.notify.smtp_url.is_some())?;
        self.http.validate()?;
        self.tenants.validate()?;
        self.retention.validate()?;
        on_change::validate(&self.on_change)?;
        for (name, rate) in &self.limits {
            Rate::parse(&format!("limits.{name:?}"), rate)?;
        }
        self.validate_kinds()?;
        Ok(())
    }
}

/// A table, schema or column name that sync accepts in config: checked against the catalog
/// later, and always quoted in SQL.
pub fn is_sql_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | 'A'..='Z' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

fn positive(key: &str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(key, "is 0", "use 1 or more"));
    }
    Ok(())
}

pub(crate) fn check_url(
    key: &str,
    value: &str,
    schemes: &[&str],
    example: &str,
) -> Result<(), ConfigError> {
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
        assert_eq!(c.postgres.max_connections, 8);
        assert_eq!((c.concurrency("default"), c.concurrency("http")), (512, 64));
    }

    #[test]
    fn sync_section_checks_names() {
        let c = load("[sync]\nschemas = [\"public\"]\n[[sync.table]]\nname = \"public.payment\"\nkey = [\"payment_id\"]\n").unwrap();
        assert_eq!(
            c.sync.tables[0].key.as_deref(),
            Some(&["payment_id".to_owned()][..])
        );
        let e = load("[[sync.table]]\nname = \"payment\"\n").unwrap_err();
        assert!(e.to_string().contains("schema.table"), "{e}");
        let e = load("[[sync.table]]\nname = \"public.x\"\nexclude_columns = [\"a; drop\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("sync.table[0]"), "{e}");
        let e = load("[mongodb]\nuri = \"http://x\"\n").unwrap_err();
        assert!(e.to_string().contains("MONGODB_URI"), "{e}");
    }

    #[test]
    fn durations_parse() {
        let c = load("[worker]\nshutdown_grace = \"1m 30s\"\n[kinds.sleep]\ntimeout = \"2h\"\n")
            .unwrap();
        assert_eq!(c.worker.shutdown_grace, Duration::from_secs(90));
        assert_eq!(c.kinds["sleep"].timeout, Some(Duration::from_secs(7200)));
    }
}
