//! The usual five-field cron (`min hour day month weekday`, as in crontab) rewritten into the
//! seconds-first form the `cron` crate parses.
//!
//! Two conventions differ: crontab has no seconds field (a fire is at second 0), and crontab
//! numbers weekdays 0-7 from Sunday (0 and 7 both Sunday) where the `cron` crate numbers them
//! 1-7 (1 = Sunday). Numeric weekdays are therefore written as names, which both agree on.

const DAYS: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// `expr` in the seconds-first form: five fields get second 0 and named weekdays; six or
/// seven fields are already in that form and pass unchanged.
pub(crate) fn seconds_first(expr: &str) -> Result<String, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    match fields.len() {
        5 => {
            let weekday = weekday_names(fields[4])
                .ok_or_else(|| format!("{expr:?} has a weekday field {:?} that is not 0-7, a name, a range or a list of them", fields[4]))?;
            Ok(format!("0 {} {weekday}", fields[..4].join(" ")))
        }
        6 | 7 => Ok(expr.to_owned()),
        n => Err(format!("{expr:?} has {n} fields, not 5, 6 or 7")),
    }
}

/// Each crontab weekday number written as its name; a range ending on 7 (Sunday) is split,
/// since `FRI-SUN` would run backwards in the `cron` crate's Sunday-first numbering.
fn weekday_names(field: &str) -> Option<String> {
    let items = field.split(',').map(|item| {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let with_step = |r: String| match step {
            Some(step) => format!("{r}/{step}"),
            None => r,
        };
        match range.split_once('-') {
            Some((a, "7")) if step.is_none() && a != "7" => {
                let a = name(a)?;
                Some(if a == "SUN" {
                    "*".to_owned()
                } else {
                    format!("{a}-SAT,SUN")
                })
            }
            Some((a, b)) => Some(with_step(format!("{}-{}", name(a)?, name(b)?))),
            None => Some(with_step(name(range)?.to_owned())),
        }
    });
    items.collect::<Option<Vec<String>>>().map(|v| v.join(","))
}

/// A weekday number as its name; names, `*` and `?` pass unchanged.
fn name(token: &str) -> Option<&str> {
    match token.parse::<usize>() {
        Ok(n) => DAYS.get(n).copied(),
        Err(_)
            if token == "*" || token == "?" || token.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            Some(token)
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::{Datelike, TimeZone, Timelike, Utc, Weekday};

    use super::seconds_first;

    fn fires(expr: &str, n: usize) -> Vec<chrono::DateTime<Utc>> {
        let s = cron::Schedule::from_str(&seconds_first(expr).unwrap()).unwrap();
        let start = Utc.with_ymd_and_hms(2026, 12, 7, 10, 7, 30).unwrap(); // a Monday
        s.after(&start).take(n).collect()
    }

    #[test]
    fn every_quarter_hour_fires_on_the_quarters_at_second_zero() {
        let minutes: Vec<(u32, u32, u32)> = fires("*/15 * * * *", 5)
            .iter()
            .map(|t| (t.hour(), t.minute(), t.second()))
            .collect();
        assert_eq!(
            minutes,
            [
                (10, 15, 0),
                (10, 30, 0),
                (10, 45, 0),
                (11, 0, 0),
                (11, 15, 0)
            ]
        );
    }

    #[test]
    fn weekdays_count_from_sunday_zero_as_in_crontab() {
        let days = |expr| -> Vec<Weekday> { fires(expr, 7).iter().map(|t| t.weekday()).collect() };
        assert!(days("0 2 * * 1").iter().all(|d| *d == Weekday::Mon));
        assert!(days("0 2 * * 0").iter().all(|d| *d == Weekday::Sun));
        assert!(days("0 2 * * 7").iter().all(|d| *d == Weekday::Sun));
        let work = days("0 2 * * 1-5");
        assert!(
            !work.contains(&Weekday::Sat) && !work.contains(&Weekday::Sun),
            "{work:?}"
        );
        let end = days("0 2 * * 5-7");
        assert_eq!(&end[..3], [Weekday::Fri, Weekday::Sat, Weekday::Sun]);
        assert!(days("0 2 * * MON").iter().all(|d| *d == Weekday::Mon));
    }

    #[test]
    fn six_and_seven_fields_pass_unchanged_and_other_counts_are_refused() {
        assert_eq!(seconds_first("0 0 2 * * *").unwrap(), "0 0 2 * * *");
        assert!(seconds_first("* * *").unwrap_err().contains("3 fields"));
        assert!(seconds_first("0 2 * * 9").unwrap_err().contains("weekday"));
    }
}
