//! `POST /introspect` (RFC 7662): is this token active, and what does it carry?
//!
//! Reflects revocation at once: a JWT whose grant, agent or user has been revoked or disabled,
//! or whose `jti` was revoked, is inactive although its signature and expiry are fine. Who may
//! see what (tenant isolation on every read): a confidential agent, tokens issued to itself or
//! within its own tenant; a resource server, tokens whose audience it is, in every tenant.

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
use mandate_core::client::ClientKind;
use mandate_core::introspection::IntrospectionResponse;
use mandate_core::secret;
use mandate_core::time::Timestamp;

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
    let mut answer = if token.matches('.').count() == 2 {
        introspect_jwt(&app, token, now).await?
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
    let Some(found) = app.store.refresh_token(&secret::hash_secret(token)).await? else {
        return Ok(IntrospectionResponse::inactive());
    };
    let (t, f) = (&found.token, &found.family);
    if t.used_at.is_some() || f.revoked_at.is_some() || now >= t.expires_at {
        return Ok(IntrospectionResponse::inactive());
    }
    if !token_state::grant_and_parties_active(app, &f.grant_id, &f.client_id, now).await? {
        return Ok(IntrospectionResponse::inactive());
    }
    Ok(IntrospectionResponse {
        active: true,
        scope: Some(f.scopes.to_string()),
        client_id: Some(f.client_id.clone()),
        token_type: Some("refresh_token".into()),
        exp: Some(t.expires_at.unix()),
        iat: Some(t.issued_at.unix()),
        sub: Some(f.user_id.clone().unwrap_or_else(|| f.client_id.clone())),
        aud: Some(f.resource.clone()),
        iss: Some(app.settings.issuer.clone()),
        jti: None,
        tenant: Some(f.tenant_id.clone()),
        gid: Some(f.grant_id.clone()),
        act: None,
    })
}
