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
use mandate_core::exchange;
use mandate_core::token_request::TokenRequest;

pub async fn token_post(
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
    let mut http = Json(response).into_response();
    no_store(&mut http);
    Ok(http)
}
