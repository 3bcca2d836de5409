//! `authorization_code` (RFC 6749 §4.1.3 with PKCE, RFC 7636 §4.5).
//!
//! The code is consumed atomically before anything is checked, so it is single use even when
//! the request fails. A second presentation is treated as a leak: it fails, and the grant and
//! refresh family the first redemption produced are revoked.

use super::{ensure_user_enabled, issuance_event, revoke_for_incident};
use crate::errors::ServerError;
use crate::issuance::{self, TokenSubject};
use crate::metrics::IssuedBy;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use mandate_core::OAuthError;
use mandate_core::client::{Agent, GrantType};
use mandate_core::code;
use mandate_core::event::Action;
use mandate_core::grant;
use mandate_core::pkce::CodeVerifier;
use mandate_core::secret;
use mandate_core::time::Timestamp;
use mandate_core::token_response::TokenResponse;
use mandate_store::CodeConsumption;

pub struct CodeRedemption<'a> {
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: &'a CodeVerifier,
    pub resource: Option<&'a str>,
}

pub async fn exchange(
    app: &AppState,
    agent: &Agent,
    req: CodeRedemption<'_>,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<TokenResponse, ServerError> {
    let invalid = || ServerError::from(OAuthError::InvalidGrant("the code is invalid".into()));
    let stored = match app
        .store
        .consume_code(&secret::hash_secret(req.code), now)
        .await?
    {
        CodeConsumption::Fresh(c) => c,
        CodeConsumption::Unknown => return Err(invalid()),
        CodeConsumption::Replayed(c) => {
            if c.client_id == agent.client_id {
                // Revoking the grant also revokes the family the first redemption created.
                revoke_for_incident(
                    app,
                    &c.grant_id,
                    Action::CodeReplayDetected,
                    "authorization code replayed",
                    meta,
                    now,
                )
                .await?;
            }
            return Err(OAuthError::InvalidGrant("the code has already been used".into()).into());
        }
    };
    code::check_redemption(
        &stored,
        &agent.client_id,
        req.redirect_uri,
        req.code_verifier,
        req.resource,
        now,
    )?;
    let grant = app
        .store
        .grant(&stored.grant_id)
        .await?
        .filter(|g| g.is_active(now))
        .ok_or_else(|| OAuthError::InvalidGrant("the grant has been revoked".into()))?;
    ensure_user_enabled(app, Some(&stored.user_id)).await?;
    let scopes = grant::token_scopes(&stored.scopes, &agent.max_scopes, &grant.scopes);
    if scopes.is_empty() {
        return Err(OAuthError::InvalidGrant("no granted scope remains".into()).into());
    }
    let subject = TokenSubject {
        agent,
        tenant_id: &stored.tenant_id,
        user_id: Some(&stored.user_id),
        grant_id: &grant.id,
        audience: &stored.resource,
        scopes: &scopes,
    };
    let minted = issuance::access_token(app, &subject, now)?;
    let refresh = if agent.allows(GrantType::RefreshToken) {
        let (token, family) = issuance::new_refresh_family(app, &subject, now).await?;
        app.store
            .set_code_family(&stored.code_hash, &family.id)
            .await?;
        Some(token)
    } else {
        None
    };
    let event = issuance_event(
        Action::TokenIssued,
        "authorization_code",
        &minted.claims,
        Some(&stored.user_id),
        grant.purpose.as_deref(),
        now,
    );
    app.events.append(meta.stamp(event)).await?;
    app.metrics
        .token_issued(IssuedBy::AuthorizationCode, &agent.client_id);
    Ok(issuance::token_response(
        &minted,
        agent.access_token_ttl,
        refresh,
    ))
}
