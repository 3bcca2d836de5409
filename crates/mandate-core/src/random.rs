//! Randomness as an injected dependency.
//!
//! Opaque credentials (codes, refresh tokens, session ids, client secrets) must be unguessable,
//! so production draws from the operating system's CSPRNG; tests want repeatable values. Both
//! implement [`Entropy`], and every generator in this crate takes one.

use crate::time::Timestamp;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Mutex;

/// A source of cryptographically strong random bytes.
pub trait Entropy: Send + Sync + 'static {
    fn fill(&self, dest: &mut [u8]);
}

/// 256 random bits, base64url without padding (43 characters): the shape of every opaque
/// credential Mandate issues.
pub fn opaque_secret(entropy: &dyn Entropy) -> String {
    let mut bytes = [0u8; 32];
    entropy.fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An identifier: a UUIDv7 (RFC 9562) in lowercase hex without hyphens, behind a short type
/// prefix (`g_`, `rf_`, ...) so that an id in a log says what it names. Identifiers are not
/// secrets.
///
/// Why time-ordered: ids are primary keys, and grants, users and refresh families are indexed
/// by them and by each other's. A random key puts every insert on a random page of each such
/// index, so once the indexes outgrow memory each new row costs a page read and a page write
/// per index (a bulk load slowed from 8,000 grants/s at 1 million grants to 2,000-3,000/s
/// beyond; with these ids it loads 10 million at 12,800/s: BENCHMARKS.md, "Identifiers in time
/// order"). A UUIDv7 starts with its creation time, so new keys land at the right edge of
/// their indexes, on pages that are already cached. `now` is whole seconds (Mandate's clock);
/// the 74 random bits keep ids made in the same second unique and unpredictable to one
/// another. What an id gives away is the second it was made, which the record it names holds
/// anyway (a grant's creation time, a token's `iat`, a key's creation).
pub fn identifier(entropy: &dyn Entropy, now: Timestamp, prefix: &str) -> String {
    let mut bytes = [0u8; 10];
    entropy.fill(&mut bytes);
    let millis = u64::try_from(now.unix()).unwrap_or(0).saturating_mul(1000);
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid();
    let mut out = String::with_capacity(prefix.len() + uuid::fmt::Simple::LENGTH);
    out.push_str(prefix);
    out.push_str(uuid.simple().encode_lower(&mut uuid::Uuid::encode_buffer()));
    out
}

/// Deterministic entropy for tests: a xorshift stream from a seed. Never use it to mint
/// real credentials.
#[derive(Debug)]
pub struct SeededEntropy(Mutex<u64>);

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(seed | 1))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, dest: &mut [u8]) {
        let mut state = match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        for chunk in dest.chunks_mut(8) {
            let mut x = *state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *state = x;
            let bytes = x.to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(bytes) {
                *d = s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_secret_is_43_base64url_chars_and_varies() {
        let e = SeededEntropy::new(7);
        let a = opaque_secret(&e);
        let b = opaque_secret(&e);
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn identifier_has_prefix_and_32_hex_digits() {
        let id = identifier(
            &SeededEntropy::new(1),
            Timestamp::from_unix(1_795_900_000),
            "g_",
        );
        assert!(id.starts_with("g_"));
        assert_eq!(id.len(), 34);
        assert!(
            id[2..]
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
    }

    #[test]
    fn identifiers_are_uuidv7_and_sort_by_their_second() {
        let e = SeededEntropy::new(3);
        let at = Timestamp::from_unix(1_795_900_000);
        let parse = |id: &str| uuid::Uuid::parse_str(&id[2..]).unwrap();
        let id = identifier(&e, at, "g_");
        let uuid = parse(&id);
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        let (seconds, nanos) = uuid.get_timestamp().unwrap().to_unix();
        assert_eq!((seconds, nanos), (1_795_900_000, 0));

        // Later seconds sort after earlier ones, whatever the random part; ids of one second
        // still differ.
        let mut previous = id;
        for step in 1..200 {
            let next = identifier(&e, at.plus_seconds(step), "g_");
            assert!(next > previous, "{next} should sort after {previous}");
            previous = next;
        }
        let same: std::collections::HashSet<_> =
            (0..1000).map(|_| identifier(&e, at, "g_")).collect();
        assert_eq!(same.len(), 1000);
    }
}
