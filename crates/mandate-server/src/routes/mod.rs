//! The HTTP surface: every route, mounted under the issuer's path.
//!
//! Discovery documents are also served at the path-inserted well-known locations RFC 8414 §3.1
//! and the MCP authorization spec require when the issuer has a path
//! (`/.well-known/oauth-authorization-server/<path>`), and at the OpenID Connect form
//! (`<path>/.well-known/openid-configuration`).

pub mod account;
pub mod authorize;
pub mod connected_agents;
pub mod consent;
pub mod discovery;
pub mod guard_reports;
pub mod introspect;
pub mod login;
pub mod refuse_nul;
pub mod register;
pub mod revocations;
pub mod revoke;
pub mod token;

use crate::errors::ServerError;
use crate::form::MAX_FORM_BYTES;
use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

/// Content-Security-Policy for every response: no script, no inline style, no framing.
const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(app: AppState) -> Router {
    let base = app.settings.issuer_path.clone();
    // What browser-based clients (MCP clients in a web page) call directly.
    let cross_origin = Router::new()
        .route("/token", post(token::token_post))
        .route("/revoke", post(revoke::revoke_post))
        .route("/register", post(register::register_post))
        .route(
            "/register/{client_id}",
            get(register::register_get)
                .put(register::register_put)
                .delete(register::register_delete),
        )
        .route("/jwks.json", get(discovery::jwks_get))
        .route(
            "/.well-known/openid-configuration",
            get(discovery::metadata_get),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::metadata_get),
        )
        .layer(cors());
    let mut endpoints = Router::new()
        .route("/authorize", get(authorize::authorize_get))
        .route("/login", post(login::login_post))
        .route("/consent", post(consent::consent_post))
        .route("/introspect", post(introspect::introspect_post))
        .route("/revocations", get(revocations::revocations_get))
        .route(
            mandate_core::denial_report::ENDPOINT_PATH,
            post(guard_reports::guard_reports_post),
        )
        .route("/healthz", get(discovery::healthz_get))
        .route("/static/mandate.css", get(discovery::stylesheet_get))
        .route(
            "/account/login",
            get(account::account_login_get).post(account::account_login_post),
        )
        .route("/account/logout", post(account::account_logout_post))
        .route("/account/agents", get(connected_agents::agents_get))
        .route("/account/revoke", post(connected_agents::revoke_post))
        .route(
            "/account/revoke-all",
            post(connected_agents::revoke_all_post),
        )
        // Pages link their stylesheet relatively, so the account pages find it here.
        .route(
            "/account/static/mandate.css",
            get(discovery::stylesheet_get),
        )
        .nest(
            mandate_core::admin::ADMIN_PATH,
            crate::admin::router(&app.settings.issuer),
        )
        .merge(crate::console::router())
        .merge(cross_origin);
    if app.settings.metrics_enabled {
        endpoints = endpoints.route("/metrics", get(crate::metrics::endpoint::metrics_get));
    }
    let admin_metadata = Router::new().route(
        &crate::admin::metadata_path(&base),
        get(crate::admin::protected_resource_metadata),
    );
    let mut router = if base.is_empty() {
        endpoints.merge(admin_metadata)
    } else {
        let path_inserted = Router::new()
            .route(
                &format!("/.well-known/oauth-authorization-server{base}"),
                get(discovery::metadata_get),
            )
            .route(
                &format!("/.well-known/openid-configuration{base}"),
                get(discovery::metadata_get),
            )
            .layer(cors());
        Router::new()
            .nest(&base, endpoints)
            .merge(path_inserted)
            .merge(admin_metadata)
    };
    router = router.fallback(|| async {
        ServerError::page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing at this address.",
        )
    });
    // One layer for the whole stack: axum boxes every route again for each `Router::layer`,
    // and clones each box per request, so nine separate layers cost a request about 8 µs
    // (BENCHMARKS.md, "Middleware as one layer"). Outermost first: the security headers go on
    // every answer, a panic's 500 and a refusal before routing included.
    let middleware = ServiceBuilder::new()
        // Every error response is logged once where it is made (`errors.rs`, with its cause);
        // tower-http's own line for each 5xx would double it, at `ERROR` even for a `503`.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        // Outside the panic catcher, so a panic is timed and counted as the 500 it becomes.
        .layer(crate::metrics::endpoint::TrackLayer(app.metrics.clone()))
        .map_response(axum::response::IntoResponse::into_response)
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(CatchPanicLayer::new())
        .layer(refuse_nul::RefuseNulLayer)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES));
    router.layer(middleware).with_state(app)
}

/// CORS for the endpoints a browser-based client calls itself: any origin, no cookies (these
/// endpoints authenticate with client credentials, bearer tokens or not at all, never with a
/// session), so a
/// foreign page gains nothing it could not do from a server. The login and consent pages are
/// deliberately not cross-origin.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(std::time::Duration::from_secs(24 * 3600))
}

/// A browser form body: single-valued fields, except `scope` which repeats (checkboxes).
pub struct BrowserForm(Vec<(String, String)>);

/// Parses a login or consent form and checks its CSRF token against this browser and the
/// pending request it names; returns the form and that request id.
pub fn checked_form(
    app: &AppState,
    jar: &axum_extra::extract::cookie::CookieJar,
    body: &[u8],
) -> Result<(BrowserForm, String), ServerError> {
    let form = browser_form(body)?;
    let request_id = form.single("request_id")?.to_owned();
    crate::browser::check_csrf(app, jar, &request_id, form.get("csrf"))?;
    Ok((form, request_id))
}

pub fn browser_form(body: &[u8]) -> Result<BrowserForm, ServerError> {
    use mandate_core::params::{contains_encoded_nul, contains_nul};
    if contains_nul(body) || contains_encoded_nul(body) {
        return Err(ServerError::page(
            StatusCode::BAD_REQUEST,
            "Invalid form",
            "The form must not contain NUL characters.",
        ));
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .take(256)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(BrowserForm(pairs))
}

impl BrowserForm {
    /// The value of a field that must appear exactly once.
    pub fn single(&self, name: &str) -> Result<&str, ServerError> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(v), None) if !v.is_empty() => Ok(v),
            _ => Err(ServerError::page(
                StatusCode::BAD_REQUEST,
                "Invalid form",
                format!("The form field `{name}` is missing or repeated."),
            )),
        }
    }

    /// The first value of a field, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated field.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
