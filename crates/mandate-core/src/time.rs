//! Time as the protocol sees it: whole seconds since the Unix epoch.
//!
//! Token lifetimes, code expiry and grace windows are all second-granular (JWT `exp`/`iat` are
//! NumericDate seconds), so one integer type is enough and stores identically in SQLite and
//! PostgreSQL. The current time is read once per request through [`Clock`]: [`SystemClock`] in
//! production, [`ManualClock`] in tests.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix(seconds: i64) -> Self {
        Self(seconds)
    }

    pub const fn unix(self) -> i64 {
        self.0
    }

    /// This instant plus `seconds`, saturating rather than overflowing.
    pub const fn plus_seconds(self, seconds: u64) -> Self {
        let delta = if seconds > i64::MAX as u64 {
            i64::MAX
        } else {
            seconds as i64
        };
        Self(self.0.saturating_add(delta))
    }

    /// Seconds from `self` until `later` (zero if `later` is not later).
    pub const fn seconds_until(self, later: Timestamp) -> u64 {
        let d = later.0.saturating_sub(self.0);
        if d < 0 { 0 } else { d as u64 }
    }
}

/// Where "now" comes from. Read once per request at the edge and passed down.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock: the production [`Clock`], and the only place Mandate
/// reads it (server and guard alike take it through the trait).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to; for tests and simulations.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicI64::new(start.unix()))
    }

    pub fn advance(&self, seconds: u64) {
        let delta = i64::try_from(seconds).unwrap_or(i64::MAX);
        self.0.fetch_add(delta, Ordering::SeqCst);
    }

    pub fn set(&self, to: Timestamp) {
        self.0.store(to.unix(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_seconds_saturates_instead_of_overflowing() {
        assert_eq!(
            Timestamp::from_unix(i64::MAX - 1).plus_seconds(10).unix(),
            i64::MAX
        );
        assert_eq!(
            Timestamp::from_unix(0).plus_seconds(u64::MAX).unix(),
            i64::MAX
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_unix(100));
        assert_eq!(clock.now().unix(), 100);
        clock.advance(60);
        assert_eq!(clock.now().unix(), 160);
        assert_eq!(Timestamp::from_unix(100).seconds_until(clock.now()), 60);
        assert_eq!(clock.now().seconds_until(Timestamp::from_unix(0)), 0);
    }
}
