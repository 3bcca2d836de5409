//! The system clock behind [`mandate_core::time::Clock`].
//!
//! The guard reads "now" once per validation through an injected clock so tests can move time
//! (expiry, not-yet-valid) without sleeping; this is the default for production and the only
//! place the guard reads the operating system's wall clock.

use mandate_core::time::{Clock, Timestamp};

/// Reads the system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp::from_unix(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}
