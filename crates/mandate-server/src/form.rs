//! The body of an OAuth endpoint request: `application/x-www-form-urlencoded`, bounded in
//! size, parsed without tolerating duplicated parameters.

use crate::errors::ServerError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use mandate_core::OAuthError;
use mandate_core::params::Params;

/// Largest body an OAuth endpoint reads. Real requests are well under 4 KiB.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// A parsed form body plus the raw `Authorization` header value, if any.
pub struct OAuthForm {
    pub params: Params,
    pub authorization: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = ServerError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ServerError> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(OAuthError::invalid_request(
                "Content-Type must be application/x-www-form-urlencoded",
            )
            .into());
        }
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| OAuthError::InvalidClient("malformed Authorization header".into()))?;
        // The router caps bodies at MAX_FORM_BYTES (DefaultBodyLimit); reading past it fails.
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ServerError::TooLarge
            } else {
                OAuthError::invalid_request("the request body could not be read").into()
            }
        })?;
        if body.len() > MAX_FORM_BYTES {
            return Err(ServerError::TooLarge);
        }
        Ok(Self {
            params: Params::parse(&body)?,
            authorization,
        })
    }
}
