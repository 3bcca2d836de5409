//! Who is using the console: the signed-in person of this browser's session, and their admin
//! role, as extractors that every console handler takes.
//!
//! [`Console`] (pages) and [`ConsoleForm`] (POSTed forms) turn away everyone else before a
//! handler runs: nobody signed in is sent to the sign-in form, which brings them back to the
//! page they asked for; a person without a role gets a 403 page. The role is read from the
//! store on every request through [`crate::admin::auth::authority_of`], as for admin API
//! tokens, so removing a role ends console access at the next click. A form must carry the
//! CSRF token bound to this browser and session ([`browser::session_form_purpose`]), checked
//! before anything else about it.

use super::pages::Nav;
use super::{ConsoleError, return_path};
use crate::admin::auth::authority_of;
use crate::admin::context::Ctx;
use crate::browser;
use crate::errors::ServerError;
use crate::request_meta::RequestMeta;
use crate::routes::BrowserForm;
use crate::routes::account::{account_path, signed_in_form};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use mandate_core::admin::{Authority, Principal};
use mandate_core::directory::User;
use mandate_core::event::ActorKind;

/// A signed-in administrator on a console page.
pub struct Console {
    /// The browser's cookies, with a browser id added if it had none: return it with the
    /// page, or the page's CSRF token would not verify.
    pub jar: CookieJar,
    pub user: User,
    pub authority: Authority,
    /// For the page's forms, bound to this browser and session.
    pub csrf: String,
    pub meta: RequestMeta,
}

/// A signed-in administrator's submitted form, its CSRF token checked.
pub struct ConsoleForm {
    pub user: User,
    pub authority: Authority,
    pub form: BrowserForm,
    pub meta: RequestMeta,
}

/// The operation context for a signed-in administrator: recorded on events as
/// `user:<id>`, with the request's origin. There is no token grant behind a browser session,
/// so `own_grant` is empty: no console action can end the session it is made in.
fn ctx<'a>(app: &'a AppState, authority: &Authority, meta: &RequestMeta) -> Ctx<'a> {
    Ctx {
        store: app.store.as_ref(),
        entropy: app.entropy.as_ref(),
        now: app.clock.now(),
        api_keys: app.settings.api_keys,
        authority: authority.clone(),
        own_grant: None,
        actor: authority.principal.to_string(),
        actor_kind: ActorKind::Admin,
        ip: meta.ip.clone(),
        user_agent: meta.user_agent.clone(),
        metrics: Some(&app.metrics),
    }
}

impl Console {
    pub fn ctx<'a>(&self, app: &'a AppState) -> Ctx<'a> {
        ctx(app, &self.authority, &self.meta)
    }

    /// The navigation of the page `current`.
    pub async fn nav(&self, ctx: &Ctx<'_>, current: &str) -> Result<Nav, ConsoleError> {
        Nav::new(ctx, &self.user, &self.csrf, current).await
    }
}

impl ConsoleForm {
    pub fn ctx<'a>(&self, app: &'a AppState) -> Ctx<'a> {
        ctx(app, &self.authority, &self.meta)
    }

    /// The navigation of a page answering this form (its CSRF token was just checked, so the
    /// page's forms may carry it again).
    pub async fn nav(&self, ctx: &Ctx<'_>, current: &str) -> Result<Nav, ConsoleError> {
        let csrf = self.form.get("csrf").unwrap_or_default();
        Nav::new(ctx, &self.user, csrf, current).await
    }
}

/// The page refused to people without an admin role.
fn not_an_administrator() -> ServerError {
    ServerError::page(
        StatusCode::FORBIDDEN,
        "Not an administrator",
        "Your account holds no admin role, so the admin console is closed to you. \
         Ask an operator if you need one.",
    )
}

async fn authority(app: &AppState, user: &User) -> Result<Authority, ServerError> {
    authority_of(app.store.as_ref(), Principal::User(user.id.clone()))
        .await?
        .ok_or_else(not_an_administrator)
}

/// The sign-in form, set to come back to `page` (console-relative) afterwards.
fn sign_in(app: &AppState, page: &str) -> Response {
    let next = return_path(app, page).map_or("overview", |_| page);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    Redirect::to(&account_path(app, &format!("login?{query}"))).into_response()
}

/// This request's console page and query, console-relative (`grants?tenant=acme`).
fn here(parts: &Parts) -> String {
    let path = parts.uri.path();
    let page = path
        .strip_prefix(super::CONSOLE_PATH)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or_default();
    match parts.uri.query() {
        Some(q) => format!("{page}?{q}"),
        None => page.to_owned(),
    }
}

async fn meta(parts: &mut Parts, app: &AppState) -> RequestMeta {
    match RequestMeta::from_request_parts(parts, app).await {
        Ok(meta) => meta,
        Err(never) => match never {},
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        let now = app.clock.now();
        let session = browser::current_session(app, &jar, now)
            .await
            .map_err(|e| ConsoleError::from(e).into_response())?;
        let Some((session, user)) = session else {
            return Err(sign_in(app, &here(parts)));
        };
        let authority = authority(app, &user)
            .await
            .map_err(|e| ConsoleError::from(e).into_response())?;
        let (jar, browser_id) = browser::browser_id(app, jar);
        let csrf = browser::csrf_token(app, &browser_id, &browser::session_form_purpose(&session));
        Ok(Self {
            jar,
            user,
            authority,
            csrf,
            meta: meta(parts, app).await,
        })
    }
}

impl FromRequest<AppState> for ConsoleForm {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let jar = CookieJar::from_headers(&parts.headers);
        let meta = meta(&mut parts, app).await;
        let body = Bytes::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(IntoResponse::into_response)?;
        let signed_in = signed_in_form(app, &jar, &body)
            .await
            .map_err(|e| ConsoleError::from(e).into_response())?;
        let (user, form) = match signed_in {
            Ok(found) => found,
            // Nobody signed in: sign in, then back to the overview (a form is not a page
            // to return to).
            Err(_) => return Err(sign_in(app, "overview")),
        };
        let authority = authority(app, &user)
            .await
            .map_err(|e| ConsoleError::from(e).into_response())?;
        Ok(Self {
            user,
            authority,
            form,
            meta,
        })
    }
}
