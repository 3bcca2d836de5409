//! Randomness as an injected dependency.
//!
//! Opaque credentials (codes, refresh tokens, session ids, client secrets) must be unguessable,
//! so production draws from the operating system's CSPRNG; tests want repeatable values. Both
//! implement [`Entropy`], and every generator in this crate takes one.

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

/// A 128-bit random identifier in lowercase hex, behind a short type prefix (`g_`, `rf_`, ...)
/// so that an id in a log says what it names. Identifiers are not secrets.
pub fn identifier(entropy: &dyn Entropy, prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    entropy.fill(&mut bytes);
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    for b in bytes {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
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
        let id = identifier(&SeededEntropy::new(1), "g_");
        assert!(id.starts_with("g_"));
        assert_eq!(id.len(), 34);
        assert!(id[2..].bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
