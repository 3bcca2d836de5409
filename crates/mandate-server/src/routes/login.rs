//! `POST /login`: check the password, start a session, continue the pending request.
//!
//! [`check_password`] is shared with the stand-alone sign-in of the account pages
//! ([`super::account`]), so both have the same even timing and leave the same audit record.

use crate::browser;
use crate::errors::ServerError;
use crate::pages::{self, LoginPage};
use crate::password;
use crate::request_meta::RequestMeta;
use crate::routes::authorize::{load_pending, proceed};
use crate::routes::{BrowserForm, checked_form};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use mandate_core::directory::User;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::time::Timestamp;

/// What the sign-in form says when the login name or password is wrong (never which one).
pub const LOGIN_FAILED: &str = "The login name or password is not correct.";

pub async fn login_post(
    State(app): State<AppState>,
    jar: CookieJar,
    meta: RequestMeta,
    body: Bytes,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    let (form, request_id) = checked_form(&app, &jar, &body)?;
    let (pending, agent) = load_pending(&app, &request_id, now).await?;
    match check_password(&app, &meta, &form, Some(&agent.client_id), now).await? {
        Some(user) => {
            let jar = browser::start_session(&app, jar, &user, now).await?;
            proceed(&app, jar, &pending, &agent, Some(user), now).await
        }
        None => {
            let (jar, browser_id) = browser::browser_id(&app, jar);
            let csrf = browser::csrf_token(&app, &browser_id, &pending.id);
            let page = LoginPage {
                action: "login",
                request_id: Some(&pending.id),
                csrf: &csrf,
                agent_name: Some(&agent.name),
                login: form.get("login").unwrap_or_default(),
                error: Some(LOGIN_FAILED),
                next: None,
            };
            Ok((jar, pages::render(StatusCode::UNAUTHORIZED, &page)).into_response())
        }
    }
}

/// Checks the form's `login` and `password` (argon2id, with the same work whether or not the
/// login exists) and records `login.succeeded` or `login.failed`. Returns the enabled user
/// when the password is right.
pub async fn check_password(
    app: &AppState,
    meta: &RequestMeta,
    form: &BrowserForm,
    client_id: Option<&str>,
    now: Timestamp,
) -> Result<Option<User>, ServerError> {
    let login = form.get("login").unwrap_or_default();
    let user = app
        .store
        .user_by_login(login)
        .await?
        .filter(|u| !u.disabled);
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let password = form.get("password").unwrap_or_default().to_owned();
    let verified = password::verify_blocking(password, stored_hash).await?;

    let mut event = NewEvent::new(
        now,
        if verified {
            Action::LoginSucceeded
        } else {
            Action::LoginFailed
        },
        ActorKind::User,
    );
    event.actor_id = Some(login.chars().take(64).collect());
    event.client_id = client_id.map(str::to_owned);
    if let Some(u) = &user {
        event.user_id = Some(u.id.clone());
        event.tenant_id = Some(u.tenant_id.clone());
    }
    if !verified {
        event.reason = Some("invalid login name or password".into());
    }
    app.events.append(meta.stamp(event)).await?;
    Ok(user.filter(|_| verified))
}
