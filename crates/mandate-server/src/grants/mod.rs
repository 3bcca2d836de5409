//! The token endpoint's grant types, one module each.
//!
//! Each takes the authenticated agent and its parsed request, loads the facts it needs, applies
//! the core's rules, persists the outcome, records the event, and returns the token response.
//! Security state changes (a replayed code, a reused refresh token) are committed before the
//! error is returned, so a rejected request still contains the damage.

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;
pub mod token_exchange;

use crate::errors::ServerError;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::grant::Grant;
use mandate_core::time::Timestamp;

/// Revokes a grant (and its refresh families) as a security response, recording why.
pub(crate) async fn revoke_for_incident(
    app: &AppState,
    grant: &str,
    action: Action,
    reason: &'static str,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<(), ServerError> {
    app.store.revoke_grant(grant, now, reason).await?;
    let loaded: Option<Grant> = app.store.grant(grant).await?;
    let mut event = NewEvent::new(now, action, ActorKind::System);
    event.grant_id = Some(grant.to_owned());
    if let Some(g) = loaded {
        event.tenant_id = Some(g.tenant_id);
        event.user_id = g.user_id;
        event.client_id = Some(g.client_id);
    }
    event.reason = Some(reason.to_owned());
    app.events.append(meta.stamp(event)).await?;
    app.metrics.revoked(action);
    Ok(())
}

/// The `token.issued` / `token.refreshed` event for a minted token; `purpose` is the grant's.
pub(crate) fn issuance_event(
    action: Action,
    grant_type: &str,
    claims: &mandate_core::jwt::AccessTokenClaims,
    user_id: Option<&str>,
    purpose: Option<&str>,
    now: Timestamp,
) -> NewEvent {
    let mut event = NewEvent::new(now, action, ActorKind::Agent);
    event.actor_id = Some(claims.client_id.clone());
    event.tenant_id = Some(claims.tenant.clone());
    event.user_id = user_id.map(str::to_owned);
    event.client_id = Some(claims.client_id.clone());
    event.grant_id = Some(claims.gid.clone());
    event.scopes = Some(claims.scope.to_string());
    event.detail = serde_json::json!({
        "grant_type": grant_type,
        "aud": claims.aud,
        "jti": claims.jti,
        "exp": claims.exp,
    });
    if let (Some(purpose), Some(detail)) = (purpose, event.detail.as_object_mut()) {
        detail.insert("purpose".into(), purpose.into());
    }
    event
}
