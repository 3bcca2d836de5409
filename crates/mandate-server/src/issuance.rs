//! Minting credentials: access tokens (JWT), refresh tokens, authorization codes.
//!
//! Grant handlers decide *what* to issue; this module turns the decision into signed or stored
//! credentials with consistent claims, ids and lifetimes.

use crate::errors::ServerError;
use crate::state::AppState;
use mandate_core::client::Agent;
use mandate_core::code::{AuthorizationCode, CODE_TTL_SECONDS};
use mandate_core::jwt::AccessTokenClaims;
use mandate_core::pkce::CodeChallenge;
use mandate_core::random::{self, Entropy};
use mandate_core::refresh::{self, RefreshFamily};
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
        jti: random::identifier(app.entropy.as_ref(), now, "at_"),
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

/// A new refresh-token family for a grant, holding its first token as its live token: the
/// token in plaintext (for the client, never stored) and the family to store, which holds only
/// its hash. Shared by the authorization-code exchange and the bulk loader, so loaded families
/// are the real thing.
pub fn refresh_family(
    entropy: &dyn Entropy,
    subject: &TokenSubject<'_>,
    now: Timestamp,
) -> (String, RefreshFamily) {
    let id = random::identifier(entropy, now, "rf_");
    let expires_at = now.plus_seconds(subject.agent.refresh_token_ttl);
    let (token, live) = refresh::first_token(entropy, &id, now, expires_at);
    let family = RefreshFamily {
        id,
        grant_id: subject.grant_id.to_owned(),
        client_id: subject.agent.client_id.clone(),
        tenant_id: subject.tenant_id.to_owned(),
        user_id: subject.user_id.map(str::to_owned),
        scopes: subject.scopes.clone(),
        resource: subject.audience.to_owned(),
        created_at: now,
        revoked_at: None,
        live: Some(live),
    };
    (token, family)
}

/// Everything an authorization code is bound to (see [`mandate_core::code`]).
pub struct CodeBinding<'a> {
    pub client_id: &'a str,
    pub grant_id: &'a str,
    pub user_id: &'a str,
    pub tenant_id: &'a str,
    pub redirect_uri: &'a str,
    pub redirect_uri_explicit: bool,
    pub code_challenge: &'a CodeChallenge,
    pub resource: &'a str,
    pub scopes: ScopeSet,
}

/// A new authorization code: the code in plaintext (for the redirect, never stored) and the
/// record to store, which holds only its hash and lives [`CODE_TTL_SECONDS`]. Shared by the
/// authorization endpoint and the bulk loader.
pub fn authorization_code(
    entropy: &dyn Entropy,
    bound: CodeBinding<'_>,
    now: Timestamp,
) -> (String, AuthorizationCode) {
    let code = random::opaque_secret(entropy);
    let record = AuthorizationCode {
        code_hash: secret::hash_secret(&code),
        client_id: bound.client_id.to_owned(),
        grant_id: bound.grant_id.to_owned(),
        user_id: bound.user_id.to_owned(),
        tenant_id: bound.tenant_id.to_owned(),
        redirect_uri: bound.redirect_uri.to_owned(),
        redirect_uri_explicit: bound.redirect_uri_explicit,
        code_challenge: bound.code_challenge.clone(),
        resource: bound.resource.to_owned(),
        scopes: bound.scopes,
        created_at: now,
        expires_at: now.plus_seconds(CODE_TTL_SECONDS),
        family_id: None,
    };
    (code, record)
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
