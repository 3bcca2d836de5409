//! Dynamic client registration: `POST /register` (RFC 7591) and the client's own management
//! of its registration at `/register/{client_id}` (RFC 7592) with its registration access
//! token.
//!
//! Registration is open to strangers unless configured otherwise, so every request body goes
//! through `mandate_core::registration` (redirect URI rules, scope clamped to
//! `[registration] max_scopes`), registrations are rate-limited per client IP address, and a
//! registered client that never completes a token request is purged after
//! `abandon_after_seconds` by housekeeping. `jwks_uri` is refused for now: keys must be
//! registered inline as `jwks`.

use crate::config::RegistrationMode;
use crate::errors::{ServerError, no_store};
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::registration::{
    self, AuthMethod, ClientMetadata, IssuedCredentials, RegistrationError, RegistrationResponse,
};
use mandate_core::time::Timestamp;
use mandate_core::{random, secret};
use mandate_store::{ClientRegistration, RegisteredClient, RegistrationOrigin, StoreError};

/// `POST /register`.
pub async fn register_post(
    State(app): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ServerError> {
    let settings = &app.settings.registration;
    let now = app.clock.now();
    if settings.mode == RegistrationMode::Closed {
        return Ok(json(
            StatusCode::FORBIDDEN,
            serde_json::json!({
                "error": "access_denied",
                "error_description": "dynamic client registration is disabled on this server",
            }),
        ));
    }
    let ip = meta.ip.as_deref().unwrap_or("unknown");
    if let Err(retry_after) = app.registration_limiter.check(ip, now) {
        return Err(ServerError::Throttled {
            retry_after,
            description: "too many registrations from this address; retry later",
        });
    }
    if settings.mode == RegistrationMode::InitialAccessToken {
        let presented = bearer(&headers);
        let known = presented.is_some_and(|token| {
            settings
                .initial_access_token_hashes
                .iter()
                .any(|h| secret::verify_secret(token, h))
        });
        if !known {
            return Ok(invalid_token("a valid initial access token is required"));
        }
    }
    let metadata = match checked(registration::validate(&body, &settings.policy)) {
        Ok(m) => m,
        Err(e) => return Ok(registration_error(&e)),
    };
    let credentials = IssuedCredentials::generate(
        metadata.token_endpoint_auth_method,
        app.entropy.as_ref(),
        now,
    );
    let agent = metadata.to_agent(credentials.client_id.clone(), credentials.secret_hash());
    let record = ClientRegistration {
        client_id: credentials.client_id.clone(),
        origin: RegistrationOrigin::Dynamic,
        metadata: metadata.clone(),
        registration_token_hash: Some(credentials.registration_access_token_hash()),
        registered_at: now,
        first_used_at: None,
        expires_at: Some(now.plus_seconds(settings.abandon_after_seconds)),
    };
    let event = meta.stamp(NewEvent::new(
        now,
        Action::ClientRegistered,
        ActorKind::Agent,
    ));
    app.store.register_client(&agent, &record, event).await?;
    app.cache.forget_agent(&credentials.client_id);
    let uri = client_uri(&app, &credentials.client_id);
    let response = RegistrationResponse::new(&credentials, metadata, now, None, uri);
    let mut http = (StatusCode::CREATED, Json(response)).into_response();
    no_store(&mut http);
    Ok(http)
}

/// `GET /register/{client_id}` (RFC 7592 §2.1).
pub async fn register_get(
    State(app): State<AppState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let client = match managed_client(&app, &client_id, &headers).await? {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    let registered_at = client.registration.registered_at;
    let uses_secret = client
        .registration
        .metadata
        .token_endpoint_auth_method
        .uses_secret();
    Ok(read_response(
        &app,
        &client_id,
        client.registration.metadata,
        registered_at,
        uses_secret,
        None,
    ))
}

/// `PUT /register/{client_id}` (RFC 7592 §2.2): replaces the metadata.
pub async fn register_put(
    State(app): State<AppState>,
    Path(client_id): Path<String>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ServerError> {
    let client = match managed_client(&app, &client_id, &headers).await? {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    let settings = &app.settings.registration;
    let metadata = match checked(registration::validate_update(
        &body,
        &client_id,
        &settings.policy,
    )) {
        Ok(m) => m,
        Err(e) => return Ok(registration_error(&e)),
    };
    // A `client_secret` in the body must be the current one; the client never picks it.
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(&body)
        && let Some(presented) = m.get("client_secret")
    {
        let matches = match (presented.as_str(), client.agent.secret_hash.as_deref()) {
            (Some(p), Some(stored)) => secret::verify_secret(p, stored),
            _ => false,
        };
        if !matches {
            return Ok(registration_error(
                &RegistrationError::InvalidClientMetadata(
                    "client_secret does not match the issued secret".into(),
                ),
            ));
        }
    }
    let (secret_hash, new_secret) = if metadata.token_endpoint_auth_method.uses_secret() {
        match client.agent.secret_hash.clone() {
            Some(hash) => (Some(hash), None),
            None => {
                let fresh = random::opaque_secret(app.entropy.as_ref());
                (Some(secret::hash_secret(&fresh)), Some(fresh))
            }
        }
    } else {
        (None, None)
    };
    let agent = metadata.to_agent(client_id.clone(), secret_hash);
    let now = app.clock.now();
    let event = meta.stamp(NewEvent::new(now, Action::ClientUpdated, ActorKind::Agent));
    match app
        .store
        .update_registration(&agent, &metadata, event)
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound(_)) => return Ok(invalid_token("unknown registration")),
        Err(e) => return Err(e.into()),
    }
    app.cache.forget_agent(&client_id);
    let uses_secret = metadata.token_endpoint_auth_method.uses_secret();
    Ok(read_response(
        &app,
        &client_id,
        metadata,
        client.registration.registered_at,
        uses_secret,
        new_secret,
    ))
}

/// `DELETE /register/{client_id}` (RFC 7592 §2.3): the client and all its grants go.
pub async fn register_delete(
    State(app): State<AppState>,
    Path(client_id): Path<String>,
    meta: RequestMeta,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    if let Err(r) = managed_client(&app, &client_id, &headers).await? {
        return Ok(r);
    }
    let now = app.clock.now();
    let event = meta.stamp(NewEvent::new(now, Action::ClientDeleted, ActorKind::Agent));
    let deleted = app
        .store
        .delete_registration(&client_id, "registration deleted by the client", event)
        .await?;
    app.cache.forget_agent(&client_id);
    if !deleted {
        return Ok(invalid_token("unknown registration"));
    }
    app.metrics.revoked(Action::ClientDeleted);
    let mut r = StatusCode::NO_CONTENT.into_response();
    no_store(&mut r);
    Ok(r)
}

/// The dynamically registered client this request's registration access token manages, or
/// the 401 to answer. The token is looked up by hash; it must belong to the client in the
/// path.
async fn managed_client(
    app: &AppState,
    client_id: &str,
    headers: &HeaderMap,
) -> Result<Result<RegisteredClient, Response>, ServerError> {
    let Some(token) = bearer(headers) else {
        return Ok(Err(invalid_token(
            "a registration access token is required",
        )));
    };
    let found = app
        .store
        .registered_client_by_token_hash(&secret::hash_secret(token))
        .await?;
    match found {
        Some(c)
            if c.agent.client_id == client_id
                && c.registration.origin == RegistrationOrigin::Dynamic =>
        {
            Ok(Ok(c))
        }
        _ => Ok(Err(invalid_token(
            "the registration access token is not valid for this client",
        ))),
    }
}

/// Validation plus what this server cannot honour yet.
fn checked(
    result: Result<ClientMetadata, RegistrationError>,
) -> Result<ClientMetadata, RegistrationError> {
    let metadata = result?;
    if metadata.token_endpoint_auth_method == AuthMethod::PrivateKeyJwt
        && metadata.jwks_uri.is_some()
    {
        return Err(RegistrationError::InvalidClientMetadata(
            "jwks_uri is not supported; register the public keys inline as jwks".into(),
        ));
    }
    Ok(metadata)
}

fn read_response(
    app: &AppState,
    client_id: &str,
    metadata: ClientMetadata,
    registered_at: Timestamp,
    uses_secret: bool,
    new_secret: Option<String>,
) -> Response {
    let response = RegistrationResponse {
        client_id: client_id.to_owned(),
        client_secret: new_secret,
        client_id_issued_at: registered_at.unix(),
        client_secret_expires_at: uses_secret.then_some(0),
        registration_access_token: None,
        registration_client_uri: Some(client_uri(app, client_id)),
        metadata,
    };
    let mut http = Json(response).into_response();
    no_store(&mut http);
    http
}

fn client_uri(app: &AppState, client_id: &str) -> String {
    format!("{}/register/{client_id}", app.settings.issuer)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    no_store(&mut r);
    r
}

fn registration_error(e: &RegistrationError) -> Response {
    let mut r = (StatusCode::BAD_REQUEST, Json(e.body())).into_response();
    no_store(&mut r);
    r
}

/// RFC 6750 §3.1.
fn invalid_token(description: &'static str) -> Response {
    let mut r = json(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({ "error": "invalid_token", "error_description": description }),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    r
}
