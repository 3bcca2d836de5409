//! Human passwords: argon2id, off the async runtime, with even timing.
//!
//! argon2id costs ~15 ms by design, so it runs on the blocking pool. A login for an unknown
//! name still verifies against a fixed dummy hash, so response time does not reveal which
//! login names exist.

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::OnceLock;

/// Hashes a password with argon2id at the library's default (OWASP minimum) parameters.
pub fn hash(password: &str, salt_bytes: &[u8; 16]) -> anyhow::Result<String> {
    let salt =
        SaltString::encode_b64(salt_bytes).map_err(|e| anyhow::anyhow!("encoding a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

/// Whether `password` matches the PHC string `stored`. A malformed stored hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Whether `s` is a PHC-format argon2id hash.
pub fn is_argon2id(s: &str) -> bool {
    PasswordHash::new(s).is_ok_and(|p| p.algorithm.as_str() == "argon2id")
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("mandate-timing-equaliser", &[0x5a; 16]).unwrap_or_default())
}

/// Verifies on the blocking pool; `stored = None` (unknown user) costs the same and fails.
pub async fn verify_blocking(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || match stored {
        Some(h) => verify(&password, &h),
        None => {
            let _ = verify(&password, dummy_hash());
            false
        }
    })
    .await
    .context("password verification task failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse", &[1; 16]).unwrap();
        assert!(is_argon2id(&h));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("correct horse", "not a hash"));
        assert!(!is_argon2id("$2b$12$abc"));
    }
}
