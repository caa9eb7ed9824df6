//! `SMTP_HOST` / `SMTP_PORT` / `SMTP_USER` / `SMTP_PASSWORD` / `SMTP_SECURE`, the names many
//! deployments already use, composed into the one `notify.smtp_url` ferry reads.
//!
//! `SMTP_SECURE=true` (or port 465 with `SMTP_SECURE` unset) is TLS from the first byte
//! (`smtps://`). Otherwise STARTTLS: required when a user is given, so a password never
//! crosses the network in clear; taken when offered when there is none.

use crate::{ConfigError, Env};

const PARTS: [&str; 5] = [
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USER",
    "SMTP_PASSWORD",
    "SMTP_SECURE",
];

/// The URL the parts make and the names of the variables that made it; `None` when no part
/// is set.
pub(crate) fn url(env: &Env) -> Result<Option<(String, String)>, ConfigError> {
    let given: Vec<&str> = PARTS.into_iter().filter(|p| env.get(p).is_some()).collect();
    if given.is_empty() {
        return Ok(None);
    }
    if env.get("SMTP_URL").is_some() {
        return Err(ConfigError::new(
            "SMTP_URL",
            format!("is set together with {}", given.join(", ")),
            "set either SMTP_URL or the SMTP_HOST family, not both",
        ));
    }
    let Some(host) = env.get("SMTP_HOST") else {
        return Err(ConfigError::new(
            "SMTP_HOST",
            format!("is unset while {} is set", given.join(", ")),
            "set SMTP_HOST to the mail server's name, e.g. smtp.example.com",
        ));
    };
    let port = match env.get("SMTP_PORT") {
        None => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| {
            ConfigError::new(
                "SMTP_PORT",
                format!("{p:?} is not a port number"),
                "give a number such as 587 (STARTTLS) or 465 (TLS)",
            )
        })?),
    };
    let secure = match env.get("SMTP_SECURE").map(|s| s.to_ascii_lowercase()) {
        None => port == Some(465),
        Some(s) if matches!(s.as_str(), "true" | "1" | "yes") => true,
        Some(s) if matches!(s.as_str(), "false" | "0" | "no") => false,
        Some(s) => {
            return Err(ConfigError::new(
                "SMTP_SECURE",
                format!("{s:?} is not true or false"),
                "use true for TLS from the first byte (port 465), false for STARTTLS",
            ));
        }
    };
    let scheme = if secure { "smtps" } else { "smtp" };
    let bad_host = || {
        ConfigError::new(
            "SMTP_HOST",
            format!("{host:?} is not a host name"),
            "give a name or address such as smtp.example.com, without scheme or port",
        )
    };
    let mut url = url::Url::parse(&format!("{scheme}://{host}")).map_err(|_| bad_host())?;
    if url.path() != "/" && !url.path().is_empty() || url.port().is_some() {
        return Err(bad_host());
    }
    url.set_port(port).map_err(|()| bad_host())?;
    let user = env.get("SMTP_USER");
    if let Some(user) = &user {
        url.set_username(user).map_err(|()| bad_host())?;
        url.set_password(env.get("SMTP_PASSWORD").as_deref())
            .map_err(|()| bad_host())?;
    }
    if !secure {
        let tls = if user.is_some() {
            "required"
        } else {
            "opportunistic"
        };
        url.query_pairs_mut().append_pair("tls", tls);
    }
    Ok(Some((url.to_string(), given.join(", "))))
}

#[cfg(test)]
mod tests {
    use crate::{Config, Env};

    fn smtp_url(pairs: &[(&str, &str)]) -> Result<String, crate::ConfigError> {
        let c = Config::from_toml_str("", &Env::from_pairs(pairs.iter().copied()))?;
        Ok(c.notify.smtp_url.unwrap().expose().to_owned())
    }

    #[test]
    fn parts_make_the_url_with_tls_when_a_password_travels() {
        let url = smtp_url(&[
            ("SMTP_HOST", "smtp.gmail.com"),
            ("SMTP_PORT", "587"),
            ("SMTP_USER", "me@gmail.com"),
            ("SMTP_PASSWORD", "p@ss word"),
        ])
        .unwrap();
        assert_eq!(
            url,
            "smtp://me%40gmail.com:p%40ss%20word@smtp.gmail.com:587?tls=required"
        );
        let url = smtp_url(&[("SMTP_HOST", "mail.local"), ("SMTP_PORT", "465")]).unwrap();
        assert_eq!(url, "smtps://mail.local:465");
        let url = smtp_url(&[("SMTP_HOST", "mail.local"), ("SMTP_SECURE", "false")]).unwrap();
        assert_eq!(url, "smtp://mail.local?tls=opportunistic");
    }

    #[test]
    fn contradictions_and_bad_parts_are_named() {
        for (pairs, key) in [
            (&[("SMTP_PORT", "587")][..], "SMTP_HOST"),
            (&[("SMTP_HOST", "h"), ("SMTP_PORT", "x")][..], "SMTP_PORT"),
            (
                &[("SMTP_HOST", "h"), ("SMTP_SECURE", "maybe")][..],
                "SMTP_SECURE",
            ),
            (
                &[("SMTP_HOST", "h"), ("SMTP_URL", "smtp://h")][..],
                "SMTP_URL",
            ),
            (&[("SMTP_HOST", "h:25")][..], "SMTP_HOST"),
        ] {
            let e = smtp_url(pairs).unwrap_err();
            assert!(e.key == key, "{pairs:?}: {e}");
        }
        let e = smtp_url(&[
            ("SMTP_HOST", "h"),
            ("SMTP_USER", "u"),
            ("SMTP_PASSWORD", "hunter2"),
            ("SMTP_PORT", "x"),
        ])
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
