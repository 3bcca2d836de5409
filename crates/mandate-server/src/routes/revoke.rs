//! `POST /revoke` (RFC 7009).
//!
//! Revoking a refresh token revokes its family and its grant, so every access token of that
//! grant stops working too. Revoking an access token revokes just that token (its `jti`) until
//! it expires. A token that is unknown, invalid, or issued to another client is answered with
//! 200 and changes nothing (RFC 7009 §2.2), so the endpoint cannot be used to probe tokens.

use crate::client_auth;
use crate::errors::ServerError;
use crate::form::OAuthForm;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::refresh;
use mandate_core::time::Timestamp;

pub async fn revoke_post(
    State(app): State<AppState>,
    meta: RequestMeta,
    form: OAuthForm,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    let agent = client_auth::authenticate(
        &app,
        form.authorization.as_deref(),
        &form.params,
        &meta,
        now,
    )
    .await?;
    let token = form.params.require("token")?;
    // `token_type_hint` is only a hint (RFC 7009 §2.1): the token's shape decides.
    // A refresh token that names its family has two dots too (see introspection).
    let event = if token.matches('.').count() == 2 && refresh::name(token).is_none() {
        revoke_access_token(&app, &agent.client_id, token, now).await?
    } else {
        revoke_refresh_token(&app, &agent.client_id, token, now).await?
    };
    if let Some(event) = event {
        let action = event.action;
        app.events.append(meta.stamp(event)).await?;
        app.metrics.revoked(action);
    }
    Ok((StatusCode::OK, [("cache-control", "no-store")]).into_response())
}

async fn revoke_access_token(
    app: &AppState,
    client_id: &str,
    token: &str,
    now: Timestamp,
) -> Result<Option<NewEvent>, ServerError> {
    let Ok(claims) = app.keys.verify(token, now).await else {
        return Ok(None);
    };
    if claims.client_id != client_id
        || claims.iss != app.settings.issuer
        || claims.exp <= now.unix()
    {
        return Ok(None);
    }
    app.store
        .revoke_jti(&claims.jti, Timestamp::from_unix(claims.exp))
        .await?;
    let mut event = NewEvent::new(now, Action::TokenRevoked, ActorKind::Agent);
    event.actor_id = Some(client_id.to_owned());
    event.client_id = Some(client_id.to_owned());
    event.tenant_id = Some(claims.tenant);
    event.grant_id = Some(claims.gid);
    event.reason = Some("revoked by client".into());
    event.detail =
        serde_json::json!({ "token_type": "access_token", "jti": claims.jti, "exp": claims.exp });
    Ok(Some(event))
}

async fn revoke_refresh_token(
    app: &AppState,
    client_id: &str,
    token: &str,
    now: Timestamp,
) -> Result<Option<NewEvent>, ServerError> {
    let Some(presented) = crate::refresh_state::find(app, token).await? else {
        return Ok(None);
    };
    let family = presented.found.family;
    if family.client_id != client_id {
        return Ok(None);
    }
    // Revoking the grant revokes its families too, in one transaction.
    let was_active = app
        .store
        .revoke_grant(&family.grant_id, now, "refresh token revoked by client")
        .await?;
    let mut event = NewEvent::new(now, Action::GrantRevoked, ActorKind::Agent);
    event.actor_id = Some(client_id.to_owned());
    event.client_id = Some(client_id.to_owned());
    event.tenant_id = Some(family.tenant_id);
    event.user_id = family.user_id;
    event.grant_id = Some(family.grant_id);
    event.reason = Some("refresh token revoked by client".into());
    event.detail = serde_json::json!({ "token_type": "refresh_token", "family": family.id, "was_active": was_active });
    Ok(Some(event))
}
