//! A small fixed-window rate limiter keyed by client IP address, for endpoints strangers may
//! call that create state (dynamic client registration). In memory and per node: it bounds
//! abuse from one address, it is not a quota.

use mandate_core::time::Timestamp;
use std::collections::HashMap;
use std::sync::Mutex;

/// Addresses tracked at most; when full, windows that have ended are dropped first, and if
/// none has, the map is cleared (failing open for a moment rather than growing without bound).
const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    /// `per_minute = 0` disables the limit.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request from `key` at `now`. `Err(seconds)`: over the limit, retry after
    /// that many seconds.
    pub fn check(&self, key: &str, now: Timestamp) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let minute = now.unix().div_euclid(60);
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() >= MAX_KEYS && !windows.contains_key(key) {
            windows.retain(|_, (m, _)| *m == minute);
            if windows.len() >= MAX_KEYS {
                windows.clear();
            }
        }
        let entry = windows.entry(key.to_owned()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= self.per_minute {
            let retry = 60 - now.unix().rem_euclid(60);
            return Err(u64::try_from(retry).unwrap_or(60).max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_and_window() {
        let limiter = RateLimiter::new(2);
        let t = Timestamp::from_unix(600);
        assert!(limiter.check("a", t).is_ok());
        assert!(limiter.check("a", t).is_ok());
        assert_eq!(limiter.check("a", t.plus_seconds(10)), Err(50));
        assert!(
            limiter.check("b", t).is_ok(),
            "another address is not affected"
        );
        assert!(
            limiter.check("a", t.plus_seconds(60)).is_ok(),
            "a new window"
        );
        assert!(RateLimiter::new(0).check("a", t).is_ok());
    }
}
