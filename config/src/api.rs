//! `[api]`: the HTTP server of `ferry serve`, its tokens and what each may do.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Env, Secret, duration};

/// Shorter tokens are guessable; 32 random characters are what `openssl rand -hex 16` gives.
const MIN_TOKEN_LEN: usize = 16;

/// What the enqueue token may enqueue unless `api.enqueue_kinds` says otherwise: the kinds an
/// application starts on write, and its own background jobs as webhooks (`http`, which can
/// only call the URLs `[http] allow` lists). Everything else (a full sync, a backup, SQL) is
/// an operator's decision and needs the admin token.
pub const DEFAULT_ENQUEUE_KINDS: [&str; 3] = ["sync.entity", "notify.send", "http"];

/// Caller names the server gives itself; a named token may not take one.
const RESERVED_NAMES: [&str; 5] = ["admin", "api", "cli", "scheduler", "ferry"];

/// The placeholder every shipped example secret carries (`.env.example`,
/// `deploy/kubernetes/secret.example.yaml`).
pub(crate) const PLACEHOLDER: &str = "change-me";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Api {
    /// Address `ferry serve` listens on (`--listen` overrides).
    pub listen: String,
    /// Bearer token of the enqueue scope (`FERRY_API_TOKEN`): enqueue `enqueue_kinds`, read own jobs.
    pub token: Option<Secret>,
    /// Bearer token of the admin scope (`FERRY_ADMIN_TOKEN`): everything, and the dashboard.
    pub admin_token: Option<Secret>,
    /// Kinds the enqueue token may enqueue.
    pub enqueue_kinds: Vec<String>,
    /// More enqueue tokens, each with its own name (the audit log's actor) and kinds.
    pub tokens: Vec<NamedToken>,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Most jobs of an enqueue token's kinds waiting or scheduled before it gets 429.
    pub max_waiting_per_token: u64,
    /// Furthest ahead `run_at` may be.
    #[serde(with = "duration")]
    pub max_run_at: Duration,
    /// A dashboard session ends after this long unused…
    #[serde(with = "duration")]
    pub session_idle: Duration,
    /// …and this long after sign-in, whatever happens.
    #[serde(with = "duration")]
    pub session_max: Duration,
    /// Failed sign-ins or bearer tokens per client address and minute before that address
    /// gets 429 for the rest of the minute.
    pub max_auth_failures: u32,
    /// Send the session cookie without `Secure`, for a dashboard served over plain http
    /// (`FERRY_API__INSECURE_COOKIES=true`).
    pub insecure_cookies: bool,
}

/// One `[[api.tokens]]`: an enqueue-scope token for one application.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    /// Shown in the audit log as `token:NAME`; letters, digits, `-` and `_`.
    pub name: String,
    /// The environment variable holding the token (never the token itself in the file).
    pub env: String,
    /// Kinds this token may enqueue.
    pub kinds: Vec<String>,
    /// Read from `env` when the configuration loads.
    #[serde(skip)]
    pub secret: Option<Secret>,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            token: None,
            admin_token: None,
            enqueue_kinds: DEFAULT_ENQUEUE_KINDS.map(String::from).to_vec(),
            tokens: Vec::new(),
            body_limit: 256 * 1024,
            max_waiting_per_token: 100_000,
            max_run_at: Duration::from_secs(366 * 24 * 3600),
            session_idle: Duration::from_secs(12 * 3600),
            session_max: Duration::from_secs(7 * 24 * 3600),
            max_auth_failures: 10,
            insecure_cookies: false,
        }
    }
}

impl Api {
    /// Reads each `[[api.tokens]]` value from the variable it names (FERRY_API_TOKEN and
    /// FERRY_ADMIN_TOKEN are aliases, see `env_rule`).
    pub(crate) fn read_token_env(&mut self, env: &Env) {
        for token in &mut self.tokens {
            token.secret = env.get(&token.env).map(Secret::new);
        }
    }

    /// Every token with the key that names it in errors.
    fn secrets(&self) -> Vec<(String, &Secret)> {
        let mut all = Vec::new();
        if let Some(t) = &self.admin_token {
            all.push(("api.admin_token (FERRY_ADMIN_TOKEN)".to_owned(), t));
        }
        if let Some(t) = &self.token {
            all.push(("api.token (FERRY_API_TOKEN)".to_owned(), t));
        }
        for n in &self.tokens {
            if let Some(t) = &n.secret {
                all.push((format!("api.tokens[{}] ({})", n.name, n.env), t));
            }
        }
        all
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let secrets = self.secrets();
        for (key, token) in &secrets {
            let t = token.expose();
            if t.to_ascii_lowercase().contains(PLACEHOLDER) {
                return Err(ConfigError::new(
                    key,
                    "still holds the CHANGE-ME placeholder of the example files",
                    "generate a token with `openssl rand -hex 32` and set it instead",
                ));
            }
            if t.len() < MIN_TOKEN_LEN || t.contains(char::is_whitespace) {
                return Err(ConfigError::new(
                    key,
                    format!("is shorter than {MIN_TOKEN_LEN} characters or holds spaces"),
                    "use a random token, e.g. the output of `openssl rand -hex 32`",
                ));
            }
        }
        for (i, (key, a)) in secrets.iter().enumerate() {
            if secrets[i + 1..].iter().any(|(_, b)| a == b) {
                return Err(ConfigError::new(
                    key,
                    "is the same as another token, so one scope would act as the other",
                    "give every token its own value (`openssl rand -hex 32`)",
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &self.tokens {
            let key = format!("api.tokens[{}]", t.name);
            let valid = !t.name.is_empty()
                && t.name.len() <= 32
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid || RESERVED_NAMES.contains(&t.name.as_str()) {
                return Err(ConfigError::new(
                    &key,
                    "name must be 1 to 32 letters, digits, '-' or '_', and not admin, api, cli, scheduler or ferry",
                    "rename the token",
                ));
            }
            if !names.insert(t.name.as_str()) {
                return Err(ConfigError::new(
                    &key,
                    "is named twice",
                    "give each token its own name",
                ));
            }
            if t.env.is_empty() || t.env.starts_with("FERRY_ADMIN") {
                return Err(ConfigError::new(
                    format!("{key}.env"),
                    "must name the environment variable that holds this token",
                    "e.g. env = \"BILLING_FERRY_TOKEN\"",
                ));
            }
        }
        if self.body_limit < 1024 {
            return Err(ConfigError::new(
                "api.body_limit",
                format!("{} bytes is too small for a job", self.body_limit),
                "use at least 1024 (default 262144)",
            ));
        }
        if self.max_waiting_per_token == 0 {
            return Err(ConfigError::new(
                "api.max_waiting_per_token",
                "is 0, so no token could enqueue",
                "use a positive number (default 100000)",
            ));
        }
        if self.max_auth_failures == 0 {
            return Err(ConfigError::new(
                "api.max_auth_failures",
                "is 0, so one typo would lock an address out",
                "use a small positive number (default 10)",
            ));
        }
        if self.session_idle > self.session_max || self.session_idle.is_zero() {
            return Err(ConfigError::new(
                "api.session_idle",
                "must be positive and no longer than api.session_max",
                "e.g. session_idle = \"12h\", session_max = \"7d\"",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Env};

    #[test]
    fn tokens_come_from_the_environment_and_are_checked() {
        let env = Env::from_pairs([
            ("FERRY_API_TOKEN", "enqueue-0123456789abcdef"),
            ("FERRY_ADMIN_TOKEN", "admin-0123456789abcdef"),
        ]);
        let config = Config::from_toml_str("", &env).unwrap();
        assert_eq!(
            config.api.token.as_ref().map(|t| t.expose()),
            Some("enqueue-0123456789abcdef")
        );
        assert_eq!(
            config.api.enqueue_kinds,
            ["sync.entity", "notify.send", "http"]
        );
        assert!(!format!("{config:?}").contains("0123456789abcdef"));

        let short = Env::from_pairs([("FERRY_ADMIN_TOKEN", "secret")]);
        let e = Config::from_toml_str("", &short).unwrap_err();
        assert!(e.to_string().contains("FERRY_ADMIN_TOKEN"), "{e}");
        assert!(!e.to_string().contains("secret\""), "{e}");

        let same = Env::from_pairs([
            ("FERRY_API_TOKEN", "same-0123456789abcdef"),
            ("FERRY_ADMIN_TOKEN", "same-0123456789abcdef"),
        ]);
        let e = Config::from_toml_str("", &same).unwrap_err();
        assert!(e.to_string().contains("its own value"), "{e}");
    }

    #[test]
    fn placeholder_tokens_are_refused_with_the_fix() {
        for value in ["CHANGE-ME-admin-token", "xxxxchange-me-0123456789"] {
            let env = Env::from_pairs([("FERRY_ADMIN_TOKEN", value)]);
            let e = Config::from_toml_str("", &env).unwrap_err().to_string();
            assert!(
                e.contains("CHANGE-ME") && e.contains("openssl rand -hex 32"),
                "{e}"
            );
            assert!(!e.contains(value), "{e}");
        }
    }

    #[test]
    fn named_tokens_read_their_variable_and_need_a_free_name() {
        let toml = "[[api.tokens]]\nname = \"billing\"\nenv = \"BILLING_TOKEN\"\nkinds = [\"notify.send\"]\n";
        let env = Env::from_pairs([("BILLING_TOKEN", "billing-0123456789abcdef")]);
        let config = Config::from_toml_str(toml, &env).unwrap();
        let t = &config.api.tokens[0];
        assert_eq!(
            t.secret.as_ref().map(|s| s.expose()),
            Some("billing-0123456789abcdef")
        );

        let reserved = toml.replace("billing\"", "admin\"");
        let e = Config::from_toml_str(&reserved, &env).unwrap_err();
        assert!(e.to_string().contains("rename"), "{e}");
    }
}
