//! When a node's PostgreSQL connections may have ended under it, and which connections must
//! therefore be tested before a statement uses them.
//!
//! A connection that came back from a statement a moment ago is handed out again untested:
//! the test is a round trip, and paying it on every statement cost more of a point read's CPU
//! than the read (BENCHMARKS.md, "PostgreSQL statements without the pool's tests"). Only one
//! idle for [`TEST_AFTER_IDLE`] or longer is tested. That leaves a restarted database (or a
//! failover, or every backend terminated by an operator): each connection used in the last
//! second would fail the next statement sent on it, and its request answer `server_error`.
//!
//! The node notices such an event at once on the one connection that is always waiting for
//! the database, the one listening for event notifications: when it ends, its loss is
//! recorded here ([`ConnectionLoss::record`]), as it is when a point read finds its connection
//! gone. From then on, every connection last known good before the loss, or within
//! [`TEST_AFTER_IDLE`] after it (the database ends its backends one by one, not all in the
//! same instant), is tested before it is used, and a dead one is replaced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A connection idle at least this long is tested (a round trip) before it is used; one used
/// more recently is not, unless a loss was seen since ([`ConnectionLoss::worth_testing`]).
pub(crate) const TEST_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The moment this node last saw one of its database connections end.
#[derive(Debug)]
pub(crate) struct ConnectionLoss {
    origin: Instant,
    /// Milliseconds from `origin` to the last loss, plus one; zero while none was seen.
    last: AtomicU64,
}

impl Default for ConnectionLoss {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl ConnectionLoss {
    /// Notes that a connection ended now: every connection last good before this must be
    /// tested before its next statement.
    pub(crate) fn record(&self) {
        let since_origin = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last
            .fetch_max(since_origin.saturating_add(1), Ordering::Relaxed);
    }

    /// Whether a connection idle for `idle_for` (last known good then) must be tested before
    /// it is used: it sat idle [`TEST_AFTER_IDLE`] or longer, or it was last good before, or
    /// shortly after, the last loss seen.
    pub(crate) fn worth_testing(&self, idle_for: Duration) -> bool {
        if idle_for >= TEST_AFTER_IDLE {
            return true;
        }
        let last = self.last.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        let loss = Duration::from_millis(last - 1);
        let good_at = self.origin.elapsed().saturating_sub(idle_for);
        good_at <= loss + TEST_AFTER_IDLE
    }
}

/// Whether `error` means the connection itself ended (a socket error, or the server ending the
/// session: SQLSTATE class 08, connection exception, or 57P01-57P03, shutdown), so that the
/// statement did not run on a live session and another connection may succeed.
pub(crate) fn is_connection_loss(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|code| crate::error::postgres_code_session_ended(&code)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recent_connection_is_tested_only_after_a_loss() {
        let loss = ConnectionLoss::default();
        assert!(!loss.worth_testing(Duration::ZERO));
        assert!(loss.worth_testing(TEST_AFTER_IDLE));
        loss.record();
        // Last good just now (within a second of the loss), or before it.
        assert!(loss.worth_testing(Duration::ZERO));
        assert!(loss.worth_testing(Duration::from_millis(500)));
    }

    #[test]
    fn a_connection_good_well_after_the_loss_is_not_tested() {
        let loss = ConnectionLoss {
            origin: Instant::now().checked_sub(Duration::from_secs(10)).unwrap(),
            last: AtomicU64::new(1), // at the origin, ten seconds ago
        };
        assert!(!loss.worth_testing(Duration::from_millis(10)));
        assert!(loss.worth_testing(TEST_AFTER_IDLE));
    }

    #[test]
    fn only_the_end_of_a_connection_counts_as_its_loss() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert!(is_connection_loss(&io));
        assert!(!is_connection_loss(&sqlx::Error::RowNotFound));
        assert!(!is_connection_loss(&sqlx::Error::PoolTimedOut));
    }
}
