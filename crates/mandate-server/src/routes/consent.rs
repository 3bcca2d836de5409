//! `POST /consent`: record the user's decision as the grant, then answer the client.
//!
//! The user may approve a subset of the requested scopes; the grant keeps exactly what was
//! approved, and the code (and every token from it) carries no more.

use crate::browser;
use crate::errors::ServerError;
use crate::request_meta::RequestMeta;
use crate::routes::authorize::{finish_with_error, issue_code, load_pending};
use crate::routes::checked_form;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use mandate_core::OAuthError;
use mandate_core::authorize::AuthorizationRequest;
use mandate_core::client::Agent;
use mandate_core::directory::User;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::grant::{self, Grant};
use mandate_core::random;
use mandate_core::scope::ScopeSet;
use mandate_core::time::Timestamp;
use mandate_store::StoreError;

pub async fn consent_post(
    State(app): State<AppState>,
    jar: CookieJar,
    meta: RequestMeta,
    body: Bytes,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    let (form, request_id) = checked_form(&app, &jar, &body)?;
    let user = browser::current_user(&app, &jar, now)
        .await?
        .ok_or_else(|| {
            ServerError::page(
                StatusCode::UNAUTHORIZED,
                "You are signed out",
                "Your session ended before you decided. Start again from the application.",
            )
        })?;
    let (pending, agent) = load_pending(&app, &request_id, now).await?;
    let req = &pending.request;
    if agent
        .tenant_id
        .as_ref()
        .is_some_and(|t| *t != user.tenant_id)
    {
        return Err(ServerError::page(
            StatusCode::FORBIDDEN,
            "Not available",
            "This agent is not available in your organisation.",
        ));
    }
    let ticked = ScopeSet::from_tokens(form.all("scope")).map_err(|_| {
        ServerError::page(
            StatusCode::BAD_REQUEST,
            "Invalid form",
            "A scope in the form is malformed.",
        )
    })?;
    // "Allow all" approves every scope asked for, whatever the boxes say; "Allow selected"
    // approves the ticked ones among them; anything else denies.
    let decision = form.get("decision");
    let approved = match decision {
        Some("approve_all") => req.scopes.clone(),
        Some("approve") => ticked.intersection(&req.scopes),
        _ => ScopeSet::default(),
    };

    let mut event = NewEvent::new(now, Action::ConsentDenied, ActorKind::User);
    event.actor_id = Some(user.id.clone());
    event.user_id = Some(user.id.clone());
    event.tenant_id = Some(user.tenant_id.clone());
    event.client_id = Some(agent.client_id.clone());
    let requested = req.scopes.to_string();
    event.detail = serde_json::json!({ "requested": requested, "resource": req.resource });
    if let (Some(purpose), Some(detail)) = (&req.purpose, event.detail.as_object_mut()) {
        detail.insert("purpose".into(), purpose.as_str().into());
    }

    if approved.is_empty() {
        app.events.append(meta.stamp(event)).await?;
        let denied = OAuthError::AccessDenied("the user denied the request".into());
        return finish_with_error(&app, &pending, &denied).await;
    }

    let (grant_id, new_scopes) = record_consent(&app, &user, &agent, req, &approved, now).await?;
    event.action = Action::ConsentGranted;
    event.grant_id = Some(grant_id.clone());
    event.scopes = Some(approved.to_string());
    event.detail = serde_json::json!({
        "requested": requested,
        "resource": req.resource,
        "approved": approved.to_string(),
        "narrowed": approved != req.scopes,
    });
    if let (Some(purpose), Some(detail)) = (&req.purpose, event.detail.as_object_mut()) {
        detail.insert("purpose".into(), purpose.as_str().into());
    }
    app.events.append(meta.stamp(event)).await?;

    let scopes = grant::token_scopes(&req.scopes, &agent.max_scopes, &new_scopes);
    Ok((
        jar,
        issue_code(&app, &pending, &user, &grant_id, scopes, now).await?,
    )
        .into_response())
}

/// How many times a consent re-reads the grant after losing a race for it before giving up.
const CONSENT_ATTEMPTS: usize = 5;

/// Records the decision in the user's one live grant to the agent, creating it on first
/// approval; returns its id and scopes. Two decisions at once (two tabs, two nodes) each
/// apply their answer to the other's result: creation meets the database's one-live-user-grant
/// index and an update is a compare and set, so the loser reads again and neither is lost.
async fn record_consent(
    app: &AppState,
    user: &User,
    agent: &Agent,
    req: &AuthorizationRequest,
    approved: &ScopeSet,
    now: Timestamp,
) -> Result<(String, ScopeSet), ServerError> {
    for _ in 0..CONSENT_ATTEMPTS {
        let existing = app
            .store
            .active_grant(&user.tenant_id, Some(&user.id), &agent.client_id, now)
            .await?;
        let scopes =
            grant::after_consent(existing.as_ref().map(|g| &g.scopes), &req.scopes, approved);
        match existing {
            Some(g) => {
                if app
                    .store
                    .update_grant_scopes(&g.id, &g.scopes, &scopes)
                    .await?
                {
                    return Ok((g.id, scopes));
                }
            }
            None => {
                let g = Grant {
                    id: random::identifier(app.entropy.as_ref(), now, "g_"),
                    tenant_id: user.tenant_id.clone(),
                    user_id: Some(user.id.clone()),
                    client_id: agent.client_id.clone(),
                    scopes: scopes.clone(),
                    purpose: req.purpose.clone(),
                    created_at: now,
                    expires_at: None,
                    revoked_at: None,
                    revoked_reason: None,
                };
                match app.store.create_grant(&g).await {
                    Ok(()) => return Ok((g.id, scopes)),
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    // Only a storm of decisions for the same grant gets here: say so, change nothing.
    Err(ServerError::page(
        StatusCode::CONFLICT,
        "Please try again",
        "Other answers for this agent were being saved at the same moment. Start again from the application.",
    ))
}
