//! `POST /introspect` (RFC 7662): is this token active, and what does it carry?
//!
//! Reflects revocation at once: a JWT whose grant, agent or user has been revoked or disabled,
//! or whose `jti` was revoked, is inactive although its signature and expiry are fine. Who may
//! see what (tenant isolation on every read): a confidential agent, tokens issued to itself or
//! within its own tenant; a resource server, tokens whose audience it is, in every tenant.
//!
//! # API keys (migration mode)
//! A resource server that still receives raw `mk_` keys from old integrations may introspect
//! them (its guard does so with `accept_api_keys`). Only a resource server's credential gets an
//! answer; an agent always gets `{"active": false}` (agents exchange keys at the token
//! endpoint). The key's checksum is checked before any lookup; the key must be usable by the
//! same rule as the key-to-token exchange ([`token_state::api_key_usable`]: not revoked, not
//! expired, rotation overlap respected, its user enabled), and its scopes that the calling
//! resource accepts must not be empty. The answer looks like the claims of a token obtained
//! by exchanging the key for this resource (`sub`, `client_id`, `tenant`, `scope`, and `gid`
//! = the key id, the handle the revocation feed names when the key is revoked), with
//! `aud` = the caller, `iat` = the key's creation, `exp` = its expiry, and `token_type` =
//! [`API_KEY_TOKEN_TYPE`] (also accepted, never required, as `token_type_hint`). Every active
//! answer records the key's last use and an `api_key.used` event naming the key id, the
//! resource and the tenant; the key itself is never logged or recorded.

use crate::client_auth::{self, Caller};
use crate::errors::{ServerError, no_store};
use crate::form::OAuthForm;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use crate::token_state;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use mandate_core::OAuthError;
use mandate_core::api_key::{ApiKey, ApiKeyRecord};
use mandate_core::client::ClientKind;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::exchange::{self, Exchanged};
use mandate_core::introspection::IntrospectionResponse;
use mandate_core::refresh;
use mandate_core::refresh::Standing;
use mandate_core::resource::ResourceServer;
use mandate_core::time::Timestamp;

/// `token_type` of an API key's introspection answer; also the `token_type_hint` a caller may
/// send for one (optional: the token's shape decides).
pub const API_KEY_TOKEN_TYPE: &str = "mandate_api_key";

pub async fn introspect_post(
    State(app): State<AppState>,
    meta: RequestMeta,
    form: OAuthForm,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    let caller = client_auth::authenticate_caller(
        &app,
        form.authorization.as_deref(),
        &form.params,
        &meta,
        now,
    )
    .await?;
    if matches!(&caller, Caller::Agent(a) if a.kind != ClientKind::Confidential) {
        return Err(ServerError::ClientAuth {
            error: OAuthError::InvalidClient("introspection requires a confidential client".into()),
            basic: form.authorization.is_some(),
        });
    }
    let token = form.params.require("token")?;
    // A refresh token that names its family also has two dots; a JWT's parts never parse as
    // one (its header is base64url of `{"`, not a lowercase id).
    let mut answer = if refresh::name(token).is_some() {
        introspect_refresh(&app, token, now).await?
    } else if token.matches('.').count() == 2 {
        introspect_jwt(&app, token, now).await?
    } else if ApiKey::looks_like(token) {
        introspect_api_key(&app, &caller, token, &meta, now).await?
    } else {
        introspect_refresh(&app, token, now).await?
    };
    if answer.active && !may_see(&caller, &answer) {
        answer = IntrospectionResponse::inactive();
    }
    let mut http = Json(answer).into_response();
    no_store(&mut http);
    Ok(http)
}

fn may_see(caller: &Caller, answer: &IntrospectionResponse) -> bool {
    match caller {
        Caller::Agent(agent) => {
            answer.client_id.as_deref() == Some(agent.client_id.as_str())
                || (agent.tenant_id.is_some() && agent.tenant_id == answer.tenant)
        }
        Caller::Resource(resource) => answer.aud.as_deref() == Some(resource.identifier.as_str()),
    }
}

async fn introspect_jwt(
    app: &AppState,
    token: &str,
    now: Timestamp,
) -> Result<IntrospectionResponse, ServerError> {
    let Some(claims) = token_state::active_access_token(app, token, now).await? else {
        return Ok(IntrospectionResponse::inactive());
    };
    Ok(IntrospectionResponse {
        active: true,
        scope: Some(claims.scope.to_string()),
        client_id: Some(claims.client_id),
        token_type: Some("Bearer".into()),
        exp: Some(claims.exp),
        iat: Some(claims.iat),
        sub: Some(claims.sub),
        aud: Some(claims.aud),
        iss: Some(claims.iss),
        jti: Some(claims.jti),
        tenant: Some(claims.tenant),
        gid: Some(claims.gid),
        act: claims.act,
    })
}

async fn introspect_refresh(
    app: &AppState,
    token: &str,
    now: Timestamp,
) -> Result<IntrospectionResponse, ServerError> {
    let Some(presented) = crate::refresh_state::find(app, token).await? else {
        return Ok(IntrospectionResponse::inactive());
    };
    let found = &presented.found;
    let f = &found.family;
    let Standing::Live {
        issued_at,
        expires_at,
    } = presented.standing
    else {
        return Ok(IntrospectionResponse::inactive());
    };
    // The grant, the user's and the agent's standing came with the family, in the same
    // statement: nothing else is read.
    let live = found.revoked_at().is_none() && now < expires_at;
    let parties = found.grant.as_ref().is_some_and(|g| g.is_active(now))
        && found.user_active
        && found.agent_active;
    if !(live && parties) {
        return Ok(IntrospectionResponse::inactive());
    }
    Ok(IntrospectionResponse {
        active: true,
        scope: Some(f.scopes.to_string()),
        client_id: Some(f.client_id.clone()),
        token_type: Some("refresh_token".into()),
        exp: Some(expires_at.unix()),
        iat: Some(issued_at.unix()),
        sub: Some(f.user_id.clone().unwrap_or_else(|| f.client_id.clone())),
        aud: Some(f.resource.clone()),
        iss: Some(app.settings.issuer.clone()),
        jti: None,
        tenant: Some(f.tenant_id.clone()),
        gid: Some(f.grant_id.clone()),
        act: None,
    })
}

/// A raw API key presented to a resource server (see the module documentation).
async fn introspect_api_key(
    app: &AppState,
    caller: &Caller,
    token: &str,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<IntrospectionResponse, ServerError> {
    // Only resource servers: an agent exchanges a key at the token endpoint instead.
    let Caller::Resource(resource) = caller else {
        return Ok(IntrospectionResponse::inactive());
    };
    // Shape and checksum first: garbage and typos never reach the database.
    let Ok(key) = ApiKey::parse(token) else {
        return Ok(IntrospectionResponse::inactive());
    };
    let Some(stored) = app
        .store
        .api_key_by_hash(&key.hash())
        .await?
        .filter(|s| key.matches_hash(&s.record.hash))
    else {
        return Ok(IntrospectionResponse::inactive());
    };
    let replaced_by = stored.replaced_by;
    let record = stored.record;
    if !token_state::api_key_usable(app, &record, now).await? {
        return Ok(IntrospectionResponse::inactive());
    }
    // What a token for this resource obtained by exchanging the key would carry; no scope
    // the resource accepts means nothing to use here.
    let Ok(usable) = exchange::decide_api_key(
        &record,
        None,
        resource,
        now,
        now.seconds_until(record.expires_at),
    ) else {
        return Ok(IntrospectionResponse::inactive());
    };
    app.store.record_api_key_use(&record.id, now).await?;
    let mut event = api_key_used_event(&record, resource, &usable, now);
    crate::grants::token_exchange::mark_rotated(&mut event, replaced_by.as_ref());
    app.events.append(meta.stamp(event)).await?;
    Ok(IntrospectionResponse {
        active: true,
        scope: Some(usable.scope.to_string()),
        client_id: Some(usable.client_id),
        token_type: Some(API_KEY_TOKEN_TYPE.into()),
        exp: Some(record.expires_at.unix()),
        iat: Some(record.created_at.unix()),
        sub: Some(usable.sub),
        aud: Some(resource.identifier.clone()),
        iss: Some(app.settings.issuer.clone()),
        jti: None,
        tenant: Some(usable.tenant),
        gid: Some(usable.gid),
        act: None,
    })
}

/// `api_key.used`: the key (by id), the resource it was presented to, its tenant and the
/// scopes usable there. Never the key.
fn api_key_used_event(
    key: &ApiKeyRecord,
    resource: &ResourceServer,
    usable: &Exchanged,
    now: Timestamp,
) -> NewEvent {
    let mut event = NewEvent::new(now, Action::ApiKeyUsed, ActorKind::Agent);
    event.actor_id = Some(key.id.as_str().to_owned());
    event.tenant_id = Some(key.tenant_id.clone());
    event.user_id = key.user_id.clone();
    event.client_id = Some(usable.client_id.clone());
    event.grant_id = Some(key.id.as_str().to_owned());
    event.scopes = Some(usable.scope.to_string());
    event.detail = serde_json::json!({
        "api_key_id": key.id.as_str(),
        "aud": resource.identifier,
        "resource_client_id": resource.client_id,
        "via": "introspection",
    });
    event
}
