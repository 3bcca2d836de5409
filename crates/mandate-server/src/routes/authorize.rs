//! `GET /authorize`: validate, then log in, ask consent, or answer with a code.
//!
//! The validated request is parked as a pending authorization under an unguessable id that the
//! login and consent forms carry; the request itself is never round-tripped through the browser,
//! so a user cannot edit scopes or redirect URI between pages. [`proceed`] is the one place that
//! decides what happens next, reached from this handler and after login.

use crate::browser;
use crate::client_documents;
use crate::errors::ServerError;
use crate::issuance;
use crate::pages::{self, ConsentPage, LoginPage, ScopeGroups};
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use mandate_core::OAuthError;
use mandate_core::authorize::{self, AuthorizationRequest, AuthorizeError};
use mandate_core::client::Agent;
use mandate_core::client_metadata_document::{ClientIdUrl, display_host};
use mandate_core::directory::User;
use mandate_core::grant;
use mandate_core::params::Params;
use mandate_core::random;
use mandate_core::redirect_uri::RedirectUri;
use mandate_core::time::Timestamp;
use mandate_store::PendingAuthorization;

/// How long a user has to log in and decide.
const PENDING_TTL_SECONDS: u64 = 10 * 60;

pub async fn authorize_get(
    State(app): State<AppState>,
    jar: CookieJar,
    meta: RequestMeta,
    RawQuery(query): RawQuery,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    let params = Params::parse(query.unwrap_or_default().as_bytes()).map_err(untrusted)?;
    let client_id = authorize::client_id(&params).map_err(|e| match e {
        AuthorizeError::Untrusted(e) => untrusted(e),
        AuthorizeError::Redirect { error, .. } => untrusted(error),
    })?;
    // A URL client id names the client's metadata document. A document that cannot be used
    // leaves the redirect URI untrusted, so the person sees a page, like for an unknown client.
    let agent = if app.client_documents.handles(client_id) {
        client_documents::stored_agent(&app, client_id, &meta, now)
            .await?
            .map_err(|e| {
                ServerError::page(
                    StatusCode::BAD_REQUEST,
                    "Unknown application",
                    format!("The application that sent you here could not be verified: {e}."),
                )
            })?
    } else {
        app.store.agent(client_id).await?.ok_or_else(|| {
            ServerError::page(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                "The application that sent you here is not registered with this server.",
            )
        })?
    };
    let resources = app.store.resources().await?;
    let request = match authorize::validate(&params, &agent, &resources) {
        Ok(r) => r,
        Err(AuthorizeError::Untrusted(e)) => return Err(untrusted(e)),
        Err(AuthorizeError::Redirect {
            redirect_uri,
            state,
            error,
        }) => {
            return Ok(error_redirect(
                &app,
                &redirect_uri,
                state.as_deref(),
                &error,
            ));
        }
    };
    let pending = PendingAuthorization {
        id: random::opaque_secret(app.entropy.as_ref()),
        request,
        created_at: now,
        expires_at: now.plus_seconds(PENDING_TTL_SECONDS),
    };
    app.store.create_pending(&pending).await?;
    let force_login = pending.request.prompt.login;
    let user = if force_login {
        None
    } else {
        browser::current_user(&app, &jar, now).await?
    };
    proceed(&app, jar, &pending, &agent, user, now).await
}

/// Decides the next step for a pending request: the login page, the consent page, or the
/// redirect with a code.
pub async fn proceed(
    app: &AppState,
    jar: CookieJar,
    pending: &PendingAuthorization,
    agent: &Agent,
    user: Option<User>,
    now: Timestamp,
) -> Result<Response, ServerError> {
    let req = &pending.request;
    let (jar, browser_id) = browser::browser_id(app, jar);
    let csrf = browser::csrf_token(app, &browser_id, &pending.id);
    let Some(user) = user else {
        if req.prompt.none {
            return finish_with_error(
                app,
                pending,
                &OAuthError::LoginRequired("the user is not signed in".into()),
            )
            .await;
        }
        let page = LoginPage {
            action: "login",
            request_id: Some(&pending.id),
            csrf: &csrf,
            agent_name: Some(&agent.name),
            login: "",
            error: None,
            next: None,
        };
        return Ok((jar, pages::render(StatusCode::OK, &page)).into_response());
    };
    if agent
        .tenant_id
        .as_ref()
        .is_some_and(|t| *t != user.tenant_id)
    {
        return finish_with_error(
            app,
            pending,
            &OAuthError::AccessDenied("this agent is not available to the user's tenant".into()),
        )
        .await;
    }
    let existing = app
        .store
        .active_grant(&user.tenant_id, Some(&user.id), &agent.client_id, now)
        .await?;
    if grant::needs_consent(existing.as_ref(), &req.scopes, req.prompt, now) {
        if req.prompt.none {
            return finish_with_error(
                app,
                pending,
                &OAuthError::ConsentRequired("the user must approve this request".into()),
            )
            .await;
        }
        let page = consent_page(app, pending, agent, &user, &csrf).await?;
        return Ok((jar, page).into_response());
    }
    let Some(grant) = existing else {
        return Err(anyhow::anyhow!("consent not needed but no grant").into());
    };
    let scopes = grant::token_scopes(&req.scopes, &agent.max_scopes, &grant.scopes);
    Ok((
        jar,
        issue_code(app, pending, &user, &grant.id, scopes, now).await?,
    )
        .into_response())
}

async fn consent_page(
    app: &AppState,
    pending: &PendingAuthorization,
    agent: &Agent,
    user: &User,
    csrf: &str,
) -> Result<Response, ServerError> {
    let req = &pending.request;
    let catalog = app.store.scopes().await?;
    let scopes = ScopeGroups::new(req.scopes.iter(), &catalog);
    // Only an operator vouches for an agent: one that registered itself, by RFC 7591 or by
    // publishing a metadata document, chose its own name.
    let verified = is_verified(app, &agent.client_id).await?;
    let tenant_name = app
        .store
        .tenant(&user.tenant_id)
        .await?
        .map_or_else(|| user.tenant_id.clone(), |t| t.name);
    let resources = app.store.resources().await?;
    let resource_name = resources
        .iter()
        .find(|r| r.identifier == req.resource)
        .map_or(req.resource.as_str(), |r| r.name.as_str());
    // A metadata document client chose its own name: show where the person will be sent.
    let redirect_host = ClientIdUrl::is_candidate(&agent.client_id)
        .then(|| RedirectUri::parse(&req.redirect_uri).ok())
        .flatten()
        .map(|uri| display_host(&uri));
    let page = ConsentPage {
        request_id: &pending.id,
        csrf,
        agent_name: &agent.name,
        redirect_host: redirect_host.as_deref(),
        client_id: &agent.client_id,
        tenant_name: &tenant_name,
        user_name: &user.display_name,
        resource_name,
        purpose: req.purpose.as_deref(),
        verified,
        scopes,
    };
    Ok(pages::render(StatusCode::OK, &page))
}

/// Whether an operator vouches for the agent: registered by configuration or the admin API,
/// not by itself (RFC 7591 dynamic registration, or an MCP client ID metadata document whose
/// name the agent chose).
pub async fn is_verified(app: &AppState, client_id: &str) -> Result<bool, ServerError> {
    Ok(!ClientIdUrl::is_candidate(client_id)
        && app.store.registered_client(client_id).await?.is_none())
}

/// Completes the pending request with a fresh code and redirects to the client.
pub async fn issue_code(
    app: &AppState,
    pending: &PendingAuthorization,
    user: &User,
    grant_id: &str,
    scopes: mandate_core::scope::ScopeSet,
    now: Timestamp,
) -> Result<Response, ServerError> {
    let req = &pending.request;
    if !app.store.take_pending(&pending.id).await? {
        return Err(already_completed());
    }
    let (code, record) = issuance::authorization_code(
        app.entropy.as_ref(),
        issuance::CodeBinding {
            client_id: &req.client_id,
            grant_id,
            user_id: &user.id,
            tenant_id: &user.tenant_id,
            redirect_uri: &req.redirect_uri,
            redirect_uri_explicit: req.redirect_uri_explicit,
            code_challenge: &req.code_challenge,
            resource: &req.resource,
            scopes,
        },
        now,
    );
    app.store.insert_code(&record).await?;
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = &req.state {
        params.push(("state", state));
    }
    params.push(("iss", &app.settings.issuer));
    Ok(Redirect::to(&RedirectUri::with_params(&req.redirect_uri, params)).into_response())
}

/// Completes the pending request with an error at the client's redirect URI.
pub async fn finish_with_error(
    app: &AppState,
    pending: &PendingAuthorization,
    error: &OAuthError,
) -> Result<Response, ServerError> {
    if !app.store.take_pending(&pending.id).await? {
        return Err(already_completed());
    }
    let req: &AuthorizationRequest = &pending.request;
    Ok(error_redirect(
        app,
        &req.redirect_uri,
        req.state.as_deref(),
        error,
    ))
}

fn error_redirect(
    app: &AppState,
    redirect_uri: &str,
    state: Option<&str>,
    error: &OAuthError,
) -> Response {
    let mut params = vec![
        ("error", error.code()),
        ("error_description", error.description()),
    ];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", &app.settings.issuer));
    Redirect::to(&RedirectUri::with_params(redirect_uri, params)).into_response()
}

fn untrusted(e: OAuthError) -> ServerError {
    ServerError::page(
        StatusCode::BAD_REQUEST,
        "This sign-in request is invalid",
        format!("{} ({})", e.description(), e.code()),
    )
}

pub fn already_completed() -> ServerError {
    ServerError::page(
        StatusCode::BAD_REQUEST,
        "This sign-in request has ended",
        "It was already completed or has expired. Start again from the application.",
    )
}

/// Loads a pending request and its agent for a form post.
pub async fn load_pending(
    app: &AppState,
    id: &str,
    now: Timestamp,
) -> Result<(PendingAuthorization, Agent), ServerError> {
    let pending = app
        .store
        .pending(id, now)
        .await?
        .ok_or_else(already_completed)?;
    let agent = app
        .store
        .agent(&pending.request.client_id)
        .await?
        .filter(|a| !a.disabled)
        .ok_or_else(already_completed)?;
    Ok((pending, agent))
}
