//! `client_credentials` (RFC 6749 §4.4): a confidential agent acting as itself.
//!
//! The agent acts within its owner tenant under its own service grant, which gives its tokens a
//! `gid` like every other token, so revoking that grant (or the agent) stops them at once.
//! Asking for more than the agent's maximum is `invalid_scope`, never a silent narrowing.
//!
//! The service grant comes from the hot-path cache ([`crate::cache`]); the event writer checks
//! it is still in force when it writes the token's event, and if it was revoked since, the
//! token is not returned: the grant is read again (a new one is created if none is live) and
//! the token issued under that.

use super::issuance_event;
use crate::errors::ServerError;
use crate::issuance::{self, TokenSubject};
use crate::metrics::IssuedBy;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use mandate_core::OAuthError;
use mandate_core::client::{Agent, ClientKind};
use mandate_core::event::Action;
use mandate_core::grant::Grant;
use mandate_core::random;
use mandate_core::resource;
use mandate_core::scope::ScopeSet;
use mandate_core::time::Timestamp;
use mandate_core::token_response::TokenResponse;
use mandate_store::StoreError;
use mandate_store::batch::Written;
use std::sync::Arc;

pub async fn exchange(
    app: &AppState,
    agent: &Agent,
    scope: Option<ScopeSet>,
    resource_param: Option<&str>,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<TokenResponse, ServerError> {
    if agent.kind != ClientKind::Confidential {
        return Err(OAuthError::UnauthorizedClient(
            "client credentials require a confidential client".into(),
        )
        .into());
    }
    let tenant_id = agent.tenant_id.as_deref().ok_or_else(|| {
        OAuthError::UnauthorizedClient("a service identity must belong to a tenant".into())
    })?;
    let resources = app.cache.resources(app.store.as_ref()).await?;
    let target = resource::select(resource_param, agent, &resources)?;
    let scopes = match scope {
        Some(requested) => {
            let beyond = requested.difference(&agent.max_scopes);
            if !beyond.is_empty() {
                return Err(OAuthError::InvalidScope(
                    format!("this client may not request `{beyond}`").into(),
                )
                .into());
            }
            resource::check_scopes(target, &requested)?;
            requested
        }
        None => agent.max_scopes.intersection(&target.scopes),
    };
    if scopes.is_empty() {
        return Err(OAuthError::InvalidScope("no scope to grant at this resource".into()).into());
    }

    let request = Request {
        agent,
        tenant_id,
        audience: &target.identifier,
        scopes: &scopes,
        meta,
        now,
    };
    let cached = app
        .cache
        .service_grant(&agent.client_id)
        .filter(|g| g.tenant_id == tenant_id);
    let grant = match cached {
        Some(grant) => grant,
        None => service_grant(app, agent, tenant_id, now).await?,
    };
    if let Some(response) = issue(app, &request, &grant).await? {
        return Ok(response);
    }
    // The grant was revoked since it was read: read it again, and issue under what is live.
    app.cache.forget_service_grant(&agent.client_id);
    let grant = service_grant(app, agent, tenant_id, now).await?;
    issue(app, &request, &grant).await?.ok_or_else(|| {
        OAuthError::InvalidGrant(
            "the agent's service grant was revoked while the token was issued".into(),
        )
        .into()
    })
}

/// What a token is asked for, checked.
struct Request<'a> {
    agent: &'a Agent,
    tenant_id: &'a str,
    audience: &'a str,
    scopes: &'a ScopeSet,
    meta: &'a RequestMeta,
    now: Timestamp,
}

/// Issues the token under `grant`; `None` if the grant was no longer in force when the
/// token's event was to be written (nothing was written, nothing is returned).
async fn issue(
    app: &AppState,
    request: &Request<'_>,
    grant: &Grant,
) -> Result<Option<TokenResponse>, ServerError> {
    let (agent, now) = (request.agent, request.now);
    app.throttles
        .check(mandate_core::anomaly::Per::Grant, &grant.id, now)?;
    let subject = TokenSubject {
        agent,
        tenant_id: request.tenant_id,
        user_id: None,
        grant_id: &grant.id,
        audience: request.audience,
        scopes: request.scopes,
    };
    let minted = issuance::access_token(app, &subject, now)?;
    let event = issuance_event(
        Action::TokenIssued,
        "client_credentials",
        &minted.claims,
        None,
        grant.purpose.as_deref(),
        now,
    );
    let written = app
        .events
        .append_under_grant(&grant.id, now, request.meta.stamp(event))
        .await?;
    if written == Written::Declined {
        return Ok(None);
    }
    app.metrics
        .token_issued(IssuedBy::ClientCredentials, &agent.client_id);
    Ok(Some(issuance::token_response(
        &minted,
        agent.access_token_ttl,
        None,
    )))
}

/// The agent's own grant in its tenant, read from the database (and cached), or created on
/// first use. Nodes racing to create it meet the database's one-live-service-grant index: the
/// loser reads the winner's.
async fn service_grant(
    app: &AppState,
    agent: &Agent,
    tenant_id: &str,
    now: Timestamp,
) -> Result<Arc<Grant>, ServerError> {
    let grant = live_or_new_service_grant(app, agent, tenant_id, now).await?;
    let grant = Arc::new(grant);
    app.cache.remember_service_grant(grant.clone());
    Ok(grant)
}

async fn live_or_new_service_grant(
    app: &AppState,
    agent: &Agent,
    tenant_id: &str,
    now: Timestamp,
) -> Result<Grant, ServerError> {
    if let Some(g) = app
        .store
        .active_grant(tenant_id, None, &agent.client_id, now)
        .await?
    {
        return Ok(g);
    }
    let grant = Grant {
        id: random::identifier(app.entropy.as_ref(), now, "g_"),
        tenant_id: tenant_id.to_owned(),
        user_id: None,
        client_id: agent.client_id.clone(),
        scopes: agent.max_scopes.clone(),
        purpose: Some("service identity".into()),
        created_at: now,
        expires_at: None,
        revoked_at: None,
        revoked_reason: None,
    };
    match app.store.create_grant(&grant).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            if let Some(g) = app
                .store
                .active_grant(tenant_id, None, &agent.client_id, now)
                .await?
            {
                return Ok(g);
            }
            return Err(ServerError::Internal(anyhow::anyhow!(
                "the service grant of {} was created and revoked at once",
                agent.client_id
            )));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(grant)
}
