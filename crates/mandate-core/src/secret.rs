//! Storing and checking high-entropy secrets.
//!
//! Client secrets, refresh tokens, authorization codes and session ids are 256-bit random
//! values, so a single SHA-256 is as strong as a slow hash for them and costs 0.06 µs instead of
//! argon2id's 14.5 ms (DESIGN.md). Only the hash is stored; comparison is constant-time so the
//! check leaks nothing about how close a guess was. Human passwords are not handled here: they
//! use argon2id in the server.

use aws_lc_rs::digest;
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

const PREFIX: &str = "sha256:";

/// `sha256:<base64url digest>`: the stored form of an opaque secret. The prefix keeps room to
/// change the algorithm without ambiguity.
pub fn hash_secret(secret: &str) -> String {
    let d = digest::digest(&digest::SHA256, secret.as_bytes());
    let mut out = String::with_capacity(PREFIX.len() + 43);
    out.push_str(PREFIX);
    URL_SAFE_NO_PAD.encode_string(d.as_ref(), &mut out);
    out
}

/// Whether `stored` has the shape [`hash_secret`] produces.
pub fn is_secret_hash(stored: &str) -> bool {
    stored.strip_prefix(PREFIX).is_some_and(|b64| {
        URL_SAFE_NO_PAD
            .decode(b64)
            .is_ok_and(|bytes| bytes.len() == 32)
    })
}

/// Constant-time check of a presented secret against its stored hash.
pub fn verify_secret(presented: &str, stored: &str) -> bool {
    let computed = hash_secret(presented);
    bool::from(computed.as_bytes().ct_eq(stored.as_bytes()))
}

/// Derives a purpose-bound 256-bit value from a master key, so one key-encryption key can feed
/// several independent uses (CSRF tokens, refresh successors) without any of them revealing
/// another.
pub fn derive(master: &[u8], purpose: &str, input: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, master);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(purpose.as_bytes());
    ctx.update(&[0]);
    ctx.update(input);
    let tag = ctx.sign();
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// [`derive()`], rendered as base64url.
pub fn derive_token(master: &[u8], purpose: &str, input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(derive(master, purpose, input))
}

/// Constant-time equality of two strings.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_same_secret() {
        let stored = hash_secret("s3cret-value");
        assert!(is_secret_hash(&stored));
        assert!(verify_secret("s3cret-value", &stored));
        assert!(!verify_secret("s3cret-valuf", &stored));
        assert!(!verify_secret("", &stored));
    }

    #[test]
    fn malformed_hashes_are_recognised() {
        assert!(!is_secret_hash("s3cret"));
        assert!(!is_secret_hash("sha256:abc"));
        assert!(!is_secret_hash(
            "md5:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        ));
    }

    #[test]
    fn derivations_are_purpose_bound() {
        let k = [7u8; 32];
        assert_ne!(derive(&k, "csrf", b"x"), derive(&k, "refresh", b"x"));
        assert_eq!(
            derive_token(&k, "csrf", b"x"),
            derive_token(&k, "csrf", b"x")
        );
    }
}
