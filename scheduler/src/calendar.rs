//! When a schedule fires, as instants: cron expressions are read on the wall clock of the
//! schedule's zone, and the two daylight-saving transitions are resolved so that each wall
//! time fires once:
//!
//! - a wall time that happens twice (the clock falls back: 01:30 comes round again) fires at
//!   its first occurrence only;
//! - a wall time that does not exist (the clock springs forward over 02:00-03:00) fires at the
//!   first instant after the gap (03:00), once even when several skipped times map to it.
//!
//! So a nightly 02:30 job runs exactly once on both transition days. A schedule that must
//! fire at every real minute or hour through a transition should use UTC.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Fire instants strictly after `after`, in order, without repeats.
///
/// ```
/// use std::str::FromStr;
///
/// let nightly = cron::Schedule::from_str("0 30 2 * * *").unwrap();
/// let after = "2026-03-28T12:00:00Z".parse().unwrap();
/// let next = ferry_scheduler::fires_after(&nightly, chrono_tz::Europe::Berlin, after)
///     .next()
///     .unwrap();
/// // 02:30 does not exist in Berlin that night: the fire is at 03:00 CEST.
/// assert_eq!(next.to_rfc3339(), "2026-03-29T01:00:00+00:00");
/// ```
pub fn fires_after(
    cron: &cron::Schedule,
    tz: Tz,
    after: DateTime<Utc>,
) -> impl Iterator<Item = DateTime<Utc>> + '_ {
    // Wall times are walked in a zone without transitions (UTC stands in for "naive"), then
    // placed in the real zone. That placement never decreases, so no wall time before the
    // start's own can land after `after`.
    let start = Utc.from_utc_datetime(&after.with_timezone(&tz).naive_local());
    let mut last = after;
    cron.after(&start).filter_map(move |wall| {
        let at = instant(tz, wall.naive_utc());
        (at > last).then(|| {
            last = at;
            at
        })
    })
}

/// The instant a wall time in `tz` stands for, with the rules of the module comment.
fn instant(tz: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: walk forward a minute at a time (transitions fall on whole minutes) to
            // the first wall time that exists. No zone has skipped more than a day.
            let mut probe = wall
                .with_second(0)
                .unwrap_or(wall)
                .with_nanosecond(0)
                .unwrap_or(wall);
            for _ in 0..(26 * 60) {
                probe += TimeDelta::minutes(1);
                if let Some(at) = tz.from_local_datetime(&probe).earliest() {
                    return at.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&wall)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(expr: &str, tz: Tz, from: &str, until: &str) -> Vec<String> {
        let cron = cron::Schedule::from_str(expr).unwrap();
        fires_after(&cron, tz, utc(from))
            .take_while(|at| *at <= utc(until))
            .map(|at| at.with_timezone(&tz).to_rfc3339())
            .collect()
    }

    #[test]
    fn a_nightly_0230_fires_once_when_the_clock_springs_forward() {
        // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
        let got = fires(
            "0 30 2 * * *",
            chrono_tz::Europe::Berlin,
            "2026-03-27T12:00:00Z",
            "2026-03-31T12:00:00Z",
        );
        assert_eq!(
            got,
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00",
            ]
        );
    }

    #[test]
    fn a_nightly_0130_fires_once_when_the_clock_falls_back() {
        // America/New_York, 2026-11-01: 01:00-02:00 happens twice (EDT, then EST).
        let got = fires(
            "0 30 1 * * *",
            chrono_tz::America::New_York,
            "2026-10-31T00:00:00Z",
            "2026-11-02T12:00:00Z",
        );
        assert_eq!(
            got,
            [
                "2026-10-31T01:30:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:30:00-05:00",
            ]
        );
    }

    #[test]
    fn every_quarter_hour_through_both_transitions_fires_each_wall_time_once() {
        let berlin = chrono_tz::Europe::Berlin;
        let spring = fires(
            "0 */15 * * * *",
            berlin,
            "2026-03-29T00:40:00Z",
            "2026-03-29T01:20:00Z",
        );
        // 01:45 CET, then the gap: 02:00..02:45 all land on 03:00 CEST, which fires once.
        assert_eq!(
            spring,
            [
                "2026-03-29T01:45:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:15:00+02:00"
            ]
        );
        let autumn = fires(
            "0 */15 * * * *",
            berlin,
            "2026-10-25T00:10:00Z",
            "2026-10-25T02:20:00Z",
        );
        // 02:00-03:00 is repeated: its wall times fire in the first pass (CEST) only, so
        // nothing fires from 00:45 to 02:00 UTC.
        assert_eq!(
            autumn,
            [
                "2026-10-25T02:15:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:45:00+02:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T03:15:00+01:00",
            ]
        );
    }

    #[test]
    fn starting_inside_the_repeated_hour_does_not_fire_its_wall_times_again() {
        // 01:10 EST (the second pass): 01:15..01:45 already fired in the first pass.
        let got = fires(
            "0 */15 * * * *",
            chrono_tz::America::New_York,
            "2026-11-01T06:10:00Z",
            "2026-11-01T07:20:00Z",
        );
        assert_eq!(
            got,
            ["2026-11-01T02:00:00-05:00", "2026-11-01T02:15:00-05:00"]
        );
    }

    #[test]
    fn fires_are_strictly_after_the_start() {
        let got = fires(
            "* * * * * *",
            chrono_tz::UTC,
            "2026-01-01T00:00:00.500Z",
            "2026-01-01T00:00:03Z",
        );
        assert_eq!(
            got,
            [
                "2026-01-01T00:00:01+00:00",
                "2026-01-01T00:00:02+00:00",
                "2026-01-01T00:00:03+00:00"
            ]
        );
    }
}
