use std::time::Duration;

use rand::Rng;

/// Exponential backoff with "equal jitter": the n-th retry waits between half and all of
/// `min(cap, base * 2^(n-1))`. The random half spreads retries of jobs that failed together;
/// the fixed half makes each wait at least as long as the previous one's ceiling, so delays
/// grow (full jitter can draw a shorter wait after a longer one).
///
/// ```
/// use std::time::Duration;
/// let b = ferry_contract::Backoff { base: Duration::from_secs(1), cap: Duration::from_secs(60) };
/// assert_eq!(b.ceiling(3), Duration::from_secs(4));
/// assert!(b.delay(3) >= Duration::from_secs(2) && b.delay(3) <= Duration::from_secs(4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The longest wait after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A random wait after failed attempt `attempt`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + rand::rng().random_range(Duration::ZERO..=ceiling - half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(10),
    };

    #[test]
    fn ceiling_doubles_until_the_cap() {
        let c: Vec<_> = (1..=7).map(|a| B.ceiling(a).as_millis()).collect();
        assert_eq!(c, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
        assert_eq!(B.ceiling(10_000), B.cap);
    }

    #[test]
    fn delays_stay_in_their_band_and_grow() {
        for _ in 0..1000 {
            let mut previous = Duration::ZERO;
            for attempt in 1..=6 {
                let d = B.delay(attempt);
                assert!(
                    d >= B.ceiling(attempt) / 2 && d <= B.ceiling(attempt),
                    "{d:?}"
                );
                assert!(
                    d >= previous || B.ceiling(attempt) == B.cap,
                    "{d:?} < {previous:?}"
                );
                previous = d;
            }
        }
    }

    #[test]
    fn jitter_spreads() {
        let draws: std::collections::HashSet<_> = (0..100).map(|_| B.delay(4)).collect();
        assert!(draws.len() > 50);
    }
}
