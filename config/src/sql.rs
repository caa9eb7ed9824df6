//! `[sql]`: named maintenance statements the `sql` kind may run; no other SQL is accepted.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{ConfigError, duration, error::listing, is_sql_name};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sql {
    /// How long a statement may run unless it names its own timeout.
    #[serde(with = "duration")]
    pub timeout: Duration,
    pub statements: BTreeMap<String, Statement>,
}

impl Default for Sql {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            statements: BTreeMap::new(),
        }
    }
}

/// `NAME = "SQL"`, or `NAME = { sql = "SQL", timeout = "30m" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Statement {
    Text(String),
    WithTimeout {
        sql: String,
        #[serde(with = "duration")]
        timeout: Duration,
    },
}

impl Sql {
    /// The statement called `name` and its timeout, or a message naming the statements there
    /// are.
    pub fn statement(&self, name: &str) -> Result<(&str, Duration), String> {
        match self.statements.get(name) {
            Some(Statement::Text(sql)) => Ok((sql.as_str(), self.timeout)),
            Some(Statement::WithTimeout { sql, timeout }) => Ok((sql.as_str(), *timeout)),
            None => Err(format!(
                "unknown statement {name:?}; [sql.statements] has: {}",
                listing(self.statements.keys())
            )),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "sql.timeout",
                "is zero",
                "give a duration such as \"5m\"",
            ));
        }
        for name in self.statements.keys() {
            let key = format!("sql.statements.{name}");
            if !is_sql_name(name) {
                return Err(ConfigError::new(
                    key,
                    "is not a plain name",
                    "use letters, digits and underscores",
                ));
            }
            let Ok((sql, timeout)) = self.statement(name) else {
                continue;
            };
            if sql.trim().is_empty() {
                return Err(ConfigError::new(
                    key,
                    "is empty",
                    "give the statement, e.g. \"SELECT cleanup_old_notifications()\"",
                ));
            }
            if timeout.is_zero() {
                return Err(ConfigError::new(
                    format!("{key}.timeout"),
                    "is zero",
                    "give a duration such as \"30m\"",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Config, Env};

    #[test]
    fn statements_with_and_without_timeouts() {
        let c = Config::from_toml_str(
            "[sql]\ntimeout = \"10s\"\n[sql.statements]\ncleanup = \"SELECT cleanup()\"\nrefresh = { sql = \"REFRESH MATERIALIZED VIEW s\", timeout = \"30m\" }\n",
            &Env::empty(),
        )
        .unwrap();
        assert_eq!(
            c.sql.statement("cleanup"),
            Ok(("SELECT cleanup()", Duration::from_secs(10)))
        );
        assert_eq!(
            c.sql.statement("refresh").map(|s| s.1),
            Ok(Duration::from_secs(1800))
        );
        let e = c.sql.statement("nope").unwrap_err();
        assert!(e.contains("has: cleanup, refresh"), "{e}");
        let e = Config::from_toml_str("[sql.statements]\nx = \"\"\n", &Env::empty()).unwrap_err();
        assert!(e.to_string().contains("sql.statements.x"), "{e}");
    }
}
