//! Settings from the environment, by one rule: `FERRY_SECTION__KEY` sets `key` of `[section]`
//! (`FERRY_WORKER__CONCURRENCY=32` is `[worker] concurrency = 32`); deeper keys take more
//! `__` (`FERRY_STORES__BACKUPS__URL`). The conventional names (`DATABASE_URL`, `REDIS_URL`,
//! `SMTP_HOST`...) stay, as aliases of the keys they always set; a `FERRY_..__..` variable
//! wins over an alias of the same key.
//!
//! Values take the type of the key's default: a string key takes the value as it is; a
//! number, boolean or list key takes a TOML literal (`32`, `true`, `["a", "b"]`), and a list
//! also takes `a,b`. Lists of tables (`[[schedule]]`, `[[sync.table]]`) come only from the
//! file.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::{Config, ConfigError, Env, smtp_parts};

const PREFIX: &str = "FERRY_";
const SEPARATOR: &str = "__";

/// The conventional names and the key each sets.
pub(crate) const ALIASES: [(&str, &str); 11] = [
    ("DATABASE_URL", "postgres.url"),
    ("FERRY_DATABASE_URL", "postgres.ferry_url"),
    ("FERRY_SCHEMA", "postgres.schema"),
    ("REDIS_URL", "redis.url"),
    ("FERRY_REDIS_PREFIX", "redis.prefix"),
    ("MONGODB_URI", "mongodb.uri"),
    ("MONGODB_DATABASE", "mongodb.database"),
    ("SMTP_URL", "notify.smtp_url"),
    ("SMTP_FROM", "notify.from"),
    ("FERRY_API_TOKEN", "api.token"),
    ("FERRY_ADMIN_TOKEN", "api.admin_token"),
];

/// Writes the environment's settings into the file's `table`; returns each key set and the
/// variable(s) that set it.
pub(crate) fn apply(
    table: &mut toml::Table,
    env: &Env,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut set = BTreeMap::new();
    for (var, key) in ALIASES {
        if let Some(value) = env.get(var) {
            let path: Vec<String> = key.split('.').map(str::to_owned).collect();
            insert(table, &path, toml::Value::String(value), var)?;
            set.insert(key.to_owned(), var.to_owned());
        }
    }
    if let Some((url, vars)) = smtp_parts::url(env)? {
        insert(
            table,
            &["notify".into(), "smtp_url".into()],
            toml::Value::String(url),
            "SMTP_HOST",
        )?;
        set.insert("notify.smtp_url".into(), vars);
    }
    let defaults = serde_json::to_value(Config::defaults()).expect("the defaults serialize");
    let mut vars: Vec<(&str, &str)> = env
        .vars()
        .filter(|(k, v)| !v.is_empty() && k.starts_with(PREFIX) && k.contains(SEPARATOR))
        .collect();
    vars.sort_unstable();
    for (var, raw) in vars {
        let path: Vec<String> = var[PREFIX.len()..]
            .split(SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                var,
                "has an empty part between its __ separators",
                "write FERRY_SECTION__KEY, e.g. FERRY_WORKER__CONCURRENCY=32",
            ));
        }
        if defaults.get(&path[0]).is_none() {
            let sections: Vec<String> = defaults
                .as_object()
                .into_iter()
                .flat_map(|o| o.keys())
                .map(|k| k.to_ascii_uppercase())
                .collect();
            return Err(ConfigError::new(
                var,
                format!("names no section [{}] of ferry.toml", path[0]),
                format!("use FERRY_SECTION__KEY with one of {}", sections.join(", ")),
            ));
        }
        let default = path.iter().try_fold(&defaults, |v, k| v.get(k));
        let value = typed(default, raw).ok_or_else(|| {
            ConfigError::new(
                var,
                format!(
                    "{raw:?} does not fit {}, which is a {}",
                    path.join("."),
                    kind(default)
                ),
                "give a value of that type, as it would be written in ferry.toml",
            )
        })?;
        insert(table, &path, value, var)?;
        set.insert(path.join("."), var.to_owned());
    }
    Ok(set)
}

/// `raw` as the type of the key's default, `None` when it does not fit; a key without one
/// (unset options, map entries) takes numbers and booleans as such and anything else as a
/// string.
fn typed(default: Option<&Json>, raw: &str) -> Option<toml::Value> {
    let literal = || {
        toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match default {
        Some(Json::String(_)) => Some(toml::Value::String(raw.to_owned())),
        Some(Json::Number(_)) => literal().filter(|v| v.is_integer() || v.is_float()),
        Some(Json::Bool(_)) => literal().filter(toml::Value::is_bool),
        Some(Json::Array(_)) => {
            Some(literal().filter(toml::Value::is_array).unwrap_or_else(|| {
                toml::Value::Array(
                    raw.split(',')
                        .map(|s| toml::Value::String(s.trim().to_owned()))
                        .collect(),
                )
            }))
        }
        Some(Json::Object(_)) => None,
        Some(Json::Null) | None => Some(
            literal()
                .filter(|v| !v.is_table() && !v.is_datetime())
                .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        ),
    }
}

fn kind(default: Option<&Json>) -> &'static str {
    match default {
        Some(Json::Number(_)) => "number",
        Some(Json::Bool(_)) => "boolean (true or false)",
        Some(Json::Object(_)) => "table: set its keys one by one (FERRY_SECTION__TABLE__KEY)",
        _ => "string",
    }
}

/// Sets `path` in `table`, making the tables on the way.
fn insert(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
    var: &str,
) -> Result<(), ConfigError> {
    let (last, parents) = path.split_last().expect("paths have a key");
    let mut at = table;
    for (depth, key) in parents.iter().enumerate() {
        let next = at
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = next.as_table_mut().ok_or_else(|| {
            ConfigError::new(
                var,
                format!(
                    "sets a key inside {}, which is not a table",
                    path[..=depth].join(".")
                ),
                "set lists of tables such as [[schedule]] in the file",
            )
        })?;
    }
    at.insert(last.clone(), value);
    Ok(())
}
