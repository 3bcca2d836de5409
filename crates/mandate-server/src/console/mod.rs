//! The admin console, `/admin/console/`: server-rendered pages for people who hold an admin
//! role. Tenants, users, agents with their maximum scopes, grants (revoke), API keys (create,
//! rotate, revoke), the audit log, anomaly alerts and signing-key status.
//!
//! The console is a second face of the admin API, not a second implementation: every page
//! reads, and every form changes, through the admin operations ([`crate::admin`]) with a
//! [`Ctx`](crate::admin::context::Ctx) built from the signed-in person's role, so what a tenant
//! admin may see or do is decided in exactly one place for the API, the CLI and the console.
//! Another tenant's object is "not found" here as there.
//!
//! Pages follow the account pages' rules: askama templates, no script, the CSRF token of this
//! browser and session on every form, `Cache-Control: no-store`, and no secret ever rendered
//! except a new API key on the one page that answers its creation or rotation. Every page is
//! one level below [`CONSOLE_PATH`], so relative links (stylesheet, forms, other pages) work
//! under any issuer path.
//!
//! # Layout
//! - [`session`]: the signed-in administrator (extractors), and their operation context.
//! - [`pages`]: the page templates and the navigation.
//! - [`directory`]: overview, tenants, users, agents; [`signing_keys`].
//! - [`grants`]: grants and revoking them; [`api_keys`]: create, rotate, revoke.
//! - [`audit`]: the audit log with filters and paging, and anomaly alerts.

pub mod api_keys;
pub mod audit;
pub mod directory;
pub mod grants;
pub mod pages;
pub mod session;
pub mod signing_keys;

use crate::errors::ServerError;
use crate::routes::discovery::stylesheet_get;
use crate::state::AppState;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use mandate_store::StoreError;

/// Where the console lives, below the issuer's path.
pub const CONSOLE_PATH: &str = "/admin/console";

/// Longest console-relative address accepted to return to after signing in.
const MAX_RETURN: usize = 512;

pub fn router() -> Router<AppState> {
    let page = |p: &str| format!("{CONSOLE_PATH}/{p}");
    Router::new()
        .route(CONSOLE_PATH, get(to_overview))
        .route(&page(""), get(to_overview))
        .route(&page("overview"), get(directory::overview_get))
        .route(&page("tenants"), get(directory::tenants_get))
        .route(&page("users"), get(directory::users_get))
        .route(&page("agents"), get(directory::agents_get))
        .route(&page("grants"), get(grants::grants_get))
        .route(&page("revoke-grant"), post(grants::revoke_grant_post))
        .route(&page("api-keys"), get(api_keys::api_keys_get))
        .route(&page("create-key"), post(api_keys::create_key_post))
        .route(&page("rotate-key"), post(api_keys::rotate_key_post))
        .route(&page("revoke-key"), post(api_keys::revoke_key_post))
        .route(&page("audit"), get(audit::audit_get))
        .route(&page("alerts"), get(audit::alerts_get))
        .route(&page("signing-keys"), get(signing_keys::signing_keys_get))
        .route(&page("static/mandate.css"), get(stylesheet_get))
}

async fn to_overview(axum::extract::State(app): axum::extract::State<AppState>) -> Redirect {
    Redirect::to(&page_url(&app, "overview"))
}

/// The absolute path of the console page `page` (console-relative, query included).
pub fn page_url(app: &AppState, page: &str) -> String {
    format!("{}{CONSOLE_PATH}/{page}", app.settings.issuer_path)
}

/// The address of `path` with these query pairs (empty ones left out).
pub fn address(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(k, v);
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// The "Next page" address of a listing: `path` with its filters and the cursor `after`.
pub fn next_address(path: &str, pairs: &[(&str, &str)], after: &str) -> String {
    let mut all = pairs.to_vec();
    all.push(("after", after));
    address(path, &all)
}

/// A submitted field with its surrounding blanks removed; `None` when nothing is left.
pub fn filled(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// The absolute path of the console page `next` (console-relative, such as
/// `grants?tenant=acme`), or `None` when `next` is anything else. The sign-in form returns
/// only to addresses this accepts: a page name and a query of plain characters, so never
/// another site, another part of the server, or a path with `..`.
pub fn return_path(app: &AppState, next: &str) -> Option<String> {
    is_console_page(next).then(|| page_url(app, next))
}

fn is_console_page(next: &str) -> bool {
    let (page, query) = next.split_once('?').unwrap_or((next, ""));
    let page_ok = !page.is_empty() && page.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    let query_ok = query
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~%=&+".contains(&b));
    next.len() <= MAX_RETURN && page_ok && query_ok
}

/// A console handler's failure: admin operation refusals become error pages
/// ([`ServerError::for_browser`]), so `?` gives a person a page, never the API's JSON.
pub struct ConsoleError(ServerError);

impl From<ServerError> for ConsoleError {
    fn from(e: ServerError) -> Self {
        Self(e.for_browser())
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

/// A console page's query parameters; a query that cannot be read (a repeated field, say)
/// answers a 400 page rather than axum's plain-text rejection.
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ConsoleError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(q)) => Ok(Self(q)),
            Err(e) => Err(ServerError::page(
                StatusCode::BAD_REQUEST,
                "Invalid address",
                format!("The address's query cannot be read: {}", e.body_text()),
            )
            .into()),
        }
    }
}

/// What console handlers answer.
pub type Answer = Result<Response, ConsoleError>;

/// A "not found" page for an id in a form or query that the caller cannot reach.
pub fn not_found(what: &str, id: &str) -> ConsoleError {
    crate::admin::context::not_found(what, id).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_pages_are_returned_to() {
        for (next, ok, why) in [
            ("grants", true, "a page"),
            (
                "audit?user=alice&action=grant.revoked",
                true,
                "a page with a query",
            ),
            ("", false, "no page"),
            ("//evil.example", false, "another site"),
            ("https://evil.example", false, "a URL"),
            ("../account/agents", false, "outside the console"),
            ("grants/../../x", false, "a path"),
            ("grants?x=<script>", false, "markup"),
            ("grants?next=//evil", false, "a slash in the query"),
            (&"a".repeat(600), false, "too long"),
        ] {
            assert_eq!(is_console_page(next), ok, "{why}: {next}");
        }
    }
}
