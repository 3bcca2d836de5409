//! Server-rendered pages: compiled askama templates with automatic HTML escaping.
//!
//! Pages never embed script or inline style, so the Content-Security-Policy set on every
//! response can forbid both; framing is forbidden so consent cannot be click-jacked.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub request_id: &'a str,
    pub csrf: &'a str,
    pub agent_name: &'a str,
    pub login: &'a str,
    pub error: Option<&'a str>,
}

pub struct ScopeRow {
    pub name: String,
    pub description: String,
    pub sensitive: bool,
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
    pub scopes: Vec<ScopeRow>,
}

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
