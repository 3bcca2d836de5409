//! The protocol's own error vocabulary.
//!
//! One variant per registered OAuth error code, each carrying a human-readable description that
//! never contains a presented credential. The server maps variants to HTTP statuses in exactly one
//! place; [`ErrorBody`] is the JSON shape of RFC 6749 §5.2 shared by server, guard and CLI.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A description is either a fixed sentence or one built from non-secret request facts.
pub type Description = Cow<'static, str>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// RFC 6749 §5.2: "The request is missing a required parameter, includes an unsupported
    /// parameter value (other than grant type), repeats a parameter, includes multiple
    /// credentials, ... or is otherwise malformed."
    #[error("invalid_request: {0}")]
    InvalidRequest(Description),
    /// RFC 6749 §5.2: "Client authentication failed (e.g., unknown client, no client
    /// authentication included, or unsupported authentication method)."
    #[error("invalid_client: {0}")]
    InvalidClient(Description),
    /// RFC 6749 §5.2: "The provided authorization grant ... or refresh token is invalid,
    /// expired, revoked, does not match the redirection URI used in the authorization request,
    /// or was issued to another client."
    #[error("invalid_grant: {0}")]
    InvalidGrant(Description),
    /// RFC 6749 §5.2: "The authenticated client is not authorized to use this authorization
    /// grant type."
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(Description),
    /// RFC 6749 §5.2: "The authorization grant type is not supported by the authorization
    /// server."
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(Description),
    /// RFC 6749 §4.1.2.1: "The authorization server does not support obtaining an authorization
    /// code using this method."
    #[error("unsupported_response_type: {0}")]
    UnsupportedResponseType(Description),
    /// RFC 6749 §5.2: "The requested scope is invalid, unknown, malformed, or exceeds the scope
    /// granted by the resource owner."
    #[error("invalid_scope: {0}")]
    InvalidScope(Description),
    /// RFC 8707 §2: "The requested resource is invalid, missing, unknown, or malformed."
    #[error("invalid_target: {0}")]
    InvalidTarget(Description),
    /// RFC 6749 §4.1.2.1: "The resource owner or authorization server denied the request."
    #[error("access_denied: {0}")]
    AccessDenied(Description),
    /// OpenID Connect Core §3.1.2.6: `prompt=none` was asked but the user must log in.
    #[error("login_required: {0}")]
    LoginRequired(Description),
    /// OpenID Connect Core §3.1.2.6: `prompt=none` was asked but the user must consent.
    #[error("consent_required: {0}")]
    ConsentRequired(Description),
}

impl OAuthError {
    /// The registered error code, as it appears in the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::UnsupportedResponseType(_) => "unsupported_response_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::AccessDenied(_) => "access_denied",
            Self::LoginRequired(_) => "login_required",
            Self::ConsentRequired(_) => "consent_required",
        }
    }

    pub fn description(&self) -> &str {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::UnsupportedResponseType(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d)
            | Self::AccessDenied(d)
            | Self::LoginRequired(d)
            | Self::ConsentRequired(d) => d,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code().to_owned(),
            error_description: Some(self.description().to_owned()),
        }
    }

    pub fn invalid_request(d: impl Into<Description>) -> Self {
        Self::InvalidRequest(d.into())
    }
}

/// RFC 6749 §5.2 error response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_code_and_description() {
        let e = OAuthError::InvalidTarget("unknown resource".into());
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "invalid_target", "error_description": "unknown resource"})
        );
    }
}
