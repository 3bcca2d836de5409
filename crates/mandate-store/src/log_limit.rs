//! One log line per interval for a failure that repeats with every request while its cause
//! lasts (the database away): the first is logged at once, then at most one a second, each
//! saying how many were held back, so an outage under load does not flood the log.

use std::mem;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most one log line per `every`, counting the ones held back.
pub struct LogLimit {
    every: Duration,
    state: Mutex<LogLimitState>,
}

struct LogLimitState {
    last: Option<Instant>,
    held_back: u64,
}

impl LogLimit {
    #[must_use]
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new(LogLimitState {
                last: None,
                held_back: 0,
            }),
        }
    }

    /// `Some(lines held back since the last one)` if a line may be logged at `now`.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                state.held_back += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(mem::take(&mut state.held_back))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_counting_the_lines_held_back() {
        let limit = LogLimit::new(Duration::from_secs(1));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(limit.admit(at(0)), Some(0));
        assert_eq!(limit.admit(at(10)), None);
        assert_eq!(limit.admit(at(999)), None);
        assert_eq!(limit.admit(at(1000)), Some(2));
        assert_eq!(limit.admit(at(1500)), None);
        assert_eq!(limit.admit(at(5000)), Some(1));
    }
}
