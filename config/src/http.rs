//! `[http]`: where webhook jobs (kind `http`) may send requests, and the secret they are
//! signed with.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{ConfigError, Env, Secret, api::PLACEHOLDER};

/// Shorter secrets are guessable; 32 random characters are what `openssl rand -hex 16` gives.
const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// URL prefixes webhook jobs may call (`FERRY_HTTP__ALLOW=https://a/,https://b/`); empty
    /// refuses every URL.
    pub allow: Vec<String>,
    /// The environment variable holding the signing secret (never the secret itself in the
    /// file).
    pub secret_env: String,
    /// Send requests unsigned when no secret is set. Off by default so that a secret missing
    /// from a worker's environment stops webhook jobs instead of silently sending requests a
    /// receiver cannot authenticate; meant for local development.
    pub unsigned: bool,
    /// Read from `secret_env` when the configuration loads.
    #[serde(skip)]
    pub secret: Option<Secret>,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            secret_env: "FERRY_HTTP_SECRET".into(),
            unsigned: false,
            secret: None,
        }
    }
}

/// Why a URL may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{url:?} is not a URL ({reason})")]
    NotUrl {
        url: String,
        reason: url::ParseError,
    },
    #[error("{url:?} is not http or https")]
    Scheme { url: String },
    #[error("{url:?} holds a user name or password; send credentials in headers instead")]
    Credentials { url: String },
    #[error(
        "no URL is allowed: set [http] allow (FERRY_HTTP__ALLOW) to the URL prefixes webhook jobs may call, e.g. [\"https://app.internal/hooks/\"]"
    )]
    NothingAllowed,
    #[error("{url:?} is outside [http] allow ({allowed}); add its prefix there to call it")]
    NotAllowed { url: String, allowed: String },
}

impl Http {
    pub(crate) fn read_secret_env(&mut self, env: &Env) {
        self.secret = env.get(&self.secret_env).map(Secret::new);
    }

    /// The URL parsed, if `[http] allow` lets webhook jobs call it. Compared as parsed URLs
    /// (scheme, host, port, then path segments), never as text: the prefix
    /// `https://app.internal` must not let `https://app.internal.evil.com` through, nor
    /// `https://app.internal/hooks` let `/hooks-admin` or `/hooks/../admin` through.
    ///
    /// ```
    /// let mut http = ferry_config::Http::default();
    /// http.allow = vec!["https://app.internal/hooks/".into()];
    /// assert!(http.check_url("https://app.internal/hooks/welcome?x=1").is_ok());
    /// assert!(http.check_url("https://app.internal.evil.com/hooks/").is_err());
    /// assert!(http.check_url("https://app.internal/admin").is_err());
    /// assert!(http.check_url("http://app.internal/hooks/welcome").is_err());
    /// ```
    pub fn check_url(&self, url: &str) -> Result<Url, Refused> {
        let parsed = web_url(url)?;
        if self.allow.is_empty() {
            return Err(Refused::NothingAllowed);
        }
        // Each entry was checked when the configuration loaded; one that does not parse
        // cannot allow anything.
        let allowed = self
            .allow
            .iter()
            .filter_map(|a| Url::parse(a).ok())
            .any(|prefix| under(&parsed, &prefix));
        if allowed {
            Ok(parsed)
        } else {
            Err(Refused::NotAllowed {
                url: url.to_owned(),
                allowed: self.allow.join(", "),
            })
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (i, prefix) in self.allow.iter().enumerate() {
            let key = format!("http.allow[{i}]");
            let fix = "give a URL prefix such as \"https://app.internal/hooks/\"";
            let parsed = web_url(prefix).map_err(|e| ConfigError::new(&key, e.to_string(), fix))?;
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(ConfigError::new(
                    key,
                    format!("{prefix:?} has a query or fragment"),
                    fix,
                ));
            }
        }
        let var = &self.secret_env;
        let valid_name = !var.is_empty()
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !var.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(ConfigError::new(
                "http.secret_env",
                format!("{var:?} is not an environment variable name"),
                "name the variable that holds the secret, e.g. \"FERRY_HTTP_SECRET\"",
            ));
        }
        let key = format!("{var} (named by http.secret_env)");
        match &self.secret {
            Some(s) if s.expose().to_ascii_lowercase().contains(PLACEHOLDER) => {
                Err(ConfigError::new(
                    key,
                    "still holds the CHANGE-ME placeholder of the example files",
                    "generate a secret with `openssl rand -hex 32` and set it instead",
                ))
            }
            Some(s)
                if s.expose().len() < MIN_SECRET_LEN
                    || s.expose().contains(char::is_whitespace) =>
            {
                Err(ConfigError::new(
                    key,
                    format!("is shorter than {MIN_SECRET_LEN} characters or holds spaces"),
                    "use a random secret, e.g. the output of `openssl rand -hex 32`",
                ))
            }
            Some(_) if self.unsigned => Err(ConfigError::new(
                "http.unsigned",
                format!("is true while {var} holds a signing secret"),
                "remove http.unsigned to sign requests, or unset the secret",
            )),
            _ => Ok(()),
        }
    }
}

/// `url` parsed, when it is an http(s) URL without credentials.
fn web_url(url: &str) -> Result<Url, Refused> {
    let parsed = Url::parse(url).map_err(|reason| Refused::NotUrl {
        url: url.to_owned(),
        reason,
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Refused::Scheme {
            url: url.to_owned(),
        });
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Refused::Credentials {
            url: url.to_owned(),
        });
    }
    Ok(parsed)
}

/// Whether `url` lies under `prefix`: the same scheme, host and port (default ports
/// included), and a path that is the prefix's or continues it at a segment boundary.
fn under(url: &Url, prefix: &Url) -> bool {
    if url.scheme() != prefix.scheme()
        || url.host() != prefix.host()
        || url.port_or_known_default() != prefix.port_or_known_default()
    {
        return false;
    }
    let (path, base) = (url.path(), prefix.path());
    if base.ends_with('/') {
        return path.starts_with(base);
    }
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use crate::{Config, Env};

    fn http(allow: &[&str]) -> super::Http {
        super::Http {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn prefixes_match_parsed_urls_not_text() {
        let h = http(&["https://app.internal", "http://10.0.0.5:8080/api/v1"]);
        for ok in [
            "https://app.internal/",
            "https://APP.internal:443/x",
            "https://app.internal/hooks?a=1#f",
            "http://10.0.0.5:8080/api/v1",
            "http://10.0.0.5:8080/api/v1/jobs",
        ] {
            assert!(h.check_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "https://app.internal.evil.com/",
            "https://app.internal@evil.com/",
            "https://user:pw@app.internal/",
            "http://app.internal/",
            "https://app.internal:8443/",
            "http://10.0.0.5:8080/api/v1admin",
            "http://10.0.0.5:8080/api/v1/../../admin",
            "http://10.0.0.5:8080/api/v1/%2e%2e/%2e%2e/admin",
            "http://10.0.0.5/api/v1",
            "ftp://app.internal/",
            "not a url",
        ] {
            assert!(h.check_url(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn an_empty_allow_list_refuses_everything_and_says_what_to_set() {
        let e = http(&[]).check_url("https://app.internal/").unwrap_err();
        assert!(e.to_string().contains("[http] allow"), "{e}");
    }

    #[test]
    fn the_secret_comes_from_the_variable_named_and_allow_from_the_environment() {
        let env = Env::from_pairs([
            ("HOOK_SECRET", "hook-secret-0123456789"),
            (
                "FERRY_HTTP__ALLOW",
                "https://a.internal/,https://b.internal/x/",
            ),
        ]);
        let c = Config::from_toml_str("[http]\nsecret_env = \"HOOK_SECRET\"\n", &env).unwrap();
        assert_eq!(
            c.http.secret.as_ref().map(|s| s.expose()),
            Some("hook-secret-0123456789")
        );
        assert_eq!(
            c.http.allow,
            ["https://a.internal/", "https://b.internal/x/"]
        );
        assert!(!format!("{c:?}").contains("0123456789"));

        let env = Env::from_pairs([("FERRY_HTTP_SECRET", "CHANGE-ME-http-secret-0001")]);
        let e = Config::from_toml_str("", &env).unwrap_err().to_string();
        assert!(e.contains("CHANGE-ME") && !e.contains("0001"), "{e}");
        let env = Env::from_pairs([("FERRY_HTTP_SECRET", "short")]);
        let e = Config::from_toml_str("", &env).unwrap_err().to_string();
        assert!(
            e.contains("FERRY_HTTP_SECRET") && !e.contains("short\""),
            "{e}"
        );
        let e = Config::from_toml_str("[http]\nallow = [\"https://a/?q=1\"]\n", &Env::empty())
            .unwrap_err();
        assert!(e.to_string().contains("http.allow[0]"), "{e}");
    }
}
