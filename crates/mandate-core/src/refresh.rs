//! Refresh token rotation with reuse detection.
//!
//! Every use of a refresh token retires it and issues a successor in the same family. A retired
//! token presented again means two parties hold it, one of them an attacker, so the whole family
//! and its grant are revoked (OAuth 2.1 §4.3.1, draft-ietf-oauth-security-topics §4.14).
//!
//! Concurrent refreshes by one honest client (two tabs, a retried request) must not look like
//! theft. Within a short grace window the retired token yields the *same* successor, as long as
//! that successor is still unused. Successors are derived, not stored: successor =
//! HMAC(refresh key, presented token), so the server can hand the same value out again while
//! storing only hashes.

use crate::scope::ScopeSet;
use crate::secret;
use crate::time::Timestamp;

/// Default grace window for concurrent refreshes, in seconds.
pub const DEFAULT_GRACE_SECONDS: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    pub id: String,
    pub grant_id: String,
    pub client_id: String,
    pub tenant_id: String,
    pub user_id: Option<String>,
    /// The scopes of the original grant to this family; a refresh may narrow, never widen.
    pub scopes: ScopeSet,
    pub resource: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// One refresh token of a family, identified by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub token_hash: String,
    pub family_id: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// When it was rotated; `None` while it is the family's live token.
    pub used_at: Option<Timestamp>,
}

/// What presenting a known refresh token means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    /// The live token: rotate it.
    Rotate,
    /// Just rotated by a concurrent request from the same client: answer with the same successor.
    ReturnSuccessor,
    /// Retired and outside the grace window (or its successor moved on): theft.
    Reuse,
    /// Expired; an ordinary `invalid_grant`.
    Expired,
}

/// Classifies a presented token. `successor_live` says whether the token that replaced it is
/// still the family's live token.
pub fn classify(
    token: &RefreshTokenRecord,
    successor_live: bool,
    now: Timestamp,
    grace_seconds: u64,
) -> Presentation {
    match token.used_at {
        None if now >= token.expires_at => Presentation::Expired,
        None => Presentation::Rotate,
        Some(used) if successor_live && now < used.plus_seconds(grace_seconds) => {
            Presentation::ReturnSuccessor
        }
        Some(_) => Presentation::Reuse,
    }
}

/// The successor of `presented`: deterministic under the server's refresh key, so a concurrent
/// request within the grace window receives the identical token.
pub fn successor(refresh_key: &[u8], presented: &str) -> String {
    secret::derive_token(
        refresh_key,
        "mandate refresh successor v1",
        presented.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(used_at: Option<i64>) -> RefreshTokenRecord {
        RefreshTokenRecord {
            token_hash: "h".into(),
            family_id: "f".into(),
            issued_at: Timestamp::from_unix(0),
            expires_at: Timestamp::from_unix(1000),
            used_at: used_at.map(Timestamp::from_unix),
        }
    }

    #[test]
    fn classification_cases() {
        let t = Timestamp::from_unix;
        let cases = [
            (token(None), true, t(10), Presentation::Rotate, "live token"),
            (
                token(None),
                true,
                t(1000),
                Presentation::Expired,
                "expired live token",
            ),
            (
                token(Some(10)),
                true,
                t(12),
                Presentation::ReturnSuccessor,
                "concurrent retry in grace",
            ),
            (
                token(Some(10)),
                true,
                t(15),
                Presentation::Reuse,
                "grace is exclusive at its end",
            ),
            (
                token(Some(10)),
                false,
                t(11),
                Presentation::Reuse,
                "successor already rotated",
            ),
            (
                token(Some(10)),
                true,
                t(500),
                Presentation::Reuse,
                "replay long after",
            ),
        ];
        for (tok, live, now, expected, reason) in cases {
            assert_eq!(classify(&tok, live, now, 5), expected, "{reason}");
        }
    }

    #[test]
    fn successor_is_stable_and_key_bound() {
        assert_eq!(successor(b"k1", "tok"), successor(b"k1", "tok"));
        assert_ne!(successor(b"k1", "tok"), successor(b"k2", "tok"));
        assert_ne!(successor(b"k1", "tok"), successor(b"k1", "tok2"));
        assert_eq!(successor(b"k1", "tok").len(), 43);
    }
}
