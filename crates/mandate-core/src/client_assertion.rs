//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OpenID Connect Core §9).
//!
//! A confidential agent proves who it is by signing a short-lived JWT with a key only it holds,
//! so there is no shared secret to leak from either side. The server does the IO (looking the
//! client up, fetching its `jwks_uri`, recording `jti`s); this module does the rest in three
//! steps, in this order:
//!
//! 1. [`PresentedAssertion::from_request`]: the request carries exactly one client credential,
//!    the assertion type is the JWT bearer one, and the assertion is not oversized.
//! 2. [`PresentedAssertion::unverified_client_id`]: which client's keys to load. Read from the
//!    unverified payload, so it is only a lookup key; nothing is trusted until step 3.
//! 3. [`verify`] (signature with [`ClientJwks`], then [`check_claims`]): `iss` and `sub` are the
//!    client, `aud` names this server, `exp` is present, not passed and not far away, and a
//!    `jti` is present. The result carries the `jti` and how long the caller's replay store must
//!    remember it; a `jti` seen before within that window must be refused by the caller.
//!
//! Every failure is `invalid_client` (RFC 7523 §3.2) with a description that says which rule
//! failed but never echoes the assertion.

use crate::error::OAuthError;
use crate::jwks::ClientJwks;
use crate::jwt::MAX_TOKEN_LEN;
use crate::params::Params;
use crate::time::Timestamp;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// RFC 7523 §2.2: the only `client_assertion_type` accepted.
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The RFC 7591 name of this authentication method.
pub const AUTH_METHOD: &str = "private_key_jwt";
/// Longest an assertion may live, counted from now to its `exp`: long enough for clock skew
/// and a retry, short enough that a captured assertion is soon worthless.
pub const DEFAULT_MAX_LIFETIME_SECONDS: u64 = 5 * 60;
/// Clock skew tolerated on `exp`, `iat` and `nbf`.
pub const DEFAULT_LEEWAY_SECONDS: i64 = 30;
/// Longest `jti` accepted; the replay store keys on it.
pub const MAX_JTI_LEN: usize = 256;

/// A client assertion taken from a token, introspection or revocation request, not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedAssertion {
    assertion: String,
    /// The `client_id` parameter, if the client also sent one (optional in RFC 7523).
    client_id: Option<String>,
}

impl std::fmt::Debug for PresentedAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PresentedAssertion({:?})", self.client_id)
    }
}

fn invalid(d: &'static str) -> OAuthError {
    OAuthError::InvalidClient(d.into())
}

impl PresentedAssertion {
    /// The assertion in the request, `Ok(None)` when the request uses another method.
    ///
    /// `authorization` is the `Authorization` header: combining it, or `client_secret`, with an
    /// assertion is two credentials in one request (RFC 6749 §2.3), refused as
    /// `invalid_request`.
    pub fn from_request(
        authorization: Option<&str>,
        params: &Params,
    ) -> Result<Option<Self>, OAuthError> {
        let (kind, assertion) = (
            params.get("client_assertion_type"),
            params.get("client_assertion"),
        );
        let assertion = match (kind, assertion) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(OAuthError::invalid_request(
                    "client_assertion_type without client_assertion",
                ));
            }
            (None, Some(_)) => {
                return Err(OAuthError::invalid_request(
                    "client_assertion without client_assertion_type",
                ));
            }
            (Some(kind), Some(a)) => {
                if kind != JWT_BEARER_ASSERTION_TYPE {
                    return Err(invalid(
                        "unsupported client_assertion_type; use urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ));
                }
                a
            }
        };
        if authorization.is_some() || params.contains("client_secret") {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not a client assertion and a secret",
            ));
        }
        if assertion.len() > MAX_TOKEN_LEN {
            return Err(invalid("client_assertion is too long"));
        }
        Ok(Some(Self {
            assertion: assertion.to_owned(),
            client_id: params.get("client_id").map(str::to_owned),
        }))
    }

    /// The client whose keys verify this assertion: its `sub`, read without verification and
    /// used only to look the client up. If the request also named a `client_id`, they must
    /// agree.
    pub fn unverified_client_id(&self) -> Result<String, OAuthError> {
        #[derive(Deserialize)]
        struct Peek {
            #[serde(default)]
            sub: Option<String>,
        }
        let payload = self
            .assertion
            .split('.')
            .nth(1)
            .ok_or_else(|| invalid("client_assertion is not a JWT"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| invalid("client_assertion is not a JWT"))?;
        let peek: Peek =
            serde_json::from_slice(&bytes).map_err(|_| invalid("client_assertion is not a JWT"))?;
        let sub = peek
            .sub
            .ok_or_else(|| invalid("client_assertion has no sub"))?;
        if self.client_id.as_deref().is_some_and(|c| c != sub) {
            return Err(OAuthError::invalid_request(
                "client_id differs from the client_assertion's subject",
            ));
        }
        Ok(sub)
    }

    pub fn as_str(&self) -> &str {
        &self.assertion
    }
}

/// What a valid assertion must satisfy.
#[derive(Debug, Clone)]
pub struct AssertionRules<'a> {
    /// The client being authenticated (looked up via [`PresentedAssertion::unverified_client_id`]).
    pub client_id: &'a str,
    /// This server's issuer identifier. Accepted as `aud`, and preferred (rfc7523bis).
    pub issuer: &'a str,
    /// The endpoint the assertion was sent to (RFC 7523 §3 also accepts the token endpoint URL).
    pub endpoint: &'a str,
    pub now: Timestamp,
    pub leeway_seconds: i64,
    pub max_lifetime_seconds: u64,
}

impl<'a> AssertionRules<'a> {
    /// Rules with the default lifetime and leeway.
    pub fn new(client_id: &'a str, issuer: &'a str, endpoint: &'a str, now: Timestamp) -> Self {
        Self {
            client_id,
            issuer,
            endpoint,
            now,
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            max_lifetime_seconds: DEFAULT_MAX_LIFETIME_SECONDS,
        }
    }
}

/// `aud` as RFC 7519 §4.1.3 allows it: one string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims of a client assertion (RFC 7523 §3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AssertionClaims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub jti: Option<String>,
}

/// An assertion that passed every check. The caller must now record `jti` for `client_id`
/// until `remember_until`, and refuse the request if that pair was already recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedAssertion {
    pub client_id: String,
    pub jti: String,
    /// The assertion's `exp` plus the leeway: after this it would be refused as expired, so
    /// the replay store may forget it.
    pub remember_until: Timestamp,
}

/// Verifies the assertion's signature with the client's keys, then its claims.
pub fn verify(
    presented: &PresentedAssertion,
    keys: &ClientJwks,
    rules: &AssertionRules<'_>,
) -> Result<AcceptedAssertion, OAuthError> {
    let payload = keys
        .verify(&presented.assertion)
        .map_err(|e| OAuthError::InvalidClient(format!("client_assertion: {e}").into()))?;
    let claims: AssertionClaims = serde_json::from_slice(&payload)
        .map_err(|_| invalid("client_assertion claims are malformed"))?;
    check_claims(&claims, rules)
}

/// The claim rules of RFC 7523 §3, for an assertion whose signature is already verified.
pub fn check_claims(
    claims: &AssertionClaims,
    rules: &AssertionRules<'_>,
) -> Result<AcceptedAssertion, OAuthError> {
    let now = rules.now.unix();
    let leeway = rules.leeway_seconds.max(0);
    if claims.iss.as_deref() != Some(rules.client_id) {
        return Err(invalid("client_assertion iss must be the client_id"));
    }
    if claims.sub.as_deref() != Some(rules.client_id) {
        return Err(invalid("client_assertion sub must be the client_id"));
    }
    let ours = |a: &str| a == rules.issuer || a == rules.endpoint;
    let aud_ok = match &claims.aud {
        Some(Audience::One(a)) => ours(a),
        // Several audiences would let one assertion authenticate at other servers too.
        Some(Audience::Many(list)) => matches!(list.as_slice(), [a] if ours(a)),
        None => false,
    };
    if !aud_ok {
        return Err(invalid(
            "client_assertion aud must be this server's issuer or the endpoint URL, alone",
        ));
    }
    let exp = claims
        .exp
        .ok_or_else(|| invalid("client_assertion has no exp"))?;
    if exp.saturating_add(leeway) <= now {
        return Err(invalid("client_assertion has expired"));
    }
    let max = i64::try_from(rules.max_lifetime_seconds).unwrap_or(i64::MAX);
    if exp > now.saturating_add(max).saturating_add(leeway) {
        return Err(invalid("client_assertion expires too far in the future"));
    }
    if claims
        .iat
        .is_some_and(|iat| iat > now.saturating_add(leeway))
    {
        return Err(invalid("client_assertion was issued in the future"));
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(leeway))
    {
        return Err(invalid("client_assertion is not valid yet"));
    }
    let jti = claims
        .jti
        .as_deref()
        .filter(|j| !j.is_empty())
        .ok_or_else(|| invalid("client_assertion has no jti"))?;
    if jti.len() > MAX_JTI_LEN || !jti.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("client_assertion jti is malformed"));
    }
    Ok(AcceptedAssertion {
        client_id: rules.client_id.to_owned(),
        jti: jti.to_owned(),
        remember_until: Timestamp::from_unix(exp.saturating_add(leeway)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::test_keys::TestKey;
    use serde_json::json;

    const ISS: &str = "https://as.example";
    const TOKEN: &str = "https://as.example/token";

    fn rules(now: i64) -> AssertionRules<'static> {
        AssertionRules::new("agent-1", ISS, TOKEN, Timestamp::from_unix(now))
    }

    fn claims(v: serde_json::Value) -> AssertionClaims {
        serde_json::from_value(v).unwrap()
    }

    fn good() -> serde_json::Value {
        json!({"iss": "agent-1", "sub": "agent-1", "aud": ISS, "exp": 1100, "iat": 1000, "jti": "j-1"})
    }

    fn params(s: &str) -> Params {
        Params::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn claim_rules() {
        let with = |k: &str, v: serde_json::Value| {
            let mut c = good();
            c[k] = v;
            c
        };
        let without = |k: &str| {
            let mut c = good();
            c.as_object_mut().unwrap().remove(k);
            c
        };
        let cases: Vec<(serde_json::Value, bool, &str)> = vec![
            (good(), true, "valid"),
            (with("aud", json!(TOKEN)), true, "token endpoint as aud"),
            (with("aud", json!([ISS])), true, "one-element array"),
            (
                with("aud", json!([ISS, "https://other"])),
                false,
                "extra audience",
            ),
            (with("aud", json!("https://other")), false, "other audience"),
            (without("aud"), false, "no aud"),
            (with("iss", json!("agent-2")), false, "iss not the client"),
            (with("sub", json!("agent-2")), false, "sub not the client"),
            (without("iss"), false, "no iss"),
            (without("exp"), false, "no exp"),
            (with("exp", json!(970)), false, "expired beyond leeway"),
            (with("exp", json!(980)), true, "expired within leeway"),
            (
                with("exp", json!(1000 + 300 + 30)),
                true,
                "at the lifetime bound",
            ),
            (with("exp", json!(1000 + 300 + 31)), false, "lives too long"),
            (with("iat", json!(1031)), false, "issued in the future"),
            (with("nbf", json!(1031)), false, "not yet valid"),
            (without("jti"), false, "no jti"),
            (with("jti", json!("")), false, "empty jti"),
            (with("jti", json!("a b")), false, "jti with a space"),
            (with("jti", json!("x".repeat(300))), false, "huge jti"),
        ];
        for (c, ok, reason) in cases {
            let got = check_claims(&claims(c), &rules(1000));
            assert_eq!(got.is_ok(), ok, "{reason}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.code(), "invalid_client", "{reason}");
            }
        }
    }

    #[test]
    fn accepted_assertion_says_how_long_to_remember_the_jti() {
        let got = check_claims(&claims(good()), &rules(1000)).unwrap();
        assert_eq!(
            got,
            AcceptedAssertion {
                client_id: "agent-1".into(),
                jti: "j-1".into(),
                remember_until: Timestamp::from_unix(1130),
            }
        );
    }

    #[test]
    fn request_extraction_cases() {
        let a = format!("client_assertion_type={JWT_BEARER_ASSERTION_TYPE}&client_assertion=x.y.z");
        type Case<'a> = (Option<&'a str>, String, Result<bool, &'a str>, &'a str);
        let cases: Vec<Case> = vec![
            (None, a.clone(), Ok(true), "assertion"),
            (None, "client_id=c".into(), Ok(false), "another method"),
            (
                None,
                format!("{a}&client_secret=s"),
                Err("invalid_request"),
                "with a secret",
            ),
            (
                Some("Basic abc"),
                a.clone(),
                Err("invalid_request"),
                "with Basic",
            ),
            (
                None,
                "client_assertion=x.y.z".into(),
                Err("invalid_request"),
                "type missing",
            ),
            (
                None,
                format!("client_assertion_type={JWT_BEARER_ASSERTION_TYPE}"),
                Err("invalid_request"),
                "assertion missing",
            ),
            (
                None,
                "client_assertion_type=urn:x&client_assertion=x.y.z".into(),
                Err("invalid_client"),
                "other type",
            ),
            (
                None,
                format!(
                    "client_assertion_type={JWT_BEARER_ASSERTION_TYPE}&client_assertion={}",
                    "a".repeat(MAX_TOKEN_LEN + 1)
                ),
                Err("invalid_client"),
                "oversized",
            ),
        ];
        for (header, body, expected, reason) in cases {
            let got = PresentedAssertion::from_request(header, &params(&body));
            match (got, expected) {
                (Ok(found), Ok(present)) => assert_eq!(found.is_some(), present, "{reason}"),
                (Err(e), Err(code)) => assert_eq!(e.code(), code, "{reason}"),
                (got, _) => panic!("{reason}: unexpected {got:?}"),
            }
        }
    }

    fn present(assertion: &str, client_id: Option<&str>) -> PresentedAssertion {
        let mut body = format!(
            "client_assertion_type={JWT_BEARER_ASSERTION_TYPE}&client_assertion={assertion}"
        );
        if let Some(c) = client_id {
            body.push_str(&format!("&client_id={c}"));
        }
        PresentedAssertion::from_request(None, &params(&body))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn end_to_end_with_each_key_type() {
        for key in [TestKey::ed25519(), TestKey::p256(), TestKey::rsa()] {
            let jwks = ClientJwks::from_value(&json!({"keys": [key.jwk("k")]})).unwrap();
            let token = key.sign(&json!({"alg": key.alg(), "kid": "k"}), &good());
            let p = present(&token, Some("agent-1"));
            assert_eq!(p.unverified_client_id().unwrap(), "agent-1");
            let ok = verify(&p, &jwks, &rules(1000)).unwrap();
            assert_eq!(ok.jti, "j-1");
            // The same signature under another client's rules fails on iss/sub.
            let other = AssertionRules::new("agent-2", ISS, TOKEN, Timestamp::from_unix(1000));
            assert_eq!(
                verify(&p, &jwks, &other).unwrap_err().code(),
                "invalid_client"
            );
        }
    }

    #[test]
    fn bad_signature_and_lookup_failures() {
        let key = TestKey::ed25519();
        let jwks = ClientJwks::from_value(&json!({"keys": [key.jwk("k")]})).unwrap();
        let forged = TestKey::ed25519().sign(&json!({"alg": "EdDSA"}), &good());
        let err = verify(&present(&forged, None), &jwks, &rules(1000)).unwrap_err();
        assert_eq!(err.code(), "invalid_client");
        assert!(!err.description().contains(&forged));

        let token = key.sign(&json!({"alg": "EdDSA"}), &good());
        assert_eq!(
            present(&token, Some("agent-2"))
                .unverified_client_id()
                .unwrap_err()
                .code(),
            "invalid_request",
            "client_id parameter disagrees with sub"
        );
        assert_eq!(
            present("not-a-jwt", None)
                .unverified_client_id()
                .unwrap_err()
                .code(),
            "invalid_client"
        );
        let no_sub = key.sign(&json!({"alg": "EdDSA"}), &json!({"iss": "agent-1"}));
        assert!(present(&no_sub, None).unverified_client_id().is_err());
    }

    #[test]
    fn debug_hides_the_assertion() {
        let p = present("secret.payload.sig", Some("agent-1"));
        assert!(!format!("{p:?}").contains("secret"));
    }
}
