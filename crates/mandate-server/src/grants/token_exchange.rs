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

use crate::errors::ServerError;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use crate::token_state;
use mandate_core::OAuthError;
use mandate_core::client::Agent;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::exchange::{
    self, ActorToken, ExchangeInput, ExchangeRequest, ExchangeResponse, Exchanged,
    PresentedSubject, Subject,
};
use mandate_core::params::Params;
use mandate_core::random;
use mandate_core::resource;
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
            return Err(OAuthError::invalid_request(
                "API keys cannot be exchanged on this server yet",
            )
            .into());
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
        let active = app
            .store
            .grant(gid)
            .await?
            .is_some_and(|g| g.is_active(now));
        if !active {
            return Err(OAuthError::InvalidGrant(
                "a grant in the delegation chain is no longer active".into(),
            )
            .into());
        }
    }
    let claims = exchanged.claims(
        &app.settings.issuer,
        random::identifier(app.entropy.as_ref(), "at_"),
        now,
    );
    let token = app
        .keys
        .signer()
        .sign(&claims)
        .map_err(|e| anyhow::anyhow!("signing an exchanged token: {e}"))?;
    let event = exchange_event(&subject, &exchanged, &claims.jti, now);
    app.events.append(meta.stamp(event)).await?;
    Ok(ExchangeResponse::new(token, &exchanged, now))
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
