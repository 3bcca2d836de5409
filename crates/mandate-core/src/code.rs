//! Authorization codes: single use, 60 seconds, bound to everything about the request.
//!
//! The stored record binds the code to the client, redirect URI, PKCE challenge, resource and
//! scopes, so a code intercepted anywhere is worthless without the verifier, and a code redeemed
//! twice reveals a leak: the second redemption fails and revokes what the first one issued
//! (RFC 6749 §4.1.2).

use crate::error::OAuthError;
use crate::pkce::{CodeChallenge, CodeVerifier};
use crate::scope::ScopeSet;
use crate::time::Timestamp;

pub const CODE_TTL_SECONDS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    /// `sha256:` hash of the code; the code itself is never stored.
    pub code_hash: String,
    pub client_id: String,
    pub grant_id: String,
    pub user_id: String,
    pub tenant_id: String,
    pub redirect_uri: String,
    pub redirect_uri_explicit: bool,
    pub code_challenge: CodeChallenge,
    pub resource: String,
    pub scopes: ScopeSet,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The refresh family the first redemption created, revoked if the code is replayed.
    pub family_id: Option<String>,
}

/// Checks a first redemption against the code's bindings. The caller burns the code when a
/// check fails: a code is presented once, whether or not the presentation succeeds.
pub fn check_redemption(
    code: &AuthorizationCode,
    client_id: &str,
    redirect_uri: Option<&str>,
    verifier: &CodeVerifier,
    resource: Option<&str>,
    now: Timestamp,
) -> Result<(), OAuthError> {
    let invalid = |why: &'static str| OAuthError::InvalidGrant(why.into());
    if code.client_id != client_id {
        return Err(invalid("the code was issued to another client"));
    }
    if now >= code.expires_at {
        return Err(invalid("the code has expired"));
    }
    match redirect_uri {
        Some(r) if r == code.redirect_uri => {}
        Some(_) => {
            return Err(invalid(
                "redirect_uri does not match the authorization request",
            ));
        }
        None if code.redirect_uri_explicit => {
            return Err(OAuthError::invalid_request(
                "redirect_uri is required because the authorization request included it",
            ));
        }
        None => {}
    }
    if !code.code_challenge.verify(verifier) {
        return Err(invalid("code_verifier does not match the code_challenge"));
    }
    if resource.is_some_and(|r| r != code.resource) {
        return Err(OAuthError::InvalidTarget(
            "resource differs from the one authorized".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn code(explicit: bool) -> AuthorizationCode {
        AuthorizationCode {
            code_hash: "h".into(),
            client_id: "cli".into(),
            grant_id: "g".into(),
            user_id: "u".into(),
            tenant_id: "t".into(),
            redirect_uri: "http://127.0.0.1:5000/cb".into(),
            redirect_uri_explicit: explicit,
            code_challenge: CodeChallenge::from_stored(CHALLENGE).unwrap(),
            resource: "http://crm".into(),
            scopes: ScopeSet::parse("a").unwrap(),
            created_at: Timestamp::from_unix(1000),
            expires_at: Timestamp::from_unix(1060),
            family_id: None,
        }
    }

    #[test]
    fn redemption_cases() {
        let good = CodeVerifier::parse(VERIFIER).unwrap();
        let bad = CodeVerifier::parse(&"b".repeat(43)).unwrap();
        let now = Timestamp::from_unix(1010);
        let uri = Some("http://127.0.0.1:5000/cb");
        let c = code(true);
        let cases: Vec<(Result<(), OAuthError>, Option<&str>, &str)> = vec![
            (
                check_redemption(&c, "cli", uri, &good, None, now),
                None,
                "valid",
            ),
            (
                check_redemption(&c, "cli", uri, &good, Some("http://crm"), now),
                None,
                "same resource",
            ),
            (
                check_redemption(&c, "other", uri, &good, None, now),
                Some("invalid_grant"),
                "other client",
            ),
            (
                check_redemption(&c, "cli", uri, &good, None, Timestamp::from_unix(1060)),
                Some("invalid_grant"),
                "expired at 60 s",
            ),
            (
                check_redemption(
                    &c,
                    "cli",
                    Some("http://127.0.0.1:5001/cb"),
                    &good,
                    None,
                    now,
                ),
                Some("invalid_grant"),
                "other redirect",
            ),
            (
                check_redemption(&c, "cli", None, &good, None, now),
                Some("invalid_request"),
                "redirect required",
            ),
            (
                check_redemption(&code(false), "cli", None, &good, None, now),
                None,
                "redirect optional when implicit",
            ),
            (
                check_redemption(&c, "cli", uri, &bad, None, now),
                Some("invalid_grant"),
                "wrong verifier",
            ),
            (
                check_redemption(&c, "cli", uri, &good, Some("http://other"), now),
                Some("invalid_target"),
                "other resource",
            ),
        ];
        for (got, expected, reason) in cases {
            assert_eq!(got.err().map(|e| e.code()), expected, "{reason}");
        }
    }
}
