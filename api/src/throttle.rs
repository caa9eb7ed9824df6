//! Failed sign-ins and bearer tokens counted per client address: after
//! `api.max_auth_failures` failures within [`WINDOW`] that address gets 429 until the window
//! ends, so a token cannot be
//! guessed at the speed of the API. Kept in each `ferry serve` process (several replicas
//! multiply the limit, which stays far from guessable for 128-bit tokens).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::http::StatusCode;

use crate::ApiError;

pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; expired windows are dropped past this.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    failures: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    failures: u32,
}

impl Throttle {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            failures: Mutex::default(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// 429 while `ip` is over the limit.
    pub fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&ip) {
            Some(w) if w.failures >= self.limit && w.start.elapsed() < WINDOW => {
                let wait = WINDOW.saturating_sub(w.start.elapsed()).as_secs() + 1;
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many failed attempts from this address; wait {wait} s and check the token"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure; true when it is the one that reaches the limit.
    pub fn fail(&self, ip: IpAddr) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED {
            map.retain(|_, w| w.start.elapsed() < WINDOW);
        }
        let w = map.entry(ip).or_insert_with(|| Window {
            start: Instant::now(),
            failures: 0,
        });
        if w.start.elapsed() >= WINDOW {
            *w = Window {
                start: Instant::now(),
                failures: 0,
            };
        }
        w.failures += 1;
        w.failures == self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_blocks_the_address_not_others() {
        const LIMIT: u32 = 10;
        let t = Throttle::new(LIMIT);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for i in 1..=LIMIT {
            assert!(t.check(a).is_ok());
            assert_eq!(t.fail(a), i == LIMIT);
        }
        assert!(t.check(a).is_err());
        assert!(t.check(b).is_ok());
    }
}
