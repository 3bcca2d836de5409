//! The verified-token cache: a repeated token costs a hash and a lookup, not a signature check.
//!
//! Keyed by the SHA-256 of the token so the cache never holds a usable credential; bounded in
//! entries; an entry found past its token's expiry is dropped. Expiry here is only memory
//! hygiene: the guard still checks `exp` against its injected clock on every hit, and
//! revocation is checked after the cache, so a cached token never outlives its grant.
//! quick_cache rather than moka: a new token's insert is a hash-table write, with no expiry or
//! maintenance work queued, which the uncached path (a new token every request) pays.

use crate::principal::Principal;
use quick_cache::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries never live longer than this, whatever the token's `exp` says.
const MAX_ENTRY_TTL: Duration = Duration::from_secs(24 * 3600);

/// A verified token's principal and the start of its validity window (`max(iat, nbf)`).
#[derive(Debug, Clone)]
pub(crate) struct CachedPrincipal {
    pub principal: Arc<Principal>,
    pub not_before: i64,
    /// The `kid` of the key that verified the token, checked against withdrawn keys on every
    /// use.
    pub kid: Arc<str>,
}

#[derive(Clone)]
struct Entry {
    value: CachedPrincipal,
    /// `exp + leeway`, at most [`MAX_ENTRY_TTL`] from the insertion.
    until: Instant,
}

pub(crate) struct TokenCache {
    cache: Cache<[u8; 32], Entry>,
}

impl TokenCache {
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: Cache::new(usize::try_from(capacity).unwrap_or(usize::MAX)),
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        mandate_core::jwt::token_digest(token)
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<CachedPrincipal> {
        let entry = self.cache.get(key)?;
        if Instant::now() >= entry.until {
            self.cache.remove(key);
            return None;
        }
        Some(entry.value)
    }

    /// Caches until `exp + leeway` as seen from `now`.
    pub fn insert(&self, key: [u8; 32], value: CachedPrincipal, now: i64, leeway: i64) {
        let remaining = value
            .principal
            .expires_at
            .unix()
            .saturating_add(leeway)
            .saturating_sub(now);
        let Ok(secs) = u64::try_from(remaining) else {
            return;
        };
        if secs == 0 {
            return;
        }
        let until = Instant::now() + Duration::from_secs(secs).min(MAX_ENTRY_TTL);
        self.cache.insert(key, Entry { value, until });
    }
}
