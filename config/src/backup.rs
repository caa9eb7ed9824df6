//! `[backup]`: which databases, where to, compression, encryption and retention.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Secret};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backup {
    /// Database names on the server of `DATABASE_URL`; empty means that URL's own database.
    pub databases: Vec<String>,
    /// A store name from `[stores]`, an `s3://` URL, or `file:///path`.
    pub target: String,
    /// Only `zstd` is offered: it is faster and smaller than pg_dump's own gzip.
    pub compression: String,
    /// zstd level (1-19).
    pub level: i32,
    /// zstd worker threads; 0 means one per core.
    pub threads: u32,
    /// age public key (`age1...`) every backup is encrypted to.
    pub encrypt_to: Option<String>,
    /// File holding the age identity that decrypts backups, for verify and restore
    /// (or its contents in `FERRY_AGE_IDENTITY`).
    pub identity_file: Option<PathBuf>,
    /// Set from `FERRY_AGE_IDENTITY` only; never from the file.
    #[serde(skip_deserializing)]
    pub identity: Option<Secret>,
    /// Directory holding `pg_dump` and `pg_restore` when the ones on `PATH` do not match the
    /// server's major version, e.g. `/usr/lib/postgresql/16/bin`.
    pub pg_bin_dir: Option<PathBuf>,
    pub retention: Retention,
}

impl Default for Backup {
    fn default() -> Self {
        Self {
            databases: Vec::new(),
            target: "file:///var/backups/ferry".into(),
            compression: "zstd".into(),
            level: 3,
            threads: 0,
            encrypt_to: None,
            identity_file: None,
            identity: None,
            pg_bin_dir: None,
            retention: Retention::default(),
        }
    }
}

/// How many generations `prune` keeps: the newest backup of each of the last `daily` days,
/// `weekly` ISO weeks and `monthly` months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            daily: 7,
            weekly: 4,
            monthly: 6,
        }
    }
}

impl Backup {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for db in &self.databases {
            if !crate::is_sql_name(db) {
                return Err(ConfigError::new(
                    "backup.databases",
                    format!("{db:?} is not a database name"),
                    "list database names such as \"app\" (letters, digits, underscores)",
                ));
            }
        }
        if self.compression != "zstd" {
            return Err(ConfigError::new(
                "backup.compression",
                format!("{:?} is not offered", self.compression),
                "use \"zstd\"",
            ));
        }
        if !(1..=19).contains(&self.level) {
            return Err(ConfigError::new(
                "backup.level",
                format!("{} is out of range", self.level),
                "use 1 to 19 (default 3)",
            ));
        }
        if let Some(key) = &self.encrypt_to
            && !(key.starts_with("age1") && key.len() > 50)
        {
            return Err(ConfigError::new(
                "backup.encrypt_to",
                format!("{key:?} is not an age public key"),
                "give the recipient printed by `age-keygen` (age1...)",
            ));
        }
        let r = self.retention;
        if r.daily + r.weekly + r.monthly == 0 {
            return Err(ConfigError::new(
                "backup.retention",
                "keeps nothing",
                "keep at least one generation, e.g. { daily = 7, weekly = 4, monthly = 6 }",
            ));
        }
        Ok(())
    }
}
