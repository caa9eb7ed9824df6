use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use ferry_config::{Config, ConfigError};
use futures::{FutureExt, future::BoxFuture};

use crate::{JobContext, JobError, Kind, Settings, enqueue::EnqueueError};

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
    /// No kinds yet: register them with [`Registry::register`] (`ferry_jobs::builtin` starts
    /// from ferry's own), then apply config with [`Registry::configured`]. `config` is what
    /// kinds check arguments against when a job is enqueued.
    pub fn empty(config: &Config) -> Self {
        Self {
            kinds: BTreeMap::new(),
            config: Arc::new(config.clone()),
        }
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
