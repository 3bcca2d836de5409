//! The verified-signature cache: a token introspected again costs a hash and a lookup, not an
//! Ed25519 verification and two JSON parses.
//!
//! Introspection's target (50,000/s per core, DESIGN.md) leaves about 20 µs per request, less
//! than one signature check; resource servers introspect the same token on every call it
//! makes, so most checks repeat one already made. What is cached is only what the signature
//! proves: the token's claims, and the key (`kid`, algorithm) that verified them. It is keyed by
//! the SHA-256 of the token, so the cache never holds a usable credential, and it is bounded in
//! entries. Nothing about revocation is cached: the caller checks the `jti`, the grant and its
//! parties on every call, and expiry against its own clock.
//!
//! Signing-key withdrawal still takes effect at once: a hit counts only while the key that
//! verified the token is still among the ring's trusted keys, the same set an uncached check
//! would use; otherwise the token is checked afresh (and refused). An entry found past its
//! token's expiry is dropped (`exp` is still checked by the caller); the bound on entries is
//! the memory hygiene. quick_cache rather than moka: a new token's insert is a hash-table write,
//! with no expiry or maintenance work queued (BENCHMARKS.md, "Verified-token caches without
//! moka").

use mandate_core::jwt::{AccessTokenClaims, Algorithm, VerifyingKey};
use mandate_core::time::Timestamp;
use quick_cache::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Verified tokens remembered at most; a few hundred bytes each.
pub const CAPACITY: usize = 20_000;
/// Entries never live longer than this, whatever the token's `exp` says.
const MAX_ENTRY_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a good signature proved, and with which key.
#[derive(Clone)]
struct Entry {
    claims: Arc<AccessTokenClaims>,
    kid: Arc<str>,
    alg: Algorithm,
    /// When the token expires (at most [`MAX_ENTRY_TTL`] from its insertion).
    until: Instant,
}

/// Bounded map from a token's SHA-256 to the claims its signature proved.
pub struct VerifiedTokens {
    cache: Cache<[u8; 32], Entry>,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            cache: Cache::new(capacity),
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        mandate_core::jwt::token_digest(token)
    }

    /// The claims of the token with this digest, if it was verified with a key that is still
    /// in `trusted`.
    pub fn get(&self, key: &[u8; 32], trusted: &[VerifyingKey]) -> Option<AccessTokenClaims> {
        let entry = self.cache.get(key)?;
        let still_trusted = trusted
            .iter()
            .any(|k| k.kid() == &*entry.kid && k.algorithm() == entry.alg);
        if !still_trusted || Instant::now() >= entry.until {
            self.cache.remove(key);
            return None;
        }
        Some((*entry.claims).clone())
    }

    /// Remembers that `by` verified a token with these claims, until its `exp` as seen from
    /// `now`. An expired token is not remembered.
    pub fn insert(
        &self,
        key: [u8; 32],
        claims: &AccessTokenClaims,
        by: &VerifyingKey,
        now: Timestamp,
    ) {
        let Ok(secs) = u64::try_from(claims.exp.saturating_sub(now.unix())) else {
            return;
        };
        if secs == 0 {
            return;
        }
        let entry = Entry {
            claims: Arc::new(claims.clone()),
            kid: Arc::from(by.kid()),
            alg: by.algorithm(),
            until: Instant::now() + Duration::from_secs(secs).min(MAX_ENTRY_TTL),
        };
        self.cache.insert(key, entry);
    }

    /// Forgets every entry (key ring changes take effect without it; for tests and tools).
    pub fn clear(&self) {
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_core::jwt::SigningKey;
    use mandate_core::scope::ScopeSet;

    fn claims(exp: i64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "http://as".into(),
            sub: "u_1".into(),
            aud: "http://crm".into(),
            exp,
            iat: 1000,
            jti: "j".into(),
            client_id: "cli".into(),
            scope: ScopeSet::parse("contacts.read").unwrap(),
            tenant: "acme".into(),
            gid: "g_1".into(),
            act: None,
        }
    }

    fn verifier(kid: &str) -> VerifyingKey {
        let (key, _) = SigningKey::generate(Algorithm::EdDSA, kid.into()).unwrap();
        VerifyingKey::from_jwk(key.public_jwk()).unwrap()
    }

    #[test]
    fn a_hit_needs_the_verifying_key_still_trusted() {
        let cache = VerifiedTokens::new(10);
        let (a, b) = (verifier("k_a"), verifier("k_b"));
        let key = VerifiedTokens::key("token");
        cache.insert(key, &claims(2000), &a, Timestamp::from_unix(1500));
        assert_eq!(cache.get(&key, &[b.clone(), a.clone()]), Some(claims(2000)));
        assert_eq!(
            cache.get(&VerifiedTokens::key("other"), std::slice::from_ref(&a)),
            None
        );
        // The key was withdrawn: no hit, and the entry is gone even if the key came back.
        assert_eq!(cache.get(&key, &[b]), None);
        assert_eq!(cache.get(&key, &[a]), None);
    }

    #[test]
    fn expired_tokens_are_not_remembered() {
        let cache = VerifiedTokens::new(10);
        let a = verifier("k_a");
        let key = VerifiedTokens::key("token");
        cache.insert(key, &claims(1500), &a, Timestamp::from_unix(1500));
        cache.insert(key, &claims(1400), &a, Timestamp::from_unix(1500));
        assert_eq!(cache.get(&key, std::slice::from_ref(&a)), None);
        cache.insert(key, &claims(1501), &a, Timestamp::from_unix(1500));
        assert_eq!(
            cache.get(&key, std::slice::from_ref(&a)),
            Some(claims(1501))
        );
        cache.clear();
        assert_eq!(cache.get(&key, &[a]), None);
    }
}
