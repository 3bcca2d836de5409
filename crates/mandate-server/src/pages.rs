//! Server-rendered pages: compiled askama templates with automatic HTML escaping.
//!
//! Pages never embed script or inline style, so the Content-Security-Policy set on every
//! response can forbid both; framing is forbidden so consent cannot be click-jacked. Every
//! form works without JavaScript. Pages show no secret: tokens, codes and hashes never reach
//! a template (CSRF tokens are per-form values, not credentials).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use mandate_core::scope::Access;
use mandate_core::time::Timestamp;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    /// Where the form posts, relative to the page (`login` in both places it is shown).
    pub action: &'a str,
    /// The pending authorization request; `None` for the account pages' own sign-in.
    pub request_id: Option<&'a str>,
    pub csrf: &'a str,
    /// The agent asking, when signing in continues an authorization request.
    pub agent_name: Option<&'a str>,
    pub login: &'a str,
    pub error: Option<&'a str>,
    /// The admin console page to return to after signing in (console-relative, checked by
    /// [`crate::console::return_path`]); only on the account pages' own sign-in.
    pub next: Option<&'a str>,
}

pub struct ScopeRow {
    pub name: String,
    pub description: String,
    pub sensitive: bool,
}

impl ScopeRow {
    /// The row for `name`, described by the scope catalog entry when there is one (an
    /// uncatalogued scope shows its name).
    pub fn from_catalog(name: &str, catalog: &[mandate_store::ScopeDef]) -> Self {
        let def = catalog.iter().find(|d| d.name == name);
        Self {
            name: name.to_owned(),
            description: def.map_or_else(|| name.to_owned(), |d| d.description.clone()),
            sensitive: def.is_some_and(|d| d.sensitive),
        }
    }
}

/// Requested scopes split as a person reads them: what only looks, and what changes things.
pub struct ScopeGroups {
    pub read: Vec<ScopeRow>,
    pub change: Vec<ScopeRow>,
}

impl ScopeGroups {
    pub fn new<'s>(
        scopes: impl IntoIterator<Item = &'s str>,
        catalog: &[mandate_store::ScopeDef],
    ) -> Self {
        let (read, change) = scopes
            .into_iter()
            .map(|name| ScopeRow::from_catalog(name, catalog))
            .partition(|row| Access::of(&row.name) == Access::Read);
        Self { read, change }
    }
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub request_id: &'a str,
    pub csrf: &'a str,
    pub agent_name: &'a str,
    /// For a client id metadata document client: the host of the redirect URI, shown
    /// prominently because the name is self-asserted.
    pub redirect_host: Option<&'a str>,
    pub client_id: &'a str,
    pub tenant_name: &'a str,
    pub user_name: &'a str,
    pub resource_name: &'a str,
    /// The purpose the agent stated, shown as its own words.
    pub purpose: Option<&'a str>,
    /// Registered by an operator (configuration or admin API), rather than by the agent
    /// itself (dynamic registration or a client ID metadata document).
    pub verified: bool,
    pub scopes: ScopeGroups,
}

/// A moment shown to a person: machine-readable for `<time datetime>`, and to the minute.
pub struct When {
    /// RFC 3339, UTC.
    pub iso: String,
    /// `2026-12-02 14:05 UTC`.
    pub text: String,
}

impl When {
    pub fn new(at: Timestamp) -> Self {
        let iso = at.to_rfc3339();
        let text = match iso.get(..16) {
            Some(minute) => format!("{} UTC", minute.replacen('T', " ", 1)),
            None => iso.clone(),
        };
        Self { iso, text }
    }
}

/// One line of a connection's recent activity, from the audit log.
pub struct ActivityRow {
    pub at: When,
    /// What happened, in plain words.
    pub what: &'static str,
    /// The scopes the event names, if any.
    pub scopes: Option<String>,
}

/// One grant on the connected agents page.
pub struct ConnectionRow {
    pub grant_id: String,
    pub agent_name: String,
    pub client_id: String,
    pub verified: bool,
    pub scopes: ScopeGroups,
    pub purpose: Option<String>,
    pub created: When,
    /// The last token issued, refreshed or exchanged under the grant (from the audit log).
    pub last_used: Option<When>,
    /// `None`: until revoked.
    pub expires: Option<When>,
    pub activity: Vec<ActivityRow>,
}

#[derive(Template)]
#[template(path = "agents.html")]
pub struct AgentsPage<'a> {
    pub user_name: &'a str,
    pub tenant_name: &'a str,
    /// Bound to this browser and session ([`crate::browser::session_form_purpose`]).
    pub csrf: &'a str,
    /// What the last action did, shown once after its redirect.
    pub notice: Option<&'a str>,
    pub connections: Vec<ConnectionRow>,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
pub struct SignedOutPage {}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub detail: &'a str,
}

/// Renders a template with the page headers; a render failure is an opaque 500.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    render(status, &ErrorPage { title, detail })
}

pub const STYLESHEET: &str = include_str!("../static/mandate.css");
