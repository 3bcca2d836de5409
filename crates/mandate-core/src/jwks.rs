//! Public keys that clients publish (RFC 7517), and verification of what they sign.
//!
//! `private_key_jwt` (RFC 7523) lets an agent authenticate without a shared secret: it signs a
//! short assertion with a private key whose public half it registered (`jwks`) or publishes
//! (`jwks_uri`). Fetching a `jwks_uri` is IO and belongs to the server; everything after the
//! bytes arrive is here: parsing a key set strictly (refusing private or symmetric material,
//! which would mean the client leaked a secret), holding each key parsed once, and verifying a
//! compact JWS with only the algorithms those keys declare.
//!
//! This is deliberately separate from [`crate::jwt`]: access tokens are verified with
//! Mandate's own keys and must be `typ: at+jwt`; client assertions are verified with a client's
//! keys and must not be. Keeping two verifiers with disjoint key sets and types means a token
//! minted for one purpose can never pass as the other.

use crate::jwt::{ACCESS_TOKEN_TYP, Header, JwtError, MAX_TOKEN_LEN, decode_json};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use std::fmt;

/// Most keys a client may register or publish; rotation needs two or three.
pub const MAX_CLIENT_KEYS: usize = 10;
/// Largest key set document accepted (a 4096-bit RSA key is ~800 bytes of JWK).
pub const MAX_JWKS_BYTES: usize = 16 * 1024;

/// The signature algorithms accepted from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKeyAlgorithm {
    /// Ed25519 (RFC 8037); `EdDSA` or the fully specified `Ed25519` (RFC 9864).
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 to 8192 bits.
    RS256,
}

impl ClientKeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }

    /// The algorithm a JWS header names, if it is one Mandate accepts from clients.
    pub fn from_header(alg: &str) -> Option<Self> {
        match alg {
            "EdDSA" | "Ed25519" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }
}

/// Why a client's key set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("jwks must be a JSON object with a `keys` array")]
    NotAKeySet,
    #[error("jwks is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("jwks holds more than {MAX_CLIENT_KEYS} keys")]
    TooManyKeys,
    #[error("jwks contains private or symmetric key material; publish only public keys")]
    PrivateKeyMaterial,
    #[error("jwks contains a malformed {0} key")]
    BadKey(&'static str),
    #[error("jwks names the same kid twice")]
    DuplicateKid,
    #[error("jwks has no usable signing key (Ed25519, P-256 or RSA of at least 2048 bits)")]
    NoUsableKey,
}

/// One parsed public signing key of a client.
#[derive(Clone)]
pub struct ClientKey {
    kid: Option<String>,
    alg: ClientKeyAlgorithm,
    key: ParsedPublicKey,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn algorithm(&self) -> ClientKeyAlgorithm {
        self.alg
    }
}

/// A client's signing keys, parsed once.
#[derive(Debug, Clone)]
pub struct ClientJwks {
    keys: Vec<ClientKey>,
}

/// The members of a JWK that matter here; everything else is ignored (RFC 7517 §4).
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    /// Private members (RFC 7518 §6.2.2, §6.3.2) and the symmetric `k` (§6.4.1). Their mere
    /// presence refuses the whole set.
    #[serde(default)]
    d: Option<serde_json::Value>,
    #[serde(default)]
    p: Option<serde_json::Value>,
    #[serde(default)]
    q: Option<serde_json::Value>,
    #[serde(default)]
    dp: Option<serde_json::Value>,
    #[serde(default)]
    dq: Option<serde_json::Value>,
    #[serde(default)]
    qi: Option<serde_json::Value>,
    #[serde(default)]
    oth: Option<serde_json::Value>,
    #[serde(default)]
    k: Option<serde_json::Value>,
}

impl RawJwk {
    fn has_private_material(&self) -> bool {
        self.kty == "oct"
            || self.d.is_some()
            || self.p.is_some()
            || self.q.is_some()
            || self.dp.is_some()
            || self.dq.is_some()
            || self.qi.is_some()
            || self.oth.is_some()
            || self.k.is_some()
    }

    /// Whether the key declares a purpose other than verifying signatures.
    fn not_for_signatures(&self) -> bool {
        self.use_.as_deref().is_some_and(|u| u != "sig")
            || self
                .key_ops
                .as_ref()
                .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
    }
}

fn b64(field: Option<&str>, what: &'static str) -> Result<Vec<u8>, JwksError> {
    let s = field.ok_or(JwksError::BadKey(what))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwksError::BadKey(what))
}

/// Parses one JWK into a key, `Ok(None)` when it is a kind of key Mandate does not use for
/// client signatures (an encryption key, a P-384 key) and may be skipped.
fn parse_key(raw: &RawJwk) -> Result<Option<ClientKey>, JwksError> {
    if raw.not_for_signatures() {
        return Ok(None);
    }
    let declared = match raw.alg.as_deref() {
        None => None,
        Some(a) => match ClientKeyAlgorithm::from_header(a) {
            Some(alg) => Some(alg),
            None => return Ok(None),
        },
    };
    let (alg, key) = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("OKP", Some("Ed25519")) => {
            let x = b64(raw.x.as_deref(), "Ed25519")?;
            if x.len() != 32 {
                return Err(JwksError::BadKey("Ed25519"));
            }
            let key = ParsedPublicKey::new(&signature::ED25519, x)
                .map_err(|_| JwksError::BadKey("Ed25519"))?;
            (ClientKeyAlgorithm::EdDSA, key)
        }
        ("EC", Some("P-256")) => {
            let x = b64(raw.x.as_deref(), "P-256")?;
            let y = b64(raw.y.as_deref(), "P-256")?;
            if x.len() != 32 || y.len() != 32 {
                return Err(JwksError::BadKey("P-256"));
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            // Parsing checks that the point is on the curve.
            let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .map_err(|_| JwksError::BadKey("P-256"))?;
            (ClientKeyAlgorithm::ES256, key)
        }
        ("RSA", _) => {
            let n = b64(raw.n.as_deref(), "RSA")?;
            let e = b64(raw.e.as_deref(), "RSA")?;
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            // 2048 to 8192 bits; a small odd public exponent.
            if !(256..=1024).contains(&n.len()) || e.is_empty() || e.len() > 4 {
                return Err(JwksError::BadKey("RSA"));
            }
            if e.last().is_none_or(|b| b & 1 == 0) {
                return Err(JwksError::BadKey("RSA"));
            }
            let key = RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                .map_err(|_| JwksError::BadKey("RSA"))?;
            (ClientKeyAlgorithm::RS256, key)
        }
        // Other curves and key types are not used for client signatures.
        _ => return Ok(None),
    };
    if declared.is_some_and(|d| d != alg) {
        return Ok(None);
    }
    if raw
        .kid
        .as_deref()
        .is_some_and(|k| k.is_empty() || k.len() > 256)
    {
        return Err(JwksError::BadKey("kid"));
    }
    Ok(Some(ClientKey {
        kid: raw.kid.clone(),
        alg,
        key,
    }))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

impl ClientJwks {
    /// Parses a key set document (the body of a `jwks_uri`).
    pub fn parse(bytes: &[u8]) -> Result<Self, JwksError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|_| JwksError::NotAKeySet)?;
        Self::from_value(&value)
    }

    /// Parses a key set given inline (the `jwks` registration metadata).
    ///
    /// Keys that are not for signatures or use an algorithm Mandate does not accept are
    /// skipped; private or symmetric material anywhere refuses the whole set.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, JwksError> {
        let keys = value
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or(JwksError::NotAKeySet)?;
        if keys.len() > MAX_CLIENT_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let mut parsed: Vec<ClientKey> = Vec::with_capacity(keys.len());
        for key in keys {
            let raw: RawJwk =
                serde_json::from_value(key.clone()).map_err(|_| JwksError::NotAKeySet)?;
            if raw.has_private_material() {
                return Err(JwksError::PrivateKeyMaterial);
            }
            if let Some(k) = parse_key(&raw)? {
                if k.kid.is_some() && parsed.iter().any(|p| p.kid == k.kid) {
                    return Err(JwksError::DuplicateKid);
                }
                parsed.push(k);
            }
        }
        if parsed.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Self { keys: parsed })
    }

    pub fn keys(&self) -> &[ClientKey] {
        &self.keys
    }

    /// Verifies a compact JWS signed by one of these keys and returns its decoded payload.
    ///
    /// The header must name an accepted algorithm; with a `kid` only that key is tried, without
    /// one every key of the named algorithm is. Headers that carry or point at key material
    /// (`jwk`, `jku`, `x5u`, `x5c`), declare critical extensions, or say `typ: at+jwt` (an
    /// access token is never a client assertion) are refused.
    pub fn verify(&self, token: &str) -> Result<Vec<u8>, JwtError> {
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
        if let Some(typ) = header.typ.as_deref() {
            let t = typ.to_ascii_lowercase();
            let t = t.strip_prefix("application/").unwrap_or(&t);
            if t == ACCESS_TOKEN_TYP || !ACCEPTED_TYPES.contains(&t) {
                return Err(JwtError::WrongType);
            }
        }
        let alg = ClientKeyAlgorithm::from_header(&header.alg).ok_or(JwtError::UnknownKey)?;
        let sig = decode(s)?;
        let message = token
            .get(..h.len() + 1 + p.len())
            .ok_or(JwtError::Malformed)?
            .as_bytes();
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| k.alg == alg)
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .peekable();
        if candidates.peek().is_none() {
            return Err(JwtError::UnknownKey);
        }
        if candidates.any(|k| k.key.verify_sig(message, &sig).is_ok()) {
            decode(p)
        } else {
            Err(JwtError::BadSignature)
        }
    }
}

/// `typ` values a client assertion may declare: plain JWT, or the explicit type proposed by
/// draft-ietf-oauth-rfc7523bis.
const ACCEPTED_TYPES: [&str; 2] = ["jwt", "client-authentication+jwt"];

fn decode(part: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
pub(crate) mod test_keys {
    //! Client key pairs for tests: sign a payload as a client would.

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
        RsaKeyPair,
    };
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    pub enum TestKey {
        Ed(Ed25519KeyPair),
        Ec(EcdsaKeyPair),
        Rsa(RsaKeyPair),
    }

    impl TestKey {
        pub fn ed25519() -> Self {
            let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            Self::Ed(Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap())
        }

        pub fn p256() -> Self {
            let rng = SystemRandom::new();
            let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            Self::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref()).unwrap(),
            )
        }

        pub fn rsa() -> Self {
            Self::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
        }

        pub fn alg(&self) -> &'static str {
            match self {
                Self::Ed(_) => "EdDSA",
                Self::Ec(_) => "ES256",
                Self::Rsa(_) => "RS256",
            }
        }

        /// The public JWK, with `kid`.
        pub fn jwk(&self, kid: &str) -> serde_json::Value {
            let enc = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
            match self {
                Self::Ed(k) => serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "kid": kid,
                    "x": enc(k.public_key().as_ref()),
                }),
                Self::Ec(k) => {
                    let point = k.public_key().as_ref();
                    serde_json::json!({
                        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                        "x": enc(&point[1..33]), "y": enc(&point[33..65]),
                    })
                }
                Self::Rsa(k) => {
                    let pk = k.public_key();
                    serde_json::json!({
                        "kty": "RSA", "kid": kid, "alg": "RS256",
                        "n": enc(pk.modulus().big_endian_without_leading_zero()),
                        "e": enc(pk.exponent().big_endian_without_leading_zero()),
                    })
                }
            }
        }

        /// A compact JWS over `header` and `payload`.
        pub fn sign(&self, header: &serde_json::Value, payload: &serde_json::Value) -> String {
            let mut input = URL_SAFE_NO_PAD.encode(header.to_string());
            input.push('.');
            input.push_str(&URL_SAFE_NO_PAD.encode(payload.to_string()));
            let sig = match self {
                Self::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
                Self::Ec(k) => k
                    .sign(&SystemRandom::new(), input.as_bytes())
                    .unwrap()
                    .as_ref()
                    .to_vec(),
                Self::Rsa(k) => {
                    let mut sig = vec![0; k.public_modulus_len()];
                    k.sign(
                        &RSA_PKCS1_SHA256,
                        &SystemRandom::new(),
                        input.as_bytes(),
                        &mut sig,
                    )
                    .unwrap();
                    sig
                }
            };
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::TestKey;
    use super::*;
    use serde_json::json;

    fn set(keys: &[serde_json::Value]) -> serde_json::Value {
        json!({ "keys": keys })
    }

    #[test]
    fn every_algorithm_verifies_with_its_published_key() {
        for key in [TestKey::ed25519(), TestKey::p256(), TestKey::rsa()] {
            let jwks = ClientJwks::from_value(&set(&[key.jwk("k1")])).unwrap();
            let payload = json!({"sub": "agent"});
            for header in [
                json!({"alg": key.alg(), "kid": "k1"}),
                json!({"alg": key.alg()}),
                json!({"alg": key.alg(), "typ": "JWT"}),
                json!({"alg": key.alg(), "typ": "client-authentication+jwt"}),
            ] {
                let token = key.sign(&header, &payload);
                let got = jwks.verify(&token).unwrap();
                assert_eq!(
                    serde_json::from_slice::<serde_json::Value>(&got).unwrap(),
                    payload
                );
            }
        }
    }

    #[test]
    fn verification_refusals() {
        let key = TestKey::ed25519();
        let other = TestKey::ed25519();
        let jwks = ClientJwks::from_value(&set(&[key.jwk("k1")])).unwrap();
        let p = json!({"sub": "agent"});
        let good = key.sign(&json!({"alg": "EdDSA", "kid": "k1"}), &p);
        let parts: Vec<&str> = good.split('.').collect();
        let cases: Vec<(String, JwtError, &str)> = vec![
            (
                other.sign(&json!({"alg": "EdDSA", "kid": "k1"}), &p),
                JwtError::BadSignature,
                "other key, same kid",
            ),
            (
                key.sign(&json!({"alg": "EdDSA", "kid": "k2"}), &p),
                JwtError::UnknownKey,
                "unknown kid",
            ),
            (
                key.sign(&json!({"alg": "ES256", "kid": "k1"}), &p),
                JwtError::UnknownKey,
                "algorithm the key does not have",
            ),
            (
                key.sign(&json!({"alg": "HS256"}), &p),
                JwtError::UnknownKey,
                "HMAC",
            ),
            (
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
                    parts[1]
                ),
                JwtError::UnknownKey,
                "alg none",
            ),
            (
                key.sign(&json!({"alg": "EdDSA", "typ": "at+jwt"}), &p),
                JwtError::WrongType,
                "an access token is not an assertion",
            ),
            (
                key.sign(&json!({"alg": "EdDSA", "typ": "dpop+jwt"}), &p),
                JwtError::WrongType,
                "other explicit type",
            ),
            (
                key.sign(&json!({"alg": "EdDSA", "jwk": key.jwk("x")}), &p),
                JwtError::Malformed,
                "embedded key",
            ),
            (
                key.sign(&json!({"alg": "EdDSA", "crit": ["b64"]}), &p),
                JwtError::Malformed,
                "crit",
            ),
            (
                format!("{}.{}", parts[0], parts[1]),
                JwtError::Malformed,
                "two parts",
            ),
            (
                format!("{}.{}.{}", parts[0], parts[1], "!!"),
                JwtError::Malformed,
                "bad signature encoding",
            ),
            (
                "a".repeat(MAX_TOKEN_LEN + 1),
                JwtError::Malformed,
                "oversized",
            ),
        ];
        for (token, expected, reason) in cases {
            assert_eq!(jwks.verify(&token), Err(expected), "{reason}");
        }
    }

    #[test]
    fn key_set_refusals() {
        let ed = TestKey::ed25519().jwk("a");
        let mut private = ed.clone();
        private["d"] = json!("AAAA");
        let mut short = ed.clone();
        short["x"] = json!("AAAA");
        let mut off_curve = TestKey::p256().jwk("e");
        off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
        let mut weak_rsa = TestKey::rsa().jwk("r");
        weak_rsa["n"] = json!(URL_SAFE_NO_PAD.encode([0xffu8; 128]));
        let enc_only = json!({"kty": "OKP", "crv": "X25519", "x": "AAAA", "use": "enc"});
        let cases: Vec<(serde_json::Value, JwksError, &str)> = vec![
            (json!([ed.clone()]), JwksError::NotAKeySet, "bare array"),
            (
                json!({"keys": "x"}),
                JwksError::NotAKeySet,
                "keys not an array",
            ),
            (
                set(&[private]),
                JwksError::PrivateKeyMaterial,
                "private key",
            ),
            (
                set(&[json!({"kty": "oct", "k": "c2VjcmV0"})]),
                JwksError::PrivateKeyMaterial,
                "symmetric key",
            ),
            (set(&[short]), JwksError::BadKey("Ed25519"), "short Ed25519"),
            (
                set(&[off_curve]),
                JwksError::BadKey("P-256"),
                "point off curve",
            ),
            (set(&[weak_rsa]), JwksError::BadKey("RSA"), "1024-bit RSA"),
            (
                set(&[ed.clone(), ed.clone()]),
                JwksError::DuplicateKid,
                "dup kid",
            ),
            (
                set(&[enc_only]),
                JwksError::NoUsableKey,
                "encryption key only",
            ),
            (set(&[]), JwksError::NoUsableKey, "empty"),
            (
                set(&vec![ed.clone(); MAX_CLIENT_KEYS + 1]),
                JwksError::TooManyKeys,
                "too many",
            ),
        ];
        for (value, expected, reason) in cases {
            assert_eq!(
                ClientJwks::from_value(&value).unwrap_err(),
                expected,
                "{reason}"
            );
        }
        assert_eq!(
            ClientJwks::parse(&vec![b' '; MAX_JWKS_BYTES + 1]).unwrap_err(),
            JwksError::TooLarge
        );
    }

    #[test]
    fn unusable_keys_are_skipped_beside_usable_ones() {
        let ed = TestKey::ed25519();
        let mut mislabelled = TestKey::p256().jwk("p");
        mislabelled["alg"] = json!("RS256");
        let value = set(&[
            json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "384"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "AA", "use": "enc"}),
            mislabelled,
            ed.jwk("good"),
        ]);
        let jwks = ClientJwks::from_value(&value).unwrap();
        assert_eq!(jwks.keys().len(), 1);
        assert_eq!(jwks.keys()[0].kid(), Some("good"));
        assert_eq!(jwks.keys()[0].algorithm(), ClientKeyAlgorithm::EdDSA);
    }

    #[test]
    fn debug_does_not_dump_key_material() {
        let jwks = ClientJwks::from_value(&set(&[TestKey::ed25519().jwk("k")])).unwrap();
        let shown = format!("{jwks:?}");
        assert!(shown.contains("EdDSA") && !shown.contains("key:"));
    }
}
