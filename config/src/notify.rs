//! `[notify]`: in-app notification rows, email over SMTP, templates and broadcast audiences.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{ConfigError, duration, error::listing, is_sql_name, positive};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Notify {
    /// `SMTP_URL`: `smtp://[user:pass@]host[:port]` (plain, port 25), `?tls=required` (STARTTLS,
    /// port 587), `?tls=opportunistic`, or `smtps://` (TLS from the first byte, port 465).
    pub smtp_url: Option<SmtpUrl>,
    /// `SMTP_FROM`: the sender, `noreply@example.com` or `Name <noreply@example.com>`.
    pub from: Option<String>,
    /// The table in-app notifications go to, `table` or `schema.table`; unset: no in-app rows.
    pub table: Option<String>,
    pub columns: Columns,
    pub templates: BTreeMap<String, Template>,
    /// Broadcast audiences: name → a query returning a column `email` (and optionally
    /// `user_id` and anything the template uses). Queries live only here, never in job
    /// arguments.
    pub audiences: BTreeMap<String, String>,
    /// SMTP connections kept open per worker process.
    pub connections: u32,
    /// Broadcast recipients read and sent per checkpoint.
    pub chunk_size: usize,
    /// Most emails one broadcast sends per second.
    pub rate: u32,
    /// Longest wait for one SMTP reply.
    #[serde(with = "duration")]
    pub smtp_timeout: Duration,
    /// A channel prefix: each in-app row, once committed, is published as JSON on Redis
    /// pub/sub channel `PREFIX:USER_ID` for the app's WebSocket layer. Unset: no publishing.
    pub realtime: Option<String>,
    /// Also `pg_notify` on the same channel name (needs `realtime`).
    pub realtime_pg: bool,
    /// Longest a realtime publish may take before it counts as missed; the delivery goes on.
    #[serde(with = "duration")]
    pub realtime_timeout: Duration,
}

impl Default for Notify {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: None,
            table: None,
            columns: Columns::default(),
            templates: BTreeMap::new(),
            audiences: BTreeMap::new(),
            connections: 8,
            chunk_size: 100,
            rate: 100,
            smtp_timeout: Duration::from_secs(30),
            realtime: None,
            realtime_pg: false,
            realtime_timeout: Duration::from_millis(250),
        }
    }
}

/// Where the parts of an in-app notification go.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Columns {
    pub user: String,
    /// Gets the rendered subject.
    pub title: String,
    /// Gets the rendered text.
    pub body: String,
    /// The app's own columns: a name `notify.send` takes in `"columns"` → the table's
    /// column (`link = "link"`, `data = "payload"`). Checked against the catalog on use.
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            user: "user_id".into(),
            title: "title".into(),
            body: "body".into(),
            extra: BTreeMap::new(),
        }
    }
}

/// One message: minijinja templates rendered with the job's data.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub subject: String,
    pub text: String,
    /// Sent as the HTML alternative of `text`; values are HTML-escaped.
    pub html: Option<String>,
    #[serde(default)]
    pub delivery: Delivery,
}

/// What an email whose reply never came becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Recorded `unconfirmed` and never sent again: nobody gets it twice, a few may get none.
    #[default]
    AtMostOnce,
    /// Sent again with the same Message-ID: nobody goes without, a few may get it twice
    /// (receivers that dedupe by Message-ID show it once). For resets and invitations.
    AtLeastOnce,
}

impl Delivery {
    /// As recorded in `notify_deliveries.delivery`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AtMostOnce => "at_most_once",
            Self::AtLeastOnce => "at_least_once",
        }
    }
}

/// An SMTP URL that may hold a password: never shown in full, not even by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SmtpUrl(String);

impl SmtpUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for the SMTP client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for messages and logs.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                url.to_string()
            }
            Err(_) => "(unparsable SMTP URL)".into(),
        }
    }
}

/// Serialized only for display (`ferry config check`), so the password is masked.
impl Serialize for SmtpUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Notify {
    /// The query of audience `name`, or a message naming the audiences there are.
    pub fn audience(&self, name: &str) -> Result<&str, String> {
        self.audiences.get(name).map(String::as_str).ok_or_else(|| {
            format!(
                "unknown audience {name:?}; [notify.audiences] has: {}",
                listing(self.audiences.keys())
            )
        })
    }

    /// `table` split into schema (if given) and table name.
    pub fn table_parts(&self) -> Option<(Option<&str>, &str)> {
        let table = self.table.as_deref()?;
        Some(match table.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, table),
        })
    }

    /// Checks everything that can be checked without connecting; `record_apart` says whether
    /// ferry's record lives in another database than the application's.
    pub(crate) fn validate(&self, record_apart: bool) -> Result<(), ConfigError> {
        if let Some(url) = &self.smtp_url {
            check_smtp_url(url)?;
        }
        if let Some(from) = &self.from
            && !from.contains('@')
        {
            return Err(ConfigError::new(
                "notify.from (SMTP_FROM)",
                format!("{from:?} is not an email address"),
                "give an address such as \"noreply@example.com\" or \"Name <noreply@example.com>\"",
            ));
        }
        if let Some((schema, table)) = self.table_parts()
            && !(schema.is_none_or(is_sql_name) && is_sql_name(table))
        {
            return Err(ConfigError::new(
                "notify.table",
                format!("{:?} is not a plain table or schema.table name", table),
                "use letters, digits and underscores, e.g. \"notifications\"",
            ));
        }
        let c = &self.columns;
        let fixed = [("user", &c.user), ("title", &c.title), ("body", &c.body)];
        for (name, column) in fixed
            .into_iter()
            .chain(c.extra.iter().map(|(n, c)| (n.as_str(), c)))
        {
            if !(is_sql_name(name) && is_sql_name(column)) {
                return Err(ConfigError::new(
                    format!("notify.columns.{name}"),
                    format!("{column:?} is not a column name"),
                    "use letters, digits and underscores on both sides, e.g. link = \"link\"",
                ));
            }
            if fixed.iter().any(|(n, c)| *c == column && *n != name) {
                return Err(ConfigError::new(
                    format!("notify.columns.{name}"),
                    format!(
                        "column {column:?} is already the {} column",
                        fixed
                            .iter()
                            .find(|(_, c)| *c == column)
                            .map_or("", |(n, _)| *n)
                    ),
                    "map each table column once",
                ));
            }
        }
        if let Some(prefix) = &self.realtime
            && (prefix.is_empty()
                || prefix.len() > 100
                || prefix
                    .chars()
                    .any(|ch| ch.is_whitespace() || ch.is_control()))
        {
            return Err(ConfigError::new(
                "notify.realtime",
                format!("{prefix:?} is not a channel prefix"),
                "give a short name without spaces, e.g. \"notifications\"",
            ));
        }
        if self.realtime_pg && self.realtime.is_none() {
            return Err(ConfigError::new(
                "notify.realtime_pg",
                "is set but notify.realtime is not",
                "set notify.realtime = \"notifications\" (the channel prefix) as well",
            ));
        }
        if self.realtime.is_some() && self.realtime_timeout.is_zero() {
            return Err(ConfigError::new(
                "notify.realtime_timeout",
                "is zero",
                "give a duration such as \"250ms\"",
            ));
        }
        if self.table.is_some() && record_apart {
            return Err(ConfigError::new(
                "notify.table",
                "needs ferry's schema in the application database: each in-app row is written in the same transaction as its delivery record, so a retry never writes it twice",
                "leave FERRY_DATABASE_URL unset (or equal to DATABASE_URL), or unset notify.table",
            ));
        }
        for (name, t) in &self.templates {
            let key = |field: &str| format!("notify.templates.{name}.{field}");
            if !is_sql_name(name) {
                return Err(ConfigError::new(
                    format!("notify.templates.{name}"),
                    "is not a plain name",
                    "use letters, digits and underscores",
                ));
            }
            if t.subject.trim().is_empty() {
                return Err(ConfigError::new(
                    key("subject"),
                    "is empty",
                    "give a subject",
                ));
            }
            if t.text.trim().is_empty() {
                return Err(ConfigError::new(
                    key("text"),
                    "is empty",
                    "give the plain-text body (html is optional, text is not)",
                ));
            }
        }
        for (name, query) in &self.audiences {
            if !is_sql_name(name) {
                return Err(ConfigError::new(
                    format!("notify.audiences.{name}"),
                    "is not a plain name",
                    "use letters, digits and underscores",
                ));
            }
            if query.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("notify.audiences.{name}"),
                    "is empty",
                    "give a query returning a column email, e.g. \"SELECT email, id AS user_id FROM users\"",
                ));
            }
        }
        positive("notify.connections", self.connections as usize)?;
        positive("notify.rate", self.rate as usize)?;
        if !(1..=10_000).contains(&self.chunk_size) {
            return Err(ConfigError::new(
                "notify.chunk_size",
                format!("{} is out of range", self.chunk_size),
                "use 1 to 10000 (default 100)",
            ));
        }
        if self.smtp_timeout.is_zero() {
            return Err(ConfigError::new(
                "notify.smtp_timeout",
                "is zero",
                "give a duration such as \"30s\"",
            ));
        }
        Ok(())
    }
}

/// Problems are described without echoing the URL, which may hold a password.
fn check_smtp_url(url: &SmtpUrl) -> Result<(), ConfigError> {
    const KEY: &str = "notify.smtp_url (SMTP_URL)";
    const FIX: &str = "give smtp://[user:pass@]host[:port][?tls=required|opportunistic] or smtps://[user:pass@]host[:port]";
    let parsed = url::Url::parse(url.expose())
        .map_err(|e| ConfigError::new(KEY, format!("is not a URL ({e})"), FIX))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(KEY, "has no host", FIX));
    }
    let tls = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match (parsed.scheme(), tls.as_deref()) {
        ("smtp", None | Some("required" | "opportunistic")) | ("smtps", None) => Ok(()),
        ("smtp" | "smtps", Some(other)) => Err(ConfigError::new(
            KEY,
            format!("has tls={other:?}"),
            "use tls=required (STARTTLS) or tls=opportunistic with smtp://, or smtps:// alone",
        )),
        (scheme, _) => Err(ConfigError::new(
            KEY,
            format!("has scheme {scheme:?}, expected smtp or smtps"),
            FIX,
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Env};

    #[test]
    fn smtp_passwords_never_show() {
        let env = Env::from_pairs([(
            "SMTP_URL",
            "smtp://mailer:hunter2@mail.local:587?tls=required",
        )]);
        let c = Config::from_toml_str("", &env).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("mailer:***@mail.local"), "{shown}");
        let e = Config::from_toml_str("", &Env::from_pairs([("SMTP_URL", "http://u:hunter2@x")]))
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("SMTP_URL"), "{e}");
    }

    #[test]
    fn notify_section_checks_names() {
        let c = Config::from_toml_str(
            "[notify]\ntable = \"app.notifications\"\n[notify.templates.welcome]\nsubject = \"Hi {{ name }}\"\ntext = \"Hello\"\n[notify.audiences]\nall = \"SELECT email FROM users\"\n",
            &Env::empty(),
        )
        .unwrap();
        assert_eq!(c.notify.table_parts(), Some((Some("app"), "notifications")));
        for (toml, key) in [
            ("[notify]\ntable = \"x; drop\"\n", "notify.table"),
            ("[notify.columns]\nuser = \"a b\"\n", "notify.columns.user"),
            (
                "[notify.templates.w]\nsubject = \"s\"\ntext = \" \"\n",
                "notify.templates.w.text",
            ),
            ("[notify]\nfrom = \"nobody\"\n", "SMTP_FROM"),
            ("[notify]\nsmtp_url = \"smtp://h?tls=maybe\"\n", "SMTP_URL"),
            ("[notify]\nrate = 0\n", "notify.rate"),
        ] {
            let e = Config::from_toml_str(toml, &Env::empty()).unwrap_err();
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://a@b/app"),
            ("FERRY_DATABASE_URL", "postgres://a@b/ops"),
        ]);
        let e = Config::from_toml_str("[notify]\ntable = \"n\"\n", &env).unwrap_err();
        assert!(e.to_string().contains("FERRY_DATABASE_URL"), "{e}");
    }
}
