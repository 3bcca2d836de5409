//! Signed audit checkpoints: "event `seq` had chain hash `hash`", a compact JWS signed with the
//! server's token signing key, so anyone holding the published JWKS can check it offline.
//!
//! A checkpoint does two things. Copied somewhere the database's writers cannot reach (a
//! ticket, a SIEM, a notary), it pins the chain up to that event: recomputing hashes after an
//! edit no longer helps, because the recomputed hash of event `seq` differs from the signed
//! one. And it lets retention delete old events: the chain then starts at a checkpointed event
//! ([`crate::audit::ChainHead::start_hash`]), and [`check_anchor`] requires a valid checkpoint
//! for exactly that event and hash, so the start cannot be moved or rewritten without the
//! signing key.
//!
//! The header's `typ` is [`TYP`], so a checkpoint can never pass as an access token (which
//! must say `at+jwt`) and an access token never passes as a checkpoint.

use crate::audit::{Break, ChainHead};
use crate::jwt::{JwtError, SigningKey, VerifyingKey};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The JWS `typ` of every checkpoint.
pub const TYP: &str = "mandate-audit-checkpoint+jwt";

/// What a checkpoint attests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointClaims {
    /// The issuer of the server that signed it.
    pub iss: String,
    /// The event's sequence number.
    pub seq: i64,
    /// The event's chain hash (lowercase hex SHA-256, see [`crate::audit`]).
    pub hash: String,
    /// When it was signed (unix seconds).
    pub iat: i64,
}

/// Signs a checkpoint for event `seq` with chain hash `hash`.
pub fn sign(
    key: &SigningKey,
    iss: &str,
    seq: i64,
    hash: &str,
    at: Timestamp,
) -> Result<String, JwtError> {
    key.sign_typed(
        TYP,
        &CheckpointClaims {
            iss: iss.to_owned(),
            seq,
            hash: hash.to_owned(),
            iat: at.unix(),
        },
    )
}

/// Checks a checkpoint's type, key and signature; returns its claims and the `kid` that
/// verified it.
pub fn verify(jws: &str, keys: &[VerifyingKey]) -> Result<(CheckpointClaims, String), JwtError> {
    crate::jwt::verify_as(jws, keys, |t| t.eq_ignore_ascii_case(TYP))
}

/// The `kid` in a checkpoint's header (unverified: for display).
pub fn kid(jws: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Header {
        kid: Option<String>,
    }
    let header: Header = crate::jwt::decode_json(jws.split('.').next()?).ok()?;
    header.kid
}

/// The checkpoint a verified chain starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
    /// When it was signed (unix seconds).
    pub iat: i64,
    /// The signing key's id, as published in the JWKS.
    pub kid: String,
    pub iss: String,
}

/// Checks that a chain whose start was moved by a purge is anchored: `jws` (the stored
/// checkpoint for event `head.start_seq`, if any) must verify with one of `keys` and attest
/// exactly `head.start_seq` and `head.start_hash`. `Ok(None)` for a chain never purged.
pub fn check_anchor(
    head: &ChainHead,
    jws: Option<&str>,
    keys: &[VerifyingKey],
) -> Result<Option<Anchor>, Break> {
    let Some(start_hash) = &head.start_hash else {
        return Ok(None);
    };
    let seq = head.start_seq;
    let jws = jws.ok_or(Break::CheckpointMissing { seq })?;
    let (claims, kid) = verify(jws, keys).map_err(|e| Break::CheckpointInvalid {
        seq,
        reason: reason(&e).to_owned(),
    })?;
    if claims.seq != seq || &claims.hash != start_hash {
        return Err(Break::CheckpointMismatch {
            seq,
            start_hash: start_hash.clone(),
            attested_seq: claims.seq,
            attested_hash: claims.hash,
        });
    }
    Ok(Some(Anchor {
        seq,
        hash: claims.hash,
        iat: claims.iat,
        kid,
        iss: claims.iss,
    }))
}

fn reason(e: &JwtError) -> &'static str {
    match e {
        JwtError::WrongType => "its type is not mandate-audit-checkpoint+jwt",
        JwtError::UnknownKey => "its key id is not one of the server's signing keys",
        JwtError::BadSignature => "its signature does not verify",
        _ => "it is not a well-formed JWS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Algorithm;

    fn key(kid: &str) -> (SigningKey, VerifyingKey) {
        let (k, _) = SigningKey::generate(Algorithm::EdDSA, kid.into()).unwrap();
        let v = VerifyingKey::from_jwk(k.public_jwk()).unwrap();
        (k, v)
    }

    fn head(seq: i64, hash: &str) -> ChainHead {
        ChainHead {
            start_seq: seq,
            seq: seq + 5,
            start_hash: Some(hash.into()),
        }
    }

    #[test]
    fn a_checkpoint_anchors_exactly_the_event_it_attests() {
        let (k, v) = key("k1");
        let jws = sign(&k, "https://as", 7, "ab", Timestamp::from_unix(99)).unwrap();
        let header: serde_json::Value =
            crate::jwt::decode_json(jws.split('.').next().unwrap()).unwrap();
        assert_eq!(header["typ"], TYP);
        assert_eq!(header["kid"], "k1");
        assert_eq!(kid(&jws).as_deref(), Some("k1"));
        assert_eq!(kid("garbage"), None);
        let anchor = check_anchor(&head(7, "ab"), Some(&jws), std::slice::from_ref(&v))
            .unwrap()
            .unwrap();
        assert_eq!((anchor.seq, anchor.iat, anchor.kid.as_str()), (7, 99, "k1"));

        let never_purged = ChainHead {
            start_hash: None,
            ..head(7, "ab")
        };
        assert_eq!(check_anchor(&never_purged, None, &[]), Ok(None));
        assert_eq!(
            check_anchor(&head(7, "ab"), None, std::slice::from_ref(&v)),
            Err(Break::CheckpointMissing { seq: 7 })
        );
        assert!(matches!(
            check_anchor(&head(7, "cd"), Some(&jws), std::slice::from_ref(&v)),
            Err(Break::CheckpointMismatch {
                seq: 7,
                attested_seq: 7,
                ..
            })
        ));
        assert!(matches!(
            check_anchor(&head(8, "ab"), Some(&jws), &[v]),
            Err(Break::CheckpointMismatch {
                seq: 8,
                attested_seq: 7,
                ..
            })
        ));
    }

    #[test]
    fn only_the_servers_keys_and_the_checkpoint_type_are_accepted() {
        let (k, v) = key("k1");
        let (other, other_v) = key("k1");
        let jws = sign(&k, "https://as", 7, "ab", Timestamp::from_unix(99)).unwrap();
        let invalid = |jws: &str, keys: &[VerifyingKey]| match check_anchor(
            &head(7, "ab"),
            Some(jws),
            keys,
        ) {
            Err(Break::CheckpointInvalid { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        // Same kid, another key: a forged checkpoint.
        assert!(invalid(&jws, &[other_v]).contains("signature"));
        assert!(invalid(&jws, &[]).contains("key id"));
        // A flipped signature byte: inside the signature, since the last base64url character
        // also holds padding bits that decoders may refuse before the signature is checked.
        let (rest, sig) = jws.rsplit_once('.').unwrap();
        let mut sig = sig.as_bytes().to_vec();
        sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{rest}.{}", String::from_utf8(sig).unwrap());
        assert!(invalid(&tampered, std::slice::from_ref(&v)).contains("signature"));
        // An access token signed by the same key is not a checkpoint.
        let token = k
            .sign(&CheckpointClaims {
                iss: "https://as".into(),
                seq: 7,
                hash: "ab".into(),
                iat: 1,
            })
            .unwrap();
        assert!(invalid(&token, std::slice::from_ref(&v)).contains("type"));
        assert!(invalid("not a jws", &[v]).contains("well-formed"));
        drop(other);
    }
}
