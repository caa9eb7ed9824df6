//! Flow control settings: job priorities and `[tenants]`, the fair sharing of workers between
//! the tenants of a multi-tenant app. A job carries a tenant (`--tenant`, `"tenant"` in the
//! API, or `[kinds.NAME] tenant_from`); jobs without one are not limited.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::ConfigError;

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tenants {
    /// Jobs of one tenant that may wait in a queue's streams or run at once before its next
    /// jobs wait in its own backlog. Small windows interleave tenants tightly; workers with
    /// free slots still take backlogged jobs (round-robin over tenants), so one tenant alone
    /// is not slowed by it.
    pub window: u32,
    /// Hard cap on one tenant's jobs running (or ready) at once, per queue; 0 = no cap.
    pub max_running: u32,
    /// Tenants shown by name in `stats --json` and `/metrics`; the rest are summed as "other".
    pub top: usize,
}

impl Default for Tenants {
    fn default() -> Self {
        Self {
            window: 8,
            max_running: 0,
            top: 20,
        }
    }
}

impl Tenants {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.window == 0 {
            return Err(ConfigError::new(
                "tenants.window",
                "is zero",
                "give a positive number of jobs, e.g. 8",
            ));
        }
        Ok(())
    }
}

/// A job's priority within its queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Default,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Self::High, Self::Default, Self::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Default => "default",
            Self::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown priority {s:?}; expected high, default or low"))
    }
}
