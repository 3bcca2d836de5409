//! Authenticating the caller at the token, introspection, revocation and feed endpoints.
//!
//! A caller is an agent (an OAuth client) or a resource server holding its own credential;
//! both use the RFC 6749 §2.3 methods. Failures are all answered the same way
//! (`invalid_client`, 401) whatever went wrong, so a caller cannot probe which ids exist; each
//! failure is recorded as an event.

use crate::errors::ServerError;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use mandate_core::OAuthError;
use mandate_core::client::Agent;
use mandate_core::client_auth::ClientCredentials;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::params::Params;
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

/// Authenticates an agent or a resource server, or records the failure.
pub async fn authenticate_caller(
    app: &AppState,
    authorization: Option<&str>,
    params: &Params,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<Caller, ServerError> {
    let used_basic = authorization.is_some();
    let creds = ClientCredentials::from_request(authorization, params).map_err(|e| match e {
        OAuthError::InvalidClient(_) => ServerError::ClientAuth {
            error: e,
            basic: used_basic,
        },
        other => other.into(),
    })?;
    let failed = || OAuthError::InvalidClient("client authentication failed".into());
    let outcome = match app
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
    };
    match outcome {
        Ok(caller) => Ok(caller),
        Err(error) => {
            let mut event = NewEvent::new(now, Action::ClientAuthFailed, ActorKind::Agent);
            event.client_id = Some(creds.client_id().chars().take(128).collect());
            event.reason = Some(error.description().to_owned());
            event.detail = serde_json::json!({ "method": creds.method() });
            app.events.append(meta.stamp(event)).await?;
            Err(ServerError::ClientAuth {
                error,
                basic: creds.used_basic(),
            })
        }
    }
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
