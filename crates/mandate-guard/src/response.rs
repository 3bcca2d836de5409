//! The one place a refusal becomes an HTTP response.
//!
//! The challenge text comes from core ([`BearerError::challenge`]); this file adds the status,
//! `WWW-Authenticate`, `Cache-Control: no-store` and a small JSON body, with an exhaustive
//! `match` so a new error variant forces a decision here.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use mandate_core::challenge::BearerError;

/// Renders `err` with the resource's RFC 9728 metadata URL in the challenge.
pub fn challenge_response(err: &BearerError, metadata_url: &str) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let (error, description) = match err {
        // RFC 6750 §3.1 gives no error code when no credentials were sent; the body still
        // needs one, so it uses a descriptive, non-RFC code.
        BearerError::Missing => ("unauthorized", "a bearer access token is required"),
        BearerError::InvalidToken(why) => ("invalid_token", *why),
        BearerError::InvalidRequest(why) => ("invalid_request", *why),
        BearerError::InsufficientScope(_) => (
            "insufficient_scope",
            "the access token does not carry the scope this request requires",
        ),
    };
    let body = serde_json::json!({ "error": error, "error_description": description });
    let mut resp = (status, Json(body)).into_response();
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&err.challenge(metadata_url)) {
        headers.insert(WWW_AUTHENTICATE, v);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
