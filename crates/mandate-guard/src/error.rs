//! Errors of building a guard: discovery and key fetching.
//!
//! Request-time failures are not here: they are [`mandate_core::challenge::BearerError`], which
//! already knows its status code and challenge text. These are configuration and network
//! failures that stop a guard from starting, so the application can refuse to serve unprotected.

/// Why a [`crate::Guard`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The issuer or resource identifier is not an absolute http(s) URL.
    #[error("`{0}` is not an absolute http(s) URL without query or fragment")]
    InvalidUrl(String),
    /// A scope in the configuration is not an RFC 6749 §3.3 scope-token.
    #[error("`{0}` is not a valid scope token")]
    InvalidScope(String),
    /// The metadata or JWKS document could not be fetched.
    #[error("fetching {url} failed")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a non-success status.
    #[error("fetching {url} returned HTTP {status}")]
    Status { url: String, status: u16 },
    /// The document is larger than the guard accepts.
    #[error("the document at {0} is too large")]
    TooLarge(String),
    /// The document is not the JSON the guard expects.
    #[error("the document at {url} is not valid: {reason}")]
    InvalidDocument { url: String, reason: String },
    /// RFC 8414 §3.3: the metadata's `issuer` must be identical to the configured issuer.
    #[error("the metadata names issuer `{found}`, expected `{expected}`")]
    IssuerMismatch { expected: String, found: String },
    /// The JWKS holds no key the guard can use (EdDSA or ES256 signing keys).
    #[error("the JWKS at {0} holds no usable signing key")]
    NoUsableKeys(String),
    /// The issuer's metadata advertises no `revocation_feed_endpoint`.
    #[error("the issuer {0} offers no revocation feed")]
    NoRevocationFeed(String),
    /// Migration mode (`accept_api_keys`) needs the issuer's `introspection_endpoint`.
    #[error("the issuer {0} offers no introspection endpoint, needed to accept API keys")]
    NoIntrospectionEndpoint(String),
    /// The issuer's metadata advertises no `denial_report_endpoint`.
    #[error("the issuer {0} takes no denial reports")]
    NoReportEndpoint(String),
    /// [`Guard::report_denials`](crate::Guard::report_denials) was already called.
    #[error("this guard already reports denials")]
    ReportsAlreadyOn,
    /// [`Guard::follow_revocations`](crate::Guard::follow_revocations) was already called.
    #[error("this guard already follows a revocation feed")]
    FeedAlreadyFollowed,
}
