//! The effective configuration, key by key, with where each value came from — what
//! `ferry config check` prints. Secrets are masked: `Secret` and `SmtpUrl` serialize as `***`,
//! and passwords inside URLs are replaced here.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use crate::Config;

/// Which keys the file and the environment set; everything else is a default.
#[derive(Debug, Clone, Default)]
pub(crate) struct Provenance {
    pub(crate) file: BTreeSet<String>,
    /// Key → the variable(s) that set it.
    pub(crate) env: BTreeMap<String, String>,
}

/// One key of the effective configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    /// `section.key`, e.g. `worker.concurrency`.
    pub key: String,
    /// The value as TOML-like text, secrets masked; `(unset)` for an unset option.
    pub value: String,
    /// `file`, `default`, or the environment variable(s) that set it.
    pub source: String,
}

impl Config {
    /// Every key with its value and source, in key order.
    pub fn effective(&self) -> Vec<Setting> {
        let value = serde_json::to_value(self).expect("the configuration serializes");
        let mut leaves = Vec::new();
        flatten(&value, "", &mut leaves);
        leaves
            .into_iter()
            .map(|(key, value)| Setting {
                source: self.source_of(&key),
                value: display(&value),
                key,
            })
            .collect()
    }

    /// Where `key` was set: the variable's name, "file", or "default".
    pub(crate) fn source_of(&self, key: &str) -> String {
        let within = |set: &str| {
            key == set || key.starts_with(&format!("{set}.")) || key.starts_with(&format!("{set}["))
        };
        let p = &self.provenance;
        if let Some((_, var)) = p.env.iter().find(|(set, _)| within(set)) {
            return var.clone();
        }
        if p.file.iter().any(|set| within(set)) {
            return "file".into();
        }
        "default".into()
    }
}

/// The keys of a table as `Setting` keys, for the file's provenance.
pub(crate) fn keys(value: &Json) -> BTreeSet<String> {
    let mut leaves = Vec::new();
    flatten(value, "", &mut leaves);
    leaves.into_iter().map(|(k, _)| k).collect()
}

/// Leaves of `value` under `prefix`: objects descend by key, lists of tables by index; other
/// lists are one value.
fn flatten(value: &Json, prefix: &str, out: &mut Vec<(String, Json)>) {
    match value {
        Json::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let k = if k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    k.clone()
                } else {
                    format!("{k:?}")
                };
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &key, out);
            }
        }
        Json::Array(items) if items.iter().any(Json::is_object) => {
            for (i, v) in items.iter().enumerate() {
                flatten(v, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => out.push((prefix.to_owned(), value.clone())),
    }
}

fn display(value: &Json) -> String {
    match value {
        Json::Null => "(unset)".into(),
        Json::String(s) => format!("{:?}", mask_url(s)),
        Json::Array(items) => {
            let items: Vec<String> = items.iter().map(display).collect();
            format!("[{}]", items.join(", "))
        }
        Json::Object(_) => "{}".into(),
        other => other.to_string(),
    }
}

/// A URL's password (in the authority or a `password=` query pair) replaced by `***`.
fn mask_url(s: &str) -> String {
    let Ok(mut url) = url::Url::parse(s) else {
        return s.to_owned();
    };
    if url.cannot_be_a_base() {
        return s.to_owned();
    }
    let mut changed = false;
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
        changed = true;
    }
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if pairs
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("password"))
    {
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs.iter().map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            }));
        changed = true;
    }
    if changed {
        url.to_string()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Env};

    fn setting(c: &Config, key: &str) -> (String, String) {
        let s = c
            .effective()
            .into_iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("no {key}"));
        (s.value, s.source)
    }

    #[test]
    fn every_key_is_settable_by_the_one_rule_and_says_where_it_came_from() {
        let env = Env::from_pairs([
            ("FERRY_WORKER__CONCURRENCY", "7"),
            ("FERRY_WORKER__QUEUES", "default,sync"),
            ("FERRY_SYNC__TIMESTAMPS", "iso"),
            ("FERRY_SCHEDULER__LATE_AFTER", "2m"),
            ("FERRY_STORES__SECOND__URL", "s3://second-bucket/x"),
            ("FERRY_BACKUP__RETENTION__DAILY", "30"),
            ("REDIS_URL", "redis://:hunter2@10.0.0.1:6380"),
            ("FERRY_ADMIN_TOKEN", "admin-0123456789abcdef"),
        ]);
        let c = Config::from_toml_str("[worker]\nbatch = 5\n", &env).unwrap();
        assert_eq!(c.worker.concurrency, 7);
        assert_eq!(c.worker.queues, ["default", "sync"]);
        assert_eq!(c.backup.retention.daily, 30);
        assert_eq!(c.stores["second"].url, "s3://second-bucket/x");
        assert_eq!(
            setting(&c, "worker.concurrency"),
            ("7".into(), "FERRY_WORKER__CONCURRENCY".into())
        );
        assert_eq!(setting(&c, "worker.batch"), ("5".into(), "file".into()));
        assert_eq!(
            setting(&c, "worker.heartbeat"),
            ("\"2s\"".into(), "default".into())
        );
        assert_eq!(setting(&c, "scheduler.late_after").0, "\"2m\"");
        assert_eq!(
            setting(&c, "redis.url"),
            ("\"redis://:***@10.0.0.1:6380\"".into(), "REDIS_URL".into())
        );
        assert_eq!(
            setting(&c, "api.admin_token"),
            ("\"***\"".into(), "FERRY_ADMIN_TOKEN".into())
        );
        assert_eq!(
            setting(&c, "mongodb.uri"),
            ("(unset)".into(), "default".into())
        );
        let shown = format!("{:?}", c.effective());
        assert!(
            !shown.contains("hunter2") && !shown.contains("0123456789abcdef"),
            "{shown}"
        );
    }

    #[test]
    fn the_rule_wins_over_the_alias_and_bad_variables_are_named() {
        let env = Env::from_pairs([
            ("REDIS_URL", "redis://a:1"),
            ("FERRY_REDIS__URL", "redis://b:2"),
        ]);
        let c = Config::from_toml_str("", &env).unwrap();
        assert_eq!(c.redis.url, "redis://b:2");
        for (var, value, says) in [
            (
                "FERRY_WROKER__CONCURRENCY",
                "7",
                "FERRY_WROKER__CONCURRENCY",
            ),
            ("FERRY_WORKER__CONCURRENCY", "many", "concurrency"),
            ("FERRY_WORKER__CONCURENCY", "7", "concurency"),
            ("FERRY_WORKER____X", "7", "empty part"),
        ] {
            let e = Config::from_toml_str("", &Env::from_pairs([(var, value)])).unwrap_err();
            assert!(e.to_string().contains(says), "{var}: {e}");
        }
    }
}
