use std::fmt;

/// A configuration problem: which key, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn from_toml(e: toml::de::Error) -> Self {
        let message = e.message().to_owned();
        Self::new(
            "ferry.toml",
            message,
            "correct the file; see the Configuration section of the README",
        )
    }
}

impl ConfigError {
    /// A problem found after the environment was laid over the file: when variables took
    /// part, they are named, since the value may be theirs.
    pub(crate) fn from_merged(
        e: toml::de::Error,
        from_env: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        if from_env.is_empty() {
            return Self::from_toml(e);
        }
        let vars: Vec<&str> = from_env.values().map(String::as_str).collect();
        Self::new(
            "ferry.toml or the environment",
            e.message().to_owned(),
            format!(
                "correct the file or one of the variables set ({}); see the Configuration section of the README",
                vars.join(", ")
            ),
        )
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config {}: {}; fix: {}",
            self.key, self.problem, self.fix
        )
    }
}

impl std::error::Error for ConfigError {}

/// Configured names for a message about an unknown one: "a, b", or "none".
pub(crate) fn listing<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
