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
        Self(self.0.saturating_add(clamped(seconds)))
    }

    /// This instant minus `seconds` (a cutoff such as "older than the retention"), saturating
    /// rather than overflowing.
    pub const fn minus_seconds(self, seconds: u64) -> Self {
        Self(self.0.saturating_sub(clamped(seconds)))
    }

    /// RFC 3339 in UTC (`2026-11-22T21:07:08Z`), for people and log pipelines.
    pub fn to_rfc3339(self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.0.to_string())
    }

    /// A time given by a person or a script: Unix seconds (`1795900000`) or RFC 3339
    /// (`2026-11-22T21:07:08Z`, any offset; fractions of a second are dropped).
    pub fn parse_user(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(seconds) = text.parse::<i64>() {
            return Some(Self(seconds));
        }
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| Self(t.unix_timestamp()))
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

/// `seconds` as an `i64`, at most `i64::MAX`.
const fn clamped(seconds: u64) -> i64 {
    if seconds > i64::MAX as u64 {
        i64::MAX
    } else {
        seconds as i64
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
        assert_eq!(Timestamp::from_unix(100).minus_seconds(30).unix(), 70);
        assert_eq!(
            Timestamp::from_unix(i64::MIN + 1).minus_seconds(10).unix(),
            i64::MIN
        );
        assert_eq!(
            Timestamp::from_unix(0).minus_seconds(u64::MAX).unix(),
            -i64::MAX
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

    #[test]
    fn rfc3339_round_trips_and_unix_seconds_are_accepted() {
        let t = Timestamp::from_unix(1_795_900_000);
        assert_eq!(t.to_rfc3339(), "2026-11-28T21:06:40Z");
        assert_eq!(Timestamp::parse_user("2026-11-28T21:06:40Z"), Some(t));
        assert_eq!(
            Timestamp::parse_user("2026-11-28T22:06:40.5+01:00"),
            Some(t)
        );
        assert_eq!(Timestamp::parse_user(" 1795900000 "), Some(t));
        assert_eq!(Timestamp::parse_user("yesterday"), None);
        assert_eq!(Timestamp::parse_user("2026-11-28"), None);
    }
}
