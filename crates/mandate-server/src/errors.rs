//! Every failure becomes an HTTP response here, and only here.
//!
//! Protocol errors render as RFC 6749 JSON with the status the RFCs give; problems a browser
//! user must see (an untrusted redirect URI, a stale form) render as an error page; internal
//! failures answer an opaque 500 and log their full cause once. The match is exhaustive, so a
//! new variant forces a decision about its status.
//!
//! Every error response also carries its code as an [`ErrorCode`] extension, which the metrics
//! middleware counts (`mandate_errors_total`) under the route that answered.

use crate::pages;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_core::OAuthError;
use mandate_store::StoreError;
use mandate_store::log_limit::LogLimit;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A protocol error answered as JSON.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// Client authentication failed (RFC 6749 §5.2: 401, with a challenge when Basic was used).
    #[error("client authentication failed")]
    ClientAuth { error: OAuthError, basic: bool },
    /// The request body is larger than the endpoint accepts.
    #[error("request body too large")]
    TooLarge,
    /// A browser-facing failure shown as a page (never a redirect).
    #[error("{title}")]
    Page {
        status: StatusCode,
        title: &'static str,
        detail: String,
    },
    /// An admin API failure, answered as JSON (with an RFC 6750 challenge for token problems).
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// `GET /metrics` from a caller that may not read them.
    #[error(transparent)]
    Metrics(#[from] MetricsDenied),
    /// Too many requests from this caller (an anomaly rule's throttle, the registration rate
    /// limit): `429` with `Retry-After`.
    #[error("too many requests")]
    Throttled {
        retry_after: u64,
        description: &'static str,
    },
    #[error("storage failure")]
    Store(#[from] StoreError),
    #[error("internal failure")]
    Internal(#[from] anyhow::Error),
}

impl ServerError {
    pub fn page(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self::Page {
            status,
            title,
            detail: detail.into(),
        }
    }
}

/// The error code of an error response, for metrics: the RFC 6749 `error` value, the admin
/// API's error kind, or a fixed name for pages and internal failures. Never free text, so the
/// metric's labels stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// Why `GET /metrics` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetricsDenied {
    /// A scrape token is configured and none was presented (RFC 6750 §3.1: no error code).
    #[error("a bearer token is required")]
    NoToken,
    #[error("the bearer token is not the configured metrics token")]
    WrongToken,
    /// No token is configured, so only direct loopback callers are served.
    #[error("metrics are served to direct loopback callers only; configure [metrics] token")]
    NotLoopback,
}

/// A refused denial-report batch: too large is `413`, anything else malformed `400`.
impl From<mandate_core::denial_report::ReportError> for ServerError {
    fn from(e: mandate_core::denial_report::ReportError) -> Self {
        use mandate_core::denial_report::ReportError;
        match e {
            ReportError::TooLarge => Self::TooLarge,
            ReportError::Nul
            | ReportError::Json(_)
            | ReportError::TooMany
            | ReportError::Invalid { .. } => {
                Self::OAuth(OAuthError::invalid_request(e.to_string()))
            }
        }
    }
}

fn oauth_status(e: &OAuthError) -> StatusCode {
    match e {
        OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        OAuthError::AccessDenied(_) => StatusCode::FORBIDDEN,
        OAuthError::InvalidRequest(_)
        | OAuthError::InvalidGrant(_)
        | OAuthError::UnauthorizedClient(_)
        | OAuthError::UnsupportedGrantType(_)
        | OAuthError::UnsupportedResponseType(_)
        | OAuthError::InvalidScope(_)
        | OAuthError::InvalidTarget(_)
        | OAuthError::LoginRequired(_)
        | OAuthError::ConsentRequired(_) => StatusCode::BAD_REQUEST,
    }
}

fn json_error(status: StatusCode, e: &OAuthError) -> Response {
    let mut response = (status, axum::Json(e.body())).into_response();
    no_store(&mut response);
    response
}

/// RFC 6749 §5.1: token-bearing and error responses must not be cached.
pub fn no_store(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let code = self.code();
        let mut response = self.render();
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

impl ServerError {
    /// The code counted in metrics (see [`ErrorCode`]).
    fn code(&self) -> &'static str {
        match self {
            Self::OAuth(e) | Self::ClientAuth { error: e, .. } => e.code(),
            Self::TooLarge => "invalid_request",
            Self::Page { status, .. } if *status == StatusCode::NOT_FOUND => "not_found",
            Self::Page { .. } => "page",
            Self::Admin(e) => admin_status_and_code(e).1,
            Self::Metrics(e) => metrics_status_and_code(*e).1,
            Self::Throttled { .. } => "too_many_requests",
            Self::Store(e) if e.is_unavailable() => "temporarily_unavailable",
            Self::Internal(e) if store_unavailable(e) => "temporarily_unavailable",
            Self::Store(_) | Self::Internal(_) => "server_error",
        }
    }

    fn render(self) -> Response {
        match self {
            Self::OAuth(e) => json_error(oauth_status(&e), &e),
            Self::ClientAuth { error, basic } => {
                let mut response = json_error(StatusCode::UNAUTHORIZED, &error);
                if basic {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"mandate\", charset=\"UTF-8\""),
                    );
                }
                response
            }
            Self::TooLarge => json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &OAuthError::invalid_request("request body is too large"),
            ),
            Self::Page {
                status,
                title,
                detail,
            } => pages::error_page(status, title, &detail),
            Self::Admin(e) => admin_error(e),
            Self::Metrics(e) => metrics_denied(e),
            Self::Throttled {
                retry_after,
                description,
            } => {
                let body = serde_json::json!({
                    "error": "too_many_requests",
                    "error_description": description,
                });
                let mut response =
                    (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
                no_store(&mut response);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                response
            }
            Self::Store(e) if e.is_unavailable() => unavailable(&e),
            Self::Internal(e) if store_unavailable(&e) => unavailable(e.as_ref()),
            Self::Store(e) => internal(&e),
            Self::Internal(e) => internal(e.as_ref()),
        }
    }
}

/// Why an admin API request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No bearer token at all (RFC 6750 §3.1: a challenge without an error code).
    #[error("an admin access token is required")]
    NoToken,
    /// No usable admin token (RFC 6750 `invalid_token`, or no credentials at all).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A valid token without the admin scope (RFC 6750 `insufficient_scope`).
    #[error("the token lacks the admin scope")]
    InsufficientScope,
    /// A known caller that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Absent, or in a tenant the caller may not see (the two are indistinguishable).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
}

impl From<mandate_core::admin::Denied> for AdminError {
    fn from(d: mandate_core::admin::Denied) -> Self {
        match d {
            mandate_core::admin::Denied::Hidden => Self::NotFound("not found".into()),
            mandate_core::admin::Denied::Forbidden(why) => Self::Forbidden(why.into()),
        }
    }
}

impl ServerError {
    /// The same failure for a person in a browser (the admin console): an admin operation's
    /// refusal becomes an error page with the status the admin API would answer and the same
    /// description; every other failure is unchanged (storage failures stay opaque).
    #[must_use]
    pub fn for_browser(self) -> Self {
        match self {
            Self::Admin(e) => {
                let (status, _) = admin_status_and_code(&e);
                let title = match &e {
                    AdminError::NoToken | AdminError::Unauthenticated(_) => "Sign in required",
                    AdminError::InsufficientScope | AdminError::Forbidden(_) => "Not allowed",
                    AdminError::NotFound(_) => "Not found",
                    AdminError::Invalid(_) => "Invalid request",
                    AdminError::Conflict(_) => "Not possible now",
                };
                Self::page(status, title, e.to_string())
            }
            other => other,
        }
    }
}

fn admin_status_and_code(e: &AdminError) -> (StatusCode, &'static str) {
    match e {
        AdminError::NoToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
        AdminError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
        AdminError::InsufficientScope => (StatusCode::FORBIDDEN, "insufficient_scope"),
        AdminError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        AdminError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        AdminError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
    }
}

fn admin_error(e: AdminError) -> Response {
    let (status, code) = admin_status_and_code(&e);
    let body = serde_json::json!({ "error": code, "error_description": e.to_string() });
    let mut response = (status, axum::Json(body)).into_response();
    no_store(&mut response);
    let challenge = match &e {
        AdminError::NoToken => Some("Bearer realm=\"mandate-admin\"".to_owned()),
        AdminError::Unauthenticated(why) => Some(format!(
            "Bearer realm=\"mandate-admin\", error=\"invalid_token\", error_description=\"{why}\""
        )),
        AdminError::InsufficientScope => Some(format!(
            "Bearer realm=\"mandate-admin\", error=\"insufficient_scope\", scope=\"{}\"",
            mandate_core::admin::ADMIN_SCOPE
        )),
        _ => None,
    };
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn metrics_status_and_code(e: MetricsDenied) -> (StatusCode, &'static str) {
    match e {
        MetricsDenied::NoToken | MetricsDenied::WrongToken => {
            (StatusCode::UNAUTHORIZED, "invalid_token")
        }
        MetricsDenied::NotLoopback => (StatusCode::FORBIDDEN, "forbidden"),
    }
}

/// RFC 6750 §3: 401 (or 403) with a `Bearer` challenge, so a scraper knows to send a token.
fn metrics_denied(e: MetricsDenied) -> Response {
    let (status, code) = metrics_status_and_code(e);
    let body = serde_json::json!({ "error": code, "error_description": e.to_string() });
    let mut response = (status, axum::Json(body)).into_response();
    no_store(&mut response);
    let challenge = match e {
        MetricsDenied::NoToken | MetricsDenied::NotLoopback => "Bearer realm=\"mandate-metrics\"",
        MetricsDenied::WrongToken => "Bearer realm=\"mandate-metrics\", error=\"invalid_token\"",
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// How long a client is asked to wait before sending a request the database could not serve.
const RETRY_AFTER_UNAVAILABLE_SECONDS: u32 = 1;

/// Whether an internal failure is a storage failure of a database unavailable for now.
fn store_unavailable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<StoreError>()
        .is_some_and(StoreError::is_unavailable)
}

/// The database is unavailable for now ([`StoreError::is_unavailable`]): `503` with
/// `Retry-After`, so a client or balancer retries instead of treating it as a server fault,
/// and `temporarily_unavailable`, the registered OAuth error code for a server that cannot
/// handle the request because of "a temporary overloading or maintenance" (RFC 6749
/// §4.1.2.1; registered for the authorization endpoint, and the one code that says this at
/// any endpoint). Nothing the request asked for was acknowledged.
fn unavailable(e: &(dyn std::error::Error + 'static)) -> Response {
    if let Some(unlogged) = UNAVAILABLE_LOG.admit(std::time::Instant::now()) {
        tracing::warn!(
            error = %error_chain(e),
            unlogged,
            "request failed: the database is unavailable"
        );
    }
    let body = serde_json::json!({
        "error": "temporarily_unavailable",
        "error_description": "the database is unavailable; retry shortly",
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    no_store(&mut response);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(RETRY_AFTER_UNAVAILABLE_SECONDS),
    );
    response
}

/// While the database is away every request that needs it fails the same way: one line a
/// second says so, with how many were not logged since, instead of one per request.
static UNAVAILABLE_LOG: LogLimit = LogLimit::new(std::time::Duration::from_secs(1));

/// An error and its sources, for the log (database errors carry no bound values).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    chain
}

fn internal(e: &(dyn std::error::Error + 'static)) -> Response {
    tracing::error!(error = %error_chain(e), "request failed");
    let body = serde_json::json!({
        "error": "server_error",
        "error_description": "the server could not complete the request",
    });
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    no_store(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_code_and_retry(e: ServerError) -> (StatusCode, &'static str, Option<String>) {
        let response = e.into_response();
        let code = response.extensions().get::<ErrorCode>().map_or("", |c| c.0);
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        (response.status(), code, retry)
    }

    #[test]
    fn an_unavailable_database_is_503_with_retry_after_however_it_arrives() {
        let direct = ServerError::Store(StoreError::EventBatchUnavailable);
        let wrapped = ServerError::Internal(anyhow::Error::new(StoreError::Database(
            sqlx::Error::PoolTimedOut,
        )));
        for e in [direct, wrapped] {
            assert_eq!(
                status_code_and_retry(e),
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    Some("1".to_owned())
                )
            );
        }
        let fault = ServerError::Store(StoreError::Corrupt("grant"));
        assert_eq!(
            status_code_and_retry(fault),
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None)
        );
    }
}
