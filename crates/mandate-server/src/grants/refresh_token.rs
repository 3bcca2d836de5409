//! `refresh_token` (RFC 6749 §6) with rotation and reuse detection (OAuth 2.1 §4.3.1).
//!
//! Every use retires the presented token and answers with its successor. A retired token
//! presented again outside the grace window revokes the whole family and its grant, and that
//! revocation is committed even though the caller only sees `invalid_grant`. Inside the grace
//! window the same successor is returned, so an honest client's concurrent refreshes do not log
//! its user out.

use super::{issuance_event, revoke_for_incident};
use crate::errors::ServerError;
use crate::issuance::{self, TokenSubject};
use crate::metrics::IssuedBy;
use crate::refresh_state::{self, PresentedRefresh};
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use mandate_core::OAuthError;
use mandate_core::client::Agent;
use mandate_core::event::Action;
use mandate_core::grant;
use mandate_core::refresh::{self, Presentation};
use mandate_core::scope::ScopeSet;
use mandate_core::time::Timestamp;
use mandate_core::token_response::TokenResponse;
use mandate_store::batch::Written;

pub async fn exchange(
    app: &AppState,
    agent: &Agent,
    presented: &str,
    scope: Option<ScopeSet>,
    resource: Option<&str>,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<TokenResponse, ServerError> {
    let lookup = load(app, presented).await?;
    let presentation = classify(app, agent, &lookup, meta, now).await?;
    let family = &lookup.found.family;

    // Validate everything before rotating, so a rejected request leaves the token usable. The
    // grant and the user's standing came with the token, read in the same statement.
    let grant = lookup
        .found
        .grant
        .as_ref()
        .filter(|g| g.is_active(now))
        .ok_or_else(|| invalid("the grant has been revoked"))?;
    app.throttles
        .check(mandate_core::anomaly::Per::Grant, &grant.id, now)?;
    if !lookup.found.user_active {
        return Err(invalid("the user is no longer active"));
    }
    if resource.is_some_and(|r| r != family.resource) {
        return Err(OAuthError::InvalidTarget(
            "a refresh token is bound to the resource it was issued for".into(),
        )
        .into());
    }
    let requested = match scope {
        Some(s) if !s.is_subset(&family.scopes) => {
            return Err(OAuthError::InvalidScope(
                "a refresh may narrow the original scope, never widen it".into(),
            )
            .into());
        }
        Some(s) => s,
        None => family.scopes.clone(),
    };
    let scopes = grant::token_scopes(&requested, &agent.max_scopes, &grant.scopes);
    if scopes.is_empty() {
        return Err(invalid("no granted scope remains"));
    }

    let mut successor = lookup.successor(app.kek.refresh_key(), presented);
    let subject = TokenSubject {
        agent,
        tenant_id: &family.tenant_id,
        user_id: family.user_id.as_deref(),
        grant_id: &grant.id,
        audience: &family.resource,
        scopes: &scopes,
    };
    let minted = issuance::access_token(app, &subject, now)?;
    let event = || {
        meta.stamp(issuance_event(
            Action::TokenRefreshed,
            "refresh_token",
            &minted.claims,
            family.user_id.as_deref(),
            grant.purpose.as_deref(),
            now,
        ))
    };
    if presentation == Presentation::Rotate {
        // The rotation and its event ride one group commit: durable together, or neither.
        let rotation = lookup.rotation(&successor, agent.refresh_token_ttl, now);
        if app.events.append_with(rotation, event()).await? == Written::Declined {
            // A concurrent request rotated it first: that is fine inside the grace window
            // (same successor), and reuse otherwise.
            let again = load(app, presented).await?;
            if classify(app, agent, &again, meta, now).await? != Presentation::ReturnSuccessor {
                return Err(invalid("the refresh token has already been used"));
            }
            successor = again.successor(app.kek.refresh_key(), presented);
            app.events.append(event()).await?;
        }
    } else {
        app.events.append(event()).await?;
    }
    app.metrics
        .token_issued(IssuedBy::RefreshToken, &agent.client_id);
    Ok(issuance::token_response(
        &minted,
        agent.access_token_ttl,
        Some(successor),
    ))
}

fn invalid(why: &'static str) -> ServerError {
    OAuthError::InvalidGrant(why.into()).into()
}

/// Classifies a presentation, answering reuse by revoking the family and its grant.
/// Returns only `Rotate` or `ReturnSuccessor`; everything else is an error.
async fn classify(
    app: &AppState,
    agent: &Agent,
    lookup: &PresentedRefresh,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<Presentation, ServerError> {
    let family = &lookup.found.family;
    if family.client_id != agent.client_id {
        return Err(invalid("the refresh token was issued to another client"));
    }
    // Revoked on its own or with its grant: either way not a reuse to answer with an incident.
    if lookup.found.revoked_at().is_some() {
        return Err(invalid("the refresh token has been revoked"));
    }
    match refresh::classify(lookup.standing, now, app.settings.refresh_grace_seconds) {
        Presentation::Expired => Err(invalid("the refresh token has expired")),
        Presentation::Reuse => {
            // Revoking the grant revokes this family (and any other) in the same transaction.
            revoke_for_incident(
                app,
                &family.grant_id,
                Action::RefreshReuseDetected,
                "refresh token reuse detected",
                meta,
                now,
            )
            .await?;
            Err(invalid("the refresh token has already been used"))
        }
        ok => Ok(ok),
    }
}

async fn load(app: &AppState, presented: &str) -> Result<PresentedRefresh, ServerError> {
    refresh_state::find(app, presented)
        .await?
        .ok_or_else(|| invalid("unknown refresh token"))
}
