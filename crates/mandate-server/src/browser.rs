//! Browser state: the session cookie, a browser id, and CSRF tokens.
//!
//! A CSRF token is HMAC(csrf key, browser id ‖ pending request id): it is bound to this browser
//! (its HttpOnly cookie) and to one authorization request, needs no server-side storage, and
//! verifies on any node that shares the key-encryption key. Cookies are HttpOnly and
//! SameSite=Lax, and Secure whenever the issuer is https.

use crate::errors::ServerError;
use crate::state::AppState;
use axum::http::StatusCode;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use mandate_core::directory::User;
use mandate_core::random;
use mandate_core::secret;
use mandate_core::time::Timestamp;
use mandate_store::Session;

pub const BROWSER_COOKIE: &str = "mandate_browser";
pub const SESSION_COOKIE: &str = "mandate_session";

fn cookie(app: &AppState, name: &'static str, value: String) -> Cookie<'static> {
    let path = if app.settings.issuer_path.is_empty() {
        "/".to_owned()
    } else {
        app.settings.issuer_path.clone()
    };
    Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(app.settings.secure_cookies)
        .path(path)
        .build()
}

/// The browser id from its cookie, creating one (and the cookie) if absent.
pub fn browser_id(app: &AppState, jar: CookieJar) -> (CookieJar, String) {
    if let Some(c) = jar.get(BROWSER_COOKIE).filter(|c| c.value().len() == 43) {
        let id = c.value().to_owned();
        return (jar, id);
    }
    let id = random::opaque_secret(app.entropy.as_ref());
    let jar = jar.add(cookie(app, BROWSER_COOKIE, id.clone()));
    (jar, id)
}

pub fn csrf_token(app: &AppState, browser_id: &str, request_id: &str) -> String {
    let input = format!("{browser_id}\n{request_id}");
    secret::derive_token(app.kek.csrf_key(), "mandate form v1", input.as_bytes())
}

/// Checks a form's CSRF token against this browser and request.
pub fn check_csrf(
    app: &AppState,
    jar: &CookieJar,
    request_id: &str,
    presented: Option<&str>,
) -> Result<(), ServerError> {
    let forbidden = || {
        ServerError::page(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "The form was not sent from this browser's sign-in page. Start again from the application.",
        )
    };
    let browser = jar.get(BROWSER_COOKIE).ok_or_else(forbidden)?;
    let presented = presented.ok_or_else(forbidden)?;
    let expected = csrf_token(app, browser.value(), request_id);
    if secret::constant_time_eq(&expected, presented) {
        Ok(())
    } else {
        Err(forbidden())
    }
}

/// Starts a session for `user` and returns the cookie jar that carries it.
pub async fn start_session(
    app: &AppState,
    jar: CookieJar,
    user: &User,
    now: Timestamp,
) -> Result<CookieJar, ServerError> {
    let id = random::opaque_secret(app.entropy.as_ref());
    let session = Session {
        id_hash: secret::hash_secret(&id),
        user_id: user.id.clone(),
        tenant_id: user.tenant_id.clone(),
        created_at: now,
        expires_at: now.plus_seconds(app.settings.session_ttl_seconds),
    };
    app.store.create_session(&session).await?;
    let mut c = cookie(app, SESSION_COOKIE, id);
    c.set_max_age(time_duration(app.settings.session_ttl_seconds));
    Ok(jar.add(c))
}

fn time_duration(seconds: u64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX))
}

/// The logged-in, enabled user of this browser, if any.
pub async fn current_user(
    app: &AppState,
    jar: &CookieJar,
    now: Timestamp,
) -> Result<Option<User>, ServerError> {
    Ok(current_session(app, jar, now).await?.map(|(_, user)| user))
}

/// This browser's unexpired session and its enabled user, if any.
pub async fn current_session(
    app: &AppState,
    jar: &CookieJar,
    now: Timestamp,
) -> Result<Option<(Session, User)>, ServerError> {
    let Some(c) = jar.get(SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(session) = app
        .store
        .session(&secret::hash_secret(c.value()), now)
        .await?
    else {
        return Ok(None);
    };
    let user = app.store.user(&session.user_id).await?;
    Ok(user
        .filter(|u| !u.disabled && u.tenant_id == session.tenant_id)
        .map(|u| (session, u)))
}

/// Ends this browser's session: deletes it on the server (so the cookie is worthless even
/// if it was copied) and tells the browser to drop the cookie.
pub async fn end_session(app: &AppState, jar: CookieJar) -> Result<CookieJar, ServerError> {
    if let Some(c) = jar.get(SESSION_COOKIE) {
        app.store
            .delete_session(&secret::hash_secret(c.value()))
            .await?;
    }
    Ok(jar.remove(cookie(app, SESSION_COOKIE, String::new())))
}

/// What the CSRF token of the stand-alone sign-in form (outside any authorization request)
/// is bound to. Pending request ids never contain a space, so the two cannot collide.
pub const ACCOUNT_LOGIN_PURPOSE: &str = "account login";

/// What the CSRF tokens of a signed-in person's own forms (connected agents, sign out) are
/// bound to: the session, so a form dies with the session it was shown in.
pub fn session_form_purpose(session: &Session) -> String {
    format!("account {}", session.id_hash)
}
