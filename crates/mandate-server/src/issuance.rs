//! Minting credentials: access tokens (JWT), refresh tokens, authorization codes.
//!
//! Grant handlers decide *what* to issue; this module turns the decision into signed or stored
//! credentials with consistent claims, ids and lifetimes.

use crate::errors::ServerError;
use crate::state::AppState;
use mandate_core::client::Agent;
use mandate_core::jwt::AccessTokenClaims;
use mandate_core::random;
use mandate_core::refresh::{RefreshFamily, RefreshTokenRecord};
use mandate_core::scope::ScopeSet;
use mandate_core::secret;
use mandate_core::time::Timestamp;
use mandate_core::token_response::TokenResponse;

/// Who a token speaks for and what it may do.
pub struct TokenSubject<'a> {
    pub agent: &'a Agent,
    pub tenant_id: &'a str,
    /// The user, or `None` for a service identity (then `sub` is the client id).
    pub user_id: Option<&'a str>,
    pub grant_id: &'a str,
    pub audience: &'a str,
    pub scopes: &'a ScopeSet,
}

/// A signed access token and its claims (for events and responses).
pub struct MintedAccessToken {
    pub token: String,
    pub claims: AccessTokenClaims,
}

pub fn access_token(
    app: &AppState,
    subject: &TokenSubject<'_>,
    now: Timestamp,
) -> Result<MintedAccessToken, ServerError> {
    let ttl = subject.agent.access_token_ttl;
    let claims = AccessTokenClaims {
        iss: app.settings.issuer.clone(),
        sub: subject
            .user_id
            .unwrap_or(&subject.agent.client_id)
            .to_owned(),
        aud: subject.audience.to_owned(),
        exp: now.plus_seconds(ttl).unix(),
        iat: now.unix(),
        jti: random::identifier(app.entropy.as_ref(), "at_"),
        client_id: subject.agent.client_id.clone(),
        scope: subject.scopes.clone(),
        tenant: subject.tenant_id.to_owned(),
        gid: subject.grant_id.to_owned(),
        act: None,
    };
    let token = app
        .keys
        .sign(&claims, now)
        .map_err(|e| anyhow::anyhow!("signing an access token: {e}"))?;
    Ok(MintedAccessToken { token, claims })
}

/// Starts a refresh-token family for a grant; returns the first token in plaintext.
pub async fn new_refresh_family(
    app: &AppState,
    subject: &TokenSubject<'_>,
    now: Timestamp,
) -> Result<(String, RefreshFamily), ServerError> {
    let token = random::opaque_secret(app.entropy.as_ref());
    let family = RefreshFamily {
        id: random::identifier(app.entropy.as_ref(), "rf_"),
        grant_id: subject.grant_id.to_owned(),
        client_id: subject.agent.client_id.clone(),
        tenant_id: subject.tenant_id.to_owned(),
        user_id: subject.user_id.map(str::to_owned),
        scopes: subject.scopes.clone(),
        resource: subject.audience.to_owned(),
        created_at: now,
        revoked_at: None,
    };
    let first = RefreshTokenRecord {
        token_hash: secret::hash_secret(&token),
        family_id: family.id.clone(),
        issued_at: now,
        expires_at: now.plus_seconds(subject.agent.refresh_token_ttl),
        used_at: None,
    };
    app.store.create_family(&family, &first).await?;
    Ok((token, family))
}

pub fn token_response(
    minted: &MintedAccessToken,
    ttl: u64,
    refresh_token: Option<String>,
) -> TokenResponse {
    TokenResponse {
        access_token: minted.token.clone(),
        token_type: "Bearer".into(),
        expires_in: ttl,
        scope: minted.claims.scope.to_string(),
        refresh_token,
    }
}
