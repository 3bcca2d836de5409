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
use mandate_store::batch::{Change, Written};

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
        .events
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
    let event = meta.stamp(issuance_event(
        Action::TokenIssued,
        "authorization_code",
        &minted.claims,
        Some(&stored.user_id),
        grant.purpose.as_deref(),
        now,
    ));
    let refresh = if agent.allows(GrantType::RefreshToken) {
        // The family, its link to the code (so a replay can revoke it) and the event ride one
        // group commit.
        let (token, family, first) = issuance::refresh_family(app.entropy.as_ref(), &subject, now);
        let change = Change::CreateFamily {
            family,
            first,
            code_hash: Some(stored.code_hash.clone()),
        };
        if app.events.append_with(change, event).await? == Written::Declined {
            return Err(ServerError::Internal(anyhow::anyhow!(
                "a new refresh family was declined"
            )));
        }
        Some(token)
    } else {
        app.events.append(event).await?;
        None
    };
    app.metrics
        .token_issued(IssuedBy::AuthorizationCode, &agent.client_id);
    Ok(issuance::token_response(
        &minted,
        agent.access_token_ttl,
        refresh,
    ))
}
