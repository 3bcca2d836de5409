//! Authenticating the calling client at the token, introspection and revocation endpoints.
//!
//! Failures are all answered the same way (`invalid_client`, 401) whatever went wrong, so a
//! caller cannot probe which client ids exist; each failure is recorded as an event.

use crate::errors::ServerError;
use crate::form::OAuthForm;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use mandate_core::OAuthError;
use mandate_core::client::Agent;
use mandate_core::client_auth::ClientCredentials;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::time::Timestamp;
use std::sync::Arc;

/// Returns the authenticated agent, or records the failure and answers `invalid_client`.
pub async fn authenticate(
    app: &AppState,
    form: &OAuthForm,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<Arc<Agent>, ServerError> {
    let used_basic = form.authorization.is_some();
    let creds = ClientCredentials::from_request(form.authorization.as_deref(), &form.params)
        .map_err(|e| match e {
            OAuthError::InvalidClient(_) => ServerError::ClientAuth {
                error: e,
                basic: used_basic,
            },
            other => other.into(),
        })?;
    let agent = app
        .cache
        .agent(app.store.as_ref(), creds.client_id())
        .await?;
    let outcome = match &agent {
        Some(agent) => creds.authenticate(agent),
        None => Err(OAuthError::InvalidClient(
            "client authentication failed".into(),
        )),
    };
    match (agent, outcome) {
        (Some(agent), Ok(())) => Ok(agent),
        (agent, outcome) => {
            let error = outcome.err().unwrap_or_else(|| {
                OAuthError::InvalidClient("client authentication failed".into())
            });
            let mut event = NewEvent::new(now, Action::ClientAuthFailed, ActorKind::Agent);
            event.client_id = agent.map(|a| a.client_id.clone());
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
