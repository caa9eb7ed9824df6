//! Rate limits in config: `[kinds.NAME] rate = "100/s"` and the `[limits]` table of named
//! targets (`"http:api.example.com" = "50/s"`, `"smtp:mail.example.com" = "10/s"`). Kept as
//! the text the operator wrote, so `ferry config check` shows it back unchanged; parsed by
//! [`Rate::parse`] during validation, which names the key in any error.

use std::time::Duration;

use crate::{Config, ConfigError};

/// How many starts a limit allows per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

const EXAMPLE: &str = "write it as COUNT/UNIT with UNIT s, min or h, e.g. rate = \"100/s\"";

impl Rate {
    /// Parses `"100/s"`, `"30/min"`, `"500/h"`; `key` names the setting in errors.
    pub fn parse(key: &str, text: &str) -> Result<Self, ConfigError> {
        let bad = |problem: String| ConfigError::new(key, problem, EXAMPLE);
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| bad(format!("{text:?} has no /UNIT")))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| bad(format!("{:?} is not a whole number", count.trim())))?;
        if count == 0 {
            return Err(bad(format!(
                "{text:?} allows nothing; to stop a kind, pause its queue instead"
            )));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(bad(format!("{other:?} is not a unit of time"))),
        };
        Ok(Self { count, per })
    }

    /// The time between two starts, rounded up to a whole microsecond so the limit is never
    /// exceeded by rounding (3/s is 333,334 µs apart, not 333,333).
    pub fn interval(&self) -> Duration {
        let per = self.per.as_micros() as u64;
        Duration::from_micros(per.div_ceil(u64::from(self.count)))
    }
}

impl Config {
    /// The rate limit of kind `kind` (`[kinds.NAME] rate`), if any.
    pub fn kind_rate(&self, kind: &str) -> Option<Rate> {
        let text = self.kinds.get(kind)?.rate.as_deref()?;
        Rate::parse("", text).ok()
    }

    /// The rate limit of target `name` (`[limits]`), if any.
    pub fn limit(&self, name: &str) -> Option<Rate> {
        Rate::parse("", self.limits.get(name)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse() {
        let r = Rate::parse("k", "100/s").unwrap();
        assert_eq!(r.interval(), Duration::from_millis(10));
        assert_eq!(
            Rate::parse("k", "30 / min").unwrap().interval(),
            Duration::from_secs(2)
        );
        assert_eq!(
            Rate::parse("k", "3/s").unwrap().interval(),
            Duration::from_micros(333_334)
        );
        assert_eq!(
            Rate::parse("k", "1/h").unwrap().per,
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn errors_name_the_key_and_show_an_example() {
        for bad in ["100", "x/s", "0/s", "10/day", "-1/s", "1.5/s"] {
            let e = Rate::parse("kinds.http.rate", bad).unwrap_err().to_string();
            assert!(e.contains("kinds.http.rate"), "{bad}: {e}");
            assert!(e.contains("\"100/s\""), "{bad}: {e}");
        }
    }

    #[test]
    fn rates_are_checked_where_written() {
        let c = Config::from_toml_str(
            "[kinds.http]\nrate = \"20/s\"\n[limits]\n\"http:app.internal\" = \"5/min\"\n",
            &crate::Env::empty(),
        )
        .unwrap();
        assert_eq!(c.kind_rate("http").unwrap().count, 20);
        assert_eq!(
            c.limit("http:app.internal").unwrap().per,
            Duration::from_secs(60)
        );
        assert!(c.kind_rate("sleep").is_none() && c.limit("smtp:x").is_none());
        let e = Config::from_toml_str(
            "[kinds.http]\nrate = \"20 per second\"\n",
            &crate::Env::empty(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("kinds.http.rate"), "{e}");
        let e = Config::from_toml_str(
            "[limits]\n\"smtp:mail\" = \"10/day\"\n",
            &crate::Env::empty(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("limits.\"smtp:mail\""), "{e}");
    }
}
