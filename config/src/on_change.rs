//! `[[on_change]]`: rules that turn captured row changes into jobs of any kind.
//!
//! ```toml
//! [[on_change]]
//! table = "app.enrollments"
//! op = ["insert"]
//! kind = "notify.send"
//! args = { template = "enrolled", user_id = "{{ row.instructor_id }}" }
//! ```

use serde::{Deserialize, Serialize};

use crate::{ConfigError, is_sql_name};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnChange {
    /// `schema.table`: the table whose changes the rule routes.
    pub table: String,
    /// The operations that start a job; a change of another operation starts nothing.
    pub op: Vec<Op>,
    /// The job kind to enqueue, e.g. `notify.send`.
    pub kind: String,
    /// The job's arguments. Strings are minijinja templates over `row` (the new row, the old
    /// one for a delete), `old` (an update's old row), `op` and `table`; a string that is one
    /// `{{ expression }}` alone keeps the value's JSON type (a number stays a number).
    #[serde(default = "empty_object")]
    pub args: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    /// As Postgres names it in `TG_OP` and in a trigger definition.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }

    pub fn from_sql(op: &str) -> Option<Self> {
        match op {
            "INSERT" => Some(Self::Insert),
            "UPDATE" => Some(Self::Update),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }
}

impl OnChange {
    /// `table` split into schema and table name.
    pub fn table_parts(&self) -> (&str, &str) {
        self.table.split_once('.').unwrap_or(("", &self.table))
    }
}

/// Checks every rule as far as can be done without connecting (kinds are checked against the
/// registry by the scheduler and `ferry events install-triggers`).
pub(crate) fn validate(rules: &[OnChange]) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        let key = |field: &str| format!("on_change[{i}].{field}");
        let (schema, table) = rule.table_parts();
        if !(is_sql_name(schema) && is_sql_name(table)) {
            return Err(ConfigError::new(
                key("table"),
                format!("{:?} is not a schema.table name", rule.table),
                "give the table with its schema, e.g. \"app.enrollments\"",
            ));
        }
        if rule.op.is_empty() {
            return Err(ConfigError::new(
                key("op"),
                "is empty, so the rule would never start a job",
                "give one or more of \"insert\", \"update\", \"delete\"",
            ));
        }
        if rule.kind.trim().is_empty() {
            return Err(ConfigError::new(
                key("kind"),
                "is empty",
                "give a job kind, e.g. \"notify.send\"",
            ));
        }
        if !rule.args.is_object() {
            return Err(ConfigError::new(
                key("args"),
                format!("is {}, not a table of arguments", rule.args),
                "give args = { ... }",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Config, Env};

    #[test]
    fn rules_parse_and_bad_ones_name_the_key() {
        let c = Config::from_toml_str(
            "[[on_change]]\ntable = \"app.enrollments\"\nop = [\"insert\"]\nkind = \"notify.send\"\nargs = { template = \"enrolled\", user_id = \"{{ row.instructor_id }}\" }\n",
            &Env::empty(),
        )
        .unwrap();
        assert_eq!(c.on_change[0].op, [super::Op::Insert]);
        assert_eq!(c.on_change[0].args["template"], "enrolled");
        for (toml, key) in [
            (
                "[[on_change]]\ntable = \"enrollments\"\nop = [\"insert\"]\nkind = \"noop\"\n",
                "on_change[0].table",
            ),
            (
                "[[on_change]]\ntable = \"a.b; drop\"\nop = [\"insert\"]\nkind = \"noop\"\n",
                "on_change[0].table",
            ),
            (
                "[[on_change]]\ntable = \"a.b\"\nop = []\nkind = \"noop\"\n",
                "on_change[0].op",
            ),
            (
                "[[on_change]]\ntable = \"a.b\"\nop = [\"upsert\"]\nkind = \"noop\"\n",
                "ferry.toml",
            ),
        ] {
            let e = Config::from_toml_str(toml, &Env::empty()).unwrap_err();
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
    }
}
