//! Refresh token rotation with reuse detection.
//!
//! Every use of a refresh token retires it and issues a successor in the same family. A retired
//! token presented again means two parties hold it, one of them an attacker, so the whole family
//! and its grant are revoked (OAuth 2.1 §4.3.1, draft-ietf-oauth-security-topics §4.14).
//!
//! Concurrent refreshes by one honest client (two tabs, a retried request) must not look like
//! theft. Within a short grace window the retired token yields the *same* successor, as long as
//! that successor is still unused. Successors are derived, not stored: the successor's secret is
//! HMAC(refresh key, presented token), so the server can hand the same value out again while
//! storing only hashes.
//!
//! **Where a family's tokens are kept.** A token names its family and its generation in the
//! clear, `<family id>.<generation>.<256-bit secret>`, and the family's row holds only the hash
//! of its live token ([`LiveToken`]). A rotation updates that one row in place, where a row per
//! token cost two more random index pages per rotation (the new hash's and the old row's), each
//! written to the log and checkpointed again (BENCHMARKS.md, "Refresh families holding their
//! live token"). A retired token needs no row to be recognised: since each successor derives
//! from its predecessor, walking forward from the presented token to the family's generation
//! must arrive at the live token's hash, which only a token the server issued in this family
//! can do ([`standing`]). Neither the family id nor the generation is secret; the token's
//! strength is its secret part, and its hash is all that is stored.
//!
//! Tokens minted before families held their live token are 43 characters with no family in
//! them, each a row of its own ([`RefreshTokenRecord`]); they keep working, and the first
//! rotation of one moves its family to the live-token form ([`successor_of_legacy`]).

use crate::random::{self, Entropy};
use crate::scope::ScopeSet;
use crate::secret;
use crate::time::Timestamp;

/// Default grace window for concurrent refreshes, in seconds.
pub const DEFAULT_GRACE_SECONDS: u64 = 5;

/// How many generations back a retired token is still recognised (and its presentation
/// treated as reuse). Recognising one costs a derivation per generation (about a microsecond
/// each), so this bounds what a forged old generation can make the server compute; 10,000
/// rotations is over three months of refreshing every 15 minutes. An older token is answered
/// as unknown: refused, without revoking the family.
pub const MAX_GENERATIONS_BEHIND: u64 = 10_000;

const SUCCESSOR_PURPOSE: &str = "mandate refresh successor v2";
const LEGACY_SUCCESSOR_PURPOSE: &str = "mandate refresh successor v1";

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
    /// The family's live token; `None` for a family whose tokens are still rows of their own
    /// (minted before families held their live token), until its next rotation.
    pub live: Option<LiveToken>,
}

/// A family's live token, kept on the family's row: its generation and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveToken {
    pub generation: u64,
    pub token_hash: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A refresh token stored as a row of its own, identified by its hash: the form before
/// families held their live token. Nothing mints these any more; existing ones are honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub token_hash: String,
    pub family_id: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// When it was rotated; `None` while it is the family's live token.
    pub used_at: Option<Timestamp>,
}

/// The family and generation a token names (`<family id>.<generation>.<secret>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenName<'a> {
    pub family_id: &'a str,
    pub generation: u64,
}

/// Where a presented token stands in its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The family's live token.
    Live {
        issued_at: Timestamp,
        expires_at: Timestamp,
    },
    /// Rotated. `successor_issued_at` is set while the token that replaced it is still the
    /// family's live token (and says when that happened), `None` once that one moved on too.
    Retired {
        successor_issued_at: Option<Timestamp>,
    },
}

impl Standing {
    /// The standing of a token stored as a row of its own; `successor_live` says whether the
    /// token that replaced it is still the family's live token.
    pub fn of_record(token: &RefreshTokenRecord, successor_live: bool) -> Self {
        match token.used_at {
            None => Self::Live {
                issued_at: token.issued_at,
                expires_at: token.expires_at,
            },
            Some(used) => Self::Retired {
                successor_issued_at: successor_live.then_some(used),
            },
        }
    }
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

/// Classifies a presented token by its standing.
pub fn classify(standing: Standing, now: Timestamp, grace_seconds: u64) -> Presentation {
    match standing {
        Standing::Live { expires_at, .. } if now >= expires_at => Presentation::Expired,
        Standing::Live { .. } => Presentation::Rotate,
        Standing::Retired {
            successor_issued_at: Some(rotated),
        } if now < rotated.plus_seconds(grace_seconds) => Presentation::ReturnSuccessor,
        Standing::Retired { .. } => Presentation::Reuse,
    }
}

/// The family and generation `token` names, or `None` when it is not of that form (a token
/// minted before families held their live token, or not one of ours).
pub fn name(token: &str) -> Option<TokenName<'_>> {
    let mut parts = token.split('.');
    let (family_id, generation, secret) = (parts.next()?, parts.next()?, parts.next()?);
    let id_ok = !family_id.is_empty()
        && family_id.len() <= 64
        && family_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let generation_ok = !generation.is_empty()
        && generation.len() <= 19
        && generation.bytes().all(|b| b.is_ascii_digit())
        && (generation == "0" || !generation.starts_with('0'));
    if parts.next().is_some() || !id_ok || !generation_ok || secret.len() != 43 {
        return None;
    }
    Some(TokenName {
        family_id,
        generation: generation.parse().ok()?,
    })
}

/// A family's first token (generation 0) and its record, with a fresh 256-bit secret.
pub fn first_token(
    entropy: &dyn Entropy,
    family_id: &str,
    issued_at: Timestamp,
    expires_at: Timestamp,
) -> (String, LiveToken) {
    let token = format!("{family_id}.0.{}", random::opaque_secret(entropy));
    let live = LiveToken {
        generation: 0,
        token_hash: secret::hash_secret(&token),
        issued_at,
        expires_at,
    };
    (token, live)
}

/// The successor of `presented` (which must name its family): the next generation, its secret
/// derived from `presented` under the server's refresh key, so a concurrent request within the
/// grace window receives the identical token.
pub fn successor(refresh_key: &[u8], presented: &str, name: TokenName<'_>) -> String {
    next(refresh_key, presented, name.family_id, name.generation + 1)
}

/// The successor of a token stored as a row of its own: generation 1 of the same family, in the
/// live-token form, so the family moves to that form at this rotation.
pub fn successor_of_legacy(refresh_key: &[u8], presented: &str, family_id: &str) -> String {
    next(refresh_key, presented, family_id, 1)
}

/// The successor a token stored as a row of its own was given when it was rotated by a server
/// from before families held their live token (a row of its own too). Only answered again
/// inside the grace window of such a rotation.
pub fn legacy_successor(refresh_key: &[u8], presented: &str) -> String {
    secret::derive_token(refresh_key, LEGACY_SUCCESSOR_PURPOSE, presented.as_bytes())
}

fn next(refresh_key: &[u8], presented: &str, family_id: &str, generation: u64) -> String {
    let secret = secret::derive_token(refresh_key, SUCCESSOR_PURPOSE, presented.as_bytes());
    format!("{family_id}.{generation}.{secret}")
}

/// Where `presented`, which names its family's generation `name`, stands against the family's
/// `live` token; `None` when the family never issued it (a wrong secret, a generation not yet
/// reached, or one more than [`MAX_GENERATIONS_BEHIND`] back). The live token is recognised by
/// its hash; an older one by deriving its successors up to the live generation and comparing
/// the last one's hash.
pub fn standing(
    refresh_key: &[u8],
    presented: &str,
    name: TokenName<'_>,
    live: &LiveToken,
) -> Option<Standing> {
    let behind = live.generation.checked_sub(name.generation)?;
    if behind > MAX_GENERATIONS_BEHIND {
        return None;
    }
    // The live token, the common case, is hashed as presented, without a copy.
    let mut token = std::borrow::Cow::Borrowed(presented);
    for generation in name.generation + 1..=live.generation {
        token = next(refresh_key, &token, name.family_id, generation).into();
    }
    if !secret::verify_secret(&token, &live.token_hash) {
        return None;
    }
    Some(match behind {
        0 => Standing::Live {
            issued_at: live.issued_at,
            expires_at: live.expires_at,
        },
        1 => Standing::Retired {
            successor_issued_at: Some(live.issued_at),
        },
        _ => Standing::Retired {
            successor_issued_at: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededEntropy;

    fn t(unix: i64) -> Timestamp {
        Timestamp::from_unix(unix)
    }

    #[test]
    fn classification_cases() {
        let live = Standing::Live {
            issued_at: t(0),
            expires_at: t(1000),
        };
        let retired = |at: Option<i64>| Standing::Retired {
            successor_issued_at: at.map(t),
        };
        let cases = [
            (live, t(10), Presentation::Rotate, "live token"),
            (live, t(1000), Presentation::Expired, "expired live token"),
            (
                retired(Some(10)),
                t(12),
                Presentation::ReturnSuccessor,
                "concurrent retry in grace",
            ),
            (
                retired(Some(10)),
                t(15),
                Presentation::Reuse,
                "grace is exclusive at its end",
            ),
            (
                retired(None),
                t(11),
                Presentation::Reuse,
                "successor already rotated",
            ),
            (
                retired(Some(10)),
                t(500),
                Presentation::Reuse,
                "replay long after",
            ),
        ];
        for (standing, now, expected, reason) in cases {
            assert_eq!(classify(standing, now, 5), expected, "{reason}");
        }
    }

    #[test]
    fn a_stored_row_stands_by_its_use_and_its_successor() {
        let mut row = RefreshTokenRecord {
            token_hash: "h".into(),
            family_id: "f".into(),
            issued_at: t(0),
            expires_at: t(1000),
            used_at: None,
        };
        assert_eq!(
            Standing::of_record(&row, false),
            Standing::Live {
                issued_at: t(0),
                expires_at: t(1000)
            }
        );
        row.used_at = Some(t(10));
        assert_eq!(
            Standing::of_record(&row, true),
            Standing::Retired {
                successor_issued_at: Some(t(10))
            }
        );
        assert_eq!(
            Standing::of_record(&row, false),
            Standing::Retired {
                successor_issued_at: None
            }
        );
    }

    #[test]
    fn tokens_name_their_family_and_generation() {
        let entropy = SeededEntropy::new(7);
        let (first, live) = first_token(&entropy, "rf_0190abc", t(0), t(100));
        let named = name(&first).expect("a first token names its family");
        assert_eq!((named.family_id, named.generation), ("rf_0190abc", 0));
        assert!(secret::verify_secret(&first, &live.token_hash));
        let second = successor(b"k", &first, named);
        assert_eq!(name(&second).map(|n| n.generation), Some(1));
        assert!(second.starts_with("rf_0190abc.1."));

        let secret = "a".repeat(43);
        for bad in [
            "plain-legacy-token-without-dots",
            &format!("rf_x.01.{secret}"),
            &format!("rf_x..{secret}"),
            &format!(".1.{secret}"),
            &format!("RF_X.1.{secret}"),
            &format!("rf_x.1.{secret}.extra"),
            &format!("rf_x.1.{}", "a".repeat(42)),
            &format!("rf_x.99999999999999999999.{secret}"),
        ] {
            assert_eq!(name(bad), None, "{bad}");
        }
    }

    #[test]
    fn successors_are_stable_and_key_bound() {
        let entropy = SeededEntropy::new(1);
        let (first, _) = first_token(&entropy, "rf_a", t(0), t(1));
        let n = name(&first).unwrap();
        assert_eq!(successor(b"k1", &first, n), successor(b"k1", &first, n));
        assert_ne!(successor(b"k1", &first, n), successor(b"k2", &first, n));
        assert_eq!(
            legacy_successor(b"k1", "tok"),
            legacy_successor(b"k1", "tok")
        );
        assert_ne!(
            legacy_successor(b"k1", "tok"),
            legacy_successor(b"k2", "tok")
        );
        assert_eq!(legacy_successor(b"k1", "tok").len(), 43);
        assert_eq!(
            successor_of_legacy(b"k1", "tok", "rf_a").split('.').nth(1),
            Some("1")
        );
    }

    /// A family rotated `n` times from `first`: every token, oldest first, and the live record.
    fn chain(key: &[u8], first: &str, n: u64) -> (Vec<String>, LiveToken) {
        let mut tokens = vec![first.to_owned()];
        for _ in 0..n {
            let last = tokens.last().unwrap();
            let next = successor(key, last, name(last).unwrap());
            tokens.push(next);
        }
        let last = tokens.last().unwrap();
        let live = LiveToken {
            generation: n,
            token_hash: secret::hash_secret(last),
            issued_at: t(100 + i64::try_from(n).unwrap()),
            expires_at: t(10_000),
        };
        (tokens, live)
    }

    #[test]
    fn every_token_a_family_issued_is_recognised_and_nothing_else() {
        let entropy = SeededEntropy::new(3);
        let (first, _) = first_token(&entropy, "rf_a", t(0), t(1));
        let (tokens, live) = chain(b"key", &first, 5);
        let stand = |tok: &str| standing(b"key", tok, name(tok).unwrap(), &live);
        assert_eq!(
            stand(&tokens[5]),
            Some(Standing::Live {
                issued_at: t(105),
                expires_at: t(10_000)
            })
        );
        assert_eq!(
            stand(&tokens[4]),
            Some(Standing::Retired {
                successor_issued_at: Some(t(105))
            })
        );
        for old in &tokens[..4] {
            assert_eq!(
                stand(old),
                Some(Standing::Retired {
                    successor_issued_at: None
                })
            );
        }
        // Forged: a right family and generation with a wrong secret, a generation ahead of the
        // family's, another key's chain, another family's name on a real secret.
        let forged = format!("rf_a.3.{}", "A".repeat(43));
        assert_eq!(stand(&forged), None);
        let ahead = successor(b"key", &tokens[5], name(&tokens[5]).unwrap());
        assert_eq!(stand(&ahead), None);
        let (other_key, _) = chain(b"other", &first, 5);
        assert_eq!(stand(&other_key[3]), None);
        let renamed = tokens[3].replacen("rf_a", "rf_b", 1);
        assert_eq!(stand(&renamed), None);
    }

    #[test]
    fn tokens_too_far_behind_are_not_walked() {
        let entropy = SeededEntropy::new(4);
        let (first, _) = first_token(&entropy, "rf_a", t(0), t(1));
        let live = LiveToken {
            generation: MAX_GENERATIONS_BEHIND + 1,
            token_hash: "sha256:whatever".into(),
            issued_at: t(0),
            expires_at: t(1),
        };
        assert_eq!(standing(b"key", &first, name(&first).unwrap(), &live), None);
    }
}
