//! Token exchange (RFC 8693), on behalf of a user: an agent that received a user's token
//! trades it for a new, narrower token for another audience, with the delegation recorded in
//! the `act` claim.
//!
//! The rules (who may exchange for which audience, narrowing only, same subject and tenant,
//! chain depth) are `mandate_core::exchange::decide`; this module loads the facts, checks that
//! the tokens presented are still active here, and that every grant the result depends on is
//! active at the moment of issue, then signs and records the exchange with its whole chain.
//! Revoking any of those grants later ends the exchanged token too (introspection and the guard
//! check the chain).
//!
//! # API keys
//! A Mandate API key (`subject_token_type` = `urn:mandate:params:oauth:token-type:api_key`) is
//! exchanged by whoever holds it: the key itself is the credential, so no client
//! authentication is required (the token endpoint dispatches such a request here before
//! authenticating; a `client_id` sent without credentials is ignored). A client that does
//! authenticate may present a key too; it gets the same token, and the event names it. The
//! result ([`exchange_api_key`]) is a short-lived token for the key's user (or the key itself,
//! for a tenant key) whose `client_id` and `gid` are the key id, with no `act`; its scope lies
//! within the key's and the audience's, and the audience (`resource` or `audience`) is
//! required. A malformed key or a bad checksum is refused before any lookup; an unknown,
//! revoked or expired (also: rotated out) key is `invalid_grant`.

use crate::errors::ServerError;
use crate::metrics::IssuedBy;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use crate::token_state;
use mandate_core::OAuthError;
use mandate_core::api_key::{ApiKey, ApiKeyRecord};
use mandate_core::client::{Agent, DEFAULT_ACCESS_TOKEN_TTL};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::exchange::{
    self, ActorToken, ExchangeInput, ExchangeRequest, ExchangeResponse, Exchanged,
    PresentedSubject, Subject,
};
use mandate_core::params::Params;
use mandate_core::random;
use mandate_core::resource::{self, ResourceServer};
use mandate_core::time::Timestamp;

pub async fn exchange(
    app: &AppState,
    agent: &Agent,
    params: &Params,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<ExchangeResponse, ServerError> {
    let request = ExchangeRequest::parse(params)?;
    let subject = match &request.subject {
        PresentedSubject::AccessToken(token) => {
            let claims = token_state::active_access_token(app, token, now)
                .await?
                .ok_or_else(|| OAuthError::InvalidGrant("subject_token is not active".into()))?;
            Subject::from_access_token(&claims)?
        }
        PresentedSubject::ApiKey(_) => {
            return exchange_api_key(app, Some(agent), params, meta, now).await;
        }
    };
    let actor = match &request.actor_token {
        None => None,
        Some(token) => {
            let claims = token_state::active_access_token(app, token, now)
                .await?
                .ok_or_else(|| OAuthError::InvalidGrant("actor_token is not active".into()))?;
            Some(ActorToken::from_access_token(&claims))
        }
    };
    let resources = app.cache.resources(app.store.as_ref()).await?;
    let target = resource::select(request.audience.as_deref(), agent, &resources)?;
    let exchanged = exchange::decide(&ExchangeInput {
        subject: &subject,
        agent,
        actor_token: actor.as_ref(),
        requested_scope: request.scope.as_ref(),
        resource: target,
        policy: &app.settings.exchange,
        now,
        ttl_seconds: agent.access_token_ttl,
    })?;
    for gid in &exchanged.lineage {
        if !token_state::grant_active(app, gid, now).await? {
            return Err(OAuthError::InvalidGrant(
                "a grant in the delegation chain is no longer active".into(),
            )
            .into());
        }
    }
    let claims = exchanged.claims(
        &app.settings.issuer,
        random::identifier(app.entropy.as_ref(), now, "at_"),
        now,
    );
    let token = app
        .keys
        .sign(&claims, now)
        .map_err(|e| anyhow::anyhow!("signing an exchanged token: {e}"))?;
    let event = exchange_event(&subject, &exchanged, &claims.jti, now);
    app.events.append(meta.stamp(event)).await?;
    app.metrics
        .token_issued(IssuedBy::TokenExchange, &claims.client_id);
    Ok(ExchangeResponse::new(token, &exchanged, now))
}

/// Whether a token request is the exchange of an API key: such a request needs no client
/// authentication (see the module documentation).
pub fn is_api_key_exchange(params: &Params) -> bool {
    params.get("grant_type") == Some(exchange::GRANT_TYPE)
        && params.get("subject_token_type") == Some(exchange::API_KEY_TOKEN_TYPE)
}

/// Exchanges an API key for a short-lived access token, by its holder. `presented_by` is the
/// client that authenticated, if any (recorded, not required).
pub async fn exchange_api_key(
    app: &AppState,
    presented_by: Option<&Agent>,
    params: &Params,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<ExchangeResponse, ServerError> {
    // Shape and checksum first: garbage and typos never reach the database.
    if let Some(presented) = params.get("subject_token")
        && let Err(e) = ApiKey::parse(presented)
    {
        return Err(OAuthError::InvalidGrant(format!("subject_token: {e}").into()).into());
    }
    let request = ExchangeRequest::parse(params)?;
    let PresentedSubject::ApiKey(key) = &request.subject else {
        return Err(OAuthError::invalid_request("subject_token is not an API key").into());
    };
    let unusable = || OAuthError::InvalidGrant("subject_token is not an active API key".into());
    let stored = app
        .store
        .api_key_by_hash(&key.hash())
        .await?
        .filter(|s| key.matches_hash(&s.record.hash))
        .ok_or_else(unusable)?;
    let replaced_by = stored.replaced_by;
    let record = stored.record;
    // The same rule as for the key's tokens and for a key presented to a resource server.
    if !token_state::api_key_usable(app, &record, now).await? {
        return Err(unusable().into());
    }
    app.throttles
        .check(mandate_core::anomaly::Per::ApiKey, record.id.as_str(), now)?;
    let resources = app.cache.resources(app.store.as_ref()).await?;
    let target = key_audience(request.audience.as_deref(), &resources)?;
    let exchanged = exchange::decide_api_key(
        &record,
        request.scope.as_ref(),
        target,
        now,
        DEFAULT_ACCESS_TOKEN_TTL,
    )?;
    let claims = exchanged.claims(
        &app.settings.issuer,
        random::identifier(app.entropy.as_ref(), now, "at_"),
        now,
    );
    let token = app
        .keys
        .sign(&claims, now)
        .map_err(|e| anyhow::anyhow!("signing a token for an API key: {e}"))?;
    app.store.record_api_key_use(&record.id, now).await?;
    let mut event = api_key_event(&record, presented_by, &exchanged, &claims.jti, now);
    mark_rotated(&mut event, replaced_by.as_ref());
    app.events.append(meta.stamp(event)).await?;
    app.metrics
        .token_issued(IssuedBy::TokenExchange, &claims.client_id);
    Ok(ExchangeResponse::new(token, &exchanged, now))
}

/// Notes in a key use's event that the key was rotated (`detail.replaced_by`: its successor),
/// which the `rotated_api_key_use` anomaly rule looks for.
pub fn mark_rotated(event: &mut NewEvent, replaced_by: Option<&mandate_core::api_key::KeyId>) {
    if let (Some(successor), serde_json::Value::Object(detail)) = (replaced_by, &mut event.detail) {
        detail.insert("replaced_by".into(), successor.as_str().into());
    }
}

/// The audience of a key's token: required (a key has no agent with a default), registered.
fn key_audience<'a>(
    requested: Option<&str>,
    registry: &'a [ResourceServer],
) -> Result<&'a ResourceServer, OAuthError> {
    let wanted = requested.ok_or_else(|| {
        OAuthError::InvalidTarget("resource (or audience) is required with an API key".into())
    })?;
    if !resource::is_valid_identifier(wanted) {
        return Err(OAuthError::InvalidTarget(
            "resource must be an absolute URI without a fragment".into(),
        ));
    }
    registry
        .iter()
        .find(|r| r.identifier == wanted)
        .ok_or_else(|| OAuthError::InvalidTarget("unknown resource".into()))
}

/// `token.exchanged` for an API key: the key id names the credential; the key never appears.
fn api_key_event(
    key: &ApiKeyRecord,
    presented_by: Option<&Agent>,
    exchanged: &Exchanged,
    jti: &str,
    now: Timestamp,
) -> NewEvent {
    let mut event = NewEvent::new(now, Action::TokenExchanged, ActorKind::Agent);
    event.actor_id =
        Some(presented_by.map_or_else(|| key.id.as_str().to_owned(), |a| a.client_id.clone()));
    event.tenant_id = Some(exchanged.tenant.clone());
    event.user_id = key.user_id.clone();
    event.client_id = Some(exchanged.client_id.clone());
    event.grant_id = Some(exchanged.gid.clone());
    event.scopes = Some(exchanged.scope.to_string());
    event.detail = serde_json::json!({
        "grant_type": exchange::GRANT_TYPE,
        "subject_token_type": exchange::API_KEY_TOKEN_TYPE,
        "api_key_id": key.id.as_str(),
        "aud": exchanged.audience,
        "jti": jti,
        "exp": exchanged.expires_at.unix(),
        "presented_by": presented_by.map(|a| a.client_id.as_str()),
    });
    event
}

/// `token.exchanged`: who acted for whom, the whole chain, and every grant it rests on.
fn exchange_event(subject: &Subject, exchanged: &Exchanged, jti: &str, now: Timestamp) -> NewEvent {
    let mut event = NewEvent::new(now, Action::TokenExchanged, ActorKind::Agent);
    event.actor_id = Some(exchanged.client_id.clone());
    event.tenant_id = Some(exchanged.tenant.clone());
    event.user_id = (!subject.service).then(|| subject.sub.clone());
    event.client_id = Some(exchanged.client_id.clone());
    event.grant_id = Some(exchanged.gid.clone());
    event.scopes = Some(exchanged.scope.to_string());
    event.detail = serde_json::json!({
        "grant_type": exchange::GRANT_TYPE,
        "aud": exchanged.audience,
        "jti": jti,
        "exp": exchanged.expires_at.unix(),
        "subject_client_id": subject.client_id,
        "subject_aud": subject.aud,
        "act": exchanged.act.as_ref().map(exchange::Actor::to_claim),
        "depth": exchanged.depth(),
        "lineage": exchanged.lineage,
    });
    event
}
