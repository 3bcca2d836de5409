//! Proof Key for Code Exchange (RFC 7636), S256 only.
//!
//! OAuth 2.1 makes PKCE mandatory for every authorization code flow and Mandate accepts only the
//! `S256` method: `plain` sends the verifier through the browser, which defeats the point, and a
//! missing method means `plain` per RFC 7636 §4.3, so both are refused.

use crate::error::OAuthError;
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// A validated S256 code challenge: 43 base64url characters (a SHA-256 digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Validates `code_challenge` and `code_challenge_method` from an authorization request.
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Self, OAuthError> {
        let challenge = challenge.ok_or_else(|| {
            OAuthError::invalid_request("code_challenge is required (PKCE with S256)")
        })?;
        match method {
            Some("S256") => {}
            Some("plain") | None => {
                return Err(OAuthError::invalid_request(
                    "code_challenge_method must be S256; plain is not supported",
                ));
            }
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "unsupported code_challenge_method; use S256",
                ));
            }
        }
        Self::from_stored(challenge).ok_or_else(|| {
            OAuthError::invalid_request("code_challenge must be 43 base64url characters")
        })
    }

    /// Re-creates a challenge read back from storage; `None` if it is not well formed.
    pub fn from_stored(s: &str) -> Option<Self> {
        let ok = s.len() == 43
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && URL_SAFE_NO_PAD.decode(s).is_ok_and(|d| d.len() == 32);
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// RFC 7636 §4.6: `BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) == code_challenge`,
    /// compared in constant time.
    pub fn verify(&self, verifier: &CodeVerifier) -> bool {
        crate::secret::constant_time_eq(&verifier.challenge(), &self.0)
    }
}

/// A validated code verifier: 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
#[derive(Clone, PartialEq, Eq)]
pub struct CodeVerifier(String);

impl std::fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeVerifier(<redacted>)")
    }
}

impl CodeVerifier {
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        let ok = (43..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(OAuthError::invalid_request(
                "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]",
            ))
        }
    }

    /// The S256 challenge this verifier answers.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, self.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_example_verifies() {
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap();
        assert!(c.verify(&CodeVerifier::parse(VERIFIER).unwrap()));
        let other = CodeVerifier::parse(&"a".repeat(43)).unwrap();
        assert!(!c.verify(&other));
    }

    #[test]
    fn challenge_cases() {
        let cases: &[(Option<&str>, Option<&str>, bool, &str)] = &[
            (Some(CHALLENGE), Some("S256"), true, "S256 with a digest"),
            (Some(CHALLENGE), None, false, "missing method means plain"),
            (Some(CHALLENGE), Some("plain"), false, "plain is refused"),
            (
                Some(CHALLENGE),
                Some("s256"),
                false,
                "method is case sensitive",
            ),
            (None, Some("S256"), false, "challenge missing"),
            (Some("short"), Some("S256"), false, "not a digest"),
            (Some(&"+".repeat(43)), Some("S256"), false, "not base64url"),
        ];
        for (challenge, method, ok, reason) in cases {
            let got = CodeChallenge::parse(*challenge, *method);
            assert_eq!(got.is_ok(), *ok, "{reason}");
            if let Err(e) = got {
                assert_eq!(e.code(), "invalid_request", "{reason}");
            }
        }
    }

    #[test]
    fn verifier_cases() {
        let cases: &[(String, bool, &str)] = &[
            ("a".repeat(42), false, "too short"),
            ("a".repeat(43), true, "minimum length"),
            ("a".repeat(128), true, "maximum length"),
            ("a".repeat(129), false, "too long"),
            (
                format!("{}~._-", "a".repeat(40)),
                true,
                "unreserved punctuation",
            ),
            (
                format!("{}+", "a".repeat(43)),
                false,
                "plus is not unreserved",
            ),
        ];
        for (v, ok, reason) in cases {
            assert_eq!(CodeVerifier::parse(v).is_ok(), *ok, "{reason}");
        }
    }

    #[test]
    fn verifier_debug_is_redacted() {
        let v = CodeVerifier::parse(VERIFIER).unwrap();
        assert!(!format!("{v:?}").contains("dBjft"));
    }
}
