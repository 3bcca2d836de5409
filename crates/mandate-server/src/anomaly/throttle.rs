//! Throttles set by anomaly rules: until when an agent, address, grant or API key is answered
//! `429 Too Many Requests` at the token endpoint.
//!
//! Every node learns of a throttle from the `anomaly.detected` event that records it (the
//! rules follow the whole log on every node), so a throttle holds cluster-wide whichever node
//! took the decision. The hot path pays one atomic load while no throttle is in force.

use mandate_core::anomaly::Per;
use mandate_core::time::Timestamp;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Throttles held at most; beyond that, ended ones are dropped first, then the soonest to end.
const MAX_THROTTLES: usize = 100_000;

/// What a throttle is keyed by: agents and presented client IDs share one space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Space {
    Client,
    Address,
    Grant,
    ApiKey,
}

impl From<Per> for Space {
    fn from(per: Per) -> Self {
        match per {
            Per::Agent | Per::Client => Self::Client,
            Per::Address => Self::Address,
            Per::Grant => Self::Grant,
            Per::ApiKey => Self::ApiKey,
        }
    }
}

/// The throttles in force on this node.
#[derive(Debug, Default)]
pub struct Throttles {
    /// Entries in `until` (zero: skip the lock).
    held: AtomicUsize,
    until: Mutex<HashMap<(Space, String), i64>>,
}

/// A request refused by a throttle: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: u64,
}

impl From<Throttled> for crate::errors::ServerError {
    fn from(t: Throttled) -> Self {
        Self::Throttled {
            retry_after: t.retry_after,
            description: "an anomaly rule throttled this client; retry later",
        }
    }
}

impl Throttles {
    /// Throttles `id` until `until` (a later end wins over an earlier one).
    pub fn install(&self, per: Per, id: &str, until: Timestamp) {
        let mut map = self.lock();
        if map.len() >= MAX_THROTTLES {
            let now = until.unix().min(map.values().copied().min().unwrap_or(0));
            map.retain(|_, end| *end > now);
            if map.len() >= MAX_THROTTLES {
                map.clear();
            }
        }
        let end = map.entry((per.into(), id.to_owned())).or_insert(0);
        *end = (*end).max(until.unix());
        self.held.store(map.len(), Ordering::Relaxed);
    }

    /// Whether no throttle is held (the token endpoint then skips looking).
    pub fn is_empty(&self) -> bool {
        self.held.load(Ordering::Relaxed) == 0
    }

    /// Refuses a request naming `id` (of the kind `per`) while a throttle on it lasts.
    pub fn check(&self, per: Per, id: &str, now: Timestamp) -> Result<(), Throttled> {
        if self.held.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let mut map = self.lock();
        let key = (Space::from(per), id.to_owned());
        match map.get(&key) {
            Some(&end) if end > now.unix() => Err(Throttled {
                retry_after: u64::try_from(end - now.unix()).unwrap_or(1).max(1),
            }),
            Some(_) => {
                map.remove(&key);
                self.held.store(map.len(), Ordering::Relaxed);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Space, String), i64>> {
        self.until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lasts_until_its_end_and_names_the_wait() {
        let t = Throttles::default();
        let now = Timestamp::from_unix(1_000);
        assert!(t.check(Per::Agent, "a", now).is_ok(), "nothing held");
        t.install(Per::Agent, "a", now.plus_seconds(30));
        assert_eq!(
            t.check(Per::Client, "a", now.plus_seconds(10)),
            Err(Throttled { retry_after: 20 }),
            "agents and client IDs share a space"
        );
        assert!(t.check(Per::Grant, "a", now).is_ok(), "another space");
        assert!(t.check(Per::Agent, "b", now).is_ok(), "another agent");
        // An earlier end does not shorten it.
        t.install(Per::Agent, "a", now.plus_seconds(5));
        assert!(t.check(Per::Agent, "a", now.plus_seconds(29)).is_err());
        assert!(t.check(Per::Agent, "a", now.plus_seconds(30)).is_ok());
        assert_eq!(t.held.load(Ordering::Relaxed), 0, "ended throttles go");
    }
}
