//! `[api]`: the HTTP server of `ferry serve`.

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Secret};

/// Shorter tokens are guessable; 32 random characters are what `openssl rand -hex 16` gives.
const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Api {
    /// Address `ferry serve` listens on (`--listen` overrides).
    pub listen: String,
    /// Bearer token of the enqueue scope (`FERRY_API_TOKEN`): enqueue and read own jobs.
    pub token: Option<Secret>,
    /// Bearer token of the admin scope (`FERRY_ADMIN_TOKEN`): everything, and the dashboard.
    pub admin_token: Option<Secret>,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            token: None,
            admin_token: None,
            body_limit: 256 * 1024,
        }
    }
}

impl Api {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (key, token) in [
            ("api.token (FERRY_API_TOKEN)", &self.token),
            ("api.admin_token (FERRY_ADMIN_TOKEN)", &self.admin_token),
        ] {
            if let Some(t) = token
                && (t.expose().len() < MIN_TOKEN_LEN || t.expose().contains(char::is_whitespace))
            {
                return Err(ConfigError::new(
                    key,
                    format!("is shorter than {MIN_TOKEN_LEN} characters or holds spaces"),
                    "use a random token, e.g. the output of `openssl rand -hex 16`",
                ));
            }
        }
        if self.token.is_some() && self.token == self.admin_token {
            return Err(ConfigError::new(
                "api.token (FERRY_API_TOKEN)",
                "is the same as the admin token, so the enqueue scope would be admin",
                "give the two scopes different tokens",
            ));
        }
        if self.body_limit < 1024 {
            return Err(ConfigError::new(
                "api.body_limit",
                format!("{} bytes is too small for a job", self.body_limit),
                "use at least 1024 (default 262144)",
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
        assert!(e.to_string().contains("different tokens"), "{e}");
    }
}
