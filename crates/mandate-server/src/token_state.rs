//! Is one of our access tokens still good? The single answer used by introspection and by
//! token exchange (for subject and actor tokens).
//!
//! A token is active when its signature, issuer and expiry check out, its id was not revoked,
//! and every grant it depends on is active with its parties enabled: its own grant, and for an
//! exchanged token each grant and agent named in its delegation chain. Revoking any link of a
//! chain therefore ends every token derived from it.
//!
//! Tokens obtained by exchanging an API key carry the key id (`mkid_...`) as `gid` and
//! `client_id`; there is no grant row and no agent behind them. Such a token is active while
//! its key exists, is not revoked and has not expired (rotation lowers the expiry), and while
//! the key's user, if any, is enabled. Revoking the key ends them at once.

use crate::errors::ServerError;
use crate::state::AppState;
use mandate_core::api_key::{ApiKeyRecord, KEY_ID_PREFIX, KeyId};
use mandate_core::exchange::Actor;
use mandate_core::jwt::{AccessTokenClaims, Expectations};
use mandate_core::time::Timestamp;

/// The claims of `token` if it is one of ours and still active; `None` otherwise.
pub async fn active_access_token(
    app: &AppState,
    token: &str,
    now: Timestamp,
) -> Result<Option<AccessTokenClaims>, ServerError> {
    let Ok(claims) = app.keys.verify(token, now).await else {
        return Ok(None);
    };
    let expect = Expectations {
        issuer: &app.settings.issuer,
        audience: None,
        now,
        leeway_seconds: 0,
    };
    if expect.check(&claims).is_err() || !token_usable(app, &claims, now).await? {
        return Ok(None);
    }
    if let Some(act) = &claims.act {
        let Ok(chain) = Actor::from_claim(act) else {
            return Ok(None);
        };
        for actor in chain.actors() {
            if app
                .store
                .agent(&actor.sub)
                .await?
                .is_none_or(|a| a.disabled)
            {
                return Ok(None);
            }
            if let Some(gid) = &actor.gid
                && !grant_active(app, gid, now).await?
            {
                return Ok(None);
            }
        }
    }
    Ok(Some(claims))
}

/// The token's own revocation state: its `jti` not revoked, and its grant and parties active
/// ([`grant_and_parties_active`]). For a grant (not an API key id) that is one statement
/// ([`mandate_store::TokenStateStore::access_token_usable`]) instead of four point reads.
async fn token_usable(
    app: &AppState,
    claims: &AccessTokenClaims,
    now: Timestamp,
) -> Result<bool, ServerError> {
    if claims.gid.starts_with(KEY_ID_PREFIX) {
        return Ok(!app.store.is_jti_revoked(&claims.jti).await?
            && grant_and_parties_active(app, &claims.gid, &claims.client_id, now).await?);
    }
    Ok(app
        .store
        .access_token_usable(&claims.jti, &claims.gid, &claims.client_id, now)
        .await?)
}

/// The grant is active, the client is enabled, and the grant's user (if any) is enabled. A
/// `grant_id` that is an API key id is active while the key is usable
/// and its user (if any) is enabled.
pub async fn grant_and_parties_active(
    app: &AppState,
    grant_id: &str,
    client_id: &str,
    now: Timestamp,
) -> Result<bool, ServerError> {
    if grant_id.starts_with(KEY_ID_PREFIX) {
        if !api_key_active(app, grant_id, now).await? {
            return Ok(false);
        }
        // The key's own token, or an agent's exchange of it on the key user's behalf.
        return Ok(client_id == grant_id
            || app
                .store
                .agent(client_id)
                .await?
                .is_some_and(|a| !a.disabled));
    }
    let Some(grant) = app
        .store
        .grant(grant_id)
        .await?
        .filter(|g| g.is_active(now))
    else {
        return Ok(false);
    };
    if app.store.agent(client_id).await?.is_none_or(|a| a.disabled) {
        return Ok(false);
    }
    if let Some(user) = &grant.user_id
        && app.store.user(user).await?.is_none_or(|u| u.disabled)
    {
        return Ok(false);
    }
    Ok(true)
}

/// The grant (or, for an API key id, the key) is active.
pub async fn grant_active(
    app: &AppState,
    grant_id: &str,
    now: Timestamp,
) -> Result<bool, ServerError> {
    if grant_id.starts_with(KEY_ID_PREFIX) {
        return api_key_active(app, grant_id, now).await;
    }
    Ok(app
        .store
        .grant(grant_id)
        .await?
        .is_some_and(|g| g.is_active(now)))
}

/// The API key with this id exists, is usable at `now` (not revoked, not expired), and its
/// user, if it has one, is enabled.
pub async fn api_key_active(
    app: &AppState,
    key_id: &str,
    now: Timestamp,
) -> Result<bool, ServerError> {
    let Some(id) = KeyId::parse(key_id) else {
        return Ok(false);
    };
    let Some(stored) = app.store.api_key(&id, None).await? else {
        return Ok(false);
    };
    api_key_usable(app, &stored.record, now).await
}

/// Whether a stored key may be used at `now`: not revoked, not expired (rotation lowers the
/// expiry to the end of its overlap), and its user, if it has one, enabled. The one rule for
/// the key-to-token exchange, tokens obtained with a key, and a key presented to a resource
/// server (introspection in migration mode).
pub async fn api_key_usable(
    app: &AppState,
    record: &ApiKeyRecord,
    now: Timestamp,
) -> Result<bool, ServerError> {
    if record.check_usable(now).is_err() {
        return Ok(false);
    }
    if let Some(user) = &record.user_id
        && app.store.user(user).await?.is_none_or(|u| u.disabled)
    {
        return Ok(false);
    }
    Ok(true)
}
