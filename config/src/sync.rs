//! `[mongodb]` and `[sync]`: where the mirror lives and how tables are mirrored.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, check_url, duration, is_sql_name, positive};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mongodb {
    /// `MONGODB_URI`
    pub uri: Option<String>,
    /// `MONGODB_DATABASE`
    pub database: String,
}

impl Default for Mongodb {
    fn default() -> Self {
        Self {
            uri: None,
            database: "ferry".into(),
        }
    }
}

/// How timestamps reach MongoDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Timestamps {
    /// BSON dates: milliseconds, so sub-millisecond digits are lost (reported).
    Date,
    /// ISO-8601 strings with every digit Postgres keeps.
    Iso,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sync {
    /// Every table with a primary key in these schemas is mirrored.
    pub schemas: Vec<String>,
    /// Rows per page: one read and one bulk write.
    pub chunk_size: usize,
    /// Pages per chunk job of a full sync.
    pub pages_per_chunk: usize,
    pub timestamps: Timestamps,
    /// Incremental sync re-reads this far behind its watermark, for rows committed late.
    #[serde(with = "duration")]
    pub overlap: Duration,
    /// Most bulk writes to MongoDB at once, across every worker.
    pub max_writers: usize,
    /// How often the scheduler moves trigger-captured changes into `sync.entity` jobs.
    #[serde(with = "duration")]
    pub relay_interval: Duration,
    #[serde(rename = "table")]
    pub tables: Vec<SyncTable>,
}

impl Default for Sync {
    fn default() -> Self {
        Self {
            schemas: vec!["public".into()],
            chunk_size: 1000,
            pages_per_chunk: 20,
            timestamps: Timestamps::Date,
            overlap: Duration::from_secs(300),
            max_writers: 4,
            relay_interval: Duration::from_secs(1),
            tables: Vec::new(),
        }
    }
}

/// Overrides for one mirrored table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyncTable {
    /// `schema.table`
    pub name: String,
    pub collection: Option<String>,
    /// Key columns for a table without a primary key.
    pub key: Option<Vec<String>>,
    /// Column that enables incremental sync.
    pub updated_at: Option<String>,
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// Leave this table out of the mirror.
    #[serde(default)]
    pub skip: bool,
}

impl crate::Config {
    pub(crate) fn validate_sync(&self) -> Result<(), ConfigError> {
        if let Some(uri) = &self.mongodb.uri {
            check_url(
                "mongodb.uri (MONGODB_URI)",
                uri,
                &["mongodb", "mongodb+srv"],
                "mongodb://host:27017",
            )?;
        }
        let db = &self.mongodb.database;
        if db.is_empty() || db.len() > 63 || db.contains(['/', '\\', '.', ' ', '"', '$']) {
            return Err(ConfigError::new(
                "mongodb.database (MONGODB_DATABASE)",
                format!("{db:?} is not a valid MongoDB database name"),
                "use letters, digits, - and _",
            ));
        }
        let s = &self.sync;
        for schema in &s.schemas {
            if !is_sql_name(schema) {
                return Err(ConfigError::new(
                    "sync.schemas",
                    format!("{schema:?} is not a schema name"),
                    "list plain schema names such as \"public\"",
                ));
            }
        }
        if !(1..=100_000).contains(&s.chunk_size) {
            return Err(ConfigError::new(
                "sync.chunk_size",
                format!("{} is out of range", s.chunk_size),
                "use 1 to 100000 (default 1000)",
            ));
        }
        positive("sync.pages_per_chunk", s.pages_per_chunk)?;
        positive("sync.max_writers", s.max_writers)?;
        for (i, t) in s.tables.iter().enumerate() {
            let key = |field: &str| format!("sync.table[{i}] ({}).{field}", t.name);
            let Some((schema, table)) = t.name.split_once('.') else {
                return Err(ConfigError::new(
                    key("name"),
                    "is not schema.table",
                    "write it as \"public.courses\"",
                ));
            };
            if !is_sql_name(schema) || !is_sql_name(table) {
                return Err(ConfigError::new(
                    key("name"),
                    "is not a plain schema.table name",
                    "use letters, digits and underscores",
                ));
            }
            let columns = t
                .key
                .iter()
                .flatten()
                .chain(&t.updated_at)
                .chain(&t.exclude_columns);
            for c in columns {
                if !is_sql_name(c) {
                    return Err(ConfigError::new(
                        key("columns"),
                        format!("{c:?} is not a column name"),
                        "use letters, digits and underscores",
                    ));
                }
            }
            if t.key.as_ref().is_some_and(Vec::is_empty) {
                return Err(ConfigError::new(
                    key("key"),
                    "is empty",
                    "list the key columns, e.g. key = [\"id\"]",
                ));
            }
            if let Some(c) = &t.collection
                && (c.is_empty() || c.starts_with("system.") || c.contains('$'))
            {
                return Err(ConfigError::new(
                    key("collection"),
                    format!("{c:?} is not a usable collection name"),
                    "use letters, digits, - and _",
                ));
            }
        }
        Ok(())
    }
}
