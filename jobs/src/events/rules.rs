//! Rules compiled once: which tables and operations they watch, and their arguments as
//! minijinja templates over the changed row.

use std::collections::{BTreeMap, BTreeSet};

use ferry_config::{Config, ConfigError, OnChange, Op};
use minijinja::{Environment, UndefinedBehavior, value::Serde};
use serde_json::{Map, Value};

use crate::{
    Registry,
    enqueue::{self, EnqueueError, Keys, Prepared},
};

/// Why a captured change started no job; kept with the change so an operator sees it.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("unknown operation {0:?}")]
    UnknownOp(String),
    /// A rule's argument template did not render for this row.
    #[error("{rule}: {problem}")]
    Args { rule: RuleRef, problem: String },
    /// The rendered job did not pass the checks every enqueue passes.
    #[error("{rule}: {source}")]
    Enqueue { rule: RuleRef, source: EnqueueError },
}

/// Which `[[on_change]]` rule: its place in config, its table and its kind.
#[derive(Debug, Clone)]
pub struct RuleRef {
    pub index: usize,
    pub table: String,
    pub kind: String,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "on_change[{}] ({} → {})",
            self.index, self.table, self.kind
        )
    }
}

/// The configured `[[on_change]]` rules, checked against the job kinds there are.
#[derive(Debug)]
pub struct Rules {
    rules: Vec<OnChange>,
    env: Environment<'static>,
}

/// One captured change, as the trigger recorded it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Change {
    /// The capture's sequence number: the row version in idempotency keys.
    pub id: i64,
    pub table_name: String,
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub op: String,
    /// `{primary key column: value}`
    pub key: Value,
    /// The new row (the old one for a delete).
    pub row: Value,
    /// An update's old row.
    pub old: Option<Value>,
}

impl Rules {
    /// Checks each rule's kind against `registry` and compiles its argument templates; an
    /// error names the rule and the argument.
    pub fn compile(config: &Config, registry: &Registry) -> Result<Self, ConfigError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let rules = Self {
            rules: config.on_change.clone(),
            env,
        };
        for (i, rule) in rules.rules.iter().enumerate() {
            if let Err(e) = registry.get(&rule.kind) {
                return Err(ConfigError::new(
                    format!("on_change[{i}].kind"),
                    e.to_string(),
                    "name a job kind ferry knows",
                ));
            }
            let mut problem = None;
            walk(&rule.args, "args", &mut |path, s| {
                if problem.is_none()
                    && let Err(e) = rules.check(s)
                {
                    problem = Some((path.to_owned(), e));
                }
            });
            if let Some((path, e)) = problem {
                return Err(ConfigError::new(
                    format!("on_change[{i}].{path}"),
                    format!("does not compile: {e}"),
                    "write a minijinja template over row, old, op and table, e.g. \"{{ row.id }}\"",
                ));
            }
        }
        Ok(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Each watched table (`schema.table`) with the operations some rule starts jobs for.
    pub fn tables(&self) -> BTreeMap<&str, BTreeSet<Op>> {
        let mut tables: BTreeMap<&str, BTreeSet<Op>> = BTreeMap::new();
        for rule in &self.rules {
            tables
                .entry(rule.table.as_str())
                .or_default()
                .extend(rule.op.iter().copied());
        }
        tables
    }

    /// The jobs `change` starts, one per matching rule, each checked as the CLI checks a job
    /// and keyed `change:TABLE:PK:VERSION:RULE`, so relaying a change twice enqueues it once.
    /// An error says which rule could not be applied and why.
    pub fn route(&self, registry: &Registry, change: &Change) -> Result<Vec<Prepared>, RouteError> {
        let Some(op) = Op::from_sql(&change.op) else {
            return Err(RouteError::UnknownOp(change.op.clone()));
        };
        let context = serde_json::json!({
            "row": change.row,
            "old": change.old,
            "op": change.op.to_lowercase(),
            "table": change.table_name,
        });
        let pk = match &change.key {
            Value::Object(m) => m.values().map(text).collect::<Vec<_>>().join(","),
            other => text(other),
        };
        let mut jobs = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.table != change.table_name || !rule.op.contains(&op) {
                continue;
            }
            let rule_of = || RuleRef {
                index: i,
                table: rule.table.clone(),
                kind: rule.kind.clone(),
            };
            let args = self
                .render(&rule.args, &context)
                .map_err(|problem| RouteError::Args {
                    rule: rule_of(),
                    problem,
                })?;
            let keys = Keys {
                idempotency: Some(format!(
                    "change:{}:{pk}:{}:{i}",
                    change.table_name, change.id
                )),
                ..Keys::default()
            };
            jobs.push(
                enqueue::prepare(
                    registry,
                    &enqueue::Origin::Ferry,
                    &rule.kind,
                    &args.to_string(),
                    keys,
                    None,
                )
                .map_err(|source| RouteError::Enqueue {
                    rule: rule_of(),
                    source,
                })?,
            );
        }
        Ok(jobs)
    }

    /// Syntax only: a template string or a lone expression.
    fn check(&self, s: &str) -> Result<(), minijinja::Error> {
        match lone_expression(s) {
            Some(expr) => self.env.compile_expression(expr).map(drop),
            None => self.env.template_from_str(s).map(drop),
        }
    }

    fn render(&self, args: &Value, context: &Value) -> Result<Value, String> {
        Ok(match args {
            Value::String(s) if s.contains("{{") || s.contains("{%") => match lone_expression(s) {
                // `"{{ row.instructor_id }}"` stays a number when the column is one.
                Some(expr) => {
                    let value = self
                        .env
                        .compile_expression(expr)
                        .and_then(|e| e.eval(Serde(context)))
                        .map_err(|e| format!("{s:?}: {e}"))?;
                    if value.is_undefined() {
                        return Err(format!("{s:?} is undefined for this row"));
                    }
                    serde_json::to_value(&value).map_err(|e| format!("{s:?}: {e}"))?
                }
                None => Value::String(
                    self.env
                        .render_str(s, Serde(context))
                        .map_err(|e| format!("{s:?}: {e}"))?,
                ),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.render(v, context))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render(v, context)?)))
                    .collect::<Result<Map<_, _>, String>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// `expr` when `s` is `{{ expr }}` and nothing else.
fn lone_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then(|| inner.trim())
}

/// Calls `f` with the path and text of every string in `v`.
fn walk(v: &Value, path: &str, f: &mut impl FnMut(&str, &str)) {
    match v {
        Value::String(s) => f(path, s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), f);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                walk(item, &format!("{path}.{k}"), f);
            }
        }
        _ => {}
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use ferry_config::Env;
    use serde_json::json;

    use super::*;

    fn rules(toml: &str) -> (Rules, Registry) {
        let config = Config::from_toml_str(toml, &Env::empty()).unwrap();
        let registry = crate::registry(&config).unwrap();
        (Rules::compile(&config, &registry).unwrap(), registry)
    }

    const RULE: &str = "[notify.templates.enrolled]\nsubject = \"s\"\ntext = \"t\"\n[[on_change]]\ntable = \"app.enrollments\"\nop = [\"insert\"]\nkind = \"notify.send\"\nargs = { template = \"enrolled\", user_id = \"{{ row.instructor_id }}\", data = { course = \"Course {{ row.course_id }}\" } }\n";

    #[test]
    fn a_matching_change_renders_typed_arguments_and_a_versioned_key() {
        let (rules, registry) = rules(RULE);
        let change = Change {
            id: 17,
            table_name: "app.enrollments".into(),
            op: "INSERT".into(),
            key: json!({"id": 5}),
            row: json!({"id": 5, "instructor_id": 42, "course_id": 7}),
            old: None,
        };
        let jobs = rules.route(&registry, &change).unwrap();
        assert_eq!(jobs.len(), 1);
        let args: Value = serde_json::from_str(&jobs[0].job.args).unwrap();
        assert_eq!(
            args,
            json!({"template": "enrolled", "user_id": 42, "data": {"course": "Course 7"}})
        );
        assert_eq!(
            jobs[0].job.idempotency_key.as_deref(),
            Some("ferry/notify.send/change:app.enrollments:5:17:0")
        );
        let update = Change {
            op: "UPDATE".into(),
            ..change.clone()
        };
        assert!(rules.route(&registry, &update).unwrap().is_empty());
        let missing = Change {
            row: json!({"id": 5, "course_id": 7}),
            ..change
        };
        let e = rules.route(&registry, &missing).unwrap_err().to_string();
        assert!(
            e.contains("on_change[0]") && e.contains("row.instructor_id"),
            "{e}"
        );
    }

    #[test]
    fn unknown_kinds_and_bad_templates_name_the_rule() {
        for (toml, key) in [
            (
                "[[on_change]]\ntable = \"a.b\"\nop = [\"insert\"]\nkind = \"nope\"\n",
                "on_change[0].kind",
            ),
            (
                "[[on_change]]\ntable = \"a.b\"\nop = [\"insert\"]\nkind = \"noop\"\nargs = { x = \"{{ row. }}\" }\n",
                "on_change[0].args.x",
            ),
        ] {
            let config = Config::from_toml_str(toml, &Env::empty()).unwrap();
            let registry = crate::registry(&config).unwrap();
            let e = Rules::compile(&config, &registry).unwrap_err();
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
    }
}
