//! `[[schedule]]` and `[scheduler]`: cron fires with time zones, what happens after downtime,
//! and the timings of the scheduler's loops.
//!
//! Cron expressions are the usual five fields (`min hour day month weekday`, fired at second 0)
//! or have a seconds field first (`sec min hour day month weekday [year]`); they are read on the
//! wall clock of the schedule's time zone. Kinds and their arguments are
//! checked against the registry by the scheduler, before it connects.

use std::{str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{ConfigError, duration};

/// One cron schedule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Stable name: fires are recorded under it.
    pub name: String,
    /// `min hour day month weekday` (crontab), e.g. `"0 2 * * *"` for 02:00 every day, or
    /// `sec min hour day month weekday [year]`.
    pub cron: String,
    /// An IANA zone such as `"Europe/Berlin"`; default UTC.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The job kind each fire enqueues.
    pub kind: String,
    /// The job's arguments; default `{}`.
    #[serde(default = "empty_args")]
    pub args: serde_json::Value,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// What a scheduler enqueues for the fires it missed while none ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// One job, for the newest missed fire.
    #[default]
    Latest,
    /// One job per missed fire, at most `scheduler.catch_up_limit` (the newest).
    All,
    /// None.
    Skip,
}

fn utc() -> String {
    "UTC".into()
}

fn empty_args() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scheduler {
    /// Longest pause between two checks for due fires (a scheduler also wakes at each fire).
    #[serde(with = "duration")]
    pub tick: Duration,
    /// A fire handled later than this was missed (no scheduler ran); `catch_up` decides.
    #[serde(with = "duration")]
    pub late_after: Duration,
    /// Most missed fires one `catch_up = "all"` enqueues.
    pub catch_up_limit: usize,
    /// A run silent this long whose job Redis lost, with no live worker, is re-dispatched.
    #[serde(with = "duration")]
    pub reconcile_after: Duration,
    /// How often the reconciler looks for such runs.
    #[serde(with = "duration")]
    pub reconcile_every: Duration,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            late_after: Duration::from_secs(30),
            catch_up_limit: 100,
            reconcile_after: Duration::from_secs(60),
            reconcile_every: Duration::from_secs(10),
        }
    }
}

impl Schedule {
    /// The config key naming this schedule in errors.
    pub fn key(&self, index: usize, field: &str) -> String {
        format!("schedule[{index}] ({}).{field}", self.name)
    }

    /// The parsed cron expression.
    pub fn cron(&self) -> Result<cron::Schedule, String> {
        let expr = crate::unix_cron::seconds_first(&self.cron)?;
        cron::Schedule::from_str(&expr).map_err(|e| {
            // The parser's message is the expression, a caret under the first bad spot, and
            // sometimes a reason.
            let message = e.to_string();
            let mut lines = message.lines().skip(1);
            let at = lines
                .next()
                .and_then(|l| l.find('^'))
                .filter(|_| expr == self.cron) // a rewritten five-field form has other positions
                .map_or(String::new(), |at| format!(" from character {}", at + 1));
            let why: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(": {}", why.join(" "))
            };
            format!("{:?} is not a cron expression (bad{at}{why})", self.cron)
        })
    }

    /// The parsed time zone.
    pub fn tz(&self) -> Result<chrono_tz::Tz, String> {
        chrono_tz::Tz::from_str(&self.timezone)
            .map_err(|_| format!("{:?} is not a known time zone", self.timezone))
    }

    fn validate(&self, index: usize) -> Result<(), ConfigError> {
        if !crate::is_sql_name(&self.name.replace('-', "_")) {
            return Err(ConfigError::new(
                self.key(index, "name"),
                format!("{:?} is not a plain name", self.name),
                "use letters, digits, - and _ (at most 63)",
            ));
        }
        if let Err(problem) = self.cron() {
            return Err(ConfigError::new(
                self.key(index, "cron"),
                problem,
                "give five fields (min hour day month weekday, e.g. \"0 2 * * *\" for 02:00 daily) or six or seven with seconds first (sec min hour day month weekday [year])",
            ));
        }
        if let Err(problem) = self.tz() {
            return Err(ConfigError::new(
                self.key(index, "timezone"),
                problem,
                "give an IANA zone name such as \"UTC\", \"Europe/Berlin\" or \"America/New_York\"",
            ));
        }
        if !self.args.is_object() {
            return Err(ConfigError::new(
                self.key(index, "args"),
                "is not a table",
                "give the job's arguments as a table, e.g. args = { ms = 100 }",
            ));
        }
        Ok(())
    }
}

impl Scheduler {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, d) in [
            ("scheduler.tick", self.tick),
            ("scheduler.late_after", self.late_after),
            ("scheduler.reconcile_after", self.reconcile_after),
            ("scheduler.reconcile_every", self.reconcile_every),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(
                    key,
                    "is zero",
                    "give a duration such as \"10s\"",
                ));
            }
        }
        if self.late_after < self.tick * 2 {
            return Err(ConfigError::new(
                "scheduler.late_after",
                "is shorter than two ticks, so fires handled on time could count as missed",
                "make it at least 2 x scheduler.tick (default 30s with a 1s tick)",
            ));
        }
        if self.catch_up_limit == 0 {
            return Err(ConfigError::new(
                "scheduler.catch_up_limit",
                "is 0",
                "use 1 or more, or catch_up = \"skip\" on the schedule",
            ));
        }
        Ok(())
    }
}

/// Checks `[scheduler]` and every `[[schedule]]`: names unique, cron and zone valid.
pub(crate) fn validate(scheduler: &Scheduler, schedules: &[Schedule]) -> Result<(), ConfigError> {
    scheduler.validate()?;
    for (i, s) in schedules.iter().enumerate() {
        s.validate(i)?;
        if schedules[..i].iter().any(|other| other.name == s.name) {
            return Err(ConfigError::new(
                s.key(i, "name"),
                "is used by an earlier schedule",
                "give every schedule its own name",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{CatchUp, Config, Env};

    fn load(text: &str) -> Result<Config, crate::ConfigError> {
        Config::from_toml_str(text, &Env::empty())
    }

    #[test]
    fn schedules_parse_with_defaults() {
        let c = load(
            "[[schedule]]\nname = \"nightly-backup\"\ncron = \"0 0 2 * * *\"\nkind = \"backup.run\"\n[[schedule]]\nname = \"tick\"\ncron = \"* * * * * *\"\ntimezone = \"Europe/Berlin\"\nkind = \"sleep\"\nargs = { ms = 5 }\ncatch_up = \"all\"\nenabled = false\n",
        )
        .unwrap();
        let (a, b) = (&c.schedules[0], &c.schedules[1]);
        assert_eq!(
            (a.timezone.as_str(), a.catch_up, a.enabled),
            ("UTC", CatchUp::Latest, true)
        );
        assert_eq!(a.args, serde_json::json!({}));
        assert_eq!((b.catch_up, b.enabled), (CatchUp::All, false));
        assert_eq!(b.args, serde_json::json!({"ms": 5}));
        assert_eq!(b.tz().unwrap(), chrono_tz::Europe::Berlin);
    }

    #[test]
    fn bad_schedules_name_the_schedule_and_the_fix() {
        let base = "[[schedule]]\nname = \"nightly\"\nkind = \"noop\"\n";
        let e = load(&format!("{base}cron = \"2 * * *\"\n")).unwrap_err();
        assert!(e.key.contains("schedule[0] (nightly).cron"), "{e}");
        assert!(e.fix.contains("seconds first"), "{e}");
        assert!(e.problem.contains("has 4 fields"), "{e}");
        load(&format!("{base}cron = \"*/15 * * * *\"\n")).unwrap();
        let e = load(&format!("{base}cron = \"0 0 25 * * *\"\n")).unwrap_err();
        assert!(e.problem.contains("not a cron expression"), "{e}");
        let e = load(&format!(
            "{base}cron = \"0 0 2 * * *\"\ntimezone = \"Mars/Olympus\"\n"
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("schedule[0] (nightly).timezone"),
            "{e}"
        );
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
        let e = load(&format!(
            "{base}cron = \"0 0 2 * * *\"\ncatch_up = \"some\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("some"), "{e}");
        let e = load(&format!(
            "{base}cron = \"0 0 2 * * *\"\n{base}cron = \"0 0 3 * * *\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("schedule[1] (nightly).name"), "{e}");
        let e = load("[scheduler]\ntick = \"20s\"\n").unwrap_err();
        assert!(e.to_string().contains("scheduler.late_after"), "{e}");
        let e = load("[scheduler]\ncatch_up_limit = 0\n").unwrap_err();
        assert!(e.to_string().contains("scheduler.catch_up_limit"), "{e}");
    }
}
