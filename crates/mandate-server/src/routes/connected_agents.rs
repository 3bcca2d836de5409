//! `GET /account/agents`: the agents a signed-in person has allowed to act for them, with what
//! each may do, when it was last used and its recent activity; `POST /account/revoke` and
//! `POST /account/revoke-all` take that access back.
//!
//! A person only ever sees and revokes their own grants in their own tenant: every grant is
//! read through a filter on both, and a revocation re-checks ownership of the grant it names
//! (another person's grant is answered exactly like one that does not exist). Revocation goes
//! through [`crate::admin::grants::revoke_and_record`], the path the admin API takes, so it is
//! audited and announced on the revocation feed like any other.

use crate::admin::grants::revoke_and_record;
use crate::browser;
use crate::errors::ServerError;
use crate::pages::{self, ActivityRow, AgentsPage, ConnectionRow, ScopeGroups, When};
use crate::request_meta::RequestMeta;
use crate::routes::account::{account_path, signed_in, signed_in_form};
use crate::routes::authorize::is_verified;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use mandate_core::directory::User;
use mandate_core::event::{Action, ActorKind, Event, NewEvent};
use mandate_core::grant::Grant;
use mandate_core::time::Timestamp;
use mandate_store::{EventFilter, GrantFilter, ScopeDef};
use std::collections::HashMap;

/// How many audit events of each grant the page shows.
const RECENT_ACTIVITY: u32 = 5;

/// The most live grants a person's page lists: a person holds at most one live grant per agent
/// and tenant, so this bounds the read, not what anyone has.
const LIVE_GRANTS_SHOWN: u32 = 1000;

/// The reason recorded when a person revokes an agent's access themselves.
const REASON: &str = "revoked by the user";

/// Actions that mean the agent used its access (for "last used").
const USE_ACTIONS: [Action; 3] = [
    Action::TokenIssued,
    Action::TokenRefreshed,
    Action::TokenExchanged,
];

#[derive(serde::Deserialize)]
pub struct AgentsQuery {
    /// What the form just did (`revoked`, `revoked-all`), to say so once.
    done: Option<String>,
}

pub async fn agents_get(
    State(app): State<AppState>,
    jar: CookieJar,
    Query(q): Query<AgentsQuery>,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    let (session, user) = match signed_in(&app, &jar).await? {
        Ok(signed_in) => signed_in,
        Err(redirect) => return Ok(redirect),
    };
    let (jar, browser_id) = browser::browser_id(&app, jar);
    let csrf = browser::csrf_token(&app, &browser_id, &browser::session_form_purpose(&session));
    let catalog = app.store.scopes().await?;
    let mut connections = Vec::new();
    let mut agents = HashMap::new();
    for grant in own_grants(&app, &user, now).await? {
        if !agents.contains_key(&grant.client_id) {
            let agent = app.store.agent(&grant.client_id).await?;
            let verified = is_verified(&app, &grant.client_id).await?;
            agents.insert(grant.client_id.clone(), (agent, verified));
        }
        let (agent, verified) = agents
            .get(&grant.client_id)
            .map_or((None, false), |(a, v)| (a.as_ref(), *v));
        connections.push(connection(&app, &user, &grant, agent, verified, &catalog).await?);
    }
    let tenant_name = app
        .store
        .tenant(&user.tenant_id)
        .await?
        .map_or_else(|| user.tenant_id.clone(), |t| t.name);
    let notice = match q.done.as_deref() {
        Some("revoked") => Some("Access revoked. The agent's tokens stop working now."),
        Some("revoked-all") => Some("Every agent's access was revoked."),
        _ => None,
    };
    let page = AgentsPage {
        user_name: &user.display_name,
        tenant_name: &tenant_name,
        csrf: &csrf,
        notice,
        connections,
    };
    Ok((jar, pages::render(StatusCode::OK, &page)).into_response())
}

/// `POST /account/revoke` with `grant_id`: revoke one of this person's grants.
pub async fn revoke_post(
    State(app): State<AppState>,
    jar: CookieJar,
    meta: RequestMeta,
    body: Bytes,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    let (user, form) = match signed_in_form(&app, &jar, &body).await? {
        Ok(signed_in) => signed_in,
        Err(redirect) => return Ok(redirect),
    };
    let grant_id = form.single("grant_id")?;
    let grant = app
        .store
        .grant(grant_id)
        .await?
        .filter(|g| owned_by(g, &user))
        .ok_or_else(|| {
            ServerError::page(
                StatusCode::NOT_FOUND,
                "No such connection",
                "You have no connected agent with this id.",
            )
        })?;
    revoke(&app, &user, &grant, &meta, now).await?;
    Ok(Redirect::to(&account_path(&app, "agents?done=revoked")).into_response())
}

/// `POST /account/revoke-all`: revoke every active grant of this person.
pub async fn revoke_all_post(
    State(app): State<AppState>,
    jar: CookieJar,
    meta: RequestMeta,
    body: Bytes,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    let (user, _form) = match signed_in_form(&app, &jar, &body).await? {
        Ok(signed_in) => signed_in,
        Err(redirect) => return Ok(redirect),
    };
    for grant in own_grants(&app, &user, now).await? {
        revoke(&app, &user, &grant, &meta, now).await?;
    }
    Ok(Redirect::to(&account_path(&app, "agents?done=revoked-all")).into_response())
}

/// Whether `grant` is this person's own, in their own tenant.
fn owned_by(grant: &Grant, user: &User) -> bool {
    grant.tenant_id == user.tenant_id && grant.user_id.as_deref() == Some(user.id.as_str())
}

/// This person's active grants in their tenant, newest first.
async fn own_grants(
    app: &AppState,
    user: &User,
    now: Timestamp,
) -> Result<Vec<Grant>, ServerError> {
    let filter = GrantFilter {
        tenant_id: Some(user.tenant_id.clone()),
        user_id: Some(user.id.clone()),
        client_id: None,
        include_revoked: false,
    };
    Ok(app
        .store
        .grants(&filter, None, LIVE_GRANTS_SHOWN)
        .await?
        .into_iter()
        .filter(|g| owned_by(g, user) && g.is_active(now))
        .collect())
}

async fn revoke(
    app: &AppState,
    user: &User,
    grant: &Grant,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<bool, ServerError> {
    let mut event = NewEvent::new(now, Action::GrantRevoked, ActorKind::User);
    event.actor_id = Some(user.id.clone());
    let event = meta.stamp(event);
    revoke_and_record(
        app.store.as_ref(),
        grant,
        now,
        REASON,
        event,
        Some(app.metrics.as_ref()),
    )
    .await
}

async fn connection(
    app: &AppState,
    user: &User,
    grant: &Grant,
    agent: Option<&mandate_core::client::Agent>,
    verified: bool,
    catalog: &[ScopeDef],
) -> Result<ConnectionRow, ServerError> {
    let events = |actions: Vec<String>, limit: u32| EventFilter {
        tenant_id: Some(user.tenant_id.clone()),
        grant_id: Some(grant.id.clone()),
        actions,
        newest_first: true,
        limit,
        ..EventFilter::default()
    };
    let recent = app
        .store
        .events(&events(Vec::new(), RECENT_ACTIVITY))
        .await?;
    let use_actions = USE_ACTIONS.iter().map(|a| a.as_str().to_owned()).collect();
    let last_used = app
        .store
        .events(&events(use_actions, 1))
        .await?
        .first()
        .map(|e| When::new(e.event.at));
    Ok(ConnectionRow {
        grant_id: grant.id.clone(),
        agent_name: agent.map_or_else(|| grant.client_id.clone(), |a| a.name.clone()),
        client_id: grant.client_id.clone(),
        verified,
        scopes: ScopeGroups::new(grant.scopes.iter(), catalog),
        purpose: grant.purpose.clone(),
        created: When::new(grant.created_at),
        last_used,
        expires: grant.expires_at.map(When::new),
        activity: recent.iter().map(activity).collect(),
    })
}

fn activity(e: &Event) -> ActivityRow {
    ActivityRow {
        at: When::new(e.event.at),
        what: describe(e.event.action),
        scopes: e.event.scopes.clone().filter(|s| !s.is_empty()),
    }
}

/// An audit action in the words of the person whose grant it concerns.
fn describe(action: Action) -> &'static str {
    match action {
        Action::ConsentGranted => "You allowed access",
        Action::TokenIssued => "Received an access token",
        Action::TokenRefreshed => "Renewed its access token",
        Action::TokenExchanged => "Passed narrowed access on to another service",
        Action::TokenRevoked => "A token was revoked",
        Action::GrantRevoked => "Access revoked",
        Action::RefreshReuseDetected => "A reused refresh token was detected; access revoked",
        Action::CodeReplayDetected => "A reused sign-in code was detected; access revoked",
        Action::AccessDenied => "Refused by a service",
        Action::AnomalyDetected => "Unusual activity detected",
        _ => "Other activity",
    }
}
