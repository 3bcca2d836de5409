//! Scoped API keys: the hybrid and migration path for integrations that cannot do OAuth yet.
//!
//! A key is a long-lived bearer secret, so everything here limits the damage of one leaking:
//! it belongs to one tenant, carries a non-empty scope set, always expires (within a
//! configurable maximum), is stored only as a hash, and can be rotated with a bounded overlap.
//! Resource servers should never see keys: a key is exchanged at the token endpoint for a
//! short-lived access token (see [`crate::exchange`]).
//!
//! # Format
//!
//! ```text
//! mk_<body>_<check>
//! ```
//!
//! - `mk_`: fixed prefix, so people and secret scanners recognise a Mandate key.
//! - `<body>`: 256 random bits as a big-endian base62 number, left-padded with `0` to exactly
//!   43 characters (62^43 > 2^256). Alphabet `0-9A-Za-z`, in that order.
//! - `<check>`: CRC-32 (IEEE 802.3, the zlib/PNG `crc32`) of the ASCII text `mk_<body>`, as a
//!   base62 number left-padded to exactly 6 characters.
//!
//! The whole key is 53 characters and matches `mk_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}`. A scanner can
//! confirm a candidate offline by recomputing the checksum, and [`ApiKey::parse`] refuses typos
//! and truncations before any database lookup. The checksum is integrity, not authenticity:
//! anyone can compute it, so a key that parses is only well formed.
//!
//! A key's public [`KeyId`] (`mkid_` + 32 hex digits) is derived from the key with a
//! domain-separated SHA-256, so the id reveals nothing of the key, yet a presented key maps to
//! its id without a lookup. The id names the key in audit events, admin listings and, for
//! tokens obtained with the key, the `gid` revocation handle.

use crate::scope::ScopeSet;
use crate::secret;
use crate::time::Timestamp;
use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The prefix every key starts with.
pub const PREFIX: &str = "mk_";
/// Characters of the random body.
pub const BODY_LEN: usize = 43;
/// Characters of the checksum.
pub const CHECK_LEN: usize = 6;
/// Characters of a whole key.
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + 1 + CHECK_LEN;
/// Prefix of a key id.
pub const KEY_ID_PREFIX: &str = "mkid_";
/// Default longest lifetime a key may be created with: 90 days.
pub const DEFAULT_MAX_LIFETIME_SECONDS: u64 = 90 * 24 * 60 * 60;
/// Default time an old key keeps working after rotation: 24 hours.
pub const DEFAULT_ROTATION_OVERLAP_SECONDS: u64 = 24 * 60 * 60;
/// Longest human-readable key name.
pub const MAX_NAME_LEN: usize = 100;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a key or a key operation was refused. No variant carries the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("not a Mandate API key (expected mk_ followed by 43 and 6 base62 characters)")]
    Malformed,
    #[error("API key checksum does not match; the key was mistyped or truncated")]
    BadChecksum,
    #[error("an API key needs at least one scope")]
    NoScopes,
    #[error("an API key needs an expiry in the future")]
    ExpiryNotInFuture,
    #[error("an API key may live at most {max_seconds} seconds")]
    ExpiryTooFar { max_seconds: u64 },
    #[error("API key name must be 1 to {MAX_NAME_LEN} printable characters")]
    InvalidName,
    #[error("API key has been revoked")]
    Revoked,
    #[error("API key has expired")]
    Expired,
}

/// A well-formed API key: the secret itself. Shown once at creation, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.id())
    }
}

impl ApiKey {
    /// A new key with 256 bits from `entropy`.
    pub fn generate(entropy: &dyn crate::random::Entropy) -> Self {
        let mut bytes = [0u8; 32];
        entropy.fill(&mut bytes);
        let mut key = String::with_capacity(KEY_LEN);
        key.push_str(PREFIX);
        key.push_str(&base62_fixed(&bytes, BODY_LEN));
        let check = crc32(key.as_bytes());
        key.push('_');
        key.push_str(&base62_fixed(&check.to_be_bytes(), CHECK_LEN));
        Self(key)
    }

    /// Checks the shape and checksum of a presented key. Cheap, and done before any lookup so
    /// garbage never reaches the database.
    pub fn parse(s: &str) -> Result<Self, ApiKeyError> {
        if s.len() != KEY_LEN || !s.is_ascii() {
            return Err(ApiKeyError::Malformed);
        }
        let rest = s.strip_prefix(PREFIX).ok_or(ApiKeyError::Malformed)?;
        let (body, check) = rest
            .split_at_checked(BODY_LEN)
            .ok_or(ApiKeyError::Malformed)?;
        let check = check.strip_prefix('_').ok_or(ApiKeyError::Malformed)?;
        // The body must be the canonical encoding of a 256-bit number.
        base62_decode::<32>(body).ok_or(ApiKeyError::Malformed)?;
        let presented = base62_decode::<4>(check).ok_or(ApiKeyError::Malformed)?;
        let signed = s
            .get(..PREFIX.len() + BODY_LEN)
            .ok_or(ApiKeyError::Malformed)?;
        if u32::from_be_bytes(presented) != crc32(signed.as_bytes()) {
            return Err(ApiKeyError::BadChecksum);
        }
        Ok(Self(s.to_owned()))
    }

    /// Whether `s` claims to be a Mandate key (has the prefix). For routing a credential to
    /// [`ApiKey::parse`], e.g. in a guard's migration mode; it proves nothing.
    pub fn looks_like(s: &str) -> bool {
        s.starts_with(PREFIX)
    }

    /// The secret, to show once at creation.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form (`sha256:...`, see [`secret::hash_secret`]).
    pub fn hash(&self) -> String {
        secret::hash_secret(&self.0)
    }

    /// Whether this key is the one `stored_hash` was made from (constant time).
    pub fn matches_hash(&self, stored_hash: &str) -> bool {
        secret::verify_secret(&self.0, stored_hash)
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"mandate api key id\0");
        ctx.update(self.0.as_bytes());
        let d = ctx.finish();
        let mut id = String::with_capacity(KEY_ID_PREFIX.len() + 32);
        id.push_str(KEY_ID_PREFIX);
        for b in d.as_ref().iter().take(16) {
            use fmt::Write;
            let _ = write!(id, "{b:02x}");
        }
        KeyId(id)
    }
}

/// A key's public, non-secret identifier (`mkid_` + 32 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(KEY_ID_PREFIX)?;
        (hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for KeyId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| "not an API key id".to_owned())
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.0
    }
}

/// Deployment limits for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyPolicy {
    /// Longest lifetime a key may be created with, in seconds.
    pub max_lifetime_seconds: u64,
    /// How long a rotated key keeps working, in seconds.
    pub rotation_overlap_seconds: u64,
}

impl Default for ApiKeyPolicy {
    fn default() -> Self {
        Self {
            max_lifetime_seconds: DEFAULT_MAX_LIFETIME_SECONDS,
            rotation_overlap_seconds: DEFAULT_ROTATION_OVERLAP_SECONDS,
        }
    }
}

impl ApiKeyPolicy {
    /// Checks the rules every new key obeys: at least one scope, an expiry after `now` and no
    /// further than the maximum lifetime.
    pub fn check_new(
        &self,
        scopes: &ScopeSet,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), ApiKeyError> {
        if scopes.is_empty() {
            return Err(ApiKeyError::NoScopes);
        }
        if expires_at <= now {
            return Err(ApiKeyError::ExpiryNotInFuture);
        }
        if expires_at > now.plus_seconds(self.max_lifetime_seconds) {
            return Err(ApiKeyError::ExpiryTooFar {
                max_seconds: self.max_lifetime_seconds,
            });
        }
        Ok(())
    }
}

/// A stored key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: KeyId,
    pub tenant_id: String,
    /// The user the key acts for; `None` for a tenant-level integration key, whose tokens then
    /// have the key id as `sub`.
    pub user_id: Option<String>,
    pub name: String,
    pub scopes: ScopeSet,
    /// `sha256:` hash of the key.
    #[serde(skip_serializing)]
    pub hash: String,
    pub created_at: Timestamp,
    /// Always set: keys without an expiry are not allowed. Lowered by rotation.
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    /// The key this one replaced by rotation, if any.
    pub replaces: Option<KeyId>,
}

/// What a new key is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub tenant_id: String,
    pub user_id: Option<String>,
    pub name: String,
    pub scopes: ScopeSet,
    pub expires_at: Timestamp,
}

/// A created key: the record to store and the secret to show once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub record: ApiKeyRecord,
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.chars().count()) && !name.chars().any(char::is_control)
}

/// Creates a key under `policy`.
pub fn create(
    new: NewApiKey,
    policy: &ApiKeyPolicy,
    now: Timestamp,
    entropy: &dyn crate::random::Entropy,
) -> Result<CreatedApiKey, ApiKeyError> {
    if !valid_name(&new.name) {
        return Err(ApiKeyError::InvalidName);
    }
    policy.check_new(&new.scopes, new.expires_at, now)?;
    let key = ApiKey::generate(entropy);
    let record = ApiKeyRecord {
        id: key.id(),
        tenant_id: new.tenant_id,
        user_id: new.user_id,
        name: new.name,
        scopes: new.scopes,
        hash: key.hash(),
        created_at: now,
        expires_at: new.expires_at,
        revoked_at: None,
        last_used_at: None,
        replaces: None,
    };
    Ok(CreatedApiKey { key, record })
}

impl ApiKeyRecord {
    /// Whether the key may be used at `now`.
    pub fn check_usable(&self, now: Timestamp) -> Result<(), ApiKeyError> {
        if self.revoked_at.is_some() {
            return Err(ApiKeyError::Revoked);
        }
        if now >= self.expires_at {
            return Err(ApiKeyError::Expired);
        }
        Ok(())
    }

    /// The `sub` of tokens obtained with this key: its user, or the key itself.
    pub fn subject(&self) -> &str {
        self.user_id.as_deref().unwrap_or(self.id.as_str())
    }
}

/// The outcome of rotating a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The successor: same tenant, user, name and scopes; shown once.
    pub successor: CreatedApiKey,
    /// The predecessor's new expiry: `min(old expiry, now + overlap)`. Store it.
    pub predecessor_expires_at: Timestamp,
}

/// Rotates `old`: a new key with the same tenant, user and scopes expiring at `expires_at`,
/// while the old one keeps working only until `min(old expiry, now + overlap)`. A revoked or
/// expired key cannot be rotated (it would resurrect access).
pub fn rotate(
    old: &ApiKeyRecord,
    expires_at: Timestamp,
    policy: &ApiKeyPolicy,
    now: Timestamp,
    entropy: &dyn crate::random::Entropy,
) -> Result<Rotation, ApiKeyError> {
    old.check_usable(now)?;
    let mut successor = create(
        NewApiKey {
            tenant_id: old.tenant_id.clone(),
            user_id: old.user_id.clone(),
            name: old.name.clone(),
            scopes: old.scopes.clone(),
            expires_at,
        },
        policy,
        now,
        entropy,
    )?;
    successor.record.replaces = Some(old.id.clone());
    let overlap_end = now.plus_seconds(policy.rotation_overlap_seconds);
    Ok(Rotation {
        successor,
        predecessor_expires_at: old.expires_at.min(overlap_end),
    })
}

/// `bytes` as a big-endian base62 number, left-padded with `0` to `width` characters. The
/// callers size `width` so the number always fits.
fn base62_fixed(bytes: &[u8], width: usize) -> String {
    let mut n = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        let mut rem: u32 = 0;
        for b in n.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = u8::try_from(acc / 62).unwrap_or(0);
            rem = acc % 62;
        }
        *slot = ALPHABET
            .get(usize::try_from(rem).unwrap_or(0))
            .copied()
            .unwrap_or(b'0');
    }
    String::from_utf8(digits).unwrap_or_default()
}

/// Decodes a base62 number into `N` big-endian bytes; `None` on a character outside the
/// alphabet or a value that does not fit.
fn base62_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    for c in s.bytes() {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            b'a'..=b'z' => c - b'a' + 36,
            _ => return None,
        };
        let mut carry = u32::from(digit);
        for b in out.iter_mut().rev() {
            let acc = u32::from(*b) * 62 + carry;
            *b = (acc & 0xff) as u8;
            carry = acc >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(out)
}

/// CRC-32/ISO-HDLC (the zlib `crc32`), bit by bit: keys are 46 bytes, so a table buys nothing.
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for b in data {
        c ^= u32::from(*b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededEntropy;
    use proptest::prelude::*;

    fn key(seed: u64) -> ApiKey {
        ApiKey::generate(&SeededEntropy::new(seed))
    }

    fn scopes(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn base62_round_trips_and_refuses_overflow() {
        let max = [0xffu8; 32];
        let enc = base62_fixed(&max, BODY_LEN);
        assert_eq!(enc.len(), BODY_LEN);
        assert_eq!(base62_decode::<32>(&enc), Some(max));
        assert_eq!(base62_fixed(&[0u8; 4], CHECK_LEN), "000000");
        assert_eq!(base62_fixed(&61u32.to_be_bytes(), CHECK_LEN), "00000z");
        assert_eq!(base62_decode::<4>("zzzzzz"), None, "62^6 - 1 > u32::MAX");
        assert_eq!(base62_decode::<32>(&"z".repeat(BODY_LEN)), None);
        assert_eq!(base62_decode::<4>("00-000"), None);
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let k = key(1);
        let s = k.expose();
        assert_eq!(s.len(), KEY_LEN);
        assert_eq!(KEY_LEN, 53);
        assert!(s.starts_with("mk_"));
        assert_eq!(s.as_bytes()[3 + BODY_LEN], b'_');
        assert!(
            s[3..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        );
        assert_eq!(ApiKey::parse(s), Ok(k.clone()));
        assert_ne!(key(1), key(2));
        // A scanner recomputes the checksum with any standard CRC-32.
        let (signed, check) = s.split_at(3 + BODY_LEN);
        assert_eq!(
            base62_fixed(&crc32(signed.as_bytes()).to_be_bytes(), CHECK_LEN),
            check[1..]
        );
    }

    #[test]
    fn parse_refusals() {
        let good = key(3).expose().to_owned();
        let cases: Vec<(String, ApiKeyError, &str)> = vec![
            (String::new(), ApiKeyError::Malformed, "empty"),
            (
                good[..KEY_LEN - 1].to_owned(),
                ApiKeyError::Malformed,
                "truncated",
            ),
            (format!("{good}x"), ApiKeyError::Malformed, "extended"),
            (
                format!("xk_{}", &good[3..]),
                ApiKeyError::Malformed,
                "prefix",
            ),
            (
                format!("{}-{}", &good[..46], &good[47..]),
                ApiKeyError::Malformed,
                "separator",
            ),
            (
                format!("{}é{}", &good[..10], &good[12..]),
                ApiKeyError::Malformed,
                "non-ASCII",
            ),
            (
                format!("mk_{}_{}", "z".repeat(BODY_LEN), &good[47..]),
                ApiKeyError::Malformed,
                "body above 2^256",
            ),
        ];
        for (s, expected, reason) in cases {
            assert_eq!(ApiKey::parse(&s), Err(expected), "{reason}");
        }
        // Flip one body character to another base62 character.
        let mut bytes = good.into_bytes();
        bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            ApiKey::parse(std::str::from_utf8(&bytes).unwrap()),
            Err(ApiKeyError::BadChecksum)
        );
    }

    #[test]
    fn id_hash_and_debug() {
        let k = key(4);
        let id = k.id();
        assert!(KeyId::parse(id.as_str()).is_some());
        assert_eq!(id, k.id(), "deterministic");
        assert_ne!(id, key(6).id());
        assert!(k.matches_hash(&k.hash()));
        assert!(!key(6).matches_hash(&k.hash()));
        let shown = format!("{k:?}");
        assert!(!shown.contains(k.expose()) && shown.contains(id.as_str()));
        assert!(KeyId::parse("mkid_XYZ").is_none());
        assert_eq!(
            serde_json::to_value(&id).unwrap(),
            serde_json::json!(id.as_str())
        );
        assert!(serde_json::from_str::<KeyId>("\"mk_x\"").is_err());
    }

    fn new_key(expires: i64) -> NewApiKey {
        NewApiKey {
            tenant_id: "acme".into(),
            user_id: None,
            name: "billing sync".into(),
            scopes: scopes("billing.read"),
            expires_at: Timestamp::from_unix(expires),
        }
    }

    #[test]
    fn creation_rules() {
        let policy = ApiKeyPolicy {
            max_lifetime_seconds: 1000,
            rotation_overlap_seconds: 60,
        };
        let now = Timestamp::from_unix(100);
        let e = SeededEntropy::new(9);
        let created = create(new_key(1100), &policy, now, &e).unwrap();
        assert_eq!(created.record.id, created.key.id());
        assert!(created.key.matches_hash(&created.record.hash));
        assert_eq!(created.record.subject(), created.record.id.as_str());
        let json = serde_json::to_value(&created.record).unwrap();
        assert!(json.get("hash").is_none(), "the hash is not serialised");

        let cases: Vec<(NewApiKey, ApiKeyError, &str)> = vec![
            (
                new_key(1101),
                ApiKeyError::ExpiryTooFar { max_seconds: 1000 },
                "past the maximum",
            ),
            (new_key(100), ApiKeyError::ExpiryNotInFuture, "expires now"),
            (new_key(50), ApiKeyError::ExpiryNotInFuture, "in the past"),
            (
                NewApiKey {
                    scopes: ScopeSet::new(),
                    ..new_key(200)
                },
                ApiKeyError::NoScopes,
                "no scopes",
            ),
            (
                NewApiKey {
                    name: String::new(),
                    ..new_key(200)
                },
                ApiKeyError::InvalidName,
                "empty name",
            ),
            (
                NewApiKey {
                    name: "a\nb".into(),
                    ..new_key(200)
                },
                ApiKeyError::InvalidName,
                "control character",
            ),
        ];
        for (new, expected, reason) in cases {
            assert_eq!(create(new, &policy, now, &e), Err(expected), "{reason}");
        }
    }

    #[test]
    fn usability_and_rotation() {
        let policy = ApiKeyPolicy {
            max_lifetime_seconds: 10_000,
            rotation_overlap_seconds: 60,
        };
        let e = SeededEntropy::new(11);
        let old = create(new_key(5000), &policy, Timestamp::from_unix(0), &e)
            .unwrap()
            .record;
        assert_eq!(old.check_usable(Timestamp::from_unix(4999)), Ok(()));
        assert_eq!(
            old.check_usable(Timestamp::from_unix(5000)),
            Err(ApiKeyError::Expired)
        );

        let now = Timestamp::from_unix(1000);
        let r = rotate(&old, Timestamp::from_unix(9000), &policy, now, &e).unwrap();
        assert_eq!(r.predecessor_expires_at, Timestamp::from_unix(1060));
        assert_eq!(r.successor.record.replaces.as_ref(), Some(&old.id));
        assert_eq!(r.successor.record.scopes, old.scopes);
        assert_eq!(r.successor.record.tenant_id, old.tenant_id);
        assert_ne!(r.successor.record.id, old.id);

        // An old key about to expire anyway is not extended by the overlap.
        let r = rotate(
            &old,
            Timestamp::from_unix(9000),
            &policy,
            Timestamp::from_unix(4990),
            &e,
        )
        .unwrap();
        assert_eq!(r.predecessor_expires_at, Timestamp::from_unix(5000));

        let mut revoked = old.clone();
        revoked.revoked_at = Some(Timestamp::from_unix(10));
        assert_eq!(
            rotate(&revoked, Timestamp::from_unix(9000), &policy, now, &e).unwrap_err(),
            ApiKeyError::Revoked
        );
        assert_eq!(
            rotate(&old, Timestamp::from_unix(20_000), &policy, now, &e).unwrap_err(),
            ApiKeyError::ExpiryTooFar {
                max_seconds: 10_000
            },
            "the successor obeys the policy too"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_generated_key_parses(seed in any::<u64>()) {
            let k = key(seed);
            prop_assert_eq!(ApiKey::parse(k.expose()), Ok(k.clone()));
        }

        /// Any single-character substitution is refused, whichever position and replacement.
        #[test]
        fn any_single_substitution_is_refused(seed in any::<u64>(), pos in 0..KEY_LEN, c in 0x20u8..0x7f) {
            let k = key(seed);
            let mut bytes = k.expose().as_bytes().to_vec();
            prop_assume!(bytes[pos] != c);
            bytes[pos] = c;
            let mutated = String::from_utf8(bytes).unwrap();
            prop_assert!(ApiKey::parse(&mutated).is_err());
        }

        /// Swapping two adjacent different characters is refused too (a common typo).
        #[test]
        fn adjacent_transpositions_are_refused(seed in any::<u64>(), pos in 0..KEY_LEN - 1) {
            let k = key(seed);
            let mut bytes = k.expose().as_bytes().to_vec();
            prop_assume!(bytes[pos] != bytes[pos + 1]);
            bytes.swap(pos, pos + 1);
            let mutated = String::from_utf8(bytes).unwrap();
            prop_assert!(ApiKey::parse(&mutated).is_err());
        }

        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = ApiKey::parse(&s);
        }

        #[test]
        fn rotation_never_extends_the_old_key(
            old_exp in 1i64..100_000, before in 1i64..100_000, overlap in 0u64..100_000
        ) {
            let now = (old_exp - before).max(0);
            let policy = ApiKeyPolicy { max_lifetime_seconds: 1_000_000, rotation_overlap_seconds: overlap };
            let e = SeededEntropy::new(1);
            let mut old = create(new_key(old_exp), &policy, Timestamp::from_unix(0), &e).unwrap().record;
            old.expires_at = Timestamp::from_unix(old_exp);
            let r = rotate(&old, Timestamp::from_unix(now + 10), &policy, Timestamp::from_unix(now), &e).unwrap();
            prop_assert!(r.predecessor_expires_at <= old.expires_at);
            prop_assert!(r.predecessor_expires_at <= Timestamp::from_unix(now).plus_seconds(overlap));
        }
    }
}
