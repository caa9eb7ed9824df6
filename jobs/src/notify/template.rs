//! Message templates: minijinja, strict about undefined values, so a missing variable is a
//! permanent error that names it instead of an email with a hole in it.

use std::collections::BTreeSet;

use ferry_config::{Delivery, Notify};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, value::Serde};
use serde_json::Value;

use crate::JobError;

/// The configured templates, compiled once per worker.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    /// Templates that are sent at least once (`delivery = "at_least_once"`).
    at_least_once: BTreeSet<String>,
}

/// A message rendered for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

const PARTS: [&str; 3] = ["subject", "text", "html"];

impl Templates {
    /// Compiles `[notify.templates]`; a syntax error names the template, part and line.
    pub fn compile(config: &Notify) -> Result<Self, JobError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Only the HTML part is escaped: subject and text are not markup.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        for (name, t) in &config.templates {
            let parts = [Some(&t.subject), Some(&t.text), t.html.as_ref()];
            for (part, source) in PARTS.iter().zip(parts) {
                if let Some(source) = source {
                    env.add_template_owned(format!("{name}.{part}"), source.clone())
                        .map_err(|e| {
                            JobError::permanent_from(
                                format!("notify.templates.{name}.{part} does not compile"),
                                e,
                            )
                        })?;
                }
            }
        }
        let at_least_once = config
            .templates
            .iter()
            .filter(|(_, t)| t.delivery == Delivery::AtLeastOnce)
            .map(|(name, _)| name.clone())
            .collect();
        Ok(Self { env, at_least_once })
    }

    /// What template `name` asks for when an email's reply never came.
    pub fn delivery(&self, name: &str) -> Delivery {
        if self.at_least_once.contains(name) {
            Delivery::AtLeastOnce
        } else {
            Delivery::AtMostOnce
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.env.get_template(&format!("{name}.subject")).is_ok()
    }

    /// Renders template `name` with `data` (a JSON object).
    pub fn render(&self, name: &str, data: &Value) -> Result<Rendered, JobError> {
        if !self.contains(name) {
            let mut known: Vec<String> = self
                .env
                .templates()
                .filter_map(|(n, _)| n.strip_suffix(".subject").map(str::to_owned))
                .collect();
            known.sort();
            return Err(JobError::permanent(format!(
                "unknown template {name:?}; [notify.templates] has: {}",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        }
        if !(data.is_object() || data.is_null()) {
            return Err(JobError::permanent(format!(
                "data must be a JSON object of template variables, got {data}"
            )));
        }
        let mut out = [None, None, None];
        for (slot, part) in out.iter_mut().zip(PARTS) {
            let Ok(template) = self.env.get_template(&format!("{name}.{part}")) else {
                continue;
            };
            let rendered = template.render(Serde(data)).map_err(|e| {
                let missing = self.missing(&template, data);
                if missing.is_empty() {
                    JobError::permanent_from(
                        format!("template {name} ({part}) failed to render"),
                        e,
                    )
                } else {
                    JobError::permanent(format!(
                        "template {name} ({part}) uses {} missing from data",
                        missing
                            .iter()
                            .map(|v| format!("{{{{ {v} }}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            })?;
            *slot = Some(rendered);
        }
        let [subject, text, html] = out;
        Ok(Rendered {
            // A header is one line.
            subject: subject
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            text: text.unwrap_or_default(),
            html,
        })
    }

    /// Top-level variables a template uses that neither `data` nor the globals provide.
    fn missing(&self, template: &minijinja::Template<'_, '_>, data: &Value) -> BTreeSet<String> {
        template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| data.get(v).is_none() && !self.env.globals().any(|(g, _)| g == v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ferry_config::{Config, Env};
    use serde_json::json;

    use super::*;

    fn templates() -> Templates {
        let config = Config::from_toml_str(
            "[notify.templates.welcome]\nsubject = \"Welcome,\\n {{ name }}\"\ntext = \"Hello {{ name }}, {{ course.title }}\"\nhtml = \"<p>{{ name }}</p>\"\n",
            &Env::empty(),
        )
        .unwrap();
        Templates::compile(&config.notify).unwrap()
    }

    #[test]
    fn renders_all_parts_and_escapes_only_html() {
        let r = templates()
            .render(
                "welcome",
                &json!({"name": "<Ann>", "course": {"title": "Maths"}}),
            )
            .unwrap();
        assert_eq!(r.subject, "Welcome, <Ann>");
        assert_eq!(r.text, "Hello <Ann>, Maths");
        assert_eq!(r.html.as_deref(), Some("<p>&lt;Ann&gt;</p>"));
    }

    #[test]
    fn missing_variables_and_unknown_templates_are_permanent_and_named() {
        let t = templates();
        let e = t
            .render("welcome", &json!({"course": {"title": "x"}}))
            .unwrap_err();
        assert!(
            matches!(&e, JobError::Permanent(_)) && e.message().contains("{{ name }}"),
            "{e}"
        );
        let e = t
            .render("welcome", &json!({"name": "A", "course": {}}))
            .unwrap_err();
        assert!(
            matches!(&e, JobError::Permanent(_)) && e.message().contains("undefined"),
            "{e}"
        );
        let e = t.render("nope", &json!({})).unwrap_err();
        assert!(
            matches!(&e, JobError::Permanent(_)) && e.message().contains("welcome"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_name_the_part() {
        let config = Config::from_toml_str(
            "[notify.templates.bad]\nsubject = \"s\"\ntext = \"{{ oops \"\n",
            &Env::empty(),
        )
        .unwrap();
        let e = Templates::compile(&config.notify).unwrap_err();
        assert!(e.to_string().contains("notify.templates.bad.text"), "{e}");
    }
}
