use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use ferry_config::{Config, ConfigError};
use futures::{FutureExt, future::BoxFuture};

use crate::{
    JobContext, JobError, Kind, Settings, backup, diag, enqueue::EnqueueError, files, http, import,
    maintenance, notify, sql, sync,
};

/// A kind with its arguments erased, so the worker can hold every kind in one map.
pub trait Entry: Send + Sync {
    fn name(&self) -> &'static str;
    fn settings(&self) -> &Settings;
    /// Checks that `args` (JSON text) fit the kind's argument type.
    fn validate(&self, args: &str) -> Result<(), EnqueueError>;
    fn run(&self, args: &str, ctx: JobContext) -> BoxFuture<'static, Result<(), JobError>>;
}

struct Typed<K: Kind> {
    kind: Arc<K>,
    settings: Settings,
    config: Arc<Config>,
}

impl<K: Kind> Entry for Typed<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn validate(&self, args: &str) -> Result<(), EnqueueError> {
        let args = serde_json::from_str::<K::Args>(args).map_err(|source| EnqueueError::Args {
            kind: K::NAME,
            source,
        })?;
        K::check(&args, &self.config).map_err(|source| EnqueueError::Refused {
            kind: K::NAME,
            source,
        })
    }

    fn run(&self, args: &str, ctx: JobContext) -> BoxFuture<'static, Result<(), JobError>> {
        let kind = self.kind.clone();
        let parsed = serde_json::from_str::<K::Args>(args);
        async move {
            let args = parsed.map_err(|e| {
                JobError::permanent_from(format!("arguments for {} do not fit", K::NAME), e)
            })?;
            kind.run(args, ctx).await
        }
        .boxed()
    }
}

/// Every kind this build of ferry knows, with settings from config applied.
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Entry>>,
    /// What kinds check arguments against when a job is enqueued.
    config: Arc<Config>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

/// A kind name nobody registered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown job kind {name:?}; known kinds: {known}")]
pub struct UnknownKind {
    pub name: String,
    pub known: String,
}

impl Registry {
    /// All built-in kinds with `[kinds.NAME]` applied. Fails if config overrides a kind that
    /// does not exist.
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        Self::builtin(config).configured()
    }

    /// The built-in kinds with their defaults, for a program that adds its own with
    /// [`Registry::register`] before handing the registry to `ferry_worker::run_with`.
    pub fn builtin(config: &Config) -> Self {
        let mut registry = Self {
            kinds: BTreeMap::new(),
            config: Arc::new(config.clone()),
        };
        registry.register(diag::Noop);
        registry.register(diag::Sleep);
        registry.register(diag::Fail);
        registry.register(sync::Full);
        registry.register(sync::Chunk);
        registry.register(sync::Incremental);
        registry.register(sync::Entity);
        registry.register(sync::Verify);
        registry.register(backup::Run);
        registry.register(backup::Verify);
        registry.register(backup::Prune);
        registry.register(notify::Send);
        registry.register(notify::Broadcast);
        registry.register(sql::Sql);
        registry.register(files::Migrate);
        registry.register(http::Http::default());
        registry.register(import::Run);
        registry.register(import::Chunk);
        registry.register(maintenance::Prune);
        registry
    }

    /// Applies `[kinds.NAME]` from config to every registered kind, built-in or not.
    pub fn configured(mut self) -> Result<Self, ConfigError> {
        let config = self.config.clone();
        for (name, overrides) in &config.kinds {
            let names = self.names().join(", ");
            let Some(entry) = self.kinds.get_mut(name.as_str()) else {
                return Err(ConfigError::new(
                    format!("kinds.{name}"),
                    "names no job kind",
                    format!("use one of: {names}"),
                ));
            };
            let mut settings = entry.settings().clone();
            settings.apply(overrides);
            *entry = entry_with(entry.name(), settings, &*entry);
        }
        Ok(self)
    }

    /// Registers a kind under its stable name, with its defaults; a duplicate (of a built-in
    /// kind too) is a programming error and fails loudly at start-up.
    pub fn register<K: Kind>(&mut self, kind: K) -> &mut Self {
        let entry = Arc::new(Typed {
            kind: Arc::new(kind),
            settings: K::defaults(),
            config: self.config.clone(),
        });
        assert!(
            self.kinds.insert(K::NAME, entry).is_none(),
            "job kind {} registered twice",
            K::NAME
        );
        self
    }

    pub fn get(&self, name: &str) -> Result<&Arc<dyn Entry>, UnknownKind> {
        self.kinds.get(name).ok_or_else(|| UnknownKind {
            name: name.to_owned(),
            known: self.names().join(", "),
        })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }

    /// Every queue some kind travels on.
    pub fn queues(&self) -> BTreeSet<String> {
        self.kinds
            .values()
            .map(|k| k.settings().queue.to_owned())
            .collect()
    }
}

/// The same kind with other settings.
fn entry_with(name: &'static str, settings: Settings, inner: &Arc<dyn Entry>) -> Arc<dyn Entry> {
    struct Configured {
        name: &'static str,
        settings: Settings,
        inner: Arc<dyn Entry>,
    }
    impl Entry for Configured {
        fn name(&self) -> &'static str {
            self.name
        }
        fn settings(&self) -> &Settings {
            &self.settings
        }
        fn validate(&self, args: &str) -> Result<(), EnqueueError> {
            self.inner.validate(args)
        }
        fn run(&self, args: &str, ctx: JobContext) -> BoxFuture<'static, Result<(), JobError>> {
            self.inner.run(args, ctx)
        }
    }
    Arc::new(Configured {
        name,
        settings,
        inner: inner.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_overrides_apply_and_unknown_kinds_fail() {
        let config = Config::from_toml_str(
            "[kinds.fail]\nmax_attempts = 2\ntimeout = \"3s\"\n",
            &ferry_config::Env::empty(),
        )
        .unwrap();
        let r = Registry::new(&config).unwrap();
        let fail = r.get("fail").unwrap();
        assert_eq!(fail.settings().max_attempts, 2);
        assert_eq!(fail.settings().timeout, std::time::Duration::from_secs(3));
        assert!(r.get("nope").err().unwrap().to_string().contains("noop"));

        let config = Config::from_toml_str(
            "[kinds.nope]\nmax_attempts = 2\n",
            &ferry_config::Env::empty(),
        )
        .unwrap();
        let e = Registry::new(&config).err().unwrap();
        assert!(e.to_string().contains("kinds.nope"), "{e}");
    }

    #[test]
    fn validate_checks_argument_shape() {
        let r = Registry::new(&Config::from_toml_str("", &ferry_config::Env::empty()).unwrap())
            .unwrap();
        assert!(r.get("sleep").unwrap().validate(r#"{"ms": 5}"#).is_ok());
        let e = r
            .get("sleep")
            .unwrap()
            .validate(r#"{"ms": "five"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("sleep"), "{e}");
        assert!(r.get("noop").unwrap().validate(r#"{"x": 1}"#).is_err());
    }
}
