//! Which backups `prune` keeps: generations, the way restic and borg count them. For each of
//! the newest `daily` days that have a backup, that day's newest backup; the same for ISO weeks
//! and months. The newest verified backup is always kept, whatever its age.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Utc};
use ferry_config::Retention;
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub verified: bool,
}

/// The generation a backup falls in: (year, day, week or month).
type Bucket = fn(&DateTime<Utc>) -> (i32, u32);

/// The ids to keep among one database's backups.
pub fn keep(backups: &[Candidate], policy: Retention) -> BTreeSet<Uuid> {
    let mut newest_first = backups.to_vec();
    newest_first.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let mut kept = BTreeSet::new();
    let buckets: [(u32, Bucket); 3] = [
        (policy.daily, |t| (t.year(), t.ordinal())),
        (policy.weekly, |t| {
            let w = t.iso_week();
            (w.year(), w.week())
        }),
        (policy.monthly, |t| (t.year(), t.month())),
    ];
    for (count, bucket) in buckets {
        let mut seen = BTreeSet::new();
        for b in &newest_first {
            if seen.len() == count as usize {
                break;
            }
            if seen.insert(bucket(&b.created_at)) {
                kept.insert(b.id);
            }
        }
    }
    if let Some(b) = newest_first.iter().find(|b| b.verified) {
        kept.insert(b.id);
    }
    kept
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, NaiveDate, TimeZone};

    use super::*;

    const POLICY: Retention = Retention {
        daily: 7,
        weekly: 4,
        monthly: 6,
    };

    fn day(n: i64) -> DateTime<Utc> {
        // Day 0 is Monday 2026-01-05, so weeks line up with the days.
        Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(2026, 1, 5)
                .unwrap()
                .and_hms_opt(2, 0, 0)
                .unwrap(),
        ) + Duration::days(n)
    }

    /// 100 simulated days: a backup every night at 02:00, prune after each; the clock is the
    /// day counter. What survives is exactly the generations.
    #[test]
    fn one_hundred_nights_keep_the_generations() {
        let mut alive: Vec<(i64, Candidate)> = Vec::new();
        for n in 0..100 {
            alive.push((
                n,
                Candidate {
                    id: Uuid::from_u128(n as u128 + 1),
                    created_at: day(n),
                    verified: false,
                },
            ));
            let keep = keep(&alive.iter().map(|(_, c)| *c).collect::<Vec<_>>(), POLICY);
            alive.retain(|(_, c)| keep.contains(&c.id));
        }
        let days: Vec<i64> = alive.iter().map(|(n, _)| *n).collect();
        // Day 99 is Tuesday 2026-04-14. Dailies: days 93..=99.
        let mut want: BTreeSet<i64> = (93..=99).collect();
        // ISO weeks run Monday to Sunday (days 7k..=7k+6): the newest of this week and the
        // three before it are days 99, 97, 90, 83.
        want.extend([99, 97, 90, 83]);
        // Months: April (day 99), March 31 (day 85), February 28 (day 54), January 31
        // (day 26); only four months exist, so all four are kept.
        want.extend([99, 85, 54, 26]);
        assert_eq!(days.into_iter().collect::<BTreeSet<_>>(), want);
    }

    #[test]
    fn the_newest_verified_backup_is_never_pruned() {
        let mut all: Vec<Candidate> = (0..40)
            .map(|n| Candidate {
                id: Uuid::from_u128(n as u128 + 1),
                created_at: day(n),
                verified: false,
            })
            .collect();
        all[2].verified = true;
        let policy = Retention {
            daily: 1,
            weekly: 0,
            monthly: 0,
        };
        let keep = keep(&all, policy);
        assert_eq!(
            keep,
            BTreeSet::from([Uuid::from_u128(40), Uuid::from_u128(3)])
        );
    }

    #[test]
    fn several_backups_a_day_keep_the_newest_of_the_day() {
        let all: Vec<Candidate> = (0..6)
            .map(|n| Candidate {
                id: Uuid::from_u128(n as u128 + 1),
                created_at: day(0) + Duration::hours(n * 3),
                verified: false,
            })
            .collect();
        let keep = keep(&all, POLICY);
        assert_eq!(keep, BTreeSet::from([Uuid::from_u128(6)]));
    }
}
