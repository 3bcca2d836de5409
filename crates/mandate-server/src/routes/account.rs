//! A person's own pages, outside any authorization request: sign in (`/account/login`),
//! sign out (`/account/logout`), and the connected agents page ([`super::connected_agents`]).
//! Signing in goes on to the connected agents page, or back to the admin console page that
//! sent the person here (`next`, only ever a console page: [`crate::console::return_path`]).
//!
//! Every page here lives one level under `/account/`, so the pages' relative links (the
//! stylesheet, form actions) resolve the same way from each of them. Forms carry a CSRF token
//! bound to this browser and, once signed in, to the session
//! ([`browser::session_form_purpose`]): a form shown before signing out is refused after.

use crate::browser;
use crate::errors::ServerError;
use crate::pages::{self, LoginPage};
use crate::request_meta::RequestMeta;
use crate::routes::browser_form;
use crate::routes::login::{LOGIN_FAILED, check_password};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use mandate_core::directory::User;
use mandate_store::Session;

/// The address of an account page, under the issuer's path.
pub fn account_path(app: &AppState, page: &str) -> String {
    format!("{}/account/{page}", app.settings.issuer_path)
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    /// The admin console page to return to (console-relative).
    next: Option<String>,
}

/// Where signing in goes on to: the console page in `next` when it is one, else the connected
/// agents page. Anything else in `next` is ignored, so this is no open redirect.
fn destination(app: &AppState, next: Option<&str>) -> String {
    next.and_then(|n| crate::console::return_path(app, n))
        .unwrap_or_else(|| account_path(app, "agents"))
}

/// `GET /account/login`: the sign-in form (or straight on, when signed in already).
pub async fn account_login_get(
    State(app): State<AppState>,
    jar: CookieJar,
    Query(q): Query<LoginQuery>,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    let next = q.next.as_deref();
    if browser::current_session(&app, &jar, now).await?.is_some() {
        return Ok(Redirect::to(&destination(&app, next)).into_response());
    }
    Ok(login_form(&app, jar, "", next, None, StatusCode::OK))
}

/// `POST /account/login`: check the password, start a session, go to the connected agents.
pub async fn account_login_post(
    State(app): State<AppState>,
    jar: CookieJar,
    meta: RequestMeta,
    body: Bytes,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    let form = browser_form(&body)?;
    browser::check_csrf(&app, &jar, browser::ACCOUNT_LOGIN_PURPOSE, form.get("csrf"))?;
    let next = form.get("next");
    match check_password(&app, &meta, &form, None, now).await? {
        Some(user) => {
            let jar = browser::start_session(&app, jar, &user, now).await?;
            Ok((jar, Redirect::to(&destination(&app, next))).into_response())
        }
        None => {
            let login = form.get("login").unwrap_or_default();
            Ok(login_form(
                &app,
                jar,
                login,
                next,
                Some(LOGIN_FAILED),
                StatusCode::UNAUTHORIZED,
            ))
        }
    }
}

fn login_form(
    app: &AppState,
    jar: CookieJar,
    login: &str,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (jar, browser_id) = browser::browser_id(app, jar);
    let csrf = browser::csrf_token(app, &browser_id, browser::ACCOUNT_LOGIN_PURPOSE);
    let page = LoginPage {
        action: "login",
        request_id: None,
        csrf: &csrf,
        agent_name: None,
        login,
        error,
        next: next.filter(|n| crate::console::return_path(app, n).is_some()),
    };
    (jar, pages::render(status, &page)).into_response()
}

/// `POST /account/logout`: delete the session on the server and drop its cookie.
///
/// Without a live session there is nothing to protect, so the answer is the same page; with
/// one, the form's CSRF token must be bound to it, so no other site can sign a person out.
pub async fn account_logout_post(
    State(app): State<AppState>,
    jar: CookieJar,
    body: Bytes,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    if let Some((session, _)) = browser::current_session(&app, &jar, now).await? {
        let form = browser_form(&body)?;
        browser::check_csrf(
            &app,
            &jar,
            &browser::session_form_purpose(&session),
            form.get("csrf"),
        )?;
    }
    let jar = browser::end_session(&app, jar).await?;
    Ok((jar, pages::render(StatusCode::OK, &pages::SignedOutPage {})).into_response())
}

/// The signed-in person of an account page, or the redirect to the sign-in form.
pub async fn signed_in(
    app: &AppState,
    jar: &CookieJar,
) -> Result<Result<(Session, User), Response>, ServerError> {
    let now = app.clock.now();
    Ok(browser::current_session(app, jar, now)
        .await?
        .ok_or_else(|| Redirect::to(&account_path(app, "login")).into_response()))
}

/// The signed-in person and their submitted form, whose CSRF token must be bound to this
/// browser and session; the sign-in page instead when nobody is signed in.
pub async fn signed_in_form(
    app: &AppState,
    jar: &CookieJar,
    body: &[u8],
) -> Result<Result<(User, crate::routes::BrowserForm), Response>, ServerError> {
    let (session, user) = match signed_in(app, jar).await? {
        Ok(signed_in) => signed_in,
        Err(redirect) => return Ok(Err(redirect)),
    };
    let form = browser_form(body)?;
    browser::check_csrf(
        app,
        jar,
        &browser::session_form_purpose(&session),
        form.get("csrf"),
    )?;
    Ok(Ok((user, form)))
}
