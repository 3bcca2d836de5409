//! `POST /token`: authenticate the client, parse the grant, dispatch.

use crate::client_auth;
use crate::errors::{ServerError, no_store};
use crate::form::OAuthForm;
use crate::grants::{authorization_code, client_credentials, refresh_token, token_exchange};
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use mandate_core::OAuthError;
use mandate_core::anomaly::Per;
use mandate_core::client_metadata_document::ClientIdUrl;
use mandate_core::exchange;
use mandate_core::registration;
use mandate_core::token_request::TokenRequest;

pub async fn token_post(
    State(app): State<AppState>,
    meta: RequestMeta,
    form: OAuthForm,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    throttled(&app, &meta, &form, now)?;
    // An API key is its own credential: its exchange needs no client authentication. A
    // request that does present client credentials is authenticated as usual first.
    if token_exchange::is_api_key_exchange(&form.params) && !presents_client_credentials(&form) {
        let response =
            token_exchange::exchange_api_key(&app, None, &form.params, &meta, now).await?;
        let mut http = Json(response).into_response();
        no_store(&mut http);
        return Ok(http);
    }
    let agent = client_auth::authenticate(
        &app,
        form.authorization.as_deref(),
        &form.params,
        &meta,
        now,
    )
    .await?;
    // Token exchange is governed by the exchange policy rather than the agent's grant types.
    if form.params.get("grant_type") == Some(exchange::GRANT_TYPE) {
        let response = token_exchange::exchange(&app, &agent, &form.params, &meta, now).await?;
        let mut http = Json(response).into_response();
        no_store(&mut http);
        return Ok(http);
    }
    let request = TokenRequest::parse(&form.params)?;
    if !agent.allows(request.grant_type()) {
        return Err(OAuthError::UnauthorizedClient(
            format!("this client may not use the {} grant", request.grant_type()).into(),
        )
        .into());
    }
    let response = match &request {
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
            resource,
        } => {
            let redemption = authorization_code::CodeRedemption {
                code,
                redirect_uri: redirect_uri.as_deref(),
                code_verifier,
                resource: resource.as_deref(),
            };
            authorization_code::exchange(&app, &agent, redemption, &meta, now).await?
        }
        TokenRequest::RefreshToken {
            refresh_token,
            scope,
            resource,
        } => {
            refresh_token::exchange(
                &app,
                &agent,
                refresh_token,
                scope.clone(),
                resource.as_deref(),
                &meta,
                now,
            )
            .await?
        }
        TokenRequest::ClientCredentials { scope, resource } => {
            client_credentials::exchange(
                &app,
                &agent,
                scope.clone(),
                resource.as_deref(),
                &meta,
                now,
            )
            .await?
        }
    };
    // A registered (or metadata document) client that completes a flow is no longer abandoned
    // (a no-op write after the first time; agents from configuration are never registered
    // ones).
    if agent.client_id.starts_with(registration::CLIENT_ID_PREFIX)
        || ClientIdUrl::is_candidate(&agent.client_id)
    {
        app.store
            .mark_client_first_use(&agent.client_id, now)
            .await?;
    }
    let mut http = Json(response).into_response();
    no_store(&mut http);
    Ok(http)
}

/// Refuses a request from an address or client ID an anomaly rule throttled.
fn throttled(
    app: &AppState,
    meta: &RequestMeta,
    form: &OAuthForm,
    now: mandate_core::time::Timestamp,
) -> Result<(), ServerError> {
    if app.throttles.is_empty() {
        return Ok(());
    }
    if let Some(ip) = &meta.ip {
        app.throttles.check(Per::Address, ip, now)?;
    }
    if let Some(id) = client_auth::presented_client_id(form.authorization.as_deref(), &form.params)
    {
        app.throttles.check(Per::Client, &id, now)?;
    }
    Ok(())
}

/// Whether the request carries a client credential (a `client_id` alone is none).
fn presents_client_credentials(form: &OAuthForm) -> bool {
    form.authorization.is_some()
        || form.params.get("client_secret").is_some()
        || form.params.get("client_assertion").is_some()
        || form.params.get("client_assertion_type").is_some()
}
