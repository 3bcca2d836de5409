//! RFC 9068 JWT access tokens: signing with a key parsed once, and strict verification.
//!
//! Issuance is the hot path, and common JWT crates re-parse the private key on every encode
//! (doubling the cost of an Ed25519 signature), so [`SigningKey`] holds the parsed key pair and
//! a pre-encoded header; a token costs one JSON serialisation, two base64 encodings and one
//! signature. Verification accepts only the algorithms of the keys it was given, never `none`
//! or HMAC, and never takes key material from the token itself.
//!
//! Verification is the hot path of introspection and of the resource-server guard, so
//! [`VerifyingKey`] holds its key parsed and checked once, when it is built from the JWK: a
//! P-256 point must be on the curve, and an Ed25519 key must be a point of the curve that is not
//! of small order (under a small-order key, forged signatures verify). Both algorithms verify
//! with aws-lc-rs, which also refuses a non-canonical Ed25519 `s` (so a signature cannot be
//! altered into another valid one). ed25519-dalek (`verify_strict`) was measured as the
//! alternative and was not faster on these machines (BENCHMARKS.md, "Introspection and
//! verification"); it is used here only to check Ed25519 keys when they are built.

use crate::scope::ScopeSet;
use crate::time::Timestamp;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, ParsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The SHA-256 of a token: what caches of verified tokens (the server's, the guard's) key
/// their entries by, so the token itself is never kept.
pub fn token_digest(token: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
    );
    key
}

/// RFC 9068 §2.1: the media type every access token declares.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037), the default.
    EdDSA,
    /// ECDSA P-256 with SHA-256 (RFC 7518 §3.4).
    ES256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "EdDSA" => Ok(Self::EdDSA),
            "ES256" => Ok(Self::ES256),
            other => Err(format!(
                "unsupported signing algorithm `{other}` (EdDSA, ES256)"
            )),
        }
    }
}

/// Why a token was not accepted. Deliberately coarse: callers answer `invalid_token` for all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is malformed")]
    Malformed,
    #[error("token type is not at+jwt")]
    WrongType,
    #[error("token algorithm or key id is not accepted")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("signing key material is invalid")]
    BadKey,
    #[error("signing failed")]
    SigningFailed,
}

/// The claims of a Mandate access token (RFC 9068 §2.2 plus Mandate's `tenant` and `gid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    /// The user, or the client id for a service identity.
    pub sub: String,
    /// The resource server this token is for (RFC 8707).
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub tenant: String,
    /// The grant this token hangs off: the revocation handle.
    pub gid: String,
    /// RFC 8693 delegation chain (token exchange; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<serde_json::Value>,
}

/// A public key in JWK form (RFC 7517), as published at the JWKS endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
}

/// A private signing key, parsed once, with its encoded JWS header ready.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    pair: Pair,
    header_b64: String,
    jwk: Jwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key pair; returns it with its PKCS#8 document for encrypted storage.
    pub fn generate(alg: Algorithm, kid: String) -> Result<(Self, Vec<u8>), JwtError> {
        let rng = SystemRandom::new();
        let der = match alg {
            Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| JwtError::BadKey)?
                .as_ref()
                .to_vec(),
            Algorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| JwtError::BadKey)?
                    .as_ref()
                    .to_vec()
            }
        };
        let key = Self::from_pkcs8(alg, kid, &der)?;
        Ok((key, der))
    }

    pub fn from_pkcs8(alg: Algorithm, kid: String, der: &[u8]) -> Result<Self, JwtError> {
        let (pair, jwk) = match alg {
            Algorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|_| JwtError::BadKey)?;
                let jwk = Jwk {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                    y: None,
                    kid: kid.clone(),
                    alg: alg.as_str().into(),
                    use_: "sig".into(),
                };
                (Pair::Ed25519(pair), jwk)
            }
            Algorithm::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| JwtError::BadKey)?;
                let point = pair.public_key().as_ref();
                let (x, y) = match point {
                    [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
                    _ => return Err(JwtError::BadKey),
                };
                let jwk = Jwk {
                    kty: "EC".into(),
                    crv: "P-256".into(),
                    x: URL_SAFE_NO_PAD.encode(x),
                    y: Some(URL_SAFE_NO_PAD.encode(y)),
                    kid: kid.clone(),
                    alg: alg.as_str().into(),
                    use_: "sig".into(),
                };
                (Pair::Es256(pair), jwk)
            }
        };
        let header = serde_json::json!({"alg": alg.as_str(), "typ": ACCESS_TOKEN_TYP, "kid": kid});
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        Ok(Self {
            kid,
            alg,
            pair,
            header_b64,
            jwk,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `claims` into a compact JWS (an access token: `typ` is `at+jwt`).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, JwtError> {
        self.sign_with_header(&self.header_b64, claims)
    }

    /// Signs `claims` into a compact JWS whose header declares `typ` (for documents that are
    /// not access tokens, so one can never be taken for the other).
    pub fn sign_typed<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, JwtError> {
        let header = serde_json::json!({"alg": self.alg.as_str(), "typ": typ, "kid": self.kid});
        self.sign_with_header(&URL_SAFE_NO_PAD.encode(header.to_string()), claims)
    }

    fn sign_with_header<T: Serialize>(
        &self,
        header_b64: &str,
        claims: &T,
    ) -> Result<String, JwtError> {
        let payload = serde_json::to_vec(claims).map_err(|_| JwtError::SigningFailed)?;
        let mut out = String::with_capacity(header_b64.len() + payload.len() * 4 / 3 + 100);
        out.push_str(header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        let sig = match &self.pair {
            Pair::Ed25519(p) => p.sign(out.as_bytes()).as_ref().to_vec(),
            Pair::Es256(p) => p
                .sign(&SystemRandom::new(), out.as_bytes())
                .map_err(|_| JwtError::SigningFailed)?
                .as_ref()
                .to_vec(),
        };
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut out);
        Ok(out)
    }
}

/// A public key that verifies tokens, built from a JWK and parsed once.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    alg: Algorithm,
    /// Ed25519: a point of the curve, not of small order; P-256: a point of the curve.
    key: ParsedPublicKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Parses the JWK's key. `BadKey` for anything but an Ed25519 (`OKP`, `EdDSA`) or P-256
    /// (`EC`, `ES256`) signing key, for bytes that are not a point of the curve, and for a
    /// small-order Ed25519 key (one under which forged signatures verify).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JwtError> {
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::BadKey);
        let (alg, key) = match (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_str()) {
            ("OKP", "Ed25519", "EdDSA") => {
                let x: [u8; 32] = decode(&jwk.x)?.try_into().map_err(|_| JwtError::BadKey)?;
                let point =
                    ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| JwtError::BadKey)?;
                if point.is_weak() {
                    return Err(JwtError::BadKey);
                }
                let key = ParsedPublicKey::new(&ED25519, x).map_err(|_| JwtError::BadKey)?;
                (Algorithm::EdDSA, key)
            }
            ("EC", "P-256", "ES256") => {
                let x = decode(&jwk.x)?;
                let y = decode(jwk.y.as_deref().ok_or(JwtError::BadKey)?)?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(JwtError::BadKey);
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .map_err(|_| JwtError::BadKey)?;
                (Algorithm::ES256, key)
            }
            _ => return Err(JwtError::BadKey),
        };
        Ok(Self {
            kid: jwk.kid.clone(),
            alg,
            key,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        self.key.verify_sig(message, sig).is_ok()
    }
}

/// A JWS header as this crate reads it (access tokens here, client assertions in
/// [`crate::jwks`]).
#[derive(Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
    /// Key material offered by the token itself is never trusted; its presence is refused.
    #[serde(default)]
    jwk: Option<serde_json::Value>,
    #[serde(default)]
    jku: Option<serde_json::Value>,
    #[serde(default)]
    x5u: Option<serde_json::Value>,
    #[serde(default)]
    x5c: Option<serde_json::Value>,
}

impl Header {
    /// Whether the header carries what this crate never honours: `crit` extensions, or key
    /// material (`jwk`, `jku`, `x5u`, `x5c`) offered by the token itself.
    pub(crate) fn is_untrustworthy(&self) -> bool {
        self.crit.is_some()
            || self.jwk.is_some()
            || self.jku.is_some()
            || self.x5u.is_some()
            || self.x5c.is_some()
    }
}

/// Checks a token's structure, type, key and signature, and returns its claims. Time, issuer
/// and audience are checked by [`Expectations::check`].
pub fn verify(token: &str, keys: &[VerifyingKey]) -> Result<AccessTokenClaims, JwtError> {
    verify_with_key(token, keys).map(|(claims, _)| claims)
}

/// As [`verify`], and also the key that verified the token (so a cache of verified tokens can
/// tell later whether that key is still trusted).
pub fn verify_with_key<'k>(
    token: &str,
    keys: &'k [VerifyingKey],
) -> Result<(AccessTokenClaims, &'k VerifyingKey), JwtError> {
    verify_jws(token, keys, |t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
    })
}

/// Checks a JWS's structure, type (`typ_ok` decides), key and signature, and returns its
/// claims and the `kid` that verified it.
pub fn verify_as<T: serde::de::DeserializeOwned>(
    token: &str,
    keys: &[VerifyingKey],
    typ_ok: impl Fn(&str) -> bool,
) -> Result<(T, String), JwtError> {
    verify_jws(token, keys, typ_ok).map(|(claims, key)| (claims, key.kid.clone()))
}

fn verify_jws<'k, T: serde::de::DeserializeOwned>(
    token: &str,
    keys: &'k [VerifyingKey],
    typ_ok: impl Fn(&str) -> bool,
) -> Result<(T, &'k VerifyingKey), JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Header = decode_json(h)?;
    if header.is_untrustworthy() {
        return Err(JwtError::Malformed);
    }
    if !header.typ.as_deref().is_some_and(typ_ok) {
        return Err(JwtError::WrongType);
    }
    let alg: Algorithm = header.alg.parse().map_err(|_| JwtError::UnknownKey)?;
    let kid = header.kid.ok_or(JwtError::UnknownKey)?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid && k.alg == alg)
        .ok_or(JwtError::UnknownKey)?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    let signed_len = h.len() + 1 + p.len();
    let message = token.get(..signed_len).ok_or(JwtError::Malformed)?;
    if !key.verify(message.as_bytes(), &sig) {
        return Err(JwtError::BadSignature);
    }
    Ok((decode_json(p)?, key))
}

pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// What a verified token's claims must satisfy.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    /// `None` accepts any audience (the authorization server's own introspection).
    pub audience: Option<&'a str>,
    pub now: Timestamp,
    pub leeway_seconds: i64,
}

impl Expectations<'_> {
    pub fn check(&self, claims: &AccessTokenClaims) -> Result<(), JwtError> {
        let now = self.now.unix();
        if claims.exp + self.leeway_seconds <= now {
            return Err(JwtError::Expired);
        }
        if claims.iat - self.leeway_seconds > now {
            return Err(JwtError::NotYetValid);
        }
        if claims.iss != self.issuer {
            return Err(JwtError::WrongIssuer);
        }
        if self.audience.is_some_and(|a| a != claims.aud) {
            return Err(JwtError::WrongAudience);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "http://as".into(),
            sub: "u_1".into(),
            aud: "http://crm".into(),
            exp: 1900,
            iat: 1000,
            jti: "j".into(),
            client_id: "cli".into(),
            scope: ScopeSet::parse("contacts.read").unwrap(),
            tenant: "acme".into(),
            gid: "g_1".into(),
            act: None,
        }
    }

    fn expect(now: i64) -> Expectations<'static> {
        Expectations {
            issuer: "http://as",
            audience: Some("http://crm"),
            now: Timestamp::from_unix(now),
            leeway_seconds: 0,
        }
    }

    #[test]
    fn both_algorithms_round_trip_through_their_jwk() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256] {
            let (key, der) = SigningKey::generate(alg, format!("k-{alg}")).unwrap();
            let reparsed = SigningKey::from_pkcs8(alg, key.kid().into(), &der).unwrap();
            assert_eq!(reparsed.public_jwk(), key.public_jwk());
            let token = key.sign(&claims()).unwrap();
            let vk = VerifyingKey::from_jwk(key.public_jwk()).unwrap();
            let got = verify(&token, &[vk]).unwrap();
            assert_eq!(got, claims());
            expect(1500).check(&got).unwrap();
        }
    }

    #[test]
    fn header_declares_typ_alg_and_kid() {
        let (key, _) = SigningKey::generate(Algorithm::EdDSA, "kid-1".into()).unwrap();
        let token = key.sign(&claims()).unwrap();
        let header: serde_json::Value = decode_json(token.split('.').next().unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "kid-1"})
        );
    }

    #[test]
    fn rejection_cases() {
        let (key, _) = SigningKey::generate(Algorithm::EdDSA, "k".into()).unwrap();
        let (other, _) = SigningKey::generate(Algorithm::EdDSA, "k".into()).unwrap();
        let vk = [VerifyingKey::from_jwk(key.public_jwk()).unwrap()];
        let good = key.sign(&claims()).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let mut tampered = claims();
        tampered.scope = ScopeSet::parse("billing.read").unwrap();
        let cases: Vec<(String, JwtError, &str)> = vec![
            (
                format!(
                    "{}.{}.",
                    b64(serde_json::json!({"alg":"none","typ":"at+jwt","kid":"k"})),
                    parts[1]
                ),
                JwtError::UnknownKey,
                "alg none",
            ),
            (
                format!(
                    "{}.{}.{}",
                    b64(serde_json::json!({"alg":"HS256","typ":"at+jwt","kid":"k"})),
                    parts[1],
                    parts[2]
                ),
                JwtError::UnknownKey,
                "HMAC",
            ),
            (
                format!(
                    "{}.{}.{}",
                    b64(serde_json::json!({"alg":"EdDSA","typ":"JWT","kid":"k"})),
                    parts[1],
                    parts[2]
                ),
                JwtError::WrongType,
                "not at+jwt",
            ),
            (
                format!(
                    "{}.{}.{}",
                    b64(serde_json::json!({"alg":"EdDSA","typ":"at+jwt","kid":"zz"})),
                    parts[1],
                    parts[2]
                ),
                JwtError::UnknownKey,
                "unknown kid",
            ),
            (
                format!(
                    "{}.{}.{}",
                    parts[0],
                    b64(serde_json::to_value(&tampered).unwrap()),
                    parts[2]
                ),
                JwtError::BadSignature,
                "tampered payload",
            ),
            (
                other.sign(&claims()).unwrap(),
                JwtError::BadSignature,
                "same kid, other key",
            ),
            (
                format!("{}.{}", parts[0], parts[1]),
                JwtError::Malformed,
                "two parts",
            ),
            (format!("{good}.x"), JwtError::Malformed, "four parts"),
            (
                "x".repeat(MAX_TOKEN_LEN + 1),
                JwtError::Malformed,
                "oversized",
            ),
            (
                format!(
                    "{}.{}.{}",
                    b64(serde_json::json!({"alg":"EdDSA","typ":"at+jwt","kid":"k","crit":["exp"]})),
                    parts[1],
                    parts[2]
                ),
                JwtError::Malformed,
                "crit header",
            ),
        ];
        for (token, expected, reason) in cases {
            assert_eq!(verify(&token, &vk).unwrap_err(), expected, "{reason}");
        }
    }

    fn ed25519_jwk(x: &[u8]) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(x),
            y: None,
            kid: "k".into(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        }
    }

    /// RFC 8037 appendix A.4: the published Ed25519 JWS verifies, and a flipped bit does not.
    #[test]
    fn rfc8037_ed25519_vector_verifies() {
        let jwk = Jwk {
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            ..ed25519_jwk(&[0; 32])
        };
        let key = VerifyingKey::from_jwk(&jwk).unwrap();
        let signing_input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = URL_SAFE_NO_PAD
            .decode(
                "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
            )
            .unwrap();
        assert!(key.verify(signing_input.as_bytes(), &sig));
        let mut flipped = sig.clone();
        flipped[10] ^= 1;
        assert!(!key.verify(signing_input.as_bytes(), &flipped));
        assert!(!key.verify(b"Example of Ed25519 signinG", &sig));
        assert!(!key.verify(signing_input.as_bytes(), &sig[..63]), "short");
    }

    /// Small-order Ed25519 keys verify forged signatures (with the identity as key, `R` =
    /// identity and `s` = 0 "sign" every message), and bytes off the curve are no key.
    #[test]
    fn weak_and_invalid_ed25519_keys_are_refused() {
        let identity = {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        };
        // (0, -1): the point of order 2.
        let order_two = {
            let mut b = [0xff; 32];
            b[0] = 0xec;
            b[31] = 0x7f;
            b
        };
        // y = 2 has no x on the curve.
        let off_curve = {
            let mut b = [0u8; 32];
            b[0] = 2;
            b
        };
        for (x, what) in [
            (identity, "identity"),
            (order_two, "order 2"),
            (off_curve, "not a point"),
        ] {
            assert_eq!(
                VerifyingKey::from_jwk(&ed25519_jwk(&x)).unwrap_err(),
                JwtError::BadKey,
                "{what}"
            );
        }
        assert_eq!(
            VerifyingKey::from_jwk(&ed25519_jwk(&[7; 31])).unwrap_err(),
            JwtError::BadKey,
            "31 bytes"
        );
    }

    /// A signature whose `s` is not reduced (the valid `s` plus the group order L): the
    /// malleability that must be refused.
    #[test]
    fn non_canonical_ed25519_signature_is_refused() {
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let (key, _) = SigningKey::generate(Algorithm::EdDSA, "k".into()).unwrap();
        let vk = [VerifyingKey::from_jwk(key.public_jwk()).unwrap()];
        let good = key.sign(&claims()).unwrap();
        let (signed, sig_b64) = good.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
        let mut malleated = sig.clone();
        let mut carry = 0u16;
        for (byte, l) in malleated[32..].iter_mut().zip(L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        assert_ne!(malleated, sig);
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&malleated));
        assert_eq!(verify(&good, &vk).unwrap(), claims());
        assert_eq!(verify(&token, &vk).unwrap_err(), JwtError::BadSignature);
    }

    #[test]
    fn es256_keys_off_the_curve_are_refused() {
        let (key, _) = SigningKey::generate(Algorithm::ES256, "k".into()).unwrap();
        let mut jwk = key.public_jwk().clone();
        let mut y = URL_SAFE_NO_PAD.decode(jwk.y.as_deref().unwrap()).unwrap();
        y[31] ^= 1;
        jwk.y = Some(URL_SAFE_NO_PAD.encode(&y));
        assert_eq!(VerifyingKey::from_jwk(&jwk).unwrap_err(), JwtError::BadKey);
    }

    #[test]
    fn claim_expectation_cases() {
        let c = claims();
        assert_eq!(expect(1900).check(&c), Err(JwtError::Expired));
        assert_eq!(expect(999).check(&c), Err(JwtError::NotYetValid));
        let mut e = expect(1500);
        e.leeway_seconds = 5;
        assert_eq!(e.check(&c), Ok(()));
        assert_eq!(
            Expectations {
                issuer: "http://other",
                ..expect(1500)
            }
            .check(&c),
            Err(JwtError::WrongIssuer)
        );
        assert_eq!(
            Expectations {
                audience: Some("http://x"),
                ..expect(1500)
            }
            .check(&c),
            Err(JwtError::WrongAudience)
        );
        assert_eq!(
            Expectations {
                audience: None,
                ..expect(1500)
            }
            .check(&c),
            Ok(())
        );
    }
}
