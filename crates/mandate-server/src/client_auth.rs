//! Authenticating the caller at the token, introspection, revocation and feed endpoints.
//!
//! A caller is an agent (an OAuth client) or a resource server holding its own credential;
//! both use the RFC 6749 §2.3 methods. Failures are all answered the same way
//! (`invalid_client`, 401) whatever went wrong, so a caller cannot probe which ids exist; each
//! failure is recorded as an event.
//!
//! A `client_id` that is an https URL is an MCP client ID metadata document client: it is
//! resolved through [`crate::client_documents`] (a failure is `invalid_client` too) and
//! authenticates with `none` or, when its document carries `jwks`, `private_key_jwt`.
//!
//! Besides the secret methods, registered clients may authenticate with `private_key_jwt`
//! (RFC 7523): a short-lived JWT signed with a key from their registered `jwks`, whose `jti`
//! is remembered until it expires so it cannot be replayed.

use crate::client_documents;
use crate::errors::ServerError;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use mandate_core::OAuthError;
use mandate_core::client::Agent;
use mandate_core::client_assertion::{self, AUTH_METHOD, AssertionRules, PresentedAssertion};
use mandate_core::client_auth::ClientCredentials;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::params::Params;
use mandate_core::registration::AuthMethod;
use mandate_core::resource::ResourceServer;
use mandate_core::secret;
use mandate_core::time::Timestamp;
use std::sync::Arc;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    Agent(Arc<Agent>),
    Resource(ResourceServer),
}

/// Authenticates an agent; a resource server's credential is refused here.
pub async fn authenticate(
    app: &AppState,
    authorization: Option<&str>,
    params: &Params,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<Arc<Agent>, ServerError> {
    match authenticate_caller(app, authorization, params, meta, now).await? {
        Caller::Agent(agent) => Ok(agent),
        Caller::Resource(_) => Err(ServerError::ClientAuth {
            error: OAuthError::InvalidClient("this endpoint is for OAuth clients".into()),
            basic: authorization.is_some(),
        }),
    }
}

/// Authenticates a resource server from the `Authorization` header alone (HTTP Basic with its
/// registered credential), for the endpoints only resource servers may use: the revocation
/// feed and denial reports. An agent, or no credential, is `invalid_client` with `refusal`.
pub async fn authenticate_resource_server(
    app: &AppState,
    headers: &axum::http::HeaderMap,
    meta: &RequestMeta,
    now: Timestamp,
    refusal: &'static str,
) -> Result<ResourceServer, ServerError> {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str())
        .transpose()
        .map_err(|_| OAuthError::InvalidClient("malformed Authorization header".into()))?;
    match authenticate_caller(app, authorization, &Params::default(), meta, now).await? {
        Caller::Resource(resource) => Ok(resource),
        Caller::Agent(_) => Err(ServerError::ClientAuth {
            error: OAuthError::InvalidClient(refusal.into()),
            basic: authorization.is_some(),
        }),
    }
}

/// The client ID a request presents, before anything is verified (for throttles, which must
/// hold back even callers that fail to authenticate). `None` if the credentials are malformed;
/// authentication then refuses them.
pub fn presented_client_id(authorization: Option<&str>, params: &Params) -> Option<String> {
    if let Ok(Some(assertion)) = PresentedAssertion::from_request(authorization, params) {
        return assertion.unverified_client_id().ok();
    }
    ClientCredentials::from_request(authorization, params)
        .ok()
        .map(|c| c.client_id().to_owned())
}

/// Authenticates an agent or a resource server, or records the failure.
pub async fn authenticate_caller(
    app: &AppState,
    authorization: Option<&str>,
    params: &Params,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<Caller, ServerError> {
    let used_basic = authorization.is_some();
    if let Some(assertion) = PresentedAssertion::from_request(authorization, params)? {
        return authenticate_assertion(app, &assertion, meta, now)
            .await
            .map(Caller::Agent);
    }
    let creds = ClientCredentials::from_request(authorization, params).map_err(|e| match e {
        OAuthError::InvalidClient(_) => ServerError::ClientAuth {
            error: e,
            basic: used_basic,
        },
        other => other.into(),
    })?;
    let failed = || OAuthError::InvalidClient("client authentication failed".into());
    let outcome = if app.client_documents.handles(creds.client_id()) {
        // A URL client id: its metadata document (cached) says who it is.
        match client_documents::stored_agent(app, creds.client_id(), meta, now).await? {
            Ok(agent) => creds
                .authenticate(&agent)
                .map(|()| Caller::Agent(Arc::new(agent))),
            Err(e) => Err(OAuthError::InvalidClient(e.to_string().into())),
        }
    } else {
        match app
            .cache
            .agent(app.store.as_ref(), creds.client_id())
            .await?
        {
            Some(agent) => creds.authenticate(&agent).map(|()| Caller::Agent(agent)),
            None => match resource_by_client_id(app, creds.client_id()).await? {
                Some(resource) => authenticate_resource(&creds, &resource)
                    .map(|()| Caller::Resource(resource))
                    .ok_or_else(failed),
                None => Err(failed()),
            },
        }
    };
    match outcome {
        Ok(caller) => Ok(caller),
        Err(error) => {
            record_failure(app, meta, now, creds.client_id(), creds.method(), &error).await?;
            Err(ServerError::ClientAuth {
                error,
                basic: creds.used_basic(),
            })
        }
    }
}

async fn record_failure(
    app: &AppState,
    meta: &RequestMeta,
    now: Timestamp,
    client_id: &str,
    method: &str,
    error: &OAuthError,
) -> Result<(), ServerError> {
    let mut event = NewEvent::new(now, Action::ClientAuthFailed, ActorKind::Agent);
    event.client_id = Some(client_id.chars().take(128).collect());
    event.reason = Some(error.description().to_owned());
    event.detail = serde_json::json!({ "method": method });
    app.events.append(meta.stamp(event)).await?;
    Ok(())
}

/// `private_key_jwt` (RFC 7523): only registered clients that chose this method have keys.
/// The assertion's audience may be the issuer or the token endpoint URL, whichever endpoint
/// it is presented at (OpenID Connect Core §9 names the token endpoint for all of them).
async fn authenticate_assertion(
    app: &AppState,
    assertion: &PresentedAssertion,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<Arc<Agent>, ServerError> {
    let client_id = match assertion.unverified_client_id() {
        Ok(id) => id,
        Err(error @ OAuthError::InvalidClient(_)) => {
            record_failure(app, meta, now, "", AUTH_METHOD, &error).await?;
            return Err(ServerError::ClientAuth {
                error,
                basic: false,
            });
        }
        Err(other) => return Err(other.into()),
    };
    let outcome = verify_assertion(app, assertion, &client_id, meta, now).await?;
    match outcome {
        Ok(agent) => Ok(agent),
        Err(error) => {
            record_failure(app, meta, now, &client_id, AUTH_METHOD, &error).await?;
            Err(ServerError::ClientAuth {
                error,
                basic: false,
            })
        }
    }
}

/// The inner result is the authentication outcome; the outer one a storage failure.
async fn verify_assertion(
    app: &AppState,
    assertion: &PresentedAssertion,
    client_id: &str,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<Result<Arc<Agent>, OAuthError>, ServerError> {
    let failed = || OAuthError::InvalidClient("client authentication failed".into());
    if app.client_documents.handles(client_id) {
        // A metadata document client: the document (cached) brings the keys; it is stored as
        // a registration, read below like any other.
        if let Err(e) = client_documents::stored_agent(app, client_id, meta, now).await? {
            return Ok(Err(OAuthError::InvalidClient(e.to_string().into())));
        }
    } else if !mandate_core::client::is_valid_client_id(client_id) {
        return Ok(Err(failed()));
    }
    let Some(registered) = app.store.registered_client(client_id).await? else {
        return Ok(Err(failed()));
    };
    let metadata = &registered.registration.metadata;
    if metadata.token_endpoint_auth_method != AuthMethod::PrivateKeyJwt || registered.agent.disabled
    {
        return Ok(Err(failed()));
    }
    let keys = match metadata.client_jwks() {
        Some(Ok(keys)) => keys,
        // A `jwks_uri` is not fetched (registration refuses it), so no keys means no way in.
        Some(Err(_)) | None => return Ok(Err(failed())),
    };
    let issuer = app.settings.issuer.as_str();
    let token_endpoint = format!("{issuer}/token");
    let rules = AssertionRules::new(client_id, issuer, &token_endpoint, now);
    let accepted = match client_assertion::verify(assertion, &keys, &rules) {
        Ok(accepted) => accepted,
        Err(e) => return Ok(Err(e)),
    };
    if !app
        .store
        .remember_jti(&accepted.client_id, &accepted.jti, accepted.remember_until)
        .await?
    {
        return Ok(Err(OAuthError::InvalidClient(
            "client_assertion was used before (jti replay)".into(),
        )));
    }
    Ok(Ok(Arc::new(registered.agent)))
}

async fn resource_by_client_id(
    app: &AppState,
    client_id: &str,
) -> Result<Option<ResourceServer>, ServerError> {
    let resources = app.cache.resources(app.store.as_ref()).await?;
    Ok(resources
        .iter()
        .find(|r| r.client_id.as_deref() == Some(client_id))
        .cloned())
}

/// A resource server always authenticates with its secret.
fn authenticate_resource(creds: &ClientCredentials, resource: &ResourceServer) -> Option<()> {
    let presented = match creds {
        ClientCredentials::Basic { secret, .. } | ClientCredentials::Post { secret, .. } => secret,
        ClientCredentials::None { .. } => return None,
    };
    let stored = resource.secret_hash.as_deref()?;
    secret::verify_secret(presented, stored).then_some(())
}
