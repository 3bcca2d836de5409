//! Where a presented refresh token stands: the single answer used by the token endpoint,
//! introspection and revocation.
//!
//! A token names its family and generation (`<family>.<generation>.<secret>`,
//! [`mandate_core::refresh`]): its family's row is read by id, with the grant and the parties'
//! standing in the same statement, and the token is recognised against the live token the row
//! holds. A token minted before families held their live token has no name; it is a row of its
//! own, read by its hash. Either way the caller gets a [`PresentedRefresh`]: the family, its
//! grant and parties, where the token stands, its successor and the change that rotates it.
//! A token neither way finds (unknown, forged, or too many generations behind) is `None`.

use crate::errors::ServerError;
use crate::state::AppState;
use mandate_core::refresh::{self, LiveToken, Standing, TokenName};
use mandate_core::secret;
use mandate_core::time::Timestamp;
use mandate_store::FamilyLookup;
use mandate_store::batch::{Change, Retiring};

/// A presented refresh token that this server issued, with everything decided from it.
#[derive(Debug, Clone)]
pub struct PresentedRefresh {
    /// The token's family, its grant as stored (revoked or expired included) and its parties'
    /// standing.
    pub found: FamilyLookup,
    pub standing: Standing,
    retiring: Retiring,
}

/// The presented token `presented`, if this server issued it; `None` otherwise.
pub async fn find(
    app: &AppState,
    presented: &str,
) -> Result<Option<PresentedRefresh>, ServerError> {
    let Some(name) = refresh::name(presented) else {
        let token_hash = secret::hash_secret(presented);
        let Some(row) = app.store.refresh_token(&token_hash).await? else {
            return Ok(None);
        };
        return Ok(Some(PresentedRefresh {
            standing: Standing::of_record(&row.token, row.successor_live),
            found: row.found,
            retiring: Retiring::Legacy { token_hash },
        }));
    };
    let Some(found) = app.store.refresh_family(name.family_id).await? else {
        return Ok(None);
    };
    let Some(live) = found.family.live.as_ref() else {
        return Ok(None);
    };
    let Some(standing) = refresh::standing(app.kek.refresh_key(), presented, name, live) else {
        return Ok(None);
    };
    // Only a live token is ever rotated, and its hash is the one `standing` just matched:
    // the row's, not hashed again. (For a retired token this names the live token at another
    // generation, which no rotation can match.)
    let retiring = Retiring::Live {
        generation: name.generation,
        token_hash: live.token_hash.clone(),
    };
    Ok(Some(PresentedRefresh {
        found,
        standing,
        retiring,
    }))
}

impl PresentedRefresh {
    /// The token that replaces `presented` (this token, in plaintext): what its rotation
    /// issues, and what a concurrent request inside the grace window gets again.
    pub fn successor(&self, refresh_key: &[u8], presented: &str) -> String {
        match &self.retiring {
            Retiring::Live { generation, .. } => {
                let name = TokenName {
                    family_id: &self.found.family.id,
                    generation: *generation,
                };
                refresh::successor(refresh_key, presented, name)
            }
            Retiring::Legacy { .. } => {
                let next =
                    refresh::successor_of_legacy(refresh_key, presented, &self.found.family.id);
                // A row rotated by a server from before families held their live token was
                // given a row of its own as successor; inside its grace window, that one again.
                let given_next = self
                    .found
                    .family
                    .live
                    .as_ref()
                    .is_some_and(|live| secret::verify_secret(&next, &live.token_hash));
                let rotated_by_older_server =
                    matches!(self.standing, Standing::Retired { .. }) && !given_next;
                if rotated_by_older_server {
                    refresh::legacy_successor(refresh_key, presented)
                } else {
                    next
                }
            }
        }
    }

    /// The change that retires this token and makes `successor` (from [`Self::successor`])
    /// the family's live token, valid for `ttl_seconds` from `now`.
    pub fn rotation(&self, successor: &str, ttl_seconds: u64, now: Timestamp) -> Change {
        let generation = match &self.retiring {
            Retiring::Live { generation, .. } => generation + 1,
            Retiring::Legacy { .. } => 1,
        };
        Change::RotateRefresh {
            family_id: self.found.family.id.clone(),
            retiring: self.retiring.clone(),
            successor: LiveToken {
                generation,
                token_hash: secret::hash_secret(successor),
                issued_at: now,
                expires_at: now.plus_seconds(ttl_seconds),
            },
            now,
        }
    }
}
