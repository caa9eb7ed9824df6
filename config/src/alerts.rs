//! `[alerts]`: where the scheduler sends word of what went wrong while nobody watched, and the
//! thresholds that decide it.
//!
//! An alert goes to `webhook` (a JSON POST with a Slack-compatible `text` field) and/or to
//! every address in `email` (a `notify.send` job with the built-in template
//! [`ALERT_TEMPLATE`]). Every alert is recorded in schema `ferry` whether or not it is sent.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Secret, Template, duration};

/// The notify template alert emails are rendered from; `[notify.templates.ferry_alert]`
/// replaces it.
pub const ALERT_TEMPLATE: &str = "ferry_alert";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Alerts {
    /// An `http(s)://` URL alerts are POSTed to. It often holds a token (Slack's do), so it is
    /// never logged or shown.
    pub webhook: Option<Secret>,
    /// Addresses each alert is mailed to, through notify (needs `SMTP_URL`).
    pub email: Vec<String>,
    /// The dashboard's address, linked from each alert, e.g. `https://ferry.example.com/dashboard`.
    pub dashboard_url: Option<String>,
    /// How often the scheduler looks for something to alert on.
    #[serde(with = "duration")]
    pub check_every: Duration,
    /// Dead jobs of one kind are announced at most once per this window: the first at once,
    /// the rest of the window in one digest with their count.
    #[serde(with = "duration")]
    pub dead_digest_every: Duration,
    /// The newest verified backup of a database older than this raises an alert.
    #[serde(with = "duration")]
    pub backup_max_age: Duration,
    /// A run silent this long (well past `scheduler.reconcile_after`, so the reconciler could
    /// not revive it) raises an alert.
    #[serde(with = "duration")]
    pub stuck_after: Duration,
    /// More captured changes than this waiting for the relay raises an alert.
    pub relay_backlog: u64,
    /// A condition that persists (a stale backup, a backlog, a late schedule) is announced
    /// again at most this often.
    #[serde(with = "duration")]
    pub repeat_every: Duration,
    /// Longest wait for the webhook's answer.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for Alerts {
    fn default() -> Self {
        Self {
            webhook: None,
            email: Vec::new(),
            dashboard_url: None,
            check_every: Duration::from_secs(5),
            dead_digest_every: Duration::from_secs(600),
            backup_max_age: Duration::from_secs(26 * 3600),
            stuck_after: Duration::from_secs(900),
            relay_backlog: 10_000,
            repeat_every: Duration::from_secs(6 * 3600),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Alerts {
    /// Whether alerts go anywhere beyond the record and the log.
    pub fn delivers(&self) -> bool {
        self.webhook.is_some() || !self.email.is_empty()
    }

    /// The template alert emails use unless the config defines its own.
    pub fn default_template() -> Template {
        Template {
            subject: "[ferry] {{ title }}".into(),
            text: "{{ message }}\n\nWhere to look: {{ where }}\n\nRaised at {{ raised_at }} (alert {{ id }}).".into(),
            html: None,
            delivery: Default::default(),
        }
    }

    pub(crate) fn validate(&self, smtp: bool) -> Result<(), ConfigError> {
        if let Some(url) = &self.webhook {
            crate::check_url(
                "alerts.webhook",
                url.expose(),
                &["http", "https"],
                "https://hooks.slack.com/services/...",
            )
            .map_err(|e| ConfigError::new(e.key, "is not an http(s) URL", e.fix))?;
        }
        for address in &self.email {
            if !address.contains('@') {
                return Err(ConfigError::new(
                    "alerts.email",
                    format!("{address:?} is not an email address"),
                    "list addresses such as \"ops@example.com\"",
                ));
            }
        }
        if !self.email.is_empty() && !smtp {
            return Err(ConfigError::new(
                "alerts.email",
                "needs an SMTP server, and none is configured",
                "set SMTP_URL (or notify.smtp_url), or leave alerts.email out",
            ));
        }
        if let Some(url) = &self.dashboard_url {
            crate::check_url(
                "alerts.dashboard_url",
                url,
                &["http", "https"],
                "https://ferry.example.com/dashboard",
            )?;
        }
        for (key, d) in [
            ("alerts.check_every", self.check_every),
            ("alerts.dead_digest_every", self.dead_digest_every),
            ("alerts.backup_max_age", self.backup_max_age),
            ("alerts.stuck_after", self.stuck_after),
            ("alerts.repeat_every", self.repeat_every),
            ("alerts.timeout", self.timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(
                    key,
                    "is zero",
                    "give a duration such as \"10m\"",
                ));
            }
        }
        if self.relay_backlog == 0 {
            return Err(ConfigError::new(
                "alerts.relay_backlog",
                "is 0, so every captured change would alert",
                "use a number of waiting changes such as 10000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Env};

    fn load(text: &str) -> Result<Config, crate::ConfigError> {
        Config::from_toml_str(text, &Env::empty())
    }

    #[test]
    fn defaults_and_checks() {
        let c = load("").unwrap();
        assert_eq!(c.alerts.backup_max_age.as_secs(), 26 * 3600);
        assert!(!c.alerts.delivers());
        let c = load("[alerts]\nwebhook = \"https://hooks.example.com/T0/B0/secret\"\n").unwrap();
        assert!(c.alerts.delivers());
        assert!(!format!("{:?}", c.alerts).contains("secret"));
        let e = load("[alerts]\nwebhook = \"ftp://x\"\n").unwrap_err();
        assert_eq!(e.key, "alerts.webhook");
        let e = load("[alerts]\nemail = [\"ops@example.com\"]\n").unwrap_err();
        assert!(e.to_string().contains("SMTP_URL"), "{e}");
        let c = load(
            "[alerts]\nemail = [\"ops@example.com\"]\n[notify]\nsmtp_url = \"smtp://127.0.0.1:2525\"\n",
        )
        .unwrap();
        assert!(c.notify.templates.contains_key(super::ALERT_TEMPLATE));
        let e = load("[alerts]\nemail = [\"ops\"]\n").unwrap_err();
        assert!(e.to_string().contains("\"ops\""), "{e}");
        let e = load("[alerts]\nrelay_backlog = 0\n").unwrap_err();
        assert_eq!(e.key, "alerts.relay_backlog");
    }
}
