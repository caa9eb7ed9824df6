//! One side of a migration: a named store and a prefix within it (`STORE[:PREFIX]`).

use ferry_config::Config;

use crate::{JobError, ResultExt, store::Store};

pub struct Side {
    pub name: String,
    /// Inside the store's own prefix; empty, or ends without a slash.
    pub prefix: String,
    pub store: Store,
    /// How the application's URLs of this side's objects begin, when the store has one.
    pub public_url: Option<String>,
}

impl Side {
    /// Opens `spec`, a `[stores]` name with an optional `:PREFIX`.
    pub fn open(config: &Config, spec: &str, role: &str) -> Result<Self, JobError> {
        let (name, prefix) = spec.split_once(':').unwrap_or((spec, ""));
        let Some(store) = config.stores.get(name) else {
            return Err(JobError::permanent(format!(
                "--{role} {spec:?}: {name:?} is not in [stores]; configured: {}",
                if config.stores.is_empty() {
                    "none".to_owned()
                } else {
                    config.stores.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )));
        };
        let store_config = config.store(&format!("stores.{name}"), name).permanent()?;
        let prefix = prefix.trim_matches('/').to_owned();
        let public_url = store
            .public_url
            .as_deref()
            .map(|u| join(u.trim_end_matches('/'), &prefix));
        Ok(Self {
            name: name.to_owned(),
            store: Store::open(&store_config)?,
            public_url,
            prefix,
        })
    }

    /// The ledger's name for this side: the store's identity and the prefix.
    pub fn identity(&self) -> String {
        format!("{}:{}", self.store.identity, self.prefix)
    }

    /// A store key without this side's prefix.
    pub fn relative<'k>(&self, key: &'k str) -> &'k str {
        if self.prefix.is_empty() {
            return key;
        }
        key.strip_prefix(self.prefix.as_str())
            .and_then(|k| k.strip_prefix('/'))
            .unwrap_or(key)
    }

    /// The store key of `relative` on this side.
    pub fn key(&self, relative: &str) -> String {
        join(&self.prefix, relative)
    }
}

pub(super) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}
