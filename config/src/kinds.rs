//! `[kinds.NAME]`: overrides of the defaults each kind declares (attempts, backoff, timeout,
//! concurrency, queue, priority, tenant, rate), checked before anything connects.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Priority, Rate, duration};

/// Overrides of one kind's declared defaults.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
    /// The queue its jobs travel on (each queue lives in one Redis Cluster slot).
    pub queue: Option<String>,
    /// The priority of its jobs when the enqueue does not say.
    pub priority: Option<Priority>,
    /// The field of its arguments that names the job's tenant (e.g. `organization_id`) when
    /// the enqueue does not say.
    pub tenant_from: Option<String>,
    /// Most starts of this kind across every worker, e.g. "100/s" (see [`Rate`]).
    pub rate: Option<String>,
}

impl crate::Config {
    pub(crate) fn validate_kinds(&self) -> Result<(), ConfigError> {
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
            if let Some(field) = &o.tenant_from
                && (field.is_empty() || field.len() > 100 || field.contains(char::is_whitespace))
            {
                return Err(ConfigError::new(
                    key("tenant_from"),
                    format!("{field:?} is not an argument name"),
                    "name the argument holding the tenant, e.g. tenant_from = \"organization_id\"",
                ));
            }
            if let Some(rate) = &o.rate {
                Rate::parse(&key("rate"), rate)?;
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
